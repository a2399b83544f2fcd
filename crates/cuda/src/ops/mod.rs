//! The backend's ops, one file per kernel family: `ops/<family>.rs` launches the kernels of
//! `kernels/<family>.cu` (with the GEMMs the family needs) and declares their `#[repr(C)]` parameter structs,
//! the mirrors of the family's section of `kernels/params.cuh`. `backend.rs` implements the `Backend` trait
//! by calling these functions, as the CPU backend calls `ernie_backend::cpu::ops`.
//!
//! This file holds what the families share: allocation, launch geometry, size checks and the GEMM operands.

pub(crate) mod activation;
pub(crate) mod adamw;
pub(crate) mod attention;
pub(crate) mod copy;
pub(crate) mod embedding;
pub(crate) mod layernorm;
pub(crate) mod linear;
pub(crate) mod loss;
pub(crate) mod noise;
pub(crate) mod stats;
pub(crate) mod vector;

use crate::buf::{CudaBuf, DType, Mem, Precision, Upload};
use crate::gemm::{Gemm, Mat};
use crate::host::row_threads;
use crate::kernels::Kernel;
use crate::params::Tensor;
use crate::CudaBackend;
use cudarc::driver::DeviceRepr;

/// Threads per block of the grid-stride, column and multi-tensor kernels.
pub(crate) const THREADS: u32 = 256;
/// Rows per chunk of the deterministic column reductions (the CPU reference's RED_CHUNK).
pub(crate) const RED_CHUNK: usize = 64;
/// Warps (= rows) per block of the attention and loss kernels (ATTN_WARPS / LOSS_WARPS in the sources).
pub(crate) const ROW_WARPS: usize = 4;

/// Bytes from the device as a vector of `T` (the byte vector need not be aligned for `T`).
pub(crate) fn pod_vec<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    let n = bytes.len() / std::mem::size_of::<T>();
    let mut v = vec![T::zeroed(); n];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(&bytes[..n * std::mem::size_of::<T>()]);
    v
}

/// Panics unless a buffer of `have` elements holds the `want` an op needs.
pub(crate) fn need(have: usize, want: usize, what: &str) {
    assert!(have >= want, "ernie-cuda: {what}: buffer holds {have} elements, the op needs {want}");
}

/// As [`need`], for operand `name` of op `op` (the message is only made on failure).
pub(crate) fn need_operand(have: usize, want: usize, op: &str, name: &str) {
    if have < want {
        need(have, want, &format!("{op}: {name}"));
    }
}

/// An fp32 kernel argument for device memory that is not a [`CudaBuf`] (scratch, partial sums).
pub(crate) fn f32_tensor(m: &Mem) -> Tensor {
    Tensor { ptr: m.ptr(), dtype: DType::F32.tag(), _pad: 0 }
}

impl CudaBackend {
    // ------------------------------------------------------------------ launches
    /// A grid-stride kernel over `n` items: as many blocks as keep the device busy, at most one per
    /// `THREADS` items.
    pub(crate) fn launch_over<T: DeviceRepr>(&self, k: Kernel, n: usize, p: T) {
        let blocks = n.div_ceil(THREADS as usize).min(self.sm_count as usize * 32);
        self.exec.launch(k, (blocks as u32, 1, 1), THREADS, 0, &p);
    }

    /// Blocks of `THREADS` threads on a `(x, y)` grid.
    pub(crate) fn launch_grid<T: DeviceRepr>(&self, k: Kernel, (x, y): (usize, usize), p: T) {
        self.exec.launch(k, (x as u32, y as u32, 1), THREADS, 0, &p);
    }

    /// One block of one warp: the step-statistics kernels whose work is a short sequential sum, done by
    /// its first thread in the CPU reference's order.
    pub(crate) fn launch_one_warp<T: DeviceRepr>(&self, k: Kernel, p: T) {
        self.exec.launch(k, (1, 1, 1), 32, 0, &p);
    }

    /// One block of `THREADS` per block index in `0..blocks` (the multi-tensor kernels).
    pub(crate) fn launch_blocks<T: DeviceRepr>(&self, k: Kernel, blocks: usize, p: T) {
        self.launch_grid(k, (blocks, 1), p);
    }

    /// One block per row of `cols` elements, as many threads as cover a row (up to 256), with `smem`
    /// bytes of dynamic shared memory (the LayerNorm kernels).
    pub(crate) fn launch_block_per_row<T: DeviceRepr>(&self, k: Kernel, rows: usize, cols: usize, smem: u32, p: T) {
        self.exec.launch(k, (rows as u32, 1, 1), row_threads(cols), smem, &p);
    }

    /// One warp per row, ROW_WARPS rows per block, with `smem` bytes of dynamic shared memory (the
    /// attention and loss kernels).
    pub(crate) fn launch_warp_per_row<T: DeviceRepr>(&self, k: Kernel, rows: usize, smem: u32, p: T) {
        let grid = (rows.div_ceil(ROW_WARPS) as u32, 1, 1);
        self.exec.launch(k, grid, (ROW_WARPS * 32) as u32, smem, &p);
    }

