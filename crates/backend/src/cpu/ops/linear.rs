//! Linear layers: the products (crate::cpu::matmul) and the bias gradient's column sums (the CUDA side:
//! cuBLASLt and kernels/linear.cu).

use super::chunked_col_reduce;
use crate::cpu::matmul::{matmul, View};
use crate::Float;

/// `y[m, n] = x[m, k] @ w[n, k]^T + b` (PyTorch weight layout).
pub fn linear_fwd<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, m: usize, n: usize, k: usize) -> Vec<T> {
    // With a bias the output starts as its rows (the GEMM accumulates onto them), written once instead of
    // zeroed and then overwritten.
    let mut y = match b {
        Some(b) => {
            assert_eq!(b.len(), n, "linear: bias of {} for {n} outputs", b.len());
            b.repeat(m)
        }
        None => vec![T::zero(); m * n],
    };
    matmul(m, n, k, &mut y, 0, n, View::rows(x, k), View::rows_t(w, k), b.is_some(), true);
    y
}

/// `dx[m, k] = dy[m, n] @ w[n, k]`.
pub fn linear_bwd_input<T: Float>(dy: &[T], w: &[T], m: usize, n: usize, k: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); m * k];
    matmul(m, k, n, &mut dx, 0, k, View::rows(dy, n), View::rows(w, k), false, true);
    dx
}

/// `dw[n, k] += dy^T @ x`, `db[n] += sum_rows dy`.
pub fn linear_bwd_params<T: Float>(
    dy: &[T],
    x: &[T],
    m: usize,
    n: usize,
    k: usize,
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    matmul(n, k, m, dw, 0, k, View::rows_t(dy, n), View::rows(x, k), true, true);
    if let Some(db) = db {
        let g = chunked_col_reduce::<T>(m, n, |range, p| {
            for r in range {
                for j in 0..n {
                    p[j] += dy[r * n + j];
                }
            }
        });
        for j in 0..n {
            db[j] += g[j];
        }
    }
}
