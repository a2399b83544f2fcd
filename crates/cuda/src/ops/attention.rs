//! Fused attention (kernels/attention.cu): the per-head products through cuBLAS batched GEMMs, one kernel
//! for scale + key mask + noise + softmax + dropout between them, and the backward.

use super::activation::{keep_scale, DropoutParams};
use super::{need, need_operand, ROW_WARPS};
use crate::buf::{CudaBuf, CudaIds, DType};
use crate::gemm::{Gemm, Mat};
use crate::kernels::Kernel;
use crate::params::{launch_params, Rng, Tensor};
use crate::CudaBackend;
use ernie_backend::{AttnShape, RngStream};

launch_params! {
    struct AttnFwdParams {
        scores: u64, mask: u64, delta: Tensor, probs: Tensor, dropped: Tensor, rng: Rng,
        batch: u64, heads: u64, seq: u64, scale: f32, p: f32, keep_scale: f32, _pad: u32,
    }
    struct AttnBwdParams {
        dp: u64, probs: Tensor, ds: Tensor, dscores: Tensor, rng: Rng,
        batch: u64, heads: u64, seq: u64, scale: f32, p: f32, keep_scale: f32, _pad: u32,
    }
}

/// How an operand of the per-head products is stored: `[batch*seq, heads*head_dim]` (the hidden states:
/// q, k, v, the context and their gradients) or `[batch, heads, seq, seq]` (scores, probabilities).
#[derive(Clone, Copy)]
enum HeadLayout {
    Hidden,
    Scores,
}

/// One operand of the per-head products: the whole tensor and how its (batch, head) blocks lie in it.
#[derive(Clone, Copy)]
struct HeadOperand {
    mat: Mat,
    layout: HeadLayout,
}

fn hidden(mat: Mat) -> HeadOperand {
    HeadOperand { mat, layout: HeadLayout::Hidden }
}

fn scores(ptr: u64, dtype: DType) -> HeadOperand {
    HeadOperand { mat: Mat { ptr, dtype }, layout: HeadLayout::Scores }
}

/// `C_h = op(A_h) op(B_h)` for every (batch, head) block h, column-major per block: L x L when C holds
/// scores (k = head_dim), head_dim x L when C holds hidden states (k = L). Loops over the smaller of batch
/// and heads and batches the other with a constant stride (cublasGemmStridedBatchedEx).
fn per_head_gemm(
    cuda: &CudaBackend,
    s: AttnShape,
    (ta, tb): (bool, bool),
    a: HeadOperand,
    b: HeadOperand,
    c: HeadOperand,
) {
    let (nb, nh, l, d) = (s.batch, s.heads, s.seq, s.head_dim);
    let (m, n, k) = match c.layout {
        HeadLayout::Hidden => (d, l, l),
        HeadLayout::Scores => (l, l, d),
    };
    if nb == 0 || nh == 0 || m == 0 || n == 0 || k == 0 {
        return;
    }
    let hd = nh * d;
    let ld = |lay: HeadLayout| match lay {
        HeadLayout::Hidden => hd,
        HeadLayout::Scores => l,
    };
    let off = |lay: HeadLayout, bi: usize, hi: usize| match lay {
        HeadLayout::Hidden => bi * l * hd + hi * d,
        HeadLayout::Scores => (bi * nh + hi) * l * l,
    };
    let stride_b = |lay: HeadLayout| match lay {
        HeadLayout::Hidden => l * hd,
        HeadLayout::Scores => nh * l * l,
    };
    let stride_h = |lay: HeadLayout| match lay {
        HeadLayout::Hidden => d,
        HeadLayout::Scores => l * l,
    };
    let at = |x: HeadOperand, bi: usize, hi: usize| Mat {
        ptr: x.mat.ptr + (off(x.layout, bi, hi) * x.mat.dtype.size()) as u64,
        dtype: x.mat.dtype,
    };
    let g = |bi: usize, hi: usize| Gemm {
        ta,
        tb,
        m,
        n,
        k,
        a: at(a, bi, hi),
        lda: ld(a.layout),
        b: at(b, bi, hi),
        ldb: ld(b.layout),
        c: at(c, bi, hi),
        ldc: ld(c.layout),
        beta: 0.0,
    };
    let strides = |f: &dyn Fn(HeadLayout) -> usize| (f(a.layout), f(b.layout), f(c.layout));
    if nh <= nb {
        let (sa, sb, sc) = strides(&stride_b);
        for hi in 0..nh {
            cuda.exec.gemm_batched(&g(0, hi), sa, sb, sc, nb);
        }
    } else {
        let (sa, sb, sc) = strides(&stride_h);
        for bi in 0..nb {
            cuda.exec.gemm_batched(&g(bi, 0), sa, sb, sc, nh);
        }
    }
}

