//! Moving data: host <-> device transfers, copies with dtype conversion (`cast` in kernels/copy.cu) and the
//! row ops (gather, scatter, slice, concatenation). Data movement keeps the input's dtype.

use super::embedding::segment_add;
use super::{need, pod_vec};
use crate::buf::{CudaBuf, CudaIds, DType};
use crate::kernels::Kernel;
use crate::params::{launch_params, Tensor, UnaryParams};
use crate::CudaBackend;
use std::sync::Arc;

launch_params! {
    /// `y[r] = x[rows[r]]` for rows of `cols` elements.
    struct GatherRowsParams { x: Tensor, y: Tensor, rows: u64, nrows: u64, cols: u64 }
    /// `y[dst_first + r * dst_stride] (+)= x[src_first + r * src_stride]`, `accumulate` 1 to add.
    struct StridedRowsParams {
        x: Tensor, y: Tensor, src_first: u64, src_stride: u64, dst_first: u64, dst_stride: u64, nrows: u64,
        cols: u64, accumulate: u32, _pad: u32,
    }
}

/// `y = x` converted to `y`'s dtype, `n` elements.
pub(crate) fn cast_into(cuda: &CudaBackend, x: Tensor, y: Tensor, n: usize) {
    cuda.launch_over(Kernel::cast, n, UnaryParams { x, y, n: n as u64 });
}

fn bf16_bits_to_f32(bytes: &[u8]) -> Vec<f32> {
    pod_vec::<u16>(bytes).into_iter().map(|b| half::bf16::from_bits(b).to_f32()).collect()
}

// ---------------------------------------------------------------------- host <-> device

pub(crate) fn upload(cuda: &CudaBackend, data: &[f32]) -> CudaBuf {
    CudaBuf::new(cuda.upload_data(data), DType::F32, data.len(), cuda.mem.clone())
}

pub(crate) fn upload_ids(cuda: &CudaBackend, ids: &[u32]) -> CudaIds {
    CudaIds { dev: Arc::new(cuda.upload_data(ids)), offset: 0, host: ids.into() }
}

/// Each part at a multiple of this many ids in the one allocation (16 bytes: any vector load stays aligned).
const IDS_ALIGN: usize = 4;

/// Several id arrays packed into one allocation with ONE transfer; each `CudaIds` views its part.
pub(crate) fn upload_ids_many(cuda: &CudaBackend, parts: &[&[u32]]) -> Vec<CudaIds> {
    let mut packed: Vec<u32> = Vec::with_capacity(parts.iter().map(|p| p.len() + IDS_ALIGN).sum());
    let mut offsets = Vec::with_capacity(parts.len());
    for p in parts {
        offsets.push(packed.len());
        packed.extend_from_slice(p);
        packed.resize(packed.len().next_multiple_of(IDS_ALIGN), 0);
    }
    let dev = Arc::new(cuda.upload_data(&packed));
    parts
        .iter()
        .zip(offsets)
        .map(|(p, at)| CudaIds { dev: dev.clone(), offset: (at * 4) as u64, host: (*p).into() })
        .collect()
}

pub(crate) fn download(cuda: &CudaBackend, buf: &CudaBuf) -> Vec<f32> {
    match buf.dtype {
        DType::F32 => cuda.download_pod(&buf.mem, buf.len),
        DType::Bf16 => bf16_bits_to_f32(&cuda.download_bytes(&buf.mem, buf.len * 2)),
    }
}

impl CudaBackend {
    /// A copy of `buf` in `dtype` (rounded when narrowing).
    pub fn to_dtype(&self, buf: &CudaBuf, dtype: DType) -> CudaBuf {
        let mut out = self.alloc(dtype, buf.len);
        cast_into(self, buf.arg(), out.arg_mut(), buf.len);
        out
    }

    /// The bf16 copy a buffer holds for the GEMMs, if any (tests check that AdamW refreshes it).
    pub fn download_shadow(&self, buf: &CudaBuf) -> Option<Vec<f32>> {
        let s = buf.shadow.get()?;
        Some(bf16_bits_to_f32(&self.download_bytes(s, buf.len * 2)))
    }
}

// ---------------------------------------------------------------------- rows

/// `rows` as u32 device indices, each checked to be below `limit`.
fn row_indices(rows: &[usize], limit: usize, what: &str) -> Vec<u32> {
    rows.iter()
        .map(|&r| {
            assert!(r < limit, "ernie-cuda: {what}: row {r} out of range ({limit} rows)");
            r as u32
        })
        .collect()
}

