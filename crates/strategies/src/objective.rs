//! One training step's gradient computation, assembled from the strategies that change it (R-Drop changes
//! the clean loss, adv adds its noisy passes on top of whatever the clean loss is). Layer decay acts on
//! the optimizer and FMA after training, so neither appears here.

use crate::adv::{self, AdvConfig};
use crate::rdrop::{self, RDropConfig};
use crate::Strategy;
use ernie_backend::{Backend, RngStream};
use ernie_model::{BackwardWants, Encoder, ForwardOpts, Grads, Tokens};
use serde::{Deserialize, Serialize};

/// Where a step's values sit in its statistics on the device ([`Backend::Stats`]): the loss ops write them
/// during the step and the host reads them all at once at its end ([`PendingReport::read`]). The
/// optimizer's slots (gradient norm, clip factor) follow from [`stat::LEN`].
pub mod stat {
    /// The full objective, what the gradient is of: [`CE`] plus the strategies' weighted terms.
    pub const LOSS: usize = 0;
    /// Mean cross-entropy of the clean pass (over both copies under R-Drop).
    pub const CE: usize = 1;
    /// R-Drop's mean symmetric KL between the two copies.
    pub const RDROP_KL: usize = 2;
    /// adv's mean symmetric KL between the clean and adversarial predictions.
    pub const ADV_KL: usize = 3;
    /// What adv's `ce` objective adds: `alpha * (sum of the adversarial CE) / rows`.
    pub const ADV_CE: usize = 4;
    /// Correct predictions of the clean pass (first copy under R-Drop).
    pub const CORRECT: usize = 5;
    /// Slots the objective uses.
    pub const LEN: usize = 6;
}

/// Which strategies a training run applies, with their settings (FMA, which averages finished runs, is
/// not part of a run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub rdrop: Option<RDropConfig>,
    pub adv: Option<AdvConfig>,
    /// Layer decay's rate (see [`crate::layer_decay`]); the optimizer's multipliers, not the loss.
    #[serde(default)]
    pub layer_decay: Option<f64>,
}

impl Recipe {
    /// The strategies applied, in [`Strategy::TRAINING`] order.
    pub fn strategies(&self) -> Vec<Strategy> {
        Strategy::TRAINING
            .into_iter()
            .filter(|s| match s {
                Strategy::Adv => self.adv.is_some(),
                Strategy::Rdrop => self.rdrop.is_some(),
                Strategy::LayerDecay => self.layer_decay.is_some(),
                Strategy::Fma => false,
            })
            .collect()
    }
}

/// A batch of token ids with one label per example.
#[derive(Clone, Copy, Debug)]
pub struct LabelledBatch<'a> {
    pub tokens: &'a Tokens,
    pub labels: &'a [u32],
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

/// What [`compute_gradients`] knows before the step's statistics come back: which values it left on the
/// device and how many passes it ran. [`PendingReport::read`] completes it from the one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingReport {
    rdrop: bool,
    adv: bool,
    pub forwards: usize,
    pub backwards: usize,
}

impl PendingReport {
    /// The report, from the step's downloaded statistics ([`stat`] layout).
    pub fn read(&self, stats: &[f64]) -> StepReport {
        StepReport {
            loss: stats[stat::LOSS],
            ce: stats[stat::CE],
            rdrop_kl: self.rdrop.then(|| stats[stat::RDROP_KL]),
            adv_kl: self.adv.then(|| stats[stat::ADV_KL]),
            correct: stats[stat::CORRECT] as usize,
            forwards: self.forwards,
            backwards: self.backwards,
        }
    }
}

/// Accumulate the gradient of the recipe's objective on one batch into `grads` (the caller zeroes them),
/// leaving the loss, its parts and the correct count in `stats` ([`stat`] layout, at least [`stat::LEN`]
/// slots) on the device. `rng` is this step's random stream (dropout masks, adv's initial noise).
///
/// Transfers: the batch goes to the device in ONE upload (tokens and labels, doubled under R-Drop), which
/// every forward of the step shares; nothing comes back (the caller reads `stats` once, at the end of the
/// step).
#[allow(clippy::too_many_arguments)]
pub fn compute_gradients<B: Backend>(
    b: &B,
    enc: &Encoder<B>,
    grads: &mut Grads<B>,
    batch: LabelledBatch<'_>,
    recipe: &Recipe,
    dropout: Dropout,
    rng: RngStream,
    stats: &mut B::Stats,
) -> PendingReport {
    let LabelledBatch { tokens, labels } = batch;
    let classes = enc.num_labels;
    let batch = tokens.batch;
    let hidden = enc.config.hidden_size;
    let opts = ForwardOpts::train(dropout.hidden, dropout.attention, rng.derive(1));
    let mut report =
        PendingReport { rdrop: recipe.rdrop.is_some(), adv: recipe.adv.is_some(), forwards: 0, backwards: 0 };
    // The step's one upload. The clean pass runs B rows, or 2B under R-Drop (the batch twice).
    let (tb, label_ids) = match recipe.rdrop {
        Some(_) => tokens.doubled().upload(b, hidden, Some(&[labels, labels].concat())),
        None => tokens.upload(b, hidden, Some(labels)),
    };
    let label_ids = label_ids.expect("the labels ride with the tokens");
    let fw = enc.forward_on(b, &tb, &opts);
    report.forwards += 1;
    // The loss is CE plus the strategies' terms, combined on the device at the end: (weight, slot).
    let mut loss_terms = vec![(1.0, stat::CE)];
    let dlogits = match &recipe.rdrop {
        Some(cfg) => {
            loss_terms.push((cfg.alpha, stat::RDROP_KL));
            rdrop::loss(b, &fw.logits, &label_ids, batch, classes, cfg, stats)
        }
        None => {
            let (ce, dl) = b.softmax_ce(&fw.logits, &label_ids, classes, 1.0 / batch as f64);
            b.stats_mean(stats, stat::CE, &ce, 1.0, batch as f64);
            dl
        }
    };
    // The first B rows' labels are the batch's own (R-Drop's second copy repeats them).
    b.stats_correct(stats, stat::CORRECT, &fw.logits, &label_ids, batch, classes);
    match &recipe.adv {
        Some(cfg) => {
            let r = adv::apply(b, enc, grads, &tb, &label_ids, &fw, dlogits, &opts, cfg, rng.derive(2), stats);
            loss_terms.push(r.loss_term);
            report.forwards += r.forwards;
            report.backwards += r.backwards;
        }
        None => {
            enc.backward(b, &fw, &dlogits, BackwardWants { params: true, score_noise: false }, grads);
            report.backwards += 1;
        }
    }
    b.stats_combine(stats, stat::LOSS, &loss_terms);
    report
}
