// The parts of a linear layer that are not GEMMs (those go to cuBLAS): the bias broadcast of the forward
// and the deterministic column sums of the bias gradient (colsum_partial per chunk of 64 rows, then
// col_finish adding the chunks in order; LayerNorm's dw/db use col_finish too). Launched by
// crates/cuda/src/ops/linear.rs.
#include "common.cuh"

// y[r, j] = bias[j]: the GEMM then accumulates onto it (beta = 1).
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
