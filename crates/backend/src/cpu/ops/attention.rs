//! Fused attention, forward and backward (the CUDA side: kernels/attention.cu with cuBLAS).

use super::activation::dropout_scales;
use super::SendPtr;
use crate::backend::AttnShape;
use crate::cpu::buffer::zeroed;
use crate::cpu::matmul::{matmul, View};
use crate::float::{dot_lanes, max_lanes_where, sum_lanes};
use crate::philox::RngStream;
use crate::Float;
use rayon::prelude::*;

/// The stream of attention block `bh`: a stream's offset counts (batch, head) blocks for attention.
pub fn attention_block_stream(rng: RngStream, bh: usize) -> RngStream {
    RngStream { offset: 0, ..rng }.derive(bh as u64 + rng.offset)
}

/// Per (batch, head) task: q/k/v views of head `h` of batch row `b` inside `[B*L, H]`.
fn head_view<T>(x: &[T], a: AttnShape, b: usize, h: usize) -> View<'_, T> {
    View { data: x, off: b * a.seq * a.hidden() + h * a.head_dim, rs: a.hidden() as isize, cs: 1 }
}
fn head_view_t<T>(x: &[T], a: AttnShape, b: usize, h: usize) -> View<'_, T> {
    View { data: x, off: b * a.seq * a.hidden() + h * a.head_dim, rs: 1, cs: a.hidden() as isize }
}

