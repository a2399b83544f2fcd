// Whole-buffer vector ops: fill, y = a*y + b*x, and the sum of squares over many buffers (the global
// gradient norm), a multi-tensor launch in two fixed-order passes (no atomics: the same bits every run) and a
// third that adds the per-buffer sums into a step's statistics (stats.cu), where the clip factor is made.
// Launched by crates/cuda/src/ops/vector.rs.
#include "common.cuh"

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

// One thread: the per-tensor sums added in tensor order into the step's statistics, as the CPU reference
// adds them (from -0.0, as Rust's f64 Sum).
extern "C" __global__ void __launch_bounds__(32) sum_squares_total(const SumSqTotalParams p) {
    if (threadIdx.x != 0) return;
    const double* per = reinterpret_cast<const double*>(p.per);
    double acc = -0.0;
    for (u64 e = 0; e < p.ntensors; ++e) acc = __dadd_rn(acc, per[e]);
    reinterpret_cast<double*>(p.stats)[p.slot] = acc;
}
