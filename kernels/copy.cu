// Copies on the device: `cast` (a copy converting to the destination's dtype: buffer copies, slices,
// concatenation, GEMM operands) and the row gather. Launched by crates/cuda/src/ops/copy.rs.
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