/// The elements of the hidden states and of the scores, after checking that each named input holds the
/// hidden states.
fn sizes<const N: usize>(a: AttnShape, inputs: [(&CudaBuf, &str); N], op: &str) -> (usize, usize) {
    let n_act = a.batch * a.seq * a.hidden();
    for (buf, name) in inputs {
        need_operand(buf.len, n_act, op, name);
    }
    (n_act, a.score_len())
}

/// Fused scale + key mask + noise + softmax + dropout + context: `(ctx, probs)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    cuda: &CudaBackend,
    a: AttnShape,
    q: &CudaBuf,
    k: &CudaBuf,
    v: &CudaBuf,
    key_mask: &CudaIds,
    delta: Option<&CudaBuf>,
    dropout_p: f32,
    rng: RngStream,
) -> (CudaBuf, CudaBuf) {
    let (l, d) = (a.seq, a.head_dim);
    let (n_act, n_sc) = sizes(a, [(q, "q"), (k, "k"), (v, "v")], "attention");
    need(key_mask.len(), a.batch * l, "attention: key mask");
    if let Some(dl) = delta {
        need(dl.len, n_sc, "attention: delta");
    }
    let act = cuda.act();
    if n_sc == 0 || d == 0 {
        return (cuda.alloc_zeroed(act, n_act), cuda.alloc_zeroed(act, n_sc));
    }
    let mut ctx = cuda.alloc(act, n_act);
    let mut probs = cuda.alloc(act, n_sc);
    let (qm, _hq) = cuda.operand(q);
    let (km, _hk) = cuda.operand(k);
    let (vm, _hv) = cuda.operand(v);
    let raw = cuda.scratch::<f32>(n_sc);
    // scores^T per head (col-major L x L) = k_h (d x L stored, transposed) * q_h (d x L)
    let sc = scores(raw.ptr(), DType::F32);
    per_head_gemm(cuda, a, (true, false), hidden(km), hidden(qm), sc);

    let mut dropped = (dropout_p > 0.0).then(|| cuda.alloc(act, n_sc));
    let p = AttnFwdParams {
        scores: raw.ptr(),
        mask: key_mask.ptr(),
        delta: delta.map(|x| x.arg()).unwrap_or(Tensor::NONE),
        probs: probs.arg_mut(),
        dropped: dropped.as_mut().map(|x| x.arg_mut()).unwrap_or(Tensor::NONE),
        rng: Rng::from(rng),
        batch: a.batch as u64,
        heads: a.heads as u64,
        seq: l as u64,
        scale: (1.0 / (d as f64).sqrt()) as f32,
        p: dropout_p,
        keep_scale: keep_scale(dropout_p),
        _pad: 0,
    };
    let smem = cuda.row_smem(ROW_WARPS * l, "attention");
    cuda.launch_warp_per_row(Kernel::attn_softmax_fwd, a.batch * a.heads * l, smem, p);

    let pm = scores(dropped.as_ref().unwrap_or(&probs).ptr(), act);
    let cm = hidden(Mat { ptr: ctx.arg_mut().ptr, dtype: act });
    // ctx_h^T (d x L) = v_h (d x L) * P^T-stored (L x L)
    per_head_gemm(cuda, a, (false, false), hidden(vm), pm, cm);
    (ctx, probs)
}

