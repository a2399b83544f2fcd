//! A training step's scalars (the CUDA side: kernels/stats.cu): batch means of per-row losses, the count of
//! correct predictions, the loss from its parts and the global-norm clip factor, all in f64. On the CPU the
//! "device" values are host memory, and these are exactly the f64 operations the step did on the host
//! before they moved to the device, in the same order.

use crate::backend::Clip;
use crate::Float;

/// `(scale * sum(rows)) / divisor`, the sum in f64 in row order.
pub fn stats_mean<T: Float>(rows: &[T], scale: f64, divisor: f64) -> f64 {
    (scale * rows.iter().map(|v| v.as_f64()).sum::<f64>()) / divisor
}

/// How many of the first `rows` rows of `[*, classes]` logits have their first largest entry (in f32) at
/// the row's label.
pub fn count_correct<T: Float>(logits: &[T], labels: &[u32], rows: usize, classes: usize) -> usize {
    (0..rows)
        .filter(|&r| {
            let row = &logits[r * classes..(r + 1) * classes];
            let best = row.iter().enumerate().fold(0, |bi, (i, v)| if v.as_f32() > row[bi].as_f32() { i } else { bi });
            best == labels[r] as usize
        })
        .count()
}

/// `w0 * s[k0] + w1 * s[k1] + ...`, left to right (0 without terms).
pub fn combine(s: &[f64], terms: &[(f64, usize)]) -> f64 {
    let mut it = terms.iter();
    let Some(&(w, k)) = it.next() else { return 0.0 };
    let mut acc = w * s[k];
    for &(w, k) in it {
        acc += w * s[k];
    }
    acc
}

/// torch.nn.utils.clip_grad_norm_: `norm = sqrt(sumsq)`, factor `max / (norm + 1e-6)` when `norm > max`,
/// else 1; NaN when the guard is not finite (the step is then skipped).
pub fn clip_scale(s: &mut [f64], c: &Clip) {
    let norm = s[c.sumsq].sqrt();
    let scale = match c.max_norm {
        Some(max) if norm > max => max / (norm + 1e-6),
        _ => 1.0,
    };
    s[c.norm] = norm;
    s[c.scale] = if c.guard.is_some_and(|g| !s[g].is_finite()) { f64::NAN } else { scale };
}
