//! One training step's gradient computation, assembled from the strategies that change it (R-Drop changes
//! the clean loss, adv adds its noisy passes on top of whatever the clean loss is). Layer decay acts on
//! the optimizer and FMA after training, so neither appears here.

use crate::adv::{self, AdvConfig};
use crate::rdrop::{self, RDropConfig};
use ernie_model::{BackwardWants, Encoder, ForwardOpts, Grads, Tokens};
use ernie_tensor::{Backend, RngStream};
use serde::{Deserialize, Serialize};

/// A loss on a batch of logits with its gradient.
pub struct LossParts<B: Backend> {
    /// The objective value (what the gradient is of).
    pub total: f64,
    /// Mean cross-entropy part.
    pub ce: f64,
    /// The strategy's KL term (mean over examples), if any.
    pub kl: Option<f64>,
    pub dlogits: B::Buf,
}

/// Which loss-changing strategies a step uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub rdrop: Option<RDropConfig>,
    pub adv: Option<AdvConfig>,
}

/// Dropout settings of the training forwards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub hidden: f32,
    pub attention: f32,
}

/// What one step computed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepReport {
    /// The full objective.
    pub loss: f64,
    /// Mean CE on the clean forward.
    pub ce: f64,
    pub rdrop_kl: Option<f64>,
    pub adv_kl: Option<f64>,
    /// Correct predictions of the clean forward on the batch (first copy under R-Drop).
    pub correct: usize,
    pub forwards: usize,
    pub backwards: usize,
}

fn argmax_correct(logits: &[f32], labels: &[u32], classes: usize) -> usize {
    labels
        .iter()
        .enumerate()
        .filter(|(r, &y)| {
            let row = &logits[r * classes..(r + 1) * classes];
            let best = row.iter().enumerate().fold(0, |bi, (i, &v)| if v > row[bi] { i } else { bi });
            best == y as usize
        })
        .count()
}

/// Accumulate the gradient of the recipe's objective on one batch into `grads` (the caller zeroes them).
/// `rng` is this step's random stream (dropout masks, adv's initial noise).
pub fn compute_gradients<B: Backend>(
    b: &B,
    enc: &Encoder<B>,
    grads: &mut Grads<B>,
    tokens: &Tokens,
    labels: &[u32],
    recipe: &Recipe,
    dropout: Dropout,
    rng: RngStream,
) -> StepReport {
    let classes = enc.num_labels;
    let batch = tokens.batch;
    let opts = ForwardOpts { train: true, hidden_dropout: dropout.hidden, attn_dropout: dropout.attention, rng: rng.derive(1), score_noise: None, row_offset: 0 };
    let mut report = StepReport::default();
    // The clean pass: B rows, or 2B rows under R-Drop.
    let doubled;
    let (clean_tokens, clean_labels) = match recipe.rdrop {
        Some(_) => {
            doubled = (tokens.doubled(), [labels, labels].concat());
            (&doubled.0, &doubled.1[..])
        }
        None => (tokens, labels),
    };
    let label_ids = b.upload_ids(clean_labels);
    let fw = enc.forward(b, clean_tokens, &opts);
    report.forwards += 1;
    let clean = match &recipe.rdrop {
        Some(cfg) => rdrop::loss(b, &fw.logits, &label_ids, batch, classes, cfg),
        None => {
            let (ce, dl) = b.softmax_ce(&fw.logits, &label_ids, classes, 1.0 / batch as f64);
            let ce = ce.iter().sum::<f64>() / batch as f64;
            LossParts { total: ce, ce, kl: None, dlogits: dl }
        }
    };
    report.ce = clean.ce;
    report.rdrop_kl = clean.kl;
    report.loss = clean.total;
    let host_logits = b.download(&fw.logits);
    report.correct = argmax_correct(&host_logits[..batch * classes], labels, classes);
    match &recipe.adv {
        Some(cfg) => {
            let r = adv::apply(b, enc, grads, clean_tokens, &label_ids, &fw, clean, &opts, cfg, rng.derive(2));
            report.loss += r.extra_loss;
            report.adv_kl = Some(r.kl);
            report.forwards += r.forwards;
            report.backwards += r.backwards;
        }
        None => {
            enc.backward(b, &fw, &clean.dlogits, BackwardWants { params: true, score_noise: false }, grads);
            report.backwards += 1;
        }
    }
    report
}
