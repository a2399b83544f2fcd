// LayerNorm with the residual add fused in, and its backward (dx per row; dw, db by deterministic column
// reduction: ln_wb_partial here, then col_finish from linear.cu). Launched by
// crates/cuda/src/ops/layernorm.rs.
#include "common.cuh"

// One block per row; the row (s = x + residual, rounded to s's dtype so that the backward sees exactly the
// values the statistics were taken from) is kept in dynamic shared memory: cols floats.
// Two-pass statistics as the reference: mean, then the mean of squared deviations.
extern "C" __global__ void __launch_bounds__(256) ln_fwd(const LnFwdParams p) {
    ERNIE_DYNAMIC_SMEM(float, row);
    __shared__ float scratch[32];
    const u64 r = blockIdx.x;
    const u64 base = r * p.cols;
    const bool has_res = present(p.res);
    float sum = 0.0f;
    for (u64 j = threadIdx.x; j < p.cols; j += blockDim.x) {
        float v = ld(p.x, base + j);
        if (has_res) {
            v = round_to(p.s, v + ld(p.res, base + j));
            st(p.s, base + j, v);
        }
        row[j] = v;
        sum += v;
    }
    const float n = (float)p.cols;
    const float mu = block_sum(sum, scratch) / n;
    float sq = 0.0f;
    for (u64 j = threadIdx.x; j < p.cols; j += blockDim.x) {
        const float d = row[j] - mu;
        sq += d * d;
    }
    const float var = block_sum(sq, scratch) / n;
    const float inv = 1.0f / sqrtf(var + p.eps);
    for (u64 j = threadIdx.x; j < p.cols; j += blockDim.x) {
        st(p.y, base + j, (row[j] - mu) * inv * ld(p.w, j) + ld(p.b, j));
    }
    if (threadIdx.x == 0) {
        reinterpret_cast<float*>(p.mean)[r] = mu;
        reinterpret_cast<float*>(p.rstd)[r] = inv;
    }
}

// dx = (dy w - mean(dy w) - xhat mean(dy w xhat)) * rstd, one block per row.
extern "C" __global__ void __launch_bounds__(256) ln_bwd_dx(const LnBwdParams p) {
    __shared__ float scratch[32];
    const u64 r = blockIdx.x;
    const u64 base = r * p.cols;
    const float mu = reinterpret_cast<const float*>(p.mean)[r];
    const float inv = reinterpret_cast<const float*>(p.rstd)[r];
    float sg = 0.0f, sgx = 0.0f;
    for (u64 j = threadIdx.x; j < p.cols; j += blockDim.x) {
        const float g = ld(p.dy, base + j) * ld(p.w, j);
        sg += g;
        sgx += g * (ld(p.s, base + j) - mu) * inv;
    }
    const float n = (float)p.cols;
    const float mg = block_sum(sg, scratch) / n;
    const float mgx = block_sum(sgx, scratch) / n;
    for (u64 j = threadIdx.x; j < p.cols; j += blockDim.x) {
        const float xh = (ld(p.s, base + j) - mu) * inv;
        st(p.dx, base + j, (ld(p.dy, base + j) * ld(p.w, j) - mg - xh * mgx) * inv);
    }
}

// Grid (ceil(cols / 256), chunks): partial[c][j] = sum_r dy xhat, partial[c][cols + j] = sum_r dy over the
// rows of chunk c, in row order.
extern "C" __global__ void __launch_bounds__(256) ln_wb_partial(const LnWbPartialParams p) {
    const u64 j = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 c = blockIdx.y;
    if (j >= p.cols) return;
    const float* mean = reinterpret_cast<const float*>(p.mean);
    const float* rstd = reinterpret_cast<const float*>(p.rstd);
    const u64 r0 = c * p.chunk_rows;
    const u64 r1 = min(r0 + p.chunk_rows, p.rows);
    float pw = 0.0f, pb = 0.0f;
    for (u64 r = r0; r < r1; ++r) {
        const float dy = ld(p.dy, r * p.cols + j);
        const float xh = (ld(p.s, r * p.cols + j) - mean[r]) * rstd[r];
        pw += dy * xh;
        pb += dy;
    }
    float* partial = reinterpret_cast<float*>(p.partial) + c * 2 * p.cols;
    partial[j] = pw;
    partial[p.cols + j] = pb;
}
