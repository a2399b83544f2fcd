//! Fused losses over `[rows, classes]` logits, value and gradient in one pass (kernels/loss.cu): softmax
//! cross-entropy, symmetric KL (R-Drop) and the KL to a detached target (adv's probe). Per-row losses stay
//! on the device, in fp32 whatever the precision (`ops/stats.rs` reduces them into a step's statistics).

use super::{need, need_operand};
use crate::buf::{CudaBuf, CudaIds, DType};
use crate::kernels::Kernel;
use crate::params::{launch_params, Tensor};
use crate::CudaBackend;

launch_params! {
    struct CeParams { logits: Tensor, labels: u64, loss: u64, grad: Tensor, rows: u64, classes: u64, grad_scale: f32, _pad: u32 }
    /// `ga` only for sym_kl (absent for the detached KL); `grad_scale` carries sym_kl's 0.5.
    struct KlParams { a: Tensor, b: Tensor, loss: u64, ga: Tensor, gb: Tensor, rows: u64, classes: u64, grad_scale: f32, _pad: u32 }
}

/// `(loss per row, (softmax - onehot) * grad_scale)`.
pub(crate) fn softmax_ce(
    cuda: &CudaBackend,
    logits: &CudaBuf,
    labels: &CudaIds,
    classes: usize,
    grad_scale: f64,
) -> (CudaBuf, CudaBuf) {
    let rows = labels.len();
    need(logits.len, rows * classes, "softmax_ce: logits");
    if let Some(&bad) = labels.host.iter().find(|&&y| y as usize >= classes) {
        panic!("ernie-cuda: softmax_ce: label {bad} out of range for {classes} classes");
    }
    let mut grad = cuda.alloc(cuda.act(), rows * classes);
    let mut loss = cuda.alloc(DType::F32, rows);
    let p = CeParams {
        logits: logits.arg(),
        labels: labels.ptr(),
        loss: loss.arg_mut().ptr,
        grad: grad.arg_mut(),
        rows: rows as u64,
        classes: classes as u64,
        grad_scale: grad_scale as f32,
        _pad: 0,
    };
    cuda.launch_warp_per_row(Kernel::softmax_ce, rows, 0, p);
    (loss, grad)
}

/// A KL kernel between the rows of `a` and `b`: the per-row values, the gradient w.r.t. `a` when
/// `with_ga`, and the gradient w.r.t. `b`.
fn kl(
    cuda: &CudaBackend,
    k: Kernel,
    (a, b): (&CudaBuf, &CudaBuf),
    classes: usize,
    grad_scale: f32,
    with_ga: bool,
) -> (CudaBuf, Option<CudaBuf>, CudaBuf) {
    let rows = a.len.checked_div(classes).unwrap_or(0);
    need_operand(b.len, rows * classes, k.name(), "b");
    let mut ga = with_ga.then(|| cuda.alloc(cuda.act(), a.len));
    let mut gb = cuda.alloc(cuda.act(), b.len);
    let mut loss = cuda.alloc(DType::F32, rows);
    let p = KlParams {
        a: a.arg(),
        b: b.arg(),
        loss: loss.arg_mut().ptr,
        ga: ga.as_mut().map(|g| g.arg_mut()).unwrap_or(Tensor::NONE),
        gb: gb.arg_mut(),
        rows: rows as u64,
        classes: classes as u64,
        grad_scale,
        _pad: 0,
    };
    cuda.launch_warp_per_row(k, rows, 0, p);
    (loss, ga, gb)
}

/// Symmetric KL `0.5 (KL(p||q) + KL(q||p))` per row with both gradients (scaled).
pub(crate) fn sym_kl(
    cuda: &CudaBackend,
    a: &CudaBuf,
    b: &CudaBuf,
    classes: usize,
    grad_scale: f64,
) -> (CudaBuf, CudaBuf, CudaBuf) {
    let scale = (0.5 * grad_scale) as f32;
    let (loss, ga, gb) = kl(cuda, Kernel::sym_kl, (a, b), classes, scale, true);
    (loss, ga.expect("asked for"), gb)
}

/// `KL(softmax(a) || softmax(b))` per row with `a` detached, and its gradient w.r.t. `b` (scaled).
pub(crate) fn kl_detached(
    cuda: &CudaBackend,
    a: &CudaBuf,
    b: &CudaBuf,
    classes: usize,
    grad_scale: f64,
) -> (CudaBuf, CudaBuf) {
    let scale = grad_scale as f32;
    let (loss, _, gb) = kl(cuda, Kernel::kl_detached, (a, b), classes, scale, false);
    (loss, gb)
}
