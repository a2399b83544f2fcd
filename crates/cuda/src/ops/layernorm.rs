//! LayerNorm with the residual add fused in, and its backward (kernels/layernorm.cu; the parameter
//! gradients' column sums finish through [`super::linear::add_column_sums`]).

use super::linear::add_column_sums;
use super::{need, RED_CHUNK};
use crate::buf::{CudaBuf, DType};
use crate::kernels::Kernel;
use crate::params::{launch_params, Tensor};
use crate::CudaBackend;

launch_params! {
    struct LnFwdParams {
        x: Tensor, res: Tensor, w: Tensor, b: Tensor, s: Tensor, y: Tensor,
        mean: u64, rstd: u64, rows: u64, cols: u64, eps: f32, _pad: u32,
    }
    struct LnBwdParams { dy: Tensor, s: Tensor, w: Tensor, dx: Tensor, mean: u64, rstd: u64, rows: u64, cols: u64 }
    /// `partial[c][j]` = the sum of `dy * xhat`, `partial[c][cols + j]` = the sum of `dy`, over chunk `c`.
    struct LnWbPartialParams { dy: Tensor, s: Tensor, mean: u64, rstd: u64, partial: u64, rows: u64, cols: u64, chunk_rows: u64 }
}

/// `s = x + residual` (when given), `y = LN(s)`: `(s, y, mean, rstd)`, `s` empty without a residual.
pub(crate) fn layer_norm(
    cuda: &CudaBackend,
    x: &CudaBuf,
    residual: Option<&CudaBuf>,
    w: &CudaBuf,
    b: &CudaBuf,
    eps: f64,
    cols: usize,
) -> (CudaBuf, CudaBuf, CudaBuf, CudaBuf) {
    assert!(cols > 0, "ernie-cuda: layer_norm: cols = 0");
    let rows = x.len / cols;
    let n = rows * cols;
    need(w.len, cols, "layer_norm: weight");
    need(b.len, cols, "layer_norm: bias");
    if let Some(r) = residual {
        need(r.len, n, "layer_norm: residual");
    }
    let act = cuda.act();
    let mut s = cuda.alloc(act, if residual.is_some() { n } else { 0 });
    let mut y = cuda.alloc(act, n);
    let mean = cuda.alloc(DType::F32, rows);
    let rstd = cuda.alloc(DType::F32, rows);
    let p = LnFwdParams {
        x: x.arg(),
        res: residual.map(|r| r.arg()).unwrap_or(Tensor::NONE),
        w: w.arg(),
        b: b.arg(),
        s: if residual.is_some() { s.arg_mut() } else { Tensor::NONE },
        y: y.arg_mut(),
        mean: mean.ptr(),
        rstd: rstd.ptr(),
        rows: rows as u64,
        cols: cols as u64,
        eps: eps as f32,
        _pad: 0,
    };
    let smem = cuda.row_smem(cols, "layer_norm");
    cuda.launch_block_per_row(Kernel::ln_fwd, rows, cols, smem, p);
    (s, y, mean, rstd)
}

/// Given the LN input `s`, returns `ds` and adds into `dw`, `db`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_bwd(
    cuda: &CudaBackend,
    dy: &CudaBuf,
    s: &CudaBuf,
    w: &CudaBuf,
    mean: &CudaBuf,
    rstd: &CudaBuf,
    cols: usize,
    dw: &mut CudaBuf,
    db: &mut CudaBuf,
) -> CudaBuf {
    assert!(cols > 0, "ernie-cuda: layer_norm_bwd: cols = 0");
    let rows = dy.len / cols;
    let n = rows * cols;
    need(s.len, n, "layer_norm_bwd: input");
    need(mean.len, rows, "layer_norm_bwd: mean");
    need(rstd.len, rows, "layer_norm_bwd: rstd");
    need(w.len, cols, "layer_norm_bwd: weight");
    need(dw.len, cols, "layer_norm_bwd: dw");
    need(db.len, cols, "layer_norm_bwd: db");
    let mut dx = cuda.alloc(cuda.act(), n);
    if rows == 0 {
        return dx;
    }
    let p = LnBwdParams {
        dy: dy.arg(),
        s: s.arg(),
        w: w.arg(),
        dx: dx.arg_mut(),
        mean: mean.ptr(),
        rstd: rstd.ptr(),
        rows: rows as u64,
        cols: cols as u64,
    };
    cuda.launch_block_per_row(Kernel::ln_bwd_dx, rows, cols, 0, p);
    let out = (dw.arg_mut(), db.arg_mut());
    add_column_sums(cuda, Kernel::ln_wb_partial, rows, cols, (2 * cols, cols), out, "layer_norm_bwd", |partial| {
        LnWbPartialParams {
            dy: dy.arg(),
            s: s.arg(),
            mean: mean.ptr(),
            rstd: rstd.ptr(),
            partial,
            rows: rows as u64,
            cols: cols as u64,
            chunk_rows: RED_CHUNK as u64,
        }
    });
    dx
}
