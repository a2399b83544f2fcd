// Multi-tensor AdamW: one launch updates every parameter of the step. Per element the arithmetic is the
// CPU reference's, in f64, operation by operation with explicitly rounded intrinsics (no FMA contraction),
// so an fp32 parameter ends bit-identical to ernie_backend::Cpu<f32>'s. Master weights and moments are
// fp32; where the parameter has a bf16 copy for the GEMMs (Precision::Bf16), it is refreshed in the same
// pass.
//
// Per parameter: lr = base lr * multiplier (layer decay), wd = weight decay or 0 (biases, LayerNorm).
// The global-norm clip factor multiplies every gradient; it is read from the step's statistics on the
// device (stats.cu's clip_scale wrote it), so no value has to go to the host and back first. NaN there means
// the step's loss was not finite: nothing is updated. Launched by crates/cuda/src/ops/adamw.rs.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256) adamw(const AdamParams p) {
    const AdamEntry* table = reinterpret_cast<const AdamEntry*>(p.table);
    const u32 e = find_entry(table, p.ntensors, blockIdx.x);
    const AdamEntry t = table[e];
    const u64 start = (blockIdx.x - t.block_start) * (u64)p.chunk;
    const u64 end = min(start + p.chunk, t.n);
    const double grad_scale = reinterpret_cast<const double*>(p.stats)[p.scale_slot];
    if (grad_scale != grad_scale) return;  // NaN: the step is skipped
    const double lr_wd = __dmul_rn(t.lr, t.wd);
    unsigned short* shadow = reinterpret_cast<unsigned short*>(t.shadow);
    for (u64 i = start + threadIdx.x; i < end; i += blockDim.x) {
        const double g = __dmul_rn((double)ld(t.grad, i), grad_scale);
        const double mn = __dadd_rn(__dmul_rn(p.beta1, (double)ld(t.m, i)), __dmul_rn(p.one_minus_beta1, g));
        const double vn = __dadd_rn(__dmul_rn(p.beta2, (double)ld(t.v, i)), __dmul_rn(__dmul_rn(p.one_minus_beta2, g), g));
        double pv = (double)ld(t.param, i);
        pv = __dsub_rn(pv, __dmul_rn(lr_wd, pv));
        const double denom = __dadd_rn(__dsqrt_rn(__ddiv_rn(vn, p.bc2)), p.eps);
        pv = __dsub_rn(pv, __ddiv_rn(__dmul_rn(t.lr, __ddiv_rn(mn, p.bc1)), denom));
        st(t.m, i, (float)mn);
        st(t.v, i, (float)vn);
        st(t.param, i, (float)pv);
        if (shadow) shadow[i] = float_to_bf16_bits((float)pv);
    }
}
