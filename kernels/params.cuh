// Launch parameter structs. Every kernel takes exactly one of these by value, so a launch is one argument
// whatever the number of scalars.
//
// One section per kernel family (kernels/<family>.cu); the Rust mirror of a section's structs
// (`#[repr(C)]`) sits beside that family's launch code in crates/cuda/src/ops/<family>.rs, the shared ones
// at the top in crates/cuda/src/params.rs. Tests compile static_asserts generated from the Rust sizes and
// offsets (`param_sizes_match_nvrtc` through NVRTC, `param_offsets_match_host_cxx` through the host C++
// compiler), so the two sides cannot drift apart silently. Rules that keep the layouts identical without
// compiler-specific packing: 8-byte fields first or in pairs of 4-byte fields, explicit `_pad` members, no
// bool.
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;

// ------------------------------------------------------------------ shared by several families
// A device buffer and the type of its elements (DT_F32 or DT_BF16). Kernels read and write through
// ld()/st() in common.cuh, so one compiled kernel serves fp32 and bf16 storage alike.
struct Tensor {
    u64 ptr;
    u32 dtype;
    u32 _pad;
};

// A Philox stream, as ernie_backend::RngStream: the run's seed, the stream id and the offset where the
// buffer starts in the stream's index space (for attention: in units of (batch, head) blocks).
struct Rng {
    u64 seed;
    u64 stream;
    u64 offset;
};

struct UnaryParams {  // y = f(x): gelu, tanh (activation.cu), cast (copy.cu)
    Tensor x;
    Tensor y;
    u64 n;
};

// ------------------------------------------------------------------ embedding.cu
struct EmbedFwdParams {
    Tensor out;
    Tensor word;
    Tensor pos;
    Tensor typ;
    Tensor task;  // ptr 0: no task table
    u64 ids;
    u64 type_ids;
    u64 task_ids;
    u64 tokens;
    u64 seq;
    u64 hidden;
};

// Deterministic scatter-add: segment s adds rows perm[seg_start[s] .. seg_start[s+1]) of dy, in that
// order, into row seg_row[s] of d.
struct SegmentAddParams {
    Tensor d;
    Tensor dy;
    u64 perm;       // u32[]
    u64 seg_start;  // u32[nseg + 1]
    u64 seg_row;    // u32[nseg]
    u64 nseg;
    u64 cols;
};

// ------------------------------------------------------------------ layernorm.cu
struct LnFwdParams {
    Tensor x;
    Tensor res;  // ptr 0: no residual
    Tensor w;
    Tensor b;
    Tensor s;  // ptr 0: no residual (s is x)
    Tensor y;
    u64 mean;  // float[rows]
    u64 rstd;  // float[rows]
    u64 rows;
    u64 cols;
    float eps;
    u32 _pad;
};

struct LnBwdParams {
    Tensor dy;
    Tensor s;
    Tensor w;
    Tensor dx;
    u64 mean;
    u64 rstd;
    u64 rows;
    u64 cols;
};

struct LnWbPartialParams {  // partial[c][j] = sum dy*xhat, partial[c][cols + j] = sum dy
    Tensor dy;
    Tensor s;
    u64 mean;
    u64 rstd;
    u64 partial;  // float[chunks * 2 * cols]
    u64 rows;
    u64 cols;
    u64 chunk_rows;
};

// ------------------------------------------------------------------ linear.cu
struct BiasRowsParams {  // y[r, j] = bias[j]
    Tensor bias;
    Tensor y;
    u64 rows;
    u64 cols;
};

struct ColSumPartialParams {  // partial[c][j] = sum of x[r, j] over the rows of chunk c
    Tensor x;
    u64 partial;  // float[chunks * cols]
    u64 rows;
    u64 cols;
    u64 chunk_rows;
};

struct ColFinishParams {  // out[j] += sum_c partial[c][j], in chunk order; j >= split goes to out1
    u64 partial;
    Tensor out0;
    Tensor out1;
    u64 chunks;
    u64 width;
    u64 split;
};

// ------------------------------------------------------------------ activation.cu
struct BinaryParams {  // out = f(a, b): gelu_bwd(dy, x), tanh_bwd(dy, y)
    Tensor a;
    Tensor b;
    Tensor out;
    u64 n;
};

// Inverted dropout. `per_block` = 0: element i is drawn at index rng.offset + i of rng's stream;
// otherwise element i belongs to block site = i / per_block and is drawn from
// derive(rng.stream, rng.offset + site) at index i % per_block (attention probabilities: one derived
// stream per (batch, head) block of seq*seq, ernie_backend's attention_block_stream).
struct DropoutParams {
    Tensor x;
    Tensor y;
    Rng rng;
    u64 n;
    u64 per_block;
    float p;
    float scale;
};

// ------------------------------------------------------------------ attention.cu
struct AttnFwdParams {
    u64 scores;  // float[batch*heads*seq*seq]: q.k, unscaled
    u64 mask;    // u32[batch*seq]
    Tensor delta;    // ptr 0: no noise
    Tensor probs;    // out
    Tensor dropped;  // out, ptr 0 when p == 0
    Rng rng;
    u64 batch;
    u64 heads;
    u64 seq;
    float scale;
    float p;
    float keep_scale;
    u32 _pad;
};

struct AttnBwdParams {
    u64 dp;  // float[batch*heads*seq*seq]: dctx . v, before the dropout mask
    Tensor probs;
    Tensor ds;       // out: d(scores) * scale, the operand of the dq/dk products
    Tensor dscores;  // out, ptr 0 unless asked: d(scores) = gradient w.r.t. the noise delta
    Rng rng;
    u64 batch;
    u64 heads;
    u64 seq;
    float scale;
    float p;
    float keep_scale;
    u32 _pad;
};

