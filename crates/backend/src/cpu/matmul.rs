//! Strided GEMM through the `gemm` crate (the same engine candle uses on the CPU).

use crate::Float;
use gemm::Parallelism;

/// A row-major-or-strided matrix view: element (r, c) lives at `data[off + r*rs + c*cs]`.
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    pub data: &'a [T],
    pub off: usize,
    pub rs: isize,
    pub cs: isize,
}

impl<'a, T> View<'a, T> {
    /// A dense row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Self { data, off: 0, rs: cols as isize, cs: 1 }
    }
    /// The transpose of a dense row-major matrix with `cols` columns.
    pub fn rows_t(data: &'a [T], cols: usize) -> Self {
        Self { data, off: 0, rs: 1, cs: cols as isize }
    }
    pub fn at(self, off: usize) -> Self {
        Self { off: self.off + off, ..self }
    }
}

/// `C[m,n] = A[m,k] @ B[k,n]` (or `C += A @ B` when `accumulate`), C row stride `c_rs`, column stride 1.
///
/// `parallel` hands the product to rayon; callers that already run one small product per task pass false.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [T],
    c_off: usize,
    c_rs: usize,
    a: View<T>,
    b: View<T>,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let c_need = c_off + (m - 1) * c_rs + n;
    assert!(c.len() >= c_need, "matmul: output buffer too small");
    check_view(&a, m, k);
    check_view(&b, k, n);
    let par = if parallel && m * n * k >= 64 * 64 * 64 { Parallelism::Rayon(0) } else { Parallelism::None };
    // SAFETY: every element addressed by (rows, cols, strides) was bounds-checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr().add(c_off),
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr().add(a.off),
            a.cs,
            a.rs,
            b.data.as_ptr().add(b.off),
            b.cs,
            b.rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

fn check_view<T>(v: &View<T>, rows: usize, cols: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    let last = v.off as isize + (rows as isize - 1) * v.rs + (cols as isize - 1) * v.cs;
    assert!(v.rs >= 0 && v.cs >= 0 && (last as usize) < v.data.len(), "matmul: operand view out of bounds");
}
