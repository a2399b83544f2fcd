//! Device buffers.
//!
//! # Why a tagged buffer
//!
//! [`ernie_tensor::Backend`] has one buffer type for everything: parameters, their gradients, optimizer
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
//! * buffers the caller makes ([`upload`](ernie_tensor::Backend::upload),
//!   [`zeros`](ernie_tensor::Backend::zeros)) are fp32: that is how parameters, gradient accumulators and
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
use std::sync::atomic::{AtomicUsize, Ordering};
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
        self.peak
            .store(self.current.load(Ordering::Relaxed), Ordering::Relaxed);
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
        Self {
            ptr: Box::into_raw(b) as *mut u64,
            words,
        }
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw in new with this length.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.ptr, self.words,
            )))
        };
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
        Self {
            mem,
            dtype,
            len,
            shadow: OnceLock::new(),
            counter,
        }
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
        Tensor {
            ptr: self.ptr(),
            dtype: self.dtype.tag(),
            _pad: 0,
        }
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
/// and groups tokens by row for the deterministic embedding backward without a device sort.
pub struct CudaIds {
    pub(crate) dev: Mem,
    pub(crate) host: Vec<u32>,
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
        self.dev.ptr()
    }
}

impl std::fmt::Debug for CudaIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaIds")
            .field("len", &self.host.len())
            .finish()
    }
}