// ------------------------------------------------------------------ loss.cu
struct CeParams {
    Tensor logits;
    u64 labels;  // u32[rows]
    u64 loss;    // float[rows]
    Tensor grad;
    u64 rows;
    u64 classes;
    float grad_scale;
    u32 _pad;
};

struct KlParams {
    Tensor a;
    Tensor b;
    u64 loss;   // float[rows]
    Tensor ga;  // sym_kl only (ptr 0 for the detached KL)
    Tensor gb;
    u64 rows;
    u64 classes;
    float grad_scale;  // sym_kl: 0.5 * grad_scale, detached: grad_scale
    u32 _pad;
};

// ------------------------------------------------------------------ noise.cu
// Noise on [batch, heads, seq, seq] scores: sigma * normal(index), 0 on padded keys.
struct RandnParams {
    Tensor out;
    u64 mask;  // u32[batch * seq]
    Rng rng;
    u64 batch;
    u64 heads;
    u64 seq;
    float sigma;
    u32 _pad;
};

// Per-example normalisation: kind 0 = L2, 1 = max-abs.
struct NormPartialParams {
    Tensor g;
    u64 partial;  // double[batch * chunks]
    u64 per;      // elements per example
    u64 chunks;   // chunks per example
    u64 chunk;    // elements per chunk
    u32 kind;
    u32 _pad;
};

struct NormFinishParams {
    u64 partial;
    u64 scale;  // double[batch]
    u64 batch;
    u64 chunks;
    double eps;
    u32 kind;
    u32 _pad;
};

struct NormApplyParams {
    Tensor g;
    Tensor out;
    u64 scale;  // double[batch]
    u64 per;
    u64 n;
};

// ------------------------------------------------------------------ copy.cu
struct GatherRowsParams {  // y[r] = x[rows[r]]
    Tensor x;
    Tensor y;
    u64 rows;  // u32[nrows]
    u64 nrows;
    u64 cols;
};

struct StridedRowsParams {  // y[dst_first + r * dst_stride] (+)= x[src_first + r * src_stride]
    Tensor x;
    Tensor y;
    u64 src_first;
    u64 src_stride;
    u64 dst_first;
    u64 dst_stride;
    u64 nrows;
    u64 cols;
    u32 accumulate;
    u32 _pad;
};

// ------------------------------------------------------------------ vector.cu
struct FillParams {
    Tensor y;
    u64 n;
    float value;
    u32 _pad;
};

struct AxpbyParams {  // y = a*y + b*x
    Tensor y;
    Tensor x;
    u64 n;
    float a;
    float b;
};

// Multi-tensor tables (sum of squares here, AdamW below): one launch walks every entry; block `blk` serves
// the entry with the largest block_start <= blk, elements [(blk - block_start) * chunk, +chunk).
struct SumSqEntry {
    Tensor x;
    u64 n;
    u64 block_start;
};

struct SumSqParams {
    u64 table;    // SumSqEntry[ntensors]
    u64 partial;  // double[total blocks]
    u32 ntensors;
    u32 chunk;
};

struct SumSqFinishParams {
    u64 table;
    u64 partial;
    u64 out;  // double[ntensors]
    u32 ntensors;
    u32 total_blocks;
};

struct SumSqTotalParams {  // stats[slot] = per[0] + per[1] + ... (in order)
    u64 per;    // double[ntensors]
    u64 stats;  // double[]
    u64 ntensors;
    u64 slot;
};

// ------------------------------------------------------------------ adamw.cu
struct AdamEntry {
    Tensor param;
    Tensor grad;
    Tensor m;
    Tensor v;
    u64 shadow;  // bf16 copy of param to refresh, 0 if none
    u64 n;
    double lr;  // base lr * the parameter's multiplier
    double wd;  // weight decay, 0 where it does not apply
    u64 block_start;
};

struct AdamParams {
    u64 table;  // AdamEntry[ntensors]
    u32 ntensors;
    u32 chunk;
    double beta1;
    double beta2;
    double one_minus_beta1;
    double one_minus_beta2;
    double eps;
    double bc1;
    double bc2;
    u64 stats;       // double[]: the step's statistics (stats.cu)
    u64 scale_slot;  // the gradient multiplier is stats[scale_slot]; NaN skips the update
};

// ------------------------------------------------------------------ stats.cu
// A training step's f64 scalars live in `stats` (double[]); each kernel writes one slot.
struct StatsMeanParams {  // stats[slot] = (scale * sum(rows[0..n])) / divisor
    u64 stats;
    Tensor rows;
    u64 n;
    u64 slot;
    double scale;
    double divisor;
};

struct StatsCorrectParams {  // stats[slot] = correct predictions among the first `rows` rows
    u64 stats;
    Tensor logits;
    u64 labels;  // u32[rows]
    u64 rows;
    u64 classes;
    u64 slot;
};

struct StatsCombineParams {  // stats[dst] = sum_k weight[k] * stats[slot[k]], k < n
    u64 stats;
    u64 dst;
    u64 n;
    u64 _pad;
    u64 slot[4];
    double weight[4];
};

struct ClipParams {
    u64 stats;
    u64 sumsq;
    u64 norm;
    u64 scale;
    u64 guard;  // ~0: none
    double max_norm;
    u32 clip;  // 0: no clipping
    u32 _pad;
};
