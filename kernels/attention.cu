// Attention softmax, fused: the batched GEMM (cuBLAS) writes raw scores q.k in fp32; one kernel applies the
// 1/sqrt(d) scale, the key mask, the optional adversarial noise delta, the softmax and the dropout mask,
// and writes both the probabilities (kept for the backward) and their dropped-out copy (the operand of the
// probs @ v product). The backward kernel does dropout-mask, softmax backward, writes d(scores) (the
// gradient w.r.t. delta) when asked and d(scores) * scale for the dq / dk products.
//
// One warp per score row; the row lives in dynamic shared memory (warps_per_block * seq floats).
// Dropout for row i of block bh = b * heads + h uses stream derive(rng.stream, rng.offset + bh) at element
// index i * seq + j (ernie_backend's attention_block_stream), so masks are the CPU reference's bit for bit.
// Kept probabilities are multiplied by 1/(1-p), dropped ones by 0, as the reference. Launched (with the
// per-head GEMMs) by crates/cuda/src/ops/attention.rs.
#include "common.cuh"

#define ATTN_WARPS 4

// Lane-local walk over four consecutive columns j0..j0+3 with j0 = 4 * lane + 128 * t: coalesced 16-byte
// runs per lane, and at most two Philox blocks per four elements.
struct DropMask {
    u64 seed, stream, cached;
    uint4 w;
    __device__ __forceinline__ DropMask(u64 seed_, u64 stream_) : seed(seed_), stream(stream_), cached(~0ull) {}
    __device__ __forceinline__ float uniform(u64 idx) {
        const u64 b = idx >> 2;
        if (b != cached) {
            w = rng_block(seed, stream, b);
            cached = b;
        }
        return to_uniform(uint4_at(w, (u32)(idx & 3)));
    }
};

extern "C" __global__ void __launch_bounds__(ATTN_WARPS * WARP) attn_softmax_fwd(const AttnFwdParams p) {
    ERNIE_DYNAMIC_SMEM(float, sm);
    const u32 warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    const u64 L = p.seq;
    const u64 rows = p.batch * p.heads * L;
    const u64 row = (u64)blockIdx.x * ATTN_WARPS + warp;
    if (row >= rows) return;  // whole warps leave; no block-wide barrier below
    float* buf = sm + warp * L;
    const u64 bh = row / L;
    const u64 i = row - bh * L;
    const u64 b = bh / p.heads;
    const u32* mask = reinterpret_cast<const u32*>(p.mask) + b * L;
    const float* sc = reinterpret_cast<const float*>(p.scores) + row * L;
    const bool has_delta = present(p.delta);

    float mx = NEG_INF;
    for (u64 j = lane; j < L; j += WARP) {
        float s = 0.0f;
        if (mask[j] != 0u) {
            s = sc[j] * p.scale;
            if (has_delta) s += ld(p.delta, row * L + j);
            mx = fmaxf(mx, s);
        }
        buf[j] = s;
    }
    mx = warp_max(mx);
    float sum = 0.0f;
    for (u64 j = lane; j < L; j += WARP) {
        if (mask[j] != 0u) {
            const float e = expf(buf[j] - mx);
            buf[j] = e;
            sum += e;
        }
    }
    sum = warp_sum(sum);
    const float inv = 1.0f / sum;
    __syncwarp();

    const bool drop = present(p.dropped);
    DropMask dm(p.rng.seed, drop ? rng_attention_stream(p.rng.stream, p.rng.offset, bh) : 0ull);
    for (u64 j0 = 4 * (u64)lane; j0 < L; j0 += 4 * WARP) {
#pragma unroll
        for (u32 k = 0; k < 4; ++k) {
            const u64 j = j0 + k;
            if (j < L) {
                // Rounded to the stored dtype first: the dropped copy and the backward use the same value.
                const float pr = round_to(p.probs, mask[j] != 0u ? buf[j] * inv : 0.0f);
                st(p.probs, row * L + j, pr);
                if (drop) {
                    const float f = dm.uniform(i * L + j) >= p.p ? p.keep_scale : 0.0f;
                    st(p.dropped, row * L + j, f * pr);
                }
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(ATTN_WARPS * WARP) attn_softmax_bwd(const AttnBwdParams p) {
    ERNIE_DYNAMIC_SMEM(float, sm);
    const u32 warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    const u64 L = p.seq;
    const u64 rows = p.batch * p.heads * L;
    const u64 row = (u64)blockIdx.x * ATTN_WARPS + warp;
    if (row >= rows) return;
    float* buf = sm + warp * L;
    const u64 bh = row / L;
    const u64 i = row - bh * L;
    const float* dpr = reinterpret_cast<const float*>(p.dp) + row * L;
    const bool drop = p.p > 0.0f;
    DropMask dm(p.rng.seed, drop ? rng_attention_stream(p.rng.stream, p.rng.offset, bh) : 0ull);

    // dp through the dropout mask; dot = sum_j p_j dp_j
    float dot = 0.0f;
    for (u64 j0 = 4 * (u64)lane; j0 < L; j0 += 4 * WARP) {
#pragma unroll
        for (u32 k = 0; k < 4; ++k) {
            const u64 j = j0 + k;
            if (j < L) {
                float d = dpr[j];
                if (drop) d *= dm.uniform(i * L + j) >= p.p ? p.keep_scale : 0.0f;
                buf[j] = d;
                dot += ld(p.probs, row * L + j) * d;
            }
        }
    }
    dot = warp_sum(dot);
    __syncwarp();
    const bool want = present(p.dscores);
    for (u64 j0 = 4 * (u64)lane; j0 < L; j0 += 4 * WARP) {
#pragma unroll
        for (u32 k = 0; k < 4; ++k) {
            const u64 j = j0 + k;
            if (j < L) {
                const float ds = ld(p.probs, row * L + j) * (buf[j] - dot);
                if (want) st(p.dscores, row * L + j, ds);
                st(p.ds, row * L + j, ds * p.scale);
            }
        }
    }
}
