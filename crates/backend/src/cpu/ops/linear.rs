//! Linear layers: the products (crate::cpu::matmul) and the bias gradient's column sums (the CUDA side:
//! cuBLASLt and kernels/linear.cu).

use super::chunked_col_reduce;
use crate::cpu::buffer::{repeated, zeroed};
use crate::cpu::matmul::{matmul, View};
use crate::Float;

/// `y[m, n] = x[m, k] @ w[n, k]^T + b` (PyTorch weight layout).
pub fn linear_fwd<T: Float>(x: &[T], w: &[T], b: Option<&[T]>, m: usize, n: usize, k: usize) -> Vec<T> {
    let mut y = bias_rows(b, m, n);
    matmul(m, n, k, &mut y, 0, n, View::rows(x, k), View::rows_t(w, k), b.is_some(), true);
    y
}

/// [`linear_fwd`] with the weight transposed, `wt[k, n]` (`transpose(w, n, k)`): the same numbers where
/// [`transposed_weight_same_bits`] says so.
/// gemm packs the weight operand before its microkernel reads it; from `w[n, k]` that packing gathers
/// every column with a stride of k, from `wt[k, n]` it copies contiguous runs.
pub fn linear_fwd_wt<T: Float>(x: &[T], wt: &[T], b: Option<&[T]>, m: usize, n: usize, k: usize) -> Vec<T> {
    let mut y = bias_rows(b, m, n);
    matmul(m, n, k, &mut y, 0, n, View::rows(x, k), View::rows(wt, n), b.is_some(), true);
    y
}

/// Whether [`linear_fwd_wt`] computes [`linear_fwd`]'s numbers bit for bit for this shape. For products
/// of the blocked kernels it does: their blocking and each output's order of summation over k depend on
/// the shapes alone. gemm 0.19 (`gemm_basic_generic`) takes other paths for small products, whose order
/// depends on the operands' strides: at most 16 x 16 outputs (direct dot products), k <= 2, and one row
/// or one column (matrix-vector products). `a_transposed_weight_gives_the_same_bits` checks the rule on
/// a grid of shapes on both sides of every edge.
pub fn transposed_weight_same_bits(m: usize, n: usize, k: usize) -> bool {
    m > 1 && n > 1 && k > 2 && m * n > 16 * 16
}

/// Whether inference should run the linear layer of weight `w[n, k]` as [`linear_fwd_wt`] on a transposed
/// copy. Measured on an AVX-512 host (Zen 4, one core, 512 rows as in an inference part, same bits): the
/// feed-forward output 384 x 1536 (k > n) 7.02 -> 5.91 ms; 1536 x 384 5.92 -> 6.01 and 384 x 384 1.38 ->
/// 1.38, no gain. With gemm's AVX2 kernels (a build without its `x86-v4` feature, on the same host) the
/// feed-forward output transposed gained nothing (`bench_cpu infer`, -1%), so AVX2 hosts keep `w` as it is.
pub fn transposed_weight_pays(n: usize, k: usize) -> bool {
    k > n && crate::cpu::simd_class() == "x86_64-avx512"
}

/// The output rows before the product accumulates onto them: the bias repeated (written once instead of
/// zeroed and then overwritten), else zeros.
fn bias_rows<T: Float>(b: Option<&[T]>, m: usize, n: usize) -> Vec<T> {
    match b {
        Some(b) => {
            assert_eq!(b.len(), n, "linear: bias of {} for {n} outputs", b.len());
            repeated(b, m)
        }
        None => zeroed(m * n),
    }
}

/// `dx[m, k] = dy[m, n] @ w[n, k]`.
pub fn linear_bwd_input<T: Float>(dy: &[T], w: &[T], m: usize, n: usize, k: usize) -> Vec<T> {
    let mut dx = zeroed(m * k);
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
        // Inference parts' shapes (512 rows; k above, equal to and below n), then a grid across the edges of
        // gemm's small paths (one row or column, k <= 2, 16 x 16 outputs) and of its blocks.
        let real = [(512, 384, 1536), (512, 1536, 384), (512, 384, 384), (16, 384, 1536), (1, 384, 1536)];
        let grid = [1, 2, 3, 5, 8, 16, 17, 33, 64, 65, 130].into_iter().flat_map(|m| {
            [1, 2, 8, 15, 16, 17, 32, 48, 64, 129].into_iter().flat_map(move |n| [1, 2, 3, 64, 300].map(|k| (m, n, k)))
        });
        let mut stride_free = 0;
        for (m, n, k) in real.into_iter().chain(grid) {
            let (x, w, b) = (v(m * k, 0), v(n * k, 1 << 32), v(n, 1 << 40));
            let wt = cpu.prepare_linear(&w, n, k).expect("transposed");
            assert_eq!(wt, transpose(&w, n, k));
            assert!((0..n).all(|r| (0..k).all(|c| wt[c * n + r] == w[r * k + c])), "transpose");
            for bias in [None, Some(&b)] {
                let at = format!("{m}x{n}x{k}, bias {}", bias.is_some());
                let want = linear_fwd(&x, &w, bias.map(|b| &b[..]), m, n, k);
                let same = |c: &[f32]| want.iter().zip(c).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same(&cpu.linear_prepared(&x, &w, &wt, bias, m, n, k)), "{at}");
                if transposed_weight_same_bits(m, n, k) {
                    assert!(same(&linear_fwd_wt(&x, &wt, bias.map(|b| &b[..]), m, n, k)), "{at}: the rule is wrong");
                    stride_free += 1;
                }
            }
        }
        assert!(stride_free > 300, "{stride_free} shapes on the transposed path");
    }
}
