//! Activations and dropout (kernels/activation.cu): GELU, tanh, their backwards, inverted dropout.

use super::copy::cast_into;
use super::need;
use crate::buf::CudaBuf;
use crate::kernels::Kernel;
use crate::params::{launch_params, Rng, Tensor, UnaryParams};
use crate::CudaBackend;
use ernie_backend::RngStream;

launch_params! {
    /// `out = f(a, b)`: gelu_bwd(dy, x), tanh_bwd(dy, y).
    struct BinaryParams { a: Tensor, b: Tensor, out: Tensor, n: u64 }
    /// Inverted dropout. `per_block` = 0: element `i` is drawn at index `rng.offset + i` of rng's stream;
    /// otherwise element `i` belongs to block `i / per_block`, drawn from the attention block stream at
    /// index `i % per_block`.
    struct DropoutParams { x: Tensor, y: Tensor, rng: Rng, n: u64, per_block: u64, p: f32, scale: f32 }
}

/// The factor kept elements are multiplied by: `1 / (1 - p)`, or 1 without dropout.
pub(crate) fn keep_scale(p: f32) -> f32 {
    if p > 0.0 {
        (1.0 / (1.0 - p as f64)) as f32
    } else {
        1.0
    }
}

/// `y = f(x)` elementwise in the activation type.
fn unary(cuda: &CudaBackend, k: Kernel, x: &CudaBuf) -> CudaBuf {
    let mut y = cuda.alloc(cuda.act(), x.len);
    let p = UnaryParams { x: x.arg(), y: y.arg_mut(), n: x.len as u64 };
    cuda.launch_over(k, x.len, p);
    y
}

/// `out = f(a, b)` elementwise in the activation type (`what` names `b` in a length mismatch).
fn binary(cuda: &CudaBackend, k: Kernel, a: &CudaBuf, b: &CudaBuf, what: &str) -> CudaBuf {
    need(b.len, a.len, what);
    let mut out = cuda.alloc(cuda.act(), a.len);
    let p = BinaryParams { a: a.arg(), b: b.arg(), out: out.arg_mut(), n: a.len as u64 };
    cuda.launch_over(k, a.len, p);
    out
}

pub(crate) fn gelu(cuda: &CudaBackend, x: &CudaBuf) -> CudaBuf {
    unary(cuda, Kernel::gelu_fwd, x)
}

pub(crate) fn gelu_bwd(cuda: &CudaBackend, dy: &CudaBuf, x: &CudaBuf) -> CudaBuf {
    binary(cuda, Kernel::gelu_bwd, dy, x, "gelu_bwd: x")
}

pub(crate) fn tanh(cuda: &CudaBackend, x: &CudaBuf) -> CudaBuf {
    unary(cuda, Kernel::tanh_fwd, x)
}

/// Backward of tanh given its output `y`.
pub(crate) fn tanh_bwd(cuda: &CudaBackend, dy: &CudaBuf, y: &CudaBuf) -> CudaBuf {
    binary(cuda, Kernel::tanh_bwd, dy, y, "tanh_bwd: y")
}

pub(crate) fn dropout(cuda: &CudaBackend, x: &CudaBuf, p: f32, rng: RngStream) -> CudaBuf {
    let mut y = cuda.alloc(cuda.act(), x.len);
    if p <= 0.0 {
        cast_into(cuda, x.arg(), y.arg_mut(), x.len);
        return y;
    }
    let params = DropoutParams {
        x: x.arg(),
        y: y.arg_mut(),
        rng: Rng::from(rng),
        n: x.len as u64,
        per_block: 0,
        p,
        scale: keep_scale(p),
    };
    // One thread per Philox block of four elements; an offset not a multiple of 4 touches one more.
    cuda.launch_over(Kernel::dropout_fwd, x.len.div_ceil(4) + 1, params);
    y
}