/// `(first, stride)` when `rows[r] = first + r * stride` for every r (non-empty, non-decreasing).
fn progression(rows: &[usize]) -> Option<(usize, usize)> {
    let first = *rows.first()?;
    let stride = rows.get(1).map_or(Some(1), |&r| r.checked_sub(first))?;
    rows.iter()
        .enumerate()
        .all(|(r, &v)| Some(v) == stride.checked_mul(r).and_then(|o| o.checked_add(first)))
        .then_some((first, stride))
}

/// Rows `src_first + r * src_stride` of `x` to rows `dst_first + r * dst_stride` of `y`, `nrows` of them.
#[allow(clippy::too_many_arguments)]
fn copy_rows_strided(
    cuda: &CudaBackend,
    x: &CudaBuf,
    y: &mut CudaBuf,
    (src_first, src_stride): (usize, usize),
    (dst_first, dst_stride): (usize, usize),
    nrows: usize,
    cols: usize,
    accumulate: bool,
) {
    let p = StridedRowsParams {
        x: x.arg(),
        y: y.arg_mut(),
        src_first: src_first as u64,
        src_stride: src_stride as u64,
        dst_first: dst_first as u64,
        dst_stride: dst_stride as u64,
        nrows: nrows as u64,
        cols: cols as u64,
        accumulate: accumulate as u32,
        _pad: 0,
    };
    cuda.launch_over(Kernel::copy_rows_strided, nrows * cols, p);
}

pub(crate) fn gather_rows(cuda: &CudaBackend, x: &CudaBuf, rows: &[usize], cols: usize) -> CudaBuf {
    let mut out = cuda.alloc(x.dtype(), rows.len() * cols);
    if rows.is_empty() || cols == 0 {
        return out;
    }
    // Evenly spaced rows (each example's first token) need no index table.
    if let Some(prog) = progression(rows) {
        let last = prog.0 + prog.1 * (rows.len() - 1);
        assert!(last < x.len / cols, "ernie-cuda: gather_rows: row {last} out of range ({} rows)", x.len / cols);
        copy_rows_strided(cuda, x, &mut out, prog, (0, 1), rows.len(), cols, false);
        return out;
    }
    let idx = row_indices(rows, x.len / cols, "gather_rows");
    let dev = cuda.upload_pod(&idx);
    let p =
        GatherRowsParams { x: x.arg(), y: out.arg_mut(), rows: dev.ptr(), nrows: rows.len() as u64, cols: cols as u64 };
    cuda.launch_over(Kernel::gather_rows, rows.len() * cols, p);
    out
}

pub(crate) fn scatter_rows(
    cuda: &CudaBackend,
    dy: &CudaBuf,
    rows: &[usize],
    cols: usize,
    total_rows: usize,
) -> CudaBuf {
    let mut out = cuda.alloc_zeroed(dy.dtype(), total_rows * cols);
    // Distinct, evenly spaced rows: each output row gets one input row, added to its zeros as the segment
    // kernel (and the CPU reference) adds, without a table to upload.
    if let Some(prog @ (first, stride)) = progression(rows).filter(|&(_, s)| s > 0 || rows.len() == 1) {
        let last = first + stride * (rows.len() - 1);
        assert!(last < total_rows, "ernie-cuda: scatter_rows: row {last} out of range ({total_rows} rows)");
        need(dy.len, rows.len() * cols, "scatter_rows");
        if cols > 0 {
            copy_rows_strided(cuda, dy, &mut out, (0, 1), prog, rows.len(), cols, true);
        }
        return out;
    }
    let idx = row_indices(rows, total_rows, "scatter_rows");
    segment_add(cuda, &mut out, dy, &idx, cols, "scatter_rows");
    out
}

pub(crate) fn slice_rows(cuda: &CudaBackend, x: &CudaBuf, start: usize, count: usize, cols: usize) -> CudaBuf {
    let (a, n) = (start * cols, count * cols);
    need(x.len, a + n, "slice_rows");
    let mut out = cuda.alloc(x.dtype(), n);
    if n == 0 {
        return out;
    }
    let src = Tensor { ptr: x.ptr() + (a * x.dtype.size()) as u64, ..x.arg() };
    cast_into(cuda, src, out.arg_mut(), n);
    out
}

pub(crate) fn concat_rows(cuda: &CudaBackend, a: &CudaBuf, b: &CudaBuf) -> CudaBuf {
    let n = a.len + b.len;
    let same = a.dtype() == b.dtype();
    let mut out = cuda.alloc(if same { a.dtype } else { DType::F32 }, n);
    let dst = out.arg_mut();
    let size = if same { a.dtype().size() } else { 4 };
    if a.len > 0 {
        cast_into(cuda, a.arg(), dst, a.len);
    }
    if b.len > 0 {
        let at = Tensor { ptr: dst.ptr + (a.len * size) as u64, ..dst };
        cast_into(cuda, b.arg(), at, b.len);
    }
    out
}
