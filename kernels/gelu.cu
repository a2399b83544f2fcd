// Exact (erf) GELU, forward and backward, as ernie_tensor::cpu::ops::gelu_fwd / gelu_bwd.
#include "common.cuh"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

#define GRID_STRIDE(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)gridDim.x * blockDim.x)

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
