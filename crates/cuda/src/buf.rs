//! Device buffers.
//!
//! # Why a tagged buffer
//!
//! [`ernie_backend::Backend`] has one buffer type for everything: parameters, their gradients, optimizer
//! moments, activations and activation gradients. Under [`Precision::Bf16`] these want different storage:
//!
//! * **parameters, gradients, AdamW moments** stay fp32: updates of size `lr * g` are far below bf16's
//!   resolution (2^-8 relative) and would be lost;
//! * **activations and activation gradients** are bf16: half the memory and bandwidth, and the GEMMs run on
//!   the bf16 tensor-core path (fp32 accumulation);
//! * **the GEMMs** need both operands in one type, so an fp32 parameter used in a product carries a bf16
//!   copy (its *shadow*).
//!
//! So [`CudaBuf`] is an fp32 or bf16 array (a dtype tag) plus an optional bf16 shadow. The rules:
//!
//! * buffers the caller makes ([`upload`](ernie_backend::Backend::upload),
//!   [`zeros`](ernie_backend::Backend::zeros)) are fp32: that is how parameters, gradient accumulators and
//!   moments come to exist;
//! * buffers an op produces are in the precision's activation dtype (fp32 or bf16); LayerNorm statistics,
//!   loss values and reduction partials are always fp32;
//! * pure data movement (`copy`, `gather_rows`, `slice_rows`, `scatter_rows`, `concat_rows` of equal
//!   dtypes) keeps the input's dtype;
//! * ops writing into a `&mut` buffer (gradient accumulation, `axpby`, `fill`, AdamW) keep that buffer's
//!   dtype; every kernel reads and writes through the tag, so mixed inputs are fine;
//! * the shadow is made on first use as a GEMM operand and dropped by any write through `&mut`, except
//!   AdamW, which rewrites it in the same pass as the fp32 master ("refresh after the step").
//!
//! Under [`Precision::F32`] every buffer is fp32 and no shadow is ever made: that is the parity path the
//! tests compare with the CPU reference.

use crate::params::Tensor;
use cudarc::driver::{CudaSlice, DevicePtr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Element type of a device buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    Bf16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::Bf16 => 2,
        }
    }
    /// The tag the kernels read (`DT_F32` / `DT_BF16` in common.cuh).
    pub(crate) fn tag(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::Bf16 => 1,
        }
    }
}

/// Numeric precision of a [`crate::CudaBackend`], chosen at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything fp32, GEMMs in full fp32 (no TF32): the parity path.
    #[default]
    F32,
    /// Activations bf16, fp32 accumulation everywhere, fp32 master weights and optimizer state, bf16
    /// copies of the weights for the GEMMs.
    Bf16,
}

impl Precision {
    /// The dtype of activations (and of the GEMM operands).
    pub fn act(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::Bf16,
        }
    }
}

/// Bytes held by live buffers (and their shadows), and the high-water mark.
#[derive(Default, Debug)]
pub(crate) struct MemCounter {
    current: AtomicUsize,
    peak: AtomicUsize,
}

impl MemCounter {
    pub(crate) fn add(&self, bytes: usize) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    pub(crate) fn sub(&self, bytes: usize) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
    }
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
    pub(crate) fn reset_peak(&self) {
        self.peak.store(self.current.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Device memory: a cudarc allocation, or host memory standing in for it under the host emulation
/// ([`crate::CudaBackend::emulated`]). Untyped; [`CudaBuf`] carries the element type.
pub(crate) enum Mem {
    Cuda(CudaSlice<u8>),
    Host(HostMem),
}

impl Mem {
    /// The device address (a host address under emulation).
    pub(crate) fn ptr(&self) -> u64 {
        match self {
            Mem::Cuda(s) => raw(s),
            Mem::Host(h) => h.ptr as u64,
        }
    }
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Mem::Cuda(s) => s.len(),
            Mem::Host(h) => h.words * 8,
        }
    }
}

/// An 8-byte aligned host allocation owned through a raw pointer (kernels write through it).
pub(crate) struct HostMem {
    ptr: *mut u64,
    words: usize,
}

// SAFETY: plain owned memory; concurrent access is ordered by the (emulated) stream, as on a device.
unsafe impl Send for HostMem {}
unsafe impl Sync for HostMem {}

impl HostMem {
    pub(crate) fn new(bytes: usize, fill: u64) -> Self {
        let words = bytes.div_ceil(8).max(1);
        let b: Box<[u64]> = vec![fill; words].into_boxed_slice();
        Self { ptr: Box::into_raw(b) as *mut u64, words }
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw in new with this length.
        unsafe { drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.words))) };
    }
}

/// The raw device address of a slice (event tracking is off: the guard does nothing).
pub(crate) fn raw<T>(s: &CudaSlice<T>) -> u64 {
    let (p, _sync) = s.device_ptr(s.stream());
    p
}

/// A flat device buffer of fp32 or bf16 elements (see the module docs for who gets which).
pub struct CudaBuf {
    pub(crate) mem: Mem,
    pub(crate) dtype: DType,
    /// Logical length; the allocation holds at least one element so that empty buffers are valid too.
    pub(crate) len: usize,
    /// bf16 copy of an fp32 buffer for the GEMMs (Precision::Bf16 only).
    pub(crate) shadow: OnceLock<Mem>,
    pub(crate) counter: Arc<MemCounter>,
}

