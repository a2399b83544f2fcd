// Copies on the device: `cast` (a copy converting to the destination's dtype: buffer copies, slices,
// concatenation, GEMM operands), the row gather, and the strided row copy (gather and scatter of evenly
// spaced rows, such as each example's first token, without an index table to upload). Launched by
// crates/cuda/src/ops/copy.rs.
#include "common.cuh"

// y = x converted to y's dtype.
extern "C" __global__ void __launch_bounds__(256) cast(const UnaryParams p) {
    GRID_STRIDE(i, p.n) st(p.y, i, ld(p.x, i));
}

// y[r] = x[rows[r]] for rows of `cols` elements.
extern "C" __global__ void __launch_bounds__(256) gather_rows(const GatherRowsParams p) {
    const u32* rows = reinterpret_cast<const u32*>(p.rows);
    const u64 n = p.nrows * p.cols;
    GRID_STRIDE(i, n) {
        const u64 r = i / p.cols, c = i - r * p.cols;
        st(p.y, i, ld(p.x, (u64)rows[r] * p.cols + c));
    }
}

// y[dst_first + r * dst_stride] (+)= x[src_first + r * src_stride] for r < nrows, rows of `cols` elements;
// `accumulate` adds to what y holds (scatter_rows into zeros: 0 + x, as the CPU reference adds).
extern "C" __global__ void __launch_bounds__(256) copy_rows_strided(const StridedRowsParams p) {
    const u64 n = p.nrows * p.cols;
    GRID_STRIDE(i, n) {
        const u64 r = i / p.cols, c = i - r * p.cols;
        const u64 dst = (p.dst_first + r * p.dst_stride) * p.cols + c;
        const float v = ld(p.x, (p.src_first + r * p.src_stride) * p.cols + c);
        st(p.y, dst, p.accumulate ? ld(p.y, dst) + v : v);
    }
}
