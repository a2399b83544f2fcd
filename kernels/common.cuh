// Shared by every kernel source: typed loads and stores through a dtype tag, the Philox RNG (philox.cuh,
// bit-identical to crates/backend/src/philox.rs), and deterministic warp/block reductions.
//
// Compiled at run time by NVRTC (crates/cuda/src/nvrtc.rs): -std=c++17, no host headers, cuda_bf16.h from
// the CUDA include directory.
#pragma once

// ERNIE_HOST_EMULATION: the sources compiled by the host C++ compiler with the shims of
// crates/cuda/src/emu_prelude.h, to run the kernels without a GPU (tests only).
#ifndef ERNIE_HOST_EMULATION
#include <cuda_bf16.h>
// Dynamic shared memory of the launch (its size is the launch's shared_mem_bytes).
#define ERNIE_DYNAMIC_SMEM(type, name) extern __shared__ type name[]
#endif

#include "params.cuh"
#include "philox.cuh"

#define DT_F32 0u
#define DT_BF16 1u

#define WARP 32
#define NEG_INF __int_as_float(0xff800000)
#define FULL_MASK 0xffffffffu

// Grid-stride loop over [0, n): the launch sizes its grid to the device (ops/mod.rs, grid()), not to n.
#define GRID_STRIDE(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)gridDim.x * blockDim.x)

// ------------------------------------------------------------------ typed access
__device__ __forceinline__ float bf16_bits_to_float(unsigned short h) {
    return __uint_as_float(((u32)h) << 16);
}

__device__ __forceinline__ unsigned short float_to_bf16_bits(float v) {
    // Round to nearest even, the same as half::bf16::from_f32 on the host.
    __nv_bfloat16 h = __float2bfloat16_rn(v);
    return *reinterpret_cast<unsigned short*>(&h);
}

// Element i of t as float.
__device__ __forceinline__ float ld(const Tensor& t, u64 i) {
    if (t.dtype == DT_BF16) {
        return bf16_bits_to_float(reinterpret_cast<const unsigned short*>(t.ptr)[i]);
    }
    return reinterpret_cast<const float*>(t.ptr)[i];
}

// Store v (rounded to bf16 where t is bf16).
__device__ __forceinline__ void st(const Tensor& t, u64 i, float v) {
    if (t.dtype == DT_BF16) {
        reinterpret_cast<unsigned short*>(t.ptr)[i] = float_to_bf16_bits(v);
    } else {
        reinterpret_cast<float*>(t.ptr)[i] = v;
    }
}

// v rounded to what t stores (identity for fp32).
__device__ __forceinline__ float round_to(const Tensor& t, float v) {
    return t.dtype == DT_BF16 ? bf16_bits_to_float(float_to_bf16_bits(v)) : v;
}

__device__ __forceinline__ bool present(const Tensor& t) { return t.ptr != 0ull; }

// ------------------------------------------------------------------ reductions (fixed order)
// Combine operators of the reductions below (fmaxf / fmax by argument type).
struct AddOp {
    template <typename T>
    __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
    __device__ __forceinline__ double operator()(double a, double b) const { return fmax(a, b); }
};

// Butterfly over the warp: every lane gets the same bits, so the result is deterministic.
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
    for (int o = WARP / 2; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Over the block (blockDim.x a multiple of 32, at most 1024). `scratch` holds 32 values; `identity` fills
// the lanes past the last warp. Every thread gets the result.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, T* scratch, Op op, T identity) {
    const int lane = threadIdx.x & (WARP - 1), wid = threadIdx.x / WARP, nw = blockDim.x / WARP;
    v = warp_reduce(v, op);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[wid] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : identity;
    return warp_reduce(v, op);
}

__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, AddOp()); }
__device__ __forceinline__ float warp_max(float v) { return warp_reduce(v, MaxOp()); }
__device__ __forceinline__ float block_sum(float v, float* scratch) { return block_reduce(v, scratch, AddOp(), 0.0f); }
__device__ __forceinline__ double block_sum_d(double v, double* scratch) { return block_reduce(v, scratch, AddOp(), 0.0); }
// Maximum of non-negative values (the max-norm of a gradient): 0 is its identity.
__device__ __forceinline__ double block_max_d(double v, double* scratch) { return block_reduce(v, scratch, MaxOp(), 0.0); }

// Multi-tensor launches: the entry that block `blk` serves (entries sorted by block_start, the first 0).
template <typename Entry>
__device__ __forceinline__ u32 find_entry(const Entry* table, u32 n, u64 blk) {
    u32 lo = 0, hi = n - 1;
    while (lo < hi) {
        const u32 mid = (lo + hi + 1) >> 1;
        if (table[mid].block_start <= blk) lo = mid; else hi = mid - 1;
    }
    return lo;
}
