// A training step's scalars, kept on the device so that the step reads the device once, at its end: batch
// means of per-row losses, the count of correct predictions, the loss from its parts, and the global-norm
// clip factor AdamW reads (adamw.cu). All f64, with explicitly rounded operations (no FMA contraction), in
// the CPU reference's order (ernie_backend::cpu::ops::stats): where the order matters, one thread does the
// work (a batch's rows are a few hundred at most), so the values equal the reference's bit for bit given
// the same inputs. Launched by crates/cuda/src/ops/stats.rs.
#include "common.cuh"

#define NO_SLOT 0xffffffffffffffffull

#define NAN_D __longlong_as_double(0x7ff8000000000000ll)

// stats[slot] = (scale * sum(rows[0..n])) / divisor, summed in row order from -0.0, as Rust's f64 Sum (only
// an all-(-0.0) sum keeps the sign).
extern "C" __global__ void __launch_bounds__(32) stats_mean(const StatsMeanParams p) {
    if (threadIdx.x != 0) return;
    double acc = -0.0;
    for (u64 r = 0; r < p.n; ++r) acc = __dadd_rn(acc, (double)ld(p.rows, r));
    reinterpret_cast<double*>(p.stats)[p.slot] = __ddiv_rn(__dmul_rn(p.scale, acc), p.divisor);
}

// stats[slot] = how many of the first `rows` rows have their first largest logit at the label. Counts are
// integers, exact in any order: one block, a row per thread.
extern "C" __global__ void __launch_bounds__(256) stats_correct(const StatsCorrectParams p) {
    __shared__ double scratch[32];
    const u32* labels = reinterpret_cast<const u32*>(p.labels);
    double count = 0.0;
    for (u64 r = threadIdx.x; r < p.rows; r += blockDim.x) {
        const u64 base = r * p.classes;
        u64 best = 0;
        float top = ld(p.logits, base);
        for (u64 c = 1; c < p.classes; ++c) {
            const float v = ld(p.logits, base + c);
            if (v > top) {
                top = v;
                best = c;
            }
        }
        if (best == (u64)labels[r]) count += 1.0;
    }
    count = block_sum_d(count, scratch);
    if (threadIdx.x == 0) reinterpret_cast<double*>(p.stats)[p.slot] = count;
}

// stats[dst] = weight[0] * stats[slot[0]] + weight[1] * stats[slot[1]] + ..., left to right.
extern "C" __global__ void __launch_bounds__(32) stats_combine(const StatsCombineParams p) {
    if (threadIdx.x != 0) return;
    double* s = reinterpret_cast<double*>(p.stats);
    double acc = 0.0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {  // unrolled: constant indices keep the parameter arrays out of local memory
        if ((u64)k < p.n) {
            const double term = __dmul_rn(p.weight[k], s[p.slot[k]]);
            acc = k == 0 ? term : __dadd_rn(acc, term);
        }
    }
    s[p.dst] = acc;
}

// torch.nn.utils.clip_grad_norm_: norm = sqrt(sumsq); factor max / (norm + 1e-6) when norm > max, else 1;
// NaN when the guard (the step's loss) is not finite, which makes AdamW skip the update.
extern "C" __global__ void __launch_bounds__(32) clip_scale(const ClipParams p) {
    if (threadIdx.x != 0) return;
    double* s = reinterpret_cast<double*>(p.stats);
    const double norm = __dsqrt_rn(s[p.sumsq]);
    double scale = 1.0;
    if (p.clip && norm > p.max_norm) scale = __ddiv_rn(p.max_norm, __dadd_rn(norm, 1e-6));
    if (p.guard != NO_SLOT && !isfinite(s[p.guard])) scale = NAN_D;
    s[p.norm] = norm;
    s[p.scale] = scale;
}
