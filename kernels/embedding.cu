// Embedding sum (word + position + token type (+ task)) and its deterministic backward (segment_add also
// serves scatter_rows). Launched by crates/cuda/src/ops/embedding.rs.
#include "common.cuh"

// out[t] = word[ids[t]] + pos[t % seq] + typ[type_ids[t]] (+ task[task_ids[t]]), summed in that order in
// fp32 and rounded once to out's dtype.
extern "C" __global__ void __launch_bounds__(256) embed_fwd(const EmbedFwdParams p) {
    const u32* ids = reinterpret_cast<const u32*>(p.ids);
    const u32* type_ids = reinterpret_cast<const u32*>(p.type_ids);
    const u32* task_ids = reinterpret_cast<const u32*>(p.task_ids);
    const u64 h = p.hidden;
    const u64 n = p.tokens * h;
    const bool has_task = present(p.task);
    GRID_STRIDE(i, n) {
        const u64 t = i / h, j = i - t * h;
        float o = ld(p.word, (u64)ids[t] * h + j) + ld(p.pos, (t % p.seq) * h + j) + ld(p.typ, (u64)type_ids[t] * h + j);
        if (has_task) o += ld(p.task, (u64)task_ids[t] * h + j);
        st(p.out, i, o);
    }
}

// Scatter-add without atomics. The host groups the tokens by destination row (a stable sort, so each
// group keeps token order) and this kernel gives every group one block row: thread j of block
// (segment s, column tile) owns d[seg_row[s], j] and adds dy[perm[k], j] for k in the segment, in order.
// No two threads write the same element, and the additions happen in the CPU reference's order.
// Grid (nseg, ceil(cols / 256)).
extern "C" __global__ void __launch_bounds__(256) segment_add(const SegmentAddParams p) {
    const u64 s = blockIdx.x;
    const u64 j = (u64)blockIdx.y * blockDim.x + threadIdx.x;
    if (s >= p.nseg || j >= p.cols) return;
    const u32* perm = reinterpret_cast<const u32*>(p.perm);
    const u32* seg_start = reinterpret_cast<const u32*>(p.seg_start);
    const u64 row = reinterpret_cast<const u32*>(p.seg_row)[s];
    const u64 dst = row * p.cols + j;
    float acc = ld(p.d, dst);
    for (u32 k = seg_start[s]; k < seg_start[s + 1]; ++k) acc += ld(p.dy, (u64)perm[k] * p.cols + j);
    st(p.d, dst, acc);
}
