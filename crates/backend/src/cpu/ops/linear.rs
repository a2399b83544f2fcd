//! Linear layers: the products (crate::cpu::matmul) and the bias gradient's column sums (the CUDA side:
//! cuBLASLt and kernels/linear.cu).

use super::chunked_col_reduce;
use crate::cpu::matmul::{matmul, View};
use crate::Float;

/// `y[m, n] = x[m, k] @ w[n, k]^T + b` (PyTorch weight layout).
pub fn linear_fwd<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, m: usize, n: usize, k: usize) -> Vec<T> {
    let mut y = bias_rows(b, m, n);
    matmul(m, n, k, &mut y, 0, n, View::rows(x, k), View::rows_t(w, k), b.is_some(), true);
    y
}

/// [`linear_fwd`] with the weight transposed, `wt[k, n]` (`transpose(w, n, k)`): the same numbers for two
/// rows or more, since gemm's blocking and its order of summation over k depend on the shapes, not on the
/// operands' strides. One row (m = 1) is a matrix-vector product whose order does depend on them.
/// gemm packs the weight operand before its microkernel reads it; from `w[n, k]` that packing gathers
/// every column with a stride of k, from `wt[k, n]` it copies contiguous runs.
pub fn linear_fwd_wt<T: Float>(x: &[T], wt: &[T], b: Option<&[T]>, m: usize, n: usize, k: usize) -> Vec<T> {
    let mut y = bias_rows(b, m, n);
    matmul(m, n, k, &mut y, 0, n, View::rows(x, k), View::rows(wt, n), b.is_some(), true);
    y
}

/// Whether inference should run the linear layer of weight `w[n, k]` as [`linear_fwd_wt`] on a transposed
/// copy. Measured on an AVX-512 host (Zen 4, one core, 512 rows as in an inference part, same bits): the
/// feed-forward output 384 x 1536 (k > n) 7.02 -> 5.91 ms; 1536 x 384 5.92 -> 6.01 and 384 x 384 1.38 ->
/// 1.38, no gain. Not measured on an AVX2 host, which keeps `w` as it is.
pub fn transposed_weight_pays(n: usize, k: usize) -> bool {
    k > n && crate::cpu::simd_class() == "x86_64-avx512"
}

/// The output rows before the product accumulates onto them: the bias repeated (written once instead of
/// zeroed and then overwritten), else zeros.
fn bias_rows<T: Float>(b: Option<&[T]>, m: usize, n: usize) -> Vec<T> {
    match b {
        Some(b) => {
            assert_eq!(b.len(), n, "linear: bias of {} for {n} outputs", b.len());
            b.repeat(m)
        }
        None => vec![T::zero(); m * n],
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::ops::transpose;
    use crate::philox::RngStream;
    use crate::{Backend, Cpu, WeightLayout};

    #[test]
    fn a_transposed_weight_gives_the_same_bits() {
        let r = RngStream::new(3, 4);
        let v = |n: usize, at: u64| (0..n).map(|i| r.normal(at + i as u64)).collect::<Vec<f32>>();
        let cpu = Cpu::<f32>::new().with_weight_layout(WeightLayout::Transposed);
        // Inference parts' shapes (512 rows; k above, equal to and below n), the first tokens of a few rows,
        // odd sizes around gemm's block edges, k long enough for several depth blocks, one column, one row.
        let shapes = [(512, 384, 1536), (512, 1536, 384), (512, 384, 384), (16, 384, 1536), (2, 384, 1536)];
        let odd = [(37, 19, 301), (130, 7, 1100), (5, 1, 300), (1, 384, 1536), (1, 64, 2000)];
        for (m, n, k) in shapes.into_iter().chain(odd) {
            let (x, w, b) = (v(m * k, 0), v(n * k, 1 << 32), v(n, 1 << 40));
            let wt = cpu.prepare_linear(&w, n, k).expect("transposed");
            assert_eq!(wt, transpose(&w, n, k));
            assert!((0..n).all(|r| (0..k).all(|c| wt[c * n + r] == w[r * k + c])), "transpose");
            for bias in [None, Some(&b)] {
                let at = format!("{m}x{n}x{k}, bias {}", bias.is_some());
                let same = |c: &[f32]| {
                    linear_fwd(&x, &w, bias.map(|b| &b[..]), m, n, k)
                        .iter()
                        .zip(c)
                        .all(|(p, q)| p.to_bits() == q.to_bits())
                };
                assert!(same(&cpu.linear_prepared(&x, &w, &wt, bias, m, n, k)), "{at}");
                if m > 1 {
                    assert!(same(&linear_fwd_wt(&x, &wt, bias.map(|b| &b[..]), m, n, k)), "{at}");
                }
            }
        }
    }
}