/// The attention probabilities of block `(b, h)` into `p` (`seq * seq`, row-major):
/// `p[i,j] = softmax_j(q_i.k_j * scale + delta[i,j])` over real keys (`key_mask[b,j] != 0`), exactly 0 on
/// padded keys (the limit of HF's additive `finfo.min` mask). One definition for the training forward and
/// the inference-only forward, so the two agree bit for bit.
#[allow(clippy::too_many_arguments)]
fn block_probs<T: Float>(
    a: AttnShape,
    q: &[T],
    k: &[T],
    key_mask: &[u32],
    delta: Option<&[T]>,
    bh: usize,
    p: &mut [T],
) {
    let (l, d) = (a.seq, a.head_dim);
    let (b, h) = (bh / a.heads, bh % a.heads);
    let scale = T::c(1.0 / (d as f64).sqrt());
    matmul(l, l, d, p, 0, l, head_view(q, a, b, h), head_view_t(k, a, b, h), false, false);
    let maskf: Vec<T> =
        key_mask[b * l..(b + 1) * l].iter().map(|&m| if m != 0 { T::one() } else { T::zero() }).collect();
    let dl = delta.map(|dd| &dd[bh * l * l..(bh + 1) * l * l]);
    for i in 0..l {
        let row = &mut p[i * l..(i + 1) * l];
        // Branch-free over the row so that it vectorises: padded keys get exp(...) * 0 = exactly 0.
        match dl {
            Some(dl) => row.iter_mut().zip(&dl[i * l..(i + 1) * l]).for_each(|(s, &d)| *s = *s * scale + d),
            None => row.iter_mut().for_each(|s| *s *= scale),
        }
        let mx = max_lanes_where(row, &maskf);
        for (s, &k) in row.iter_mut().zip(&maskf) {
            *s = (*s - mx).exp_fast() * k;
        }
        let inv = T::one() / sum_lanes(row);
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// `ctx[rows of b, columns of h] = p @ v_(b,h)` for block `bh`.
///
/// # Safety
/// `ctx` must point to `a.batch * a.seq * a.hidden()` elements, and no other thread may write the block
/// (rows of batch row b, columns of head h) at the same time.
unsafe fn block_context<T: Float>(a: AttnShape, p: &[T], v: &[T], bh: usize, ctx: SendPtr<T>) {
    let (l, d, hd) = (a.seq, a.head_dim, a.hidden());
    let (b, h) = (bh / a.heads, bh % a.heads);
    let ctx_all = std::slice::from_raw_parts_mut(ctx.get(), a.batch * l * hd);
    matmul(l, d, l, ctx_all, b * l * hd + h * d, hd, View::rows(p, l), head_view(v, a, b, h), false, false);
}

/// Forward of one attention block for training.
/// `probs` as [`block_probs`], with `delta` the adversarial noise on the pre-softmax scores (adv strategy);
/// `ctx = dropout(probs) @ v`. Returns `(ctx, probs)`; probs are kept before dropout, the backward
/// regenerates the mask from `rng`.
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd<T: Float>(
    a: AttnShape,
    q: &[T],
    k: &[T],
    v: &[T],
    key_mask: &[u32],
    delta: Option<&[T]>,
    dropout_p: f32,
    rng: RngStream,
) -> (Vec<T>, Vec<T>) {
    let l = a.seq;
    let mut probs = zeroed(a.score_len());
    let mut ctx = zeroed(a.batch * l * a.hidden());
    let ctx_ptr = SendPtr(ctx.as_mut_ptr());
    // One dropped-probabilities block per thread, reused: every element is overwritten for each block.
    probs.par_chunks_mut(l * l).enumerate().for_each_init(
        || vec![T::zero(); l * l],
        |pd, (bh, p)| {
            block_probs(a, q, k, key_mask, delta, bh, p);
            if dropout_p > 0.0 {
                dropout_scales(pd, 0, dropout_p, attention_block_stream(rng, bh));
                pd.iter_mut().zip(p.iter()).for_each(|(k, &x)| *k *= x);
            } else {
                pd.copy_from_slice(p);
            }
            // SAFETY: ctx holds the whole output; each (b, h) task writes its own block.
            unsafe { block_context(a, pd, v, bh, ctx_ptr) };
        },
    );
    (ctx, probs)
}

/// Forward of attention for inference (no dropout, no noise): the context only. Each (batch, head) task
/// works in one `seq * seq` scratch block that never leaves its core, instead of the training forward's
/// `[batch, heads, seq, seq]` probabilities kept for a backward. Bit-identical to `attention_fwd`'s
/// context with `dropout_p = 0` and no noise.
pub fn attention_infer<T: Float>(a: AttnShape, q: &[T], k: &[T], v: &[T], key_mask: &[u32]) -> Vec<T> {
    let l = a.seq;
    let mut ctx = zeroed(a.batch * l * a.hidden());
    let ctx_ptr = SendPtr(ctx.as_mut_ptr());
    (0..a.batch * a.heads).into_par_iter().for_each_init(
        || vec![T::zero(); l * l],
        |p, bh| {
            block_probs(a, q, k, key_mask, None, bh, p);
            // SAFETY: ctx holds the whole output; each (b, h) task writes its own block.
            unsafe { block_context(a, p, v, bh, ctx_ptr) };
        },
    );
    ctx
}

/// Gradients of one attention block: returns `(dq, dk, dv, dscores)` where `dscores` is the gradient with
/// respect to the pre-softmax scores, i.e. to the noise `delta` (0 on padded keys); it is only materialised
/// when `want_dscores` (adv's probe backward).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn attention_bwd<T: Float>(
    a: AttnShape,
    dctx: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    probs: &[T],
    dropout_p: f32,
    rng: RngStream,
    want_dscores: bool,
) -> (Vec<T>, Vec<T>, Vec<T>, Option<Vec<T>>) {
    let (l, d, hd) = (a.seq, a.head_dim, a.hidden());
    let scale = T::c(1.0 / (d as f64).sqrt());
    let n = a.batch * l * hd;
    let (mut dq, mut dk, mut dv) = (zeroed(n), zeroed(n), zeroed(n));
    let mut dscores: Vec<T> = if want_dscores { zeroed(a.score_len()) } else { Vec::new() };
    let (pq, pk, pv) = (SendPtr(dq.as_mut_ptr()), SendPtr(dk.as_mut_ptr()), SendPtr(dv.as_mut_ptr()));
    let pds = SendPtr(dscores.as_mut_ptr());
    // Per-thread scratch blocks, reused: each is overwritten whole for every (b, h) block.
    let scratch = || [(); 4].map(|_| vec![T::zero(); l * l]);
    (0..a.batch * a.heads).into_par_iter().for_each_init(scratch, |[keep, pd, dp, ds], bh| {
        let (b, h) = (bh / a.heads, bh % a.heads);
        let p = &probs[bh * l * l..(bh + 1) * l * l];
        let dropped = dropout_p > 0.0;
        if dropped {
            dropout_scales(keep, 0, dropout_p, attention_block_stream(rng, bh));
            pd.iter_mut().zip(p.iter().zip(keep.iter())).for_each(|(o, (&x, &k))| *o = x * k);
        } else {
            pd.copy_from_slice(p);
        }
        // SAFETY: each (b, h) task writes disjoint blocks (rows of b, columns of h; its own score block).
        let (dq_all, dk_all, dv_all) = unsafe {
            (
                std::slice::from_raw_parts_mut(pq.get(), n),
                std::slice::from_raw_parts_mut(pk.get(), n),
                std::slice::from_raw_parts_mut(pv.get(), n),
            )
        };
        let off = b * l * hd + h * d;
        // dv = dropout(P)^T @ dctx
        matmul(l, d, l, dv_all, off, hd, View::rows_t(pd, l), head_view(dctx, a, b, h), false, false);
        // dP_dropped = dctx @ v^T (overwrites dp: no accumulation), then through the dropout mask
        matmul(l, l, d, dp, 0, l, head_view(dctx, a, b, h), head_view_t(v, a, b, h), false, false);
        if dropped {
            dp.iter_mut().zip(keep.iter()).for_each(|(d, &k)| *d *= k);
        }
        // softmax backward: ds = p * (dp - sum_j p dp)
        for i in 0..l {
            let (pr, dpr) = (&p[i * l..(i + 1) * l], &dp[i * l..(i + 1) * l]);
            let dot = dot_lanes(pr, dpr);
            for j in 0..l {
                ds[i * l + j] = pr[j] * (dpr[j] - dot);
            }
        }
        if want_dscores {
            // SAFETY: block bh of dscores belongs to this task only.
            let out = unsafe { std::slice::from_raw_parts_mut(pds.get().add(bh * l * l), l * l) };
            out.copy_from_slice(ds);
        }
        ds.iter_mut().for_each(|x| *x *= scale);
        // dq = ds @ k ; dk = ds^T @ q
        matmul(l, d, l, dq_all, off, hd, View::rows(ds, l), head_view(k, a, b, h), false, false);
        matmul(l, d, l, dk_all, off, hd, View::rows_t(ds, l), head_view(q, a, b, h), false, false);
    });
    (dq, dk, dv, want_dscores.then_some(dscores))
}
