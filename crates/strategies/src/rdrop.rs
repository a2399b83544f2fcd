//! R-Drop: the batch is concatenated with itself along the batch dimension and run through ONE forward of
//! 2B rows, so the two copies get independent dropout masks; the logits are split and the loss is
//! `mean CE over both copies + alpha * 0.5 * (KL(p1||p2) + KL(p2||p1))`, KL summed over classes and
//! averaged over the B examples. The KL and its gradient are one fused op of the backend.

use crate::objective::stat;
use ernie_backend::Backend;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RDropConfig {
    pub alpha: f64,
}

impl Default for RDropConfig {
    fn default() -> Self {
        RDropConfig { alpha: 1.0 }
    }
}

/// R-Drop loss and its gradient on logits of the doubled batch `[2B, classes]` (labels doubled too): returns
/// the gradient, and leaves the mean CE over both copies and the mean KL in `stats` ([`stat::CE`],
/// [`stat::RDROP_KL`]); the loss is `CE + alpha * KL`.
pub fn loss<B: Backend>(
    b: &B,
    logits: &B::Buf,
    labels_doubled: &B::Ids,
    batch: usize,
    classes: usize,
    cfg: &RDropConfig,
    stats: &mut B::Stats,
) -> B::Buf {
    let (ce, mut dl) = b.softmax_ce(logits, labels_doubled, classes, 1.0 / (2 * batch) as f64);
    let l1 = b.slice_rows(logits, 0, batch, classes);
    let l2 = b.slice_rows(logits, batch, batch, classes);
    let (kl, d1, d2) = b.sym_kl(&l1, &l2, classes, cfg.alpha / batch as f64);
    b.axpby(&mut dl, 1.0, &b.concat_rows(&d1, &d2), 1.0);
    b.stats_mean(stats, stat::CE, &ce, 1.0, (2 * batch) as f64);
    b.stats_mean(stats, stat::RDROP_KL, &kl, 1.0, batch as f64);
    dl
}
