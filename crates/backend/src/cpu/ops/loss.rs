//! Fused losses over `[rows, classes]` logits, value and gradient in one pass (the CUDA side:
//! kernels/loss.cu).

use crate::cpu::buffer::zeroed;
use crate::Float;
use rayon::prelude::*;

/// `log(sum(exp(v)))`, shifted by the maximum for range.
fn log_sum_exp<T: Float>(v: &[T]) -> T {
    let mx = v.iter().copied().fold(T::neg_infinity(), T::max);
    mx + v.iter().map(|&t| (t - mx).exp()).sum::<T>().ln()
}

/// Fused softmax cross-entropy forward and backward over `[rows, classes]` logits.
/// Returns (per-row loss, dlogits) with `dlogits = (softmax - onehot) * grad_scale`.
pub fn softmax_ce<T: Float>(logits: &[T], labels: &[u32], classes: usize, grad_scale: f64) -> (Vec<T>, Vec<T>) {
    let rows = labels.len();
    let mut loss = zeroed(rows);
    let mut dl = zeroed(rows * classes);
    dl.par_chunks_mut(classes).zip(loss.par_iter_mut()).enumerate().for_each(|(r, (g, lo))| {
        let x = &logits[r * classes..(r + 1) * classes];
        let lse = log_sum_exp(x);
        let y = labels[r] as usize;
        *lo = lse - x[y];
        for c in 0..classes {
            g[c] = (x[c] - lse).exp() * T::c(grad_scale);
        }
        g[y] -= T::c(grad_scale);
    });
    (loss, dl)
}

/// Fused symmetric KL between the rows of two logit matrices:
/// `kl[r] = 0.5 * (KL(p||q) + KL(q||p)) = 0.5 * sum_c (p_c - q_c)(log p_c - log q_c)`, with
/// `p = softmax(a[r])`, `q = softmax(b[r])`. Returns (kl per row, d kl/d a * grad_scale, d kl/d b * grad_scale).
///
/// With `z = log p - log q`: d/da_c = 0.5 * [p_c (z_c - E_p z) + p_c - q_c], and symmetrically for b.
#[allow(clippy::type_complexity)]
pub fn sym_kl<T: Float>(a: &[T], b: &[T], classes: usize, grad_scale: f64) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = a.len() / classes;
    let mut kl = zeroed(rows);
    let mut da = zeroed(a.len());
    let mut db = zeroed(b.len());
    kl.par_iter_mut().zip(da.par_chunks_mut(classes)).zip(db.par_chunks_mut(classes)).enumerate().for_each(
        |(r, ((k, ga), gb))| {
            let (x, y) = (&a[r * classes..(r + 1) * classes], &b[r * classes..(r + 1) * classes]);
            let (la, lb) = (log_sum_exp(x), log_sum_exp(y));
            let (mut ep, mut eq, mut acc) = (T::zero(), T::zero(), T::zero());
            for c in 0..classes {
                let (lp, lq) = (x[c] - la, y[c] - lb);
                let (p, q) = (lp.exp(), lq.exp());
                let z = lp - lq;
                acc += (p - q) * z;
                ep += p * z;
                eq += q * z;
            }
            *k = T::c(0.5) * acc;
            let s = T::c(0.5 * grad_scale);
            for c in 0..classes {
                let (lp, lq) = (x[c] - la, y[c] - lb);
                let (p, q) = (lp.exp(), lq.exp());
                let z = lp - lq;
                ga[c] = s * (p * (z - ep) + p - q);
                gb[c] = s * (q * (eq - z) + q - p);
            }
        },
    );
    (kl, da, db)
}

/// Directional KL `KL(p || q)` with `p = softmax(a)` held fixed (detached), `q = softmax(b)`; returns
/// (kl per row, d kl / d b * grad_scale) = (q - p) * grad_scale. Adv's probe objective.
pub fn kl_detached<T: Float>(a: &[T], b: &[T], classes: usize, grad_scale: f64) -> (Vec<T>, Vec<T>) {
    let rows = a.len() / classes;
    let mut kl = zeroed(rows);
    let mut db = zeroed(b.len());
    kl.par_iter_mut().zip(db.par_chunks_mut(classes)).enumerate().for_each(|(r, (k, gb))| {
        let (x, y) = (&a[r * classes..(r + 1) * classes], &b[r * classes..(r + 1) * classes]);
        let (la, lb) = (log_sum_exp(x), log_sum_exp(y));
        let mut acc = T::zero();
        for c in 0..classes {
            let (lp, lq) = (x[c] - la, y[c] - lb);
            let p = lp.exp();
            acc += p * (lp - lq);
            gb[c] = (lq.exp() - p) * T::c(grad_scale);
        }
        *k = acc;
    });
    (kl, db)
}
