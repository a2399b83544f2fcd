//! Adversarial noise on the attention scores (kernels/noise.cu): the masked Gaussian draw and the
//! per-example normalisation of a gradient.

use super::need;
use crate::buf::{CudaBuf, CudaIds};
use crate::kernels::Kernel;
use crate::params::{launch_params, Rng, Tensor};
use crate::CudaBackend;
use ernie_backend::{AttnShape, NoiseNorm, RngStream};

/// Elements per block of the per-example norm's first pass.
const NORM_CHUNK: usize = 16384;

launch_params! {
    /// Noise on `[batch, heads, seq, seq]` scores: `sigma * normal(index)`, 0 on padded keys.
    struct RandnParams { out: Tensor, mask: u64, rng: Rng, batch: u64, heads: u64, seq: u64, sigma: f32, _pad: u32 }
    /// Per-example norms, first pass (a partial per chunk); `kind` 0 = L2, 1 = max-abs.
    struct NormPartialParams { g: Tensor, partial: u64, per: u64, chunks: u64, chunk: u64, kind: u32, _pad: u32 }
    /// Second pass, one block per example: `scale[b] = eps / norm` (0 for a zero gradient).
    struct NormFinishParams { partial: u64, scale: u64, batch: u64, chunks: u64, eps: f64, kind: u32, _pad: u32 }
    struct NormApplyParams { g: Tensor, out: Tensor, scale: u64, per: u64, n: u64 }
}

/// Noise `N(0, sigma^2)` on `[batch, heads, seq, seq]` scores, zero on padded keys.
pub(crate) fn randn_key_masked(
    cuda: &CudaBackend,
    a: AttnShape,
    key_mask: &CudaIds,
    sigma: f32,
    rng: RngStream,
) -> CudaBuf {
    need(key_mask.len(), a.batch * a.seq, "randn_key_masked: key mask");
    let n = a.score_len();
    let mut out = cuda.alloc(cuda.act(), n);
    let p = RandnParams {
        out: out.arg_mut(),
        mask: key_mask.ptr(),
        rng: Rng::from(rng),
        batch: a.batch as u64,
        heads: a.heads as u64,
        seq: a.seq as u64,
        sigma,
        _pad: 0,
    };
    cuda.launch_over(Kernel::randn_key_masked, n, p);
    out
}

/// `g * eps / norm(g[b])` with the norm taken over each example's block of `g.len / batch` elements.
pub(crate) fn normalize_per_example(
    cuda: &CudaBackend,
    g: &CudaBuf,
    batch: usize,
    eps: f32,
    norm: NoiseNorm,
) -> CudaBuf {
    let mut out = cuda.alloc(cuda.act(), g.len);
    if batch == 0 || g.len == 0 {
        return out;
    }
    assert!(
        g.len.is_multiple_of(batch),
        "ernie-cuda: normalize_per_example: {} elements do not split into {batch} examples",
        g.len
    );
    assert!(batch <= 65535, "ernie-cuda: normalize_per_example: batch {batch} too large");
    let per = g.len / batch;
    let chunks = per.div_ceil(NORM_CHUNK);
    let kind = match norm {
        NoiseNorm::L2 => 0,
        NoiseNorm::Max => 1,
    };
    let partial = cuda.scratch::<f64>(batch * chunks);
    let scale = cuda.scratch::<f64>(batch);
    let pp = NormPartialParams {
        g: g.arg(),
        partial: partial.ptr(),
        per: per as u64,
        chunks: chunks as u64,
        chunk: NORM_CHUNK as u64,
        kind,
        _pad: 0,
    };
    cuda.launch_grid(Kernel::norm_partial, (chunks, batch), pp);
    let pf = NormFinishParams {
        partial: partial.ptr(),
        scale: scale.ptr(),
        batch: batch as u64,
        chunks: chunks as u64,
        eps: eps as f64,
        kind,
        _pad: 0,
    };
    cuda.launch_blocks(Kernel::norm_finish, batch, pf);
    let pa = NormApplyParams { g: g.arg(), out: out.arg_mut(), scale: scale.ptr(), per: per as u64, n: g.len as u64 };
    cuda.launch_over(Kernel::norm_apply, g.len, pa);
    out
}
