//! LayerNorm with the residual add fused in, and its backward (the CUDA side: kernels/layernorm.cu).

use super::{add, chunked_col_reduce};
use crate::cpu::buffer::zeroed;
use crate::float::{dot_lanes, sum_lanes};
use crate::Float;
use rayon::prelude::*;

/// `s = x (+ residual)`, `y = (s - mean) * rstd * w + b` per row. Returns `(s, y, mean, rstd)`; `s` is what
/// the backward needs (it equals `x` when there is no residual, and is then not copied: empty vec).
pub fn layer_norm_fwd<T: Float>(
    x: &[T],
    residual: Option<&[T]>,
    w: &[T],
    b: &[T],
    eps: f64,
    cols: usize,
) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let rows = x.len() / cols;
    let s: Vec<T> = match residual {
        Some(r) => add(x, r),
        None => Vec::new(),
    };
    let src = if residual.is_some() { &s[..] } else { x };
    let mut y = zeroed(rows * cols);
    let mut mean = zeroed(rows);
    let mut rstd = zeroed(rows);
    let n = T::from_f64(cols as f64);
    y.par_chunks_mut(cols).zip(mean.par_iter_mut()).zip(rstd.par_iter_mut()).enumerate().for_each(
        |(r, ((yr, m), rs))| {
            let xr = &src[r * cols..(r + 1) * cols];
            let mu = sum_lanes(xr) / n;
            let centered: Vec<T> = xr.iter().map(|&v| v - mu).collect();
            let var = dot_lanes(&centered, &centered) / n;
            let inv = T::one() / (var + T::c(eps)).sqrt();
            for j in 0..cols {
                yr[j] = (xr[j] - mu) * inv * w[j] + b[j];
            }
            *m = mu;
            *rs = inv;
        },
    );
    (s, y, mean, rstd)
}

/// Backward of `layer_norm_fwd` given its input `s`: returns `dx` (which is also the residual's gradient)
/// and adds into `dw`, `db`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd<T: Float>(
    dy: &[T],
    s: &[T],
    w: &[T],
    mean: &[T],
    rstd: &[T],
    cols: usize,
    dw: &mut [T],
    db: &mut [T],
) -> Vec<T> {
    let rows = dy.len() / cols;
    let n = T::from_f64(cols as f64);
    let mut dx = zeroed(rows * cols);
    dx.par_chunks_mut(cols).enumerate().for_each(|(r, dxr)| {
        let (dyr, sr) = (&dy[r * cols..(r + 1) * cols], &s[r * cols..(r + 1) * cols]);
        let (mu, inv) = (mean[r], rstd[r]);
        let mut sum_g = T::zero();
        let mut sum_gx = T::zero();
        for j in 0..cols {
            let g = dyr[j] * w[j];
            sum_g += g;
            sum_gx += g * (sr[j] - mu) * inv;
        }
        let (mg, mgx) = (sum_g / n, sum_gx / n);
        for j in 0..cols {
            let xh = (sr[j] - mu) * inv;
            dxr[j] = (dyr[j] * w[j] - mg - xh * mgx) * inv;
        }
    });
    let g = chunked_col_reduce::<T>(rows, 2 * cols, |range, p| {
        for r in range {
            for j in 0..cols {
                let xh = (s[r * cols + j] - mean[r]) * rstd[r];
                p[j] += dy[r * cols + j] * xh;
                p[cols + j] += dy[r * cols + j];
            }
        }
    });
    for j in 0..cols {
        dw[j] += g[j];
        db[j] += g[cols + j];
    }
    dx
}
