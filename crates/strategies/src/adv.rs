//! adv: adversarial noise on the pre-softmax attention scores of every layer (real key positions only).
//! Per step, 3 forwards and 2 backwards:
//! 1. the clean forward (done by the caller) gives `p_clean` and the clean loss;
//! 2. a probe forward with small random noise `delta0 ~ N(0, 1e-5)` (variance; std 3.2e-3); the first backward, of
//!    `KL(p_clean (detached) || p_probe)`, runs down to each layer's noise only, skipping every
//!    weight-gradient GEMM (no parameter gradient is needed);
//! 3. `delta = epsilon * g / ||g||`, the norm per example and per layer (L2, or max-norm), and an
//!    adversarial forward with it gives `p_adv`;
//! 4. the second backward, of `clean loss + alpha * 0.5 * (KL(p_clean||p_adv) + KL(p_adv||p_clean))`
//!    (objective `kl`) or `clean loss + alpha * CE(adv)` (objective `ce`), goes through both graphs.
//!
//! The probe and adversarial forwards reuse the clean pass's dropout masks (same random stream), so the
//! difference between `p_clean` and `p_adv` comes from the noise alone.

use crate::objective::stat;
use ernie_backend::{AttnShape, Backend, NoiseNorm, RngStream, TokenBatch};
use ernie_model::{BackwardWants, Encoder, Forward, ForwardOpts, Grads};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvObjective {
    /// Symmetric KL between clean and adversarial predictions.
    #[default]
    Kl,
    /// Cross-entropy of the adversarial predictions.
    Ce,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdvConfig {
    /// Size of the noise per example and layer (its L2 or max norm).
    pub epsilon: f32,
    /// Weight of the adversarial term.
    pub alpha: f64,
    /// Standard deviation of the probe noise.
    pub init_sigma: f32,
    #[serde(with = "norm_serde")]
    pub norm: NoiseNorm,
    pub objective: AdvObjective,
}

/// Defaults chosen by the held-out sweep recorded in docs/adv-sweep.md.
pub const DEFAULT_EPSILON: f32 = 1.0;
pub const DEFAULT_ALPHA: f64 = 1.0;
/// The probe noise is N(0, 1e-5), read as variance 1e-5 (std 3.2e-3). A std of 1e-5 would make the probe's
/// KL ~1e-10, below f32 round-off of the probabilities (and far below bf16's): its gradient, whose
/// direction is the noise, would then be mostly round-off.
pub const DEFAULT_INIT_SIGMA: f32 = 3.162_277_7e-3;

impl Default for AdvConfig {
    fn default() -> Self {
        AdvConfig {
            epsilon: DEFAULT_EPSILON,
            alpha: DEFAULT_ALPHA,
            init_sigma: DEFAULT_INIT_SIGMA,
            norm: NoiseNorm::L2,
            objective: AdvObjective::Kl,
        }
    }
}

mod norm_serde {
    use ernie_backend::NoiseNorm;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(n: &NoiseNorm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match n {
            NoiseNorm::L2 => "l2",
            NoiseNorm::Max => "max",
        })
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NoiseNorm, D::Error> {
        match String::deserialize(d)?.as_str() {
            "l2" => Ok(NoiseNorm::L2),
            "max" => Ok(NoiseNorm::Max),
            other => Err(serde::de::Error::custom(format!("unknown noise norm {other:?} (l2 or max)"))),
        }
    }
}

pub struct AdvReport {
    /// adv's term of the loss, `(weight, slot)` in the step's statistics: `(alpha, stat::ADV_KL)` for the
    /// KL objective, `(1, stat::ADV_CE)` for the CE one (that slot already holds `alpha * mean CE`).
    pub loss_term: (f64, usize),
    pub forwards: usize,
    pub backwards: usize,
}

/// The adversarial noise for `tokens` (on the device, shared with the clean pass), given the clean logits:
/// steps 2 and 3 above. Returns the per-layer `delta` and the probe's KL per row (on the device). Public so
/// that tests can check it against finite differences.
pub fn adversarial_noise<B: Backend>(
    b: &B,
    enc: &Encoder<B>,
    tokens: &TokenBatch<B::Ids>,
    clean_logits: &B::Buf,
    opts: &ForwardOpts<'_, B>,
    cfg: &AdvConfig,
    rng: RngStream,
) -> (Vec<B::Buf>, B::Buf) {
    let rows = tokens.shape.batch;
    let classes = enc.num_labels;
    let shape = AttnShape {
        batch: rows,
        seq: tokens.shape.seq,
        heads: enc.config.num_attention_heads,
        head_dim: enc.config.head_dim(),
    };
    let delta0: Vec<B::Buf> = (0..enc.config.num_hidden_layers)
        .map(|l| b.randn_key_masked(shape, &tokens.key_mask, cfg.init_sigma, rng.derive(l as u64)))
        .collect();
    let probe_opts = ForwardOpts { score_noise: Some(&delta0), ..*opts };
    let probe = enc.forward_on(b, tokens, &probe_opts);
    let (kl, dprobe) = b.kl_detached(clean_logits, &probe.logits, classes, 1.0 / rows as f64);
    // Only the noise gradients: the scratch gradients stay untouched (no weight-gradient GEMMs run).
    let mut scratch = Grads { bufs: vec![] };
    let g = enc.backward(b, &probe, &dprobe, BackwardWants { params: false, score_noise: true }, &mut scratch);
    let delta = g.iter().map(|g| b.normalize_per_example(g, rows, cfg.epsilon, cfg.norm)).collect();
    (delta, kl)
}

/// Steps 2 to 4: adds the gradient of `clean loss + adversarial term` into `grads`, given the clean pass and
/// the gradient of its loss w.r.t. its logits; leaves the mean KL (and, for the CE objective, its weighted
/// CE) in `stats` and returns the term the loss gets.
#[allow(clippy::too_many_arguments)]
pub fn apply<B: Backend>(
    b: &B,
    enc: &Encoder<B>,
    grads: &mut Grads<B>,
    tokens: &TokenBatch<B::Ids>,
    labels: &B::Ids,
    clean_fw: &Forward<B>,
    clean_dlogits: B::Buf,
    opts: &ForwardOpts<'_, B>,
    cfg: &AdvConfig,
    rng: RngStream,
    stats: &mut B::Stats,
) -> AdvReport {
    let rows = tokens.shape.batch;
    let classes = enc.num_labels;
    let (delta, _) = adversarial_noise(b, enc, tokens, &clean_fw.logits, opts, cfg, rng);
    let adv_opts = ForwardOpts { score_noise: Some(&delta), ..*opts };
    let adv_fw = enc.forward_on(b, tokens, &adv_opts);
    let (kl, dclean_kl, dadv_kl) = b.sym_kl(&clean_fw.logits, &adv_fw.logits, classes, cfg.alpha / rows as f64);
    b.stats_mean(stats, stat::ADV_KL, &kl, 1.0, rows as f64);
    let mut dclean = clean_dlogits;
    let (loss_term, dadv) = match cfg.objective {
        AdvObjective::Kl => {
            b.axpby(&mut dclean, 1.0, &dclean_kl, 1.0);
            ((cfg.alpha, stat::ADV_KL), dadv_kl)
        }
        AdvObjective::Ce => {
            let (ce, d) = b.softmax_ce(&adv_fw.logits, labels, classes, cfg.alpha / rows as f64);
            b.stats_mean(stats, stat::ADV_CE, &ce, cfg.alpha, rows as f64);
            ((1.0, stat::ADV_CE), d)
        }
    };
    let wants = BackwardWants { params: true, score_noise: false };
    enc.backward(b, clean_fw, &dclean, wants, grads);
    enc.backward(b, &adv_fw, &dadv, wants, grads);
    AdvReport { loss_term, forwards: 2, backwards: 2 }
}