    /// Bytes of dynamic shared memory for `floats` cached floats, checked against the device's limit.
    pub(crate) fn row_smem(&self, floats: usize, what: &str) -> u32 {
        let bytes = floats * 4;
        assert!(
            bytes + 1024 <= self.max_smem as usize,
            "ernie-cuda: {what}: a row of {floats} floats needs {bytes} bytes of shared memory, the device has {}",
            self.max_smem
        );
        bytes as u32
    }

    // ------------------------------------------------------------------ memory
    /// The dtype op outputs are stored in.
    pub(crate) fn act(&self) -> DType {
        self.precision.act()
    }

    /// A buffer of `len` elements, written by a kernel before it is read.
    pub(crate) fn alloc(&self, dtype: DType, len: usize) -> CudaBuf {
        self.new_buf(dtype, len, false)
    }

    pub(crate) fn alloc_zeroed(&self, dtype: DType, len: usize) -> CudaBuf {
        self.new_buf(dtype, len, true)
    }

    /// An op output in the activation dtype, zeroed where the op may write none of it (a product over an
    /// empty inner dimension).
    pub(crate) fn alloc_act(&self, len: usize, zeroed: bool) -> CudaBuf {
        self.new_buf(self.act(), len, zeroed)
    }

    fn new_buf(&self, dtype: DType, len: usize, zeroed: bool) -> CudaBuf {
        let mem = self.exec.alloc(len * dtype.size(), zeroed);
        CudaBuf::new(mem, dtype, len, self.mem.clone())
    }

    /// Scratch for `len` elements of `T` (written by a kernel before it is read).
    pub(crate) fn scratch<T>(&self, len: usize) -> Mem {
        self.exec.alloc(len * std::mem::size_of::<T>(), false)
    }

    /// A table an op builds on the host for its launch (indices, multi-tensor tables), copied to the device.
    pub(crate) fn upload_pod<T: bytemuck::Pod>(&self, v: &[T]) -> Mem {
        self.upload_counted(Upload::Table, bytemuck::cast_slice(v))
    }

    /// The caller's data copied to the device (`upload`, `upload_ids`, ...).
    pub(crate) fn upload_data<T: bytemuck::Pod>(&self, v: &[T]) -> Mem {
        self.upload_counted(Upload::Data, bytemuck::cast_slice(v))
    }

    /// Every host-to-device copy goes through here, counted ([`crate::Transfers`]).
    fn upload_counted(&self, kind: Upload, bytes: &[u8]) -> Mem {
        self.transfers.upload(kind, bytes.len());
        self.exec.upload(bytes)
    }

    pub(crate) fn download_pod<T: bytemuck::Pod>(&self, m: &Mem, n: usize) -> Vec<T> {
        pod_vec(&self.download_bytes(m, n * std::mem::size_of::<T>()))
    }

    /// Every device-to-host copy goes through here, counted ([`crate::Transfers`]).
    pub(crate) fn download_bytes(&self, m: &Mem, bytes: usize) -> Vec<u8> {
        self.transfers.download(bytes);
        self.exec.download(m, bytes)
    }

    // ------------------------------------------------------------------ GEMMs
    /// `buf` as a GEMM operand in the compute dtype: itself, its bf16 shadow (made now if missing), or an
    /// fp32 temporary (a bf16 buffer under Precision::F32) returned alongside to keep it alive.
    pub(crate) fn operand(&self, buf: &CudaBuf) -> (Mat, Option<Mem>) {
        let mat = |m: &Mem, dtype| Mat { ptr: m.ptr(), dtype };
        match (self.precision, buf.dtype) {
            (Precision::F32, DType::F32) | (Precision::Bf16, DType::Bf16) => (mat(&buf.mem, buf.dtype), None),
            (Precision::Bf16, DType::F32) => {
                let s = buf.shadow.get_or_init(|| {
                    let s = self.scratch::<u16>(buf.len);
                    let bf16 = Tensor { dtype: DType::Bf16.tag(), ..f32_tensor(&s) };
                    copy::cast_into(self, buf.arg(), bf16, buf.len);
                    buf.counter.add(s.bytes());
                    s
                });
                (mat(s, DType::Bf16), None)
            }
            (Precision::F32, DType::Bf16) => {
                let t = self.scratch::<f32>(buf.len);
                copy::cast_into(self, buf.arg(), f32_tensor(&t), buf.len);
                (mat(&t, DType::F32), Some(t))
            }
        }
    }

    /// Makes the bf16 copy of an fp32 buffer now (as its first use in a GEMM would), under
    /// Precision::Bf16; no-op otherwise.
    pub fn prepare_gemm_operand(&self, buf: &CudaBuf) {
        let _ = self.operand(buf);
    }

    pub(crate) fn run_gemm(&self, g: Gemm) {
        if g.m == 0 || g.n == 0 || g.k == 0 {
            return; // k == 0: outputs were zero-initialised (or hold the bias) by the caller
        }
        self.exec.gemm(&g);
    }
}
