// Fused losses over [rows, classes] logits, forward and backward in one pass: softmax cross-entropy,
// symmetric KL between two predictions (R-Drop) and the directional KL with a detached target (adv probe).
// One warp per row; the per-row loss is written in fp32, the gradients in their buffer's dtype. Launched
// by crates/cuda/src/ops/loss.rs.
#include "common.cuh"

#define LOSS_WARPS 4

__device__ __forceinline__ float row_lse(const Tensor& t, u64 base, u64 classes, u32 lane) {
    float mx = NEG_INF;
    for (u64 c = lane; c < classes; c += WARP) mx = fmaxf(mx, ld(t, base + c));
    mx = warp_max(mx);
    float sum = 0.0f;
    for (u64 c = lane; c < classes; c += WARP) sum += expf(ld(t, base + c) - mx);
    return mx + logf(warp_sum(sum));
}

// loss = lse - x[y]; grad = (softmax - onehot) * grad_scale.
extern "C" __global__ void __launch_bounds__(LOSS_WARPS * WARP) softmax_ce(const CeParams p) {
    const u32 lane = threadIdx.x % WARP;
    const u64 r = (u64)blockIdx.x * LOSS_WARPS + threadIdx.x / WARP;
    if (r >= p.rows) return;
    const u64 base = r * p.classes;
    const u64 y = reinterpret_cast<const u32*>(p.labels)[r];
    const float lse = row_lse(p.logits, base, p.classes, lane);
    for (u64 c = lane; c < p.classes; c += WARP) {
        float g = expf(ld(p.logits, base + c) - lse) * p.grad_scale;
        if (c == y) g -= p.grad_scale;
        st(p.grad, base + c, g);
    }
    if (lane == 0) reinterpret_cast<float*>(p.loss)[r] = lse - ld(p.logits, base + y);
}

// kl = 0.5 sum_c (p_c - q_c)(log p_c - log q_c); with z = log p - log q:
// d/da_c = 0.5 [p_c (z_c - E_p z) + p_c - q_c], d/db_c = 0.5 [q_c (E_q z - z_c) + q_c - p_c].
// grad_scale carries the 0.5.
extern "C" __global__ void __launch_bounds__(LOSS_WARPS * WARP) sym_kl(const KlParams p) {
    const u32 lane = threadIdx.x % WARP;
    const u64 r = (u64)blockIdx.x * LOSS_WARPS + threadIdx.x / WARP;
    if (r >= p.rows) return;
    const u64 base = r * p.classes;
    const float la = row_lse(p.a, base, p.classes, lane);
    const float lb = row_lse(p.b, base, p.classes, lane);
    float acc = 0.0f, ep = 0.0f, eq = 0.0f;
    for (u64 c = lane; c < p.classes; c += WARP) {
        const float lp = ld(p.a, base + c) - la, lq = ld(p.b, base + c) - lb;
        const float pc = expf(lp), qc = expf(lq), z = lp - lq;
        acc += (pc - qc) * z;
        ep += pc * z;
        eq += qc * z;
    }
    acc = warp_sum(acc);
    ep = warp_sum(ep);
    eq = warp_sum(eq);
    for (u64 c = lane; c < p.classes; c += WARP) {
        const float lp = ld(p.a, base + c) - la, lq = ld(p.b, base + c) - lb;
        const float pc = expf(lp), qc = expf(lq), z = lp - lq;
        st(p.ga, base + c, p.grad_scale * (pc * (z - ep) + pc - qc));
        st(p.gb, base + c, p.grad_scale * (qc * (eq - z) + qc - pc));
    }
    if (lane == 0) reinterpret_cast<float*>(p.loss)[r] = 0.5f * acc;
}

// KL(softmax(a) || softmax(b)) with a detached; gb = (q - p) * grad_scale.
extern "C" __global__ void __launch_bounds__(LOSS_WARPS * WARP) kl_detached(const KlParams p) {
    const u32 lane = threadIdx.x % WARP;
    const u64 r = (u64)blockIdx.x * LOSS_WARPS + threadIdx.x / WARP;
    if (r >= p.rows) return;
    const u64 base = r * p.classes;
    const float la = row_lse(p.a, base, p.classes, lane);
    const float lb = row_lse(p.b, base, p.classes, lane);
    float acc = 0.0f;
    for (u64 c = lane; c < p.classes; c += WARP) {
        const float lp = ld(p.a, base + c) - la, lq = ld(p.b, base + c) - lb;
        const float pc = expf(lp);
        acc += pc * (lp - lq);
        st(p.gb, base + c, (expf(lq) - pc) * p.grad_scale);
    }
    acc = warp_sum(acc);
    if (lane == 0) reinterpret_cast<float*>(p.loss)[r] = acc;
}
