//! Linear layers (`y = x w^T + b`, PyTorch's weight layout): the products through cuBLASLt, the bias
//! broadcast and the deterministic column sums of the bias gradient (kernels/linear.cu). [`add_column_sums`] also finishes LayerNorm's dw/db.

use super::{need, RED_CHUNK, THREADS};
use crate::buf::CudaBuf;
use crate::gemm::{Gemm, Mat};
use crate::kernels::Kernel;
use crate::params::{launch_params, Tensor};
use crate::CudaBackend;
use cudarc::driver::DeviceRepr;

launch_params! {
    /// `y[r, j] = bias[j]`.
    struct BiasRowsParams { bias: Tensor, y: Tensor, rows: u64, cols: u64 }
    /// `partial[c][j]` = the sum of `x[r, j]` over the rows of chunk `c`.
    struct ColSumPartialParams { x: Tensor, partial: u64, rows: u64, cols: u64, chunk_rows: u64 }
    /// `out[j] += sum_c partial[c][j]`, in chunk order; `j >= split` goes to `out1`.
    struct ColFinishParams { partial: u64, out0: Tensor, out1: Tensor, chunks: u64, width: u64, split: u64 }
}

/// Column sums over `rows` rows of `cols` columns without atomics, added into `out0` (partial columns
/// below `split`) and `out1` (the rest). `kernel` writes, for each chunk of RED_CHUNK rows, `width` partial
/// sums, in row order; its parameters come from `params` given the partials' device address. `col_finish`
/// then adds the chunks in chunk order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_column_sums<P: DeviceRepr>(
    cuda: &CudaBackend,
    kernel: Kernel,
    rows: usize,
    cols: usize,
    (width, split): (usize, usize),
    (out0, out1): (Tensor, Tensor),
    what: &str,
    params: impl FnOnce(u64) -> P,
) {
    let chunks = rows.div_ceil(RED_CHUNK);
    assert!(chunks <= 65535, "ernie-cuda: {what}: too many rows ({rows})");
    let partial = cuda.scratch::<f32>(chunks * width);
    let col_blocks = |n: usize| n.div_ceil(THREADS as usize);
    cuda.launch_grid(kernel, (col_blocks(cols), chunks), params(partial.ptr()));
    let p = ColFinishParams {
        partial: partial.ptr(),
        out0,
        out1,
        chunks: chunks as u64,
        width: width as u64,
        split: split as u64,
    };
    cuda.launch_grid(Kernel::col_finish, (col_blocks(width), 1), p);
}

/// Row-major `c[rows, cols] = a b` (`+ c` with `beta` 1) through cuBLASLt: `a` is `[rows, inner]`, or its
/// transpose `[inner, rows]` where `a_t`; `b` is `[inner, cols]`, or `[cols, inner]` where `b_t`. Column-major,
/// that is `c^T = b^T a^T`.
fn matmul(
    cuda: &CudaBackend,
    (rows, cols, inner): (usize, usize, usize),
    (a, a_t): (Mat, bool),
    (b, b_t): (Mat, bool),
    c: &mut CudaBuf,
    beta: f32,
) {
    let c = Mat { ptr: c.arg_mut().ptr, dtype: c.dtype() };
    cuda.run_gemm(Gemm {
        ta: b_t,
        tb: a_t,
        m: cols,
        n: rows,
        k: inner,
        a: b,
        lda: if b_t { inner } else { cols },
        b: a,
        ldb: if a_t { rows } else { inner },
        c,
        ldc: cols,
        beta,
    });
}

/// `y[m,n] = x[m,k] w[n,k]^T + b`.
pub(crate) fn linear(
    cuda: &CudaBackend,
    x: &CudaBuf,
    w: &CudaBuf,
    b: Option<&CudaBuf>,
    (m, n, k): (usize, usize, usize),
) -> CudaBuf {
    need(x.len, m * k, "linear: x");
    need(w.len, n * k, "linear: w");
    // Zeroed where the product writes nothing (k = 0) and no bias does either.
    let mut y = cuda.alloc_act(m * n, k == 0 && b.is_none());
    if let Some(b) = b {
        need(b.len, n, "linear: bias");
        let p = BiasRowsParams { bias: b.arg(), y: y.arg_mut(), rows: m as u64, cols: n as u64 };
        cuda.launch_over(Kernel::bias_rows, m * n, p);
    }
    let (wm, _hw) = cuda.operand(w);
    let (xm, _hx) = cuda.operand(x);
    let beta = if b.is_some() { 1.0 } else { 0.0 };
    matmul(cuda, (m, n, k), (xm, false), (wm, true), &mut y, beta);
    y
}

/// `dx[m,k] = dy[m,n] w[n,k]`.
pub(crate) fn linear_bwd_input(
    cuda: &CudaBackend,
    dy: &CudaBuf,
    w: &CudaBuf,
    (m, n, k): (usize, usize, usize),
) -> CudaBuf {
    need(dy.len, m * n, "linear_bwd_input: dy");
    need(w.len, n * k, "linear_bwd_input: w");
    let mut dx = cuda.alloc_act(m * k, n == 0);
    let (wm, _hw) = cuda.operand(w);
    let (dym, _hd) = cuda.operand(dy);
    matmul(cuda, (m, k, n), (dym, false), (wm, false), &mut dx, 0.0);
    dx
}

/// `dw += dy^T x`, `db += colsum(dy)`.
pub(crate) fn linear_bwd_params(
    cuda: &CudaBackend,
    dy: &CudaBuf,
    x: &CudaBuf,
    (m, n, k): (usize, usize, usize),
    dw: &mut CudaBuf,
    db: Option<&mut CudaBuf>,
) {
    need(dy.len, m * n, "linear_bwd_params: dy");
    need(x.len, m * k, "linear_bwd_params: x");
    need(dw.len, n * k, "linear_bwd_params: dw");
    let (xm, _hx) = cuda.operand(x);
    let (dym, _hd) = cuda.operand(dy);
    matmul(cuda, (n, k, m), (dym, true), (xm, false), dw, 1.0);
    if let Some(db) = db {
        need(db.len, n, "linear_bwd_params: db");
        if m == 0 || n == 0 {
            return;
        }
        let out = (db.arg_mut(), Tensor::NONE);
        add_column_sums(cuda, Kernel::colsum_partial, m, n, (n, n), out, "linear_bwd_params", |partial| {
            ColSumPartialParams { x: dy.arg(), partial, rows: m as u64, cols: n as u64, chunk_rows: RED_CHUNK as u64 }
        });
    }
}
