// Host emulation of the CUDA execution model, just enough for kernels/*.cu: the kernel sources are compiled
// by the host C++ compiler after this prelude and run block by block, each block's threads as real OS
// threads, so __syncthreads, __syncwarp and warp shuffles are real barriers. Used by tests (crate::emu)
// to run the backend's host code and kernels end to end without a GPU. Not a performance tool.
#define ERNIE_HOST_EMULATION 1

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <barrier>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
    unsigned int x, y, z;
};
static thread_local dim3 threadIdx;
static thread_local dim3 blockIdx;
static dim3 blockDim, gridDim;

struct uint4 {
    unsigned int x, y, z, w;
};
struct uint2 {
    unsigned int x, y;
};
static inline uint4 make_uint4(unsigned int a, unsigned int b, unsigned int c, unsigned int d) { return uint4{a, b, c, d}; }
static inline uint2 make_uint2(unsigned int a, unsigned int b) { return uint2{a, b}; }

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Blocks run one after the other, so function-level statics serve as the block's shared memory.
#define __shared__ static

static inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((unsigned long long)a * b) >> 32); }
static inline float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
static inline double __longlong_as_double(long long x) { double d; memcpy(&d, &x, 8); return d; }
static inline float __uint_as_float(unsigned int x) { float f; memcpy(&f, &x, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int x; memcpy(&x, &f, 4); return x; }
// Compiled with -ffp-contract=off: every operation rounds on its own, as the _rn intrinsics.
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __dsqrt_rn(double a) { return sqrt(a); }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }

struct __nv_bfloat16 {
    unsigned short x;
};
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(unsigned short)((u >> 16) | 0x40u)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return __nv_bfloat16{(unsigned short)(u >> 16)};
}

struct EmuBlock {
    std::barrier<>* block;
    std::barrier<>* warps[32];
    unsigned long long shfl[32][32];
    unsigned char* dyn;
};
static thread_local EmuBlock* emu_blk;

static inline void __syncthreads() { emu_blk->block->arrive_and_wait(); }
static inline void __syncwarp(unsigned int = 0xffffffffu) { emu_blk->warps[threadIdx.x / 32]->arrive_and_wait(); }
template <typename T>
static inline T __shfl_xor_sync(unsigned int, T v, int o) {
    const unsigned int w = threadIdx.x / 32, l = threadIdx.x % 32;
    memcpy(&emu_blk->shfl[w][l], &v, sizeof(T));
    __syncwarp();
    T r;
    memcpy(&r, &emu_blk->shfl[w][l ^ (unsigned int)o], sizeof(T));
    __syncwarp();
    return r;
}
#define ERNIE_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(emu_blk->dyn)
