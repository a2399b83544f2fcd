// Activations and dropout, forward and backward: exact (erf) GELU and tanh as
// ernie_backend::cpu::ops::activation, and inverted dropout with the Philox masks of the CPU reference (also
// used by the attention backward to regenerate the dropped probabilities). Launched by
// crates/cuda/src/ops/activation.rs.
#include "common.cuh"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

// ------------------------------------------------------------------ gelu
// y = 0.5 x (1 + erf(x / sqrt 2)), evaluated in the reference's order: (0.5 x) * (1 + erf(x c)).
extern "C" __global__ void __launch_bounds__(256) gelu_fwd(const UnaryParams p) {
    GRID_STRIDE(i, p.n) {
        const float v = ld(p.x, i);
        st(p.y, i, (0.5f * v) * (1.0f + erff(v * INV_SQRT2)));
    }
}

// out = dy * (Phi(x) + x phi(x)); a = dy, b = x.
extern "C" __global__ void __launch_bounds__(256) gelu_bwd(const BinaryParams p) {
    GRID_STRIDE(i, p.n) {
        const float g = ld(p.a, i);
        const float v = ld(p.b, i);
        const float cdf = 0.5f * (1.0f + erff(v * INV_SQRT2));
        const float pdf = INV_SQRT_2PI * expf((-0.5f * v) * v);
        st(p.out, i, g * (cdf + v * pdf));
    }
}

// ------------------------------------------------------------------ tanh
extern "C" __global__ void __launch_bounds__(256) tanh_fwd(const UnaryParams p) {
    GRID_STRIDE(i, p.n) st(p.y, i, tanhf(ld(p.x, i)));
}

// out = dy * (1 - y^2), y the forward output.
extern "C" __global__ void __launch_bounds__(256) tanh_bwd(const BinaryParams p) {
    GRID_STRIDE(i, p.n) {
        const float y = ld(p.b, i);
        st(p.out, i, ld(p.a, i) * (1.0f - y * y));
    }
}

// ------------------------------------------------------------------ dropout
// Each thread handles one Philox block: four consecutive stream indices. Kept elements are multiplied by
// 1/(1-p), dropped ones by 0, in the reference's order (factor * x: -0 and NaN come out as on the CPU).
extern "C" __global__ void __launch_bounds__(256) dropout_fwd(const DropoutParams p) {
    if (p.per_block == 0) {
        // Element i is stream index offset + i: walk the absolute blocks that cover [offset, offset + n).
        const u64 lo = p.rng.offset, hi = p.rng.offset + p.n;
        const u64 first = lo >> 2;
        const u64 total = p.n == 0 ? 0 : ((hi + 3) >> 2) - first;
        GRID_STRIDE(t, total) {
            const u64 b = first + t;
            const uint4 w = rng_block(p.rng.seed, p.rng.stream, b);
#pragma unroll
            for (u32 j = 0; j < 4; ++j) {
                const u64 a = 4 * b + j;
                if (a >= lo && a < hi) {
                    const u64 i = a - lo;
                    const float k = to_uniform(uint4_at(w, j)) >= p.p ? p.scale : 0.0f;
                    st(p.y, i, k * ld(p.x, i));
                }
            }
        }
        return;
    }
    const u64 per = p.per_block;
    const u64 groups = (per + 3) / 4;  // Philox blocks per site
    const u64 sites = (p.n + per - 1) / per;
    const u64 total = groups * sites;
    GRID_STRIDE(t, total) {
        const u64 site = t / groups;
        const u64 g = t - site * groups;
        const u64 stream = rng_attention_stream(p.rng.stream, p.rng.offset, site);
        const uint4 w = rng_block(p.rng.seed, stream, g);
        const u64 base = site * per + 4 * g;
#pragma unroll
        for (u32 j = 0; j < 4; ++j) {
            const u64 local = 4 * g + j;
            const u64 i = base + j;
            if (local < per && i < p.n) {
                const float k = to_uniform(uint4_at(w, j)) >= p.p ? p.scale : 0.0f;
                st(p.y, i, k * ld(p.x, i));
            }
        }
    }
}