impl CudaBuf {
    pub(crate) fn new(mem: Mem, dtype: DType, len: usize, counter: Arc<MemCounter>) -> Self {
        counter.add(mem.bytes());
        Self { mem, dtype, len, shadow: OnceLock::new(), counter }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Whether a bf16 copy for the GEMMs is currently held.
    pub fn has_shadow(&self) -> bool {
        self.shadow.get().is_some()
    }

    pub(crate) fn ptr(&self) -> u64 {
        self.mem.ptr()
    }

    /// The buffer as a read-only kernel argument.
    pub(crate) fn arg(&self) -> Tensor {
        Tensor { ptr: self.ptr(), dtype: self.dtype.tag(), _pad: 0 }
    }

    /// The buffer as a kernel output: its contents change, so the shadow (if any) is dropped.
    pub(crate) fn arg_mut(&mut self) -> Tensor {
        self.drop_shadow();
        self.arg()
    }

    pub(crate) fn drop_shadow(&mut self) {
        if let Some(s) = self.shadow.take() {
            self.counter.sub(s.bytes());
        }
    }
}

impl Drop for CudaBuf {
    fn drop(&mut self) {
        self.drop_shadow();
        self.counter.sub(self.mem.bytes());
    }
}

impl std::fmt::Debug for CudaBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBuf")
            .field("dtype", &self.dtype)
            .field("len", &self.len)
            .field("shadow", &self.has_shadow())
            .finish()
    }
}

/// A device array of u32 (token ids, masks, labels) with the host copy it was made from: the host side
/// validates indices (the CPU reference would panic on an out-of-range id; a kernel would read garbage)
/// and groups tokens by row for the deterministic embedding backward without a device sort. Read-only, so
/// clones share both copies; several arrays may share one allocation (`upload_ids_many`: a batch's arrays
/// in one transfer), each at its own offset.
#[derive(Clone)]
pub struct CudaIds {
    pub(crate) dev: Arc<Mem>,
    /// Byte offset of this array in `dev`.
    pub(crate) offset: u64,
    pub(crate) host: Arc<[u32]>,
}

impl CudaIds {
    pub fn len(&self) -> usize {
        self.host.len()
    }
    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
    }
    pub fn host(&self) -> &[u32] {
        &self.host
    }
    pub(crate) fn ptr(&self) -> u64 {
        self.dev.ptr() + self.offset
    }
}

impl std::fmt::Debug for CudaIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaIds").field("len", &self.host.len()).finish()
    }
}

/// A training step's f64 scalars on the device ([`ernie_backend::Backend::Stats`]): written by the loss,
/// norm and clip kernels, read by AdamW on the device, downloaded once at the end of the step.
pub struct CudaStats {
    pub(crate) mem: Mem,
    pub(crate) len: usize,
}

impl CudaStats {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub(crate) fn ptr(&self) -> u64 {
        self.mem.ptr()
    }
    /// Panics unless `slot` is inside.
    pub(crate) fn check(&self, slot: usize, what: &str) {
        assert!(slot < self.len, "ernie-cuda: {what}: slot {slot} of {} step statistics", self.len);
    }
}

impl std::fmt::Debug for CudaStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaStats").field("len", &self.len).finish()
    }
}

/// Host <-> device transfers of one backend since it was made (see [`crate::CudaBackend::transfers`]).
/// Uploads are split by what they carry: `uploads` are data the caller hands over (`upload`,
/// `upload_ids`, `upload_ids_many`, `stats_upload`), `table_uploads` the index and multi-tensor tables an
/// op builds on the host for its own launch (gathered rows, the embedding backward's segments, the AdamW
/// and sum-of-squares tables). Every device-to-host read is a download.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfers {
    pub uploads: u64,
    pub upload_bytes: u64,
    pub table_uploads: u64,
    pub table_upload_bytes: u64,
    pub downloads: u64,
    pub download_bytes: u64,
}

impl std::ops::Sub for Transfers {
    type Output = Transfers;
    fn sub(self, o: Transfers) -> Transfers {
        Transfers {
            uploads: self.uploads - o.uploads,
            upload_bytes: self.upload_bytes - o.upload_bytes,
            table_uploads: self.table_uploads - o.table_uploads,
            table_upload_bytes: self.table_upload_bytes - o.table_upload_bytes,
            downloads: self.downloads - o.downloads,
            download_bytes: self.download_bytes - o.download_bytes,
        }
    }
}

/// What a host-to-device transfer carries (for [`Transfers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Upload {
    /// The caller's data.
    Data,
    /// A table an op builds for its launch.
    Table,
}

/// The atomic counters behind [`Transfers`].
#[derive(Default, Debug)]
pub(crate) struct TransferCounter {
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    table_uploads: AtomicU64,
    table_upload_bytes: AtomicU64,
    downloads: AtomicU64,
    download_bytes: AtomicU64,
}

impl TransferCounter {
    pub(crate) fn upload(&self, kind: Upload, bytes: usize) {
        let (n, b) = match kind {
            Upload::Data => (&self.uploads, &self.upload_bytes),
            Upload::Table => (&self.table_uploads, &self.table_upload_bytes),
        };
        n.fetch_add(1, Ordering::Relaxed);
        b.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn download(&self, bytes: usize) {
        self.downloads.fetch_add(1, Ordering::Relaxed);
        self.download_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> Transfers {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Transfers {
            uploads: l(&self.uploads),
            upload_bytes: l(&self.upload_bytes),
            table_uploads: l(&self.table_uploads),
            table_upload_bytes: l(&self.table_upload_bytes),
            downloads: l(&self.downloads),
            download_bytes: l(&self.download_bytes),
        }
    }
}
