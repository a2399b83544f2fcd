// Elementwise and small reduction kernels: dropout, tanh, casts, axpby (single and multi-tensor), fill,
// row gather, bias broadcast, column sums, masked Gaussian noise, per-example normalisation and the
// global sum of squares. Reductions never use atomics: partial sums per fixed-size chunk, then one pass
// that adds the partials in chunk order, so results are bit-identical run to run.
#include "common.cuh"

#define GRID_STRIDE(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)gridDim.x * blockDim.x)

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

// ------------------------------------------------------------------ tanh, cast, fill
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

// y = x converted to y's dtype.
extern "C" __global__ void __launch_bounds__(256) cast(const UnaryParams p) {
    GRID_STRIDE(i, p.n) st(p.y, i, ld(p.x, i));
}

extern "C" __global__ void __launch_bounds__(256) fill(const FillParams p) {
    GRID_STRIDE(i, p.n) st(p.y, i, p.value);
}

// ------------------------------------------------------------------ axpby
// y = a*y + b*x with explicit round-to-nearest products and sum: no FMA contraction, so fp32 results match
// the CPU reference bit for bit.
__device__ __forceinline__ float axpby1(float a, float y, float b, float x) {
    return __fadd_rn(__fmul_rn(a, y), __fmul_rn(b, x));
}

extern "C" __global__ void __launch_bounds__(256) axpby(const AxpbyParams p) {
    GRID_STRIDE(i, p.n) st(p.y, i, axpby1(p.a, ld(p.y, i), p.b, ld(p.x, i)));
}

extern "C" __global__ void __launch_bounds__(256) axpby_many(const AxpbyManyParams p) {
    const AxpbyEntry* table = reinterpret_cast<const AxpbyEntry*>(p.table);
    const u32 e = find_entry(table, p.ntensors, blockIdx.x);
    const AxpbyEntry t = table[e];
    const u64 start = (blockIdx.x - t.block_start) * (u64)p.chunk;
    const u64 end = min(start + p.chunk, t.n);
    for (u64 i = start + threadIdx.x; i < end; i += blockDim.x) {
        st(t.y, i, axpby1(p.a, ld(t.y, i), p.b, ld(t.x, i)));
    }
}

// ------------------------------------------------------------------ sum of squares (f64, two passes)
extern "C" __global__ void __launch_bounds__(256) sum_squares_partial(const SumSqParams p) {
    __shared__ double scratch[32];
    const SumSqEntry* table = reinterpret_cast<const SumSqEntry*>(p.table);
    const u32 e = find_entry(table, p.ntensors, blockIdx.x);
    const SumSqEntry t = table[e];
    const u64 start = (blockIdx.x - t.block_start) * (u64)p.chunk;
    const u64 end = min(start + p.chunk, t.n);
    double acc = 0.0;
    for (u64 i = start + threadIdx.x; i < end; i += blockDim.x) {
        const double v = (double)ld(t.x, i);
        acc += v * v;
    }
    acc = block_sum_d(acc, scratch);
    if (threadIdx.x == 0) reinterpret_cast<double*>(p.partial)[blockIdx.x] = acc;
}

// One block per tensor: the sum of its partials.
extern "C" __global__ void __launch_bounds__(256) sum_squares_finish(const SumSqFinishParams p) {
    __shared__ double scratch[32];
    const SumSqEntry* table = reinterpret_cast<const SumSqEntry*>(p.table);
    const u32 e = blockIdx.x;
    const u64 first = table[e].block_start;
    const u64 last = e + 1 < p.ntensors ? table[e + 1].block_start : (u64)p.total_blocks;
    const double* partial = reinterpret_cast<const double*>(p.partial);
    double acc = 0.0;
    for (u64 i = first + threadIdx.x; i < last; i += blockDim.x) acc += partial[i];
    acc = block_sum_d(acc, scratch);
    if (threadIdx.x == 0) reinterpret_cast<double*>(p.out)[e] = acc;
}

// ------------------------------------------------------------------ rows
extern "C" __global__ void __launch_bounds__(256) gather_rows(const GatherRowsParams p) {
    const u32* rows = reinterpret_cast<const u32*>(p.rows);
    const u64 n = p.nrows * p.cols;
    GRID_STRIDE(i, n) {
        const u64 r = i / p.cols, c = i - r * p.cols;
        st(p.y, i, ld(p.x, (u64)rows[r] * p.cols + c));
    }
}

extern "C" __global__ void __launch_bounds__(256) bias_rows(const BiasRowsParams p) {
    const u64 n = p.rows * p.cols;
    GRID_STRIDE(i, n) st(p.y, i, ld(p.bias, i % p.cols));
}

// Grid (ceil(cols / 256), chunks): thread j of chunk c sums its column over the chunk's rows in order.
extern "C" __global__ void __launch_bounds__(256) colsum_partial(const ColSumPartialParams p) {
    const u64 j = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 c = blockIdx.y;
    if (j >= p.cols) return;
    const u64 r0 = c * p.chunk_rows;
    const u64 r1 = min(r0 + p.chunk_rows, p.rows);
    float acc = 0.0f;
    for (u64 r = r0; r < r1; ++r) acc += ld(p.x, r * p.cols + j);
    reinterpret_cast<float*>(p.partial)[c * p.cols + j] = acc;
}

extern "C" __global__ void __launch_bounds__(256) col_finish(const ColFinishParams p) {
    const u64 j = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= p.width) return;
    const float* partial = reinterpret_cast<const float*>(p.partial);
    float acc = 0.0f;
    for (u64 c = 0; c < p.chunks; ++c) acc += partial[c * p.width + j];
    if (j < p.split) {
        st(p.out0, j, ld(p.out0, j) + acc);
    } else {
        const u64 k = j - p.split;
        st(p.out1, k, ld(p.out1, k) + acc);
    }
}

// ------------------------------------------------------------------ adversarial noise
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
