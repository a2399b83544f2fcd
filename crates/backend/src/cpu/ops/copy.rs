//! Row copies: gather, scatter, slice, concatenation (the CUDA side: kernels/copy.cu, and embedding.cu's
//! segment_add for the scatter).

use crate::cpu::buffer::zeroed;
use crate::Float;

/// `out[r] = x[rows[r]]` for rows of `cols` scalars.
pub fn gather_rows<T: Float>(x: &[T], rows: &[usize], cols: usize) -> Vec<T> {
    rows.iter().flat_map(|&r| x[r * cols..(r + 1) * cols].iter().copied()).collect()
}

/// `out` of `total_rows` rows, zero but `out[rows[r]] += dy[r]` (repeated rows add up, in order).
pub fn scatter_rows<T: Float>(dy: &[T], rows: &[usize], cols: usize, total_rows: usize) -> Vec<T> {
    let mut out = zeroed(total_rows * cols);
    for (i, &r) in rows.iter().enumerate() {
        for j in 0..cols {
            out[r * cols + j] += dy[i * cols + j];
        }
    }
    out
}

/// Rows `[start, start+count)` of a matrix with `cols` columns.
pub fn slice_rows<T: Float>(x: &[T], start: usize, count: usize, cols: usize) -> Vec<T> {
    x[start * cols..(start + count) * cols].to_vec()
}

/// The rows of `a` followed by the rows of `b`.
pub fn concat_rows<T: Float>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

/// `w[rows, cols]` -> `[cols, rows]`, in tiles of 32 x 32 (both sides' lines stay in the cache).
pub fn transpose<T: Float>(w: &[T], rows: usize, cols: usize) -> Vec<T> {
    assert_eq!(w.len(), rows * cols, "transpose: {} values for {rows} x {cols}", w.len());
    const TILE: usize = 32;
    let mut t = zeroed(rows * cols);
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    t[c * rows + r] = w[r * cols + c];
                }
            }
        }
    }
    t
}
