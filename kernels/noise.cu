// Adversarial noise on the attention scores: the masked Gaussian draw and the per-example normalisation
// (L2 or max-abs norm in f64: a partial per chunk, then one block per example adding them in order).
// Launched by crates/cuda/src/ops/noise.rs.
#include "common.cuh"

// sigma * normal(i) on [batch, heads, seq, seq] scores, 0 on padded keys.
extern "C" __global__ void __launch_bounds__(256) randn_key_masked(const RandnParams p) {
    const u32* mask = reinterpret_cast<const u32*>(p.mask);
    const u64 l = p.seq;
    const u64 n = p.batch * p.heads * l * l;
    GRID_STRIDE(i, n) {
        const u64 row = i / l, j = i - row * l;
        const u64 b = row / (p.heads * l);
        const float v = mask[b * l + j] != 0u ? p.sigma * rng_normal(p.rng.seed, p.rng.stream, p.rng.offset, i) : 0.0f;
        st(p.out, i, v);
    }
}

// Grid (chunks, batch).
extern "C" __global__ void __launch_bounds__(256) norm_partial(const NormPartialParams p) {
    __shared__ double scratch[32];
    const u64 b = blockIdx.y, c = blockIdx.x;
    const u64 start = b * p.per + c * p.chunk;
    const u64 end = min(start + p.chunk, (b + 1) * p.per);
    double acc = 0.0;
    for (u64 i = start + threadIdx.x; i < end; i += blockDim.x) {
        const double v = (double)ld(p.g, i);
        acc = p.kind == 0 ? acc + v * v : fmax(acc, fabs(v));
    }
    acc = p.kind == 0 ? block_sum_d(acc, scratch) : block_max_d(acc, scratch);
    if (threadIdx.x == 0) reinterpret_cast<double*>(p.partial)[b * p.chunks + c] = acc;
}

// One block per example: scale[b] = eps / norm (0 for a zero gradient).
extern "C" __global__ void __launch_bounds__(256) norm_finish(const NormFinishParams p) {
    __shared__ double scratch[32];
    const u64 b = blockIdx.x;
    const double* partial = reinterpret_cast<const double*>(p.partial) + b * p.chunks;
    double acc = 0.0;
    for (u64 c = threadIdx.x; c < p.chunks; c += blockDim.x) {
        acc = p.kind == 0 ? acc + partial[c] : fmax(acc, partial[c]);
    }
    acc = p.kind == 0 ? block_sum_d(acc, scratch) : block_max_d(acc, scratch);
    if (threadIdx.x == 0) {
        const double norm = p.kind == 0 ? sqrt(acc) : acc;
        reinterpret_cast<double*>(p.scale)[b] = norm > 0.0 ? p.eps / norm : 0.0;
    }
}

extern "C" __global__ void __launch_bounds__(256) norm_apply(const NormApplyParams p) {
    const double* scale = reinterpret_cast<const double*>(p.scale);
    GRID_STRIDE(i, p.n) st(p.out, i, (float)((double)ld(p.g, i) * scale[i / p.per]));
}
