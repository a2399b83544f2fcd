//! Moving data: host <-> device transfers, copies with dtype conversion (`cast` in kernels/copy.cu) and the
//! row ops (gather, scatter, slice, concatenation). Data movement keeps the input's dtype.

use super::embedding::segment_add;
use super::{need, pod_vec};
use crate::buf::{CudaBuf, CudaIds, DType};
use crate::kernels::Kernel;
use crate::params::{launch_params, Tensor, UnaryParams};
use crate::CudaBackend;

launch_params! {
    /// `y[r] = x[rows[r]]` for rows of `cols` elements.
    struct GatherRowsParams { x: Tensor, y: Tensor, rows: u64, nrows: u64, cols: u64 }
}

/// `y = x` converted to `y`'s dtype, `n` elements.
pub(crate) fn cast_into(cuda: &CudaBackend, x: Tensor, y: Tensor, n: usize) {
    cuda.launch_over(Kernel::cast, n, UnaryParams { x, y, n: n as u64 });
}

fn bf16_bits_to_f32(bytes: &[u8]) -> Vec<f32> {
    pod_vec::<u16>(bytes)
        .into_iter()
        .map(|b| half::bf16::from_bits(b).to_f32())
        .collect()
}

// ---------------------------------------------------------------------- host <-> device

pub(crate) fn upload(cuda: &CudaBackend, data: &[f32]) -> CudaBuf {
    CudaBuf::new(
        cuda.upload_pod(data),
        DType::F32,
        data.len(),
        cuda.mem.clone(),
    )
}

pub(crate) fn upload_ids(cuda: &CudaBackend, ids: &[u32]) -> CudaIds {
    CudaIds {
        dev: cuda.upload_pod(ids),
        host: ids.to_vec(),
    }
}

pub(crate) fn download(cuda: &CudaBackend, buf: &CudaBuf) -> Vec<f32> {
    match buf.dtype {
        DType::F32 => cuda.download_pod(&buf.mem, buf.len),
        DType::Bf16 => bf16_bits_to_f32(&cuda.exec.download(&buf.mem, buf.len * 2)),
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
        Some(bf16_bits_to_f32(&self.exec.download(s, buf.len * 2)))
    }
}

// ---------------------------------------------------------------------- rows

/// `rows` as u32 device indices, each checked to be below `limit`.
fn row_indices(rows: &[usize], limit: usize, what: &str) -> Vec<u32> {
    rows.iter()
        .map(|&r| {
            assert!(
                r < limit,
                "ernie-cuda: {what}: row {r} out of range ({limit} rows)"
            );
            r as u32
        })
        .collect()
}

pub(crate) fn gather_rows(cuda: &CudaBackend, x: &CudaBuf, rows: &[usize], cols: usize) -> CudaBuf {
    let mut out = cuda.alloc(x.dtype(), rows.len() * cols);
    if rows.is_empty() || cols == 0 {
        return out;
    }
    let idx = row_indices(rows, x.len / cols, "gather_rows");
    let dev = cuda.upload_pod(&idx);
    let p = GatherRowsParams {
        x: x.arg(),
        y: out.arg_mut(),
        rows: dev.ptr(),
        nrows: rows.len() as u64,
        cols: cols as u64,
    };
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
    let idx = row_indices(rows, total_rows, "scatter_rows");
    segment_add(cuda, &mut out, dy, &idx, cols, "scatter_rows");
    out
}

pub(crate) fn slice_rows(
    cuda: &CudaBackend,
    x: &CudaBuf,
    start: usize,
    count: usize,
    cols: usize,
) -> CudaBuf {
    let (a, n) = (start * cols, count * cols);
    need(x.len, a + n, "slice_rows");
    let mut out = cuda.alloc(x.dtype(), n);
    if n == 0 {
        return out;
    }
    let src = Tensor {
        ptr: x.ptr() + (a * x.dtype.size()) as u64,
        ..x.arg()
    };
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
        let at = Tensor {
            ptr: dst.ptr + (a.len * size) as u64,
            ..dst
        };
        cast_into(cuda, b.arg(), at, b.len);
    }
    out
}
