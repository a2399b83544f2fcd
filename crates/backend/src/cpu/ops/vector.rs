//! Whole-buffer vector ops (the CUDA side: kernels/vector.cu).

use crate::Float;
use rayon::prelude::*;

/// `y = a*y + b*x`, with `a` and `b` rounded to `T` first.
pub fn axpby<T: Float>(y: &mut [T], a: f64, x: &[T], b: f64) {
    let (a, b) = (T::from_f64(a), T::from_f64(b));
    y.par_iter_mut().zip(x.par_iter()).for_each(|(y, &x)| *y = a * *y + b * x);
}

/// Sum of squares over all buffers, in f64.
pub fn sum_squares<T: Float>(bufs: &[&[T]]) -> f64 {
    // Fixed-order per-buffer sums: the same result on any thread count.
    bufs.iter()
        .map(|b| {
            b.par_chunks(1 << 14)
                .map(|c| c.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>())
                .collect::<Vec<_>>()
                .iter()
                .sum::<f64>()
        })
        .sum()
}