/// `(dq, dk, dv, dscores)`; `dscores` (the gradient w.r.t. the noise) only when asked.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn attention_bwd(
    cuda: &CudaBackend,
    a: AttnShape,
    dctx: &CudaBuf,
    q: &CudaBuf,
    k: &CudaBuf,
    v: &CudaBuf,
    probs: &CudaBuf,
    dropout_p: f32,
    rng: RngStream,
    want_dscores: bool,
) -> (CudaBuf, CudaBuf, CudaBuf, Option<CudaBuf>) {
    let (l, d) = (a.seq, a.head_dim);
    let hidden_ins = [(dctx, "dctx"), (q, "q"), (k, "k"), (v, "v")];
    let (n_act, n_sc) = sizes(a, hidden_ins, "attention_bwd");
    need(probs.len, n_sc, "attention_bwd: probs");
    let act = cuda.act();
    if n_sc == 0 || d == 0 {
        let z = || cuda.alloc_zeroed(act, n_act);
        return (z(), z(), z(), want_dscores.then(|| cuda.alloc_zeroed(act, n_sc)));
    }
    let (mut dq, mut dk, mut dv) = (cuda.alloc(act, n_act), cuda.alloc(act, n_act), cuda.alloc(act, n_act));
    let mut dscores = want_dscores.then(|| cuda.alloc(act, n_sc));
    let (dcm, _h0) = cuda.operand(dctx);
    let (qm, _h1) = cuda.operand(q);
    let (km, _h2) = cuda.operand(k);
    let (vm, _h3) = cuda.operand(v);
    let keep = keep_scale(dropout_p);
    let rngp = Rng::from(rng);
    let out = |buf: &mut CudaBuf| hidden(Mat { ptr: buf.arg_mut().ptr, dtype: act });

    // The dropped probabilities of the forward, regenerated from the same streams.
    let (pmat, _hold_pd, _hold_p) = if dropout_p > 0.0 {
        let mut pd = cuda.alloc(act, n_sc);
        let dp = DropoutParams {
            x: probs.arg(),
            y: pd.arg_mut(),
            rng: rngp,
            n: n_sc as u64,
            per_block: (l * l) as u64,
            p: dropout_p,
            scale: keep,
        };
        cuda.launch_over(Kernel::dropout_fwd, n_sc.div_ceil(4), dp);
        (scores(pd.ptr(), act), Some(pd), None)
    } else {
        let (pm, hold) = cuda.operand(probs);
        (scores(pm.ptr, pm.dtype), None, hold)
    };
    // dv_h^T (d x L) = dctx_h (d x L) * P-stored^T
    per_head_gemm(cuda, a, (false, true), hidden(dcm), pmat, out(&mut dv));
    // dP^T (L x L) = v_h^T-stored (transposed) * dctx_h
    let dp = cuda.scratch::<f32>(n_sc);
    let dpm = scores(dp.ptr(), DType::F32);
    per_head_gemm(cuda, a, (true, false), hidden(vm), hidden(dcm), dpm);

    let mut ds = cuda.alloc(act, n_sc);
    let p = AttnBwdParams {
        dp: dp.ptr(),
        probs: probs.arg(),
        ds: ds.arg_mut(),
        dscores: dscores.as_mut().map(|x| x.arg_mut()).unwrap_or(Tensor::NONE),
        rng: rngp,
        batch: a.batch as u64,
        heads: a.heads as u64,
        seq: l as u64,
        scale: (1.0 / (d as f64).sqrt()) as f32,
        p: dropout_p,
        keep_scale: keep,
        _pad: 0,
    };
    let smem = cuda.row_smem(ROW_WARPS * l, "attention_bwd");
    cuda.launch_warp_per_row(Kernel::attn_softmax_bwd, a.batch * a.heads * l, smem, p);

    let dsm = scores(ds.ptr(), act);
    // dq_h^T = k_h * dS-stored ; dk_h^T = q_h * dS-stored^T
    per_head_gemm(cuda, a, (false, false), hidden(km), dsm, out(&mut dq));
    per_head_gemm(cuda, a, (false, true), hidden(qm), dsm, out(&mut dk));
    (dq, dk, dv, dscores)
}
