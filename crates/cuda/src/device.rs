//! [`CudaBackend`]: making one. The device, its context and stream, the NVRTC compilation of the kernel
//! sources and the loading of their modules, or the host emulation in their place; and why that can fail
//! ([`CudaError`]). What the backend then does is in [`crate::ops`] (one file per kernel family) and
//! `backend.rs` (the `Backend` trait, delegating to the ops); its other public methods sit with their ops:
//! `to_dtype` and `download_shadow` in `ops/copy.rs`, `prepare_gemm_operand` in `ops/mod.rs`.
//!
//! One context and one stream per backend; every op enqueues its kernels and GEMMs on that stream and
//! returns without waiting; only downloads synchronise (a training step's losses, gradient norm and clip
//! factor stay on the device until the step reads them all at once). Kernels are compiled by NVRTC when
//! the backend is made, for the device's own architecture, and their function handles kept in a table
//! indexed by kernel id ([`crate::kernels::Kernel`]): no lookup per launch.
//!
//! The trait's methods return values, not `Result`s, as the CPU backend does: a CUDA error inside one of
//! them is a bug or a dead device, and panics with the failing call named. Only construction is fallible,
//! and it never panics: a missing driver, NVRTC, cuBLAS or GPU is an `Err` with a message saying what to do.
//! Set `ERNIE_FT_CUDA_SYNC=1` to synchronise after every launch, so an asynchronous fault is reported by
//! the kernel that caused it.

use crate::buf::{DType, MemCounter, Precision, TransferCounter, Transfers};
use crate::emu::Emu;
use crate::exec::{CudaExec, Exec};
use crate::gemm::{Blas, GemmError};
use crate::kernels::{self, Kernel};
use crate::nvrtc::{self, NvrtcError, Options, Target};
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{CudaContext, CudaFunction, DriverError};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::Arc;

/// Why a [`CudaBackend`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver found (libcuda.so); --device cuda needs an NVIDIA GPU and its driver")]
    NoDriver,
    #[error(transparent)]
    Nvrtc(#[from] NvrtcError),
    #[error("{lib} not found ({file} on the library path, $ERNIE_FT_CUDA_LIB, $CUDA_HOME/lib64 or /usr/local/cuda/lib64); the CUDA backend's matrix products need it: put the CUDA 13 toolkit's lib64 (or a nvidia-cublas wheel's nvidia/cu13/lib) on LD_LIBRARY_PATH or ERNIE_FT_CUDA_LIB")]
    NoLibrary { lib: &'static str, file: &'static str },
    #[error("no CUDA device {ordinal}: {detail}")]
    NoDevice { ordinal: usize, detail: String },
    // Driver and Blas print their inner error and do not expose it as `source()` (no #[from]: see the
    // From impls below), so error chains (anyhow's `{:#}`) print it once.
    #[error("CUDA driver: {0}")]
    Driver(DriverError),
    #[error("cuBLAS: {0}")]
    Blas(GemmError),
    #[error("kernel {0} not found in the compiled modules")]
    MissingKernel(&'static str),
    #[error("host emulation: {0}")]
    Emulation(String),
}

impl From<DriverError> for CudaError {
    fn from(e: DriverError) -> Self {
        CudaError::Driver(e)
    }
}

impl From<GemmError> for CudaError {
    fn from(e: GemmError) -> Self {
        CudaError::Blas(e)
    }
}

/// Checks, without touching a GPU, that the libraries the backend loads are present.
pub fn preflight() -> Result<(), CudaError> {
    crate::libs::preload();
    // SAFETY: each only attempts to dlopen the library's candidate names.
    unsafe {
        if !cudarc::driver::sys::is_culib_present() {
            return Err(CudaError::NoDriver);
        }
        if !cudarc::nvrtc::sys::is_culib_present() {
            return Err(CudaError::Nvrtc(NvrtcError::NotFound));
        }
        if !cudarc::cublas::sys::is_culib_present() {
            return Err(CudaError::NoLibrary { lib: "cuBLAS", file: "libcublas.so.13" });
        }
        if !cudarc::cublaslt::sys::is_culib_present() {
            return Err(CudaError::NoLibrary { lib: "cuBLASLt", file: "libcublasLt.so.13" });
        }
    }
    Ok(())
}

/// The CUDA backend. See the crate docs for the precision model and [`crate::CudaBuf`] for storage.
pub struct CudaBackend {
    pub(crate) exec: Exec,
    pub(crate) precision: Precision,
    pub(crate) mem: Arc<MemCounter>,
    /// Every host <-> device transfer, counted (what tests bound per training step).
    pub(crate) transfers: TransferCounter,
    pub(crate) sm_count: u32,
    pub(crate) max_smem: u32,
    device_name: String,
    ordinal: usize,
    cc: (i32, i32),
}

impl CudaBackend {
    /// The backend on device `ordinal`, fp32 throughout (the parity path).
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        Self::with_precision(ordinal, Precision::F32)
    }

    /// The backend on device `ordinal` with the given precision.
    pub fn with_precision(ordinal: usize, precision: Precision) -> Result<Self, CudaError> {
        preflight()?;
        // cudarc panics where a library lacks a symbol it expects (a driver older than CUDA 13, say):
        // turn that into an error too, construction never panics.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::open(ordinal, precision))) {
            Ok(r) => r,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(CudaError::NoDevice {
                    ordinal,
                    detail: format!(
                        "the CUDA libraries failed to initialise ({msg}); a CUDA 13 driver (R580 or newer) is needed"
                    ),
                })
            }
        }
    }

    fn open(ordinal: usize, precision: Precision) -> Result<Self, CudaError> {
        let no_device = |detail: String| CudaError::NoDevice { ordinal, detail };
        let count = CudaContext::device_count().map_err(|e| no_device(format!("{e} (is there an NVIDIA GPU?)")))?;
        if ordinal as i32 >= count {
            return Err(no_device(format!("{count} CUDA device(s) visible")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| no_device(e.to_string()))?;
        // One stream, in order: cudarc's per-buffer event tracking is only needed across streams.
        // SAFETY: nothing is allocated through this context handle yet; all work goes to the one stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream()?;
        let cc = ctx.compute_capability()?;
        let sm_count = ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as u32;
        let max_smem = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
            .max(48 << 10) as u32;
        let device_name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let funcs = load_kernels(&ctx, (cc.0 * 10 + cc.1) as u32, max_smem)?;
        let blas = Blas::new(stream.clone(), cc.0)?;
        let flag = |v: &str| std::env::var(v).map(|v| v != "0" && !v.is_empty()).unwrap_or(false);
        let exec = Exec::Cuda(CudaExec {
            ctx,
            stream,
            funcs,
            blas,
            sync_each_launch: flag("ERNIE_FT_CUDA_SYNC"),
            poison: flag("ERNIE_FT_CUDA_POISON"),
        });
        Ok(Self {
            exec,
            precision,
            mem: Arc::new(MemCounter::default()),
            transfers: TransferCounter::default(),
            sm_count,
            max_smem,
            device_name,
            ordinal,
            cc,
        })
    }

    /// The backend on the host emulation of [`crate::emu`]: the kernel sources compiled by the host C++
    /// compiler, host memory for device memory, a reference GEMM for cuBLAS. For tests on machines without
    /// a GPU; slow. Fresh allocations are poisoned (NaN), so unwritten outputs are caught.
    #[doc(hidden)]
    pub fn emulated(precision: Precision) -> Result<Self, CudaError> {
        let emu = Emu::build(Kernel::NAMES).map_err(CudaError::Emulation)?;
        Ok(Self {
            exec: Exec::Emu(emu),
            precision,
            mem: Arc::new(MemCounter::default()),
            transfers: TransferCounter::default(),
            // Few "SMs": grid-stride loops then take several turns, as on a large input.
            sm_count: 1,
            max_smem: 48 << 10,
            device_name: "host emulation".into(),
            ordinal: 0,
            cc: (0, 0),
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }
    pub fn device_name(&self) -> &str {
        &self.device_name
    }
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }
    /// Host <-> device transfers since the backend was made; the difference of two readings counts what
    /// happened in between (a training step reads the device once: `crates/cuda/tests/transfers.rs`).
    pub fn transfers(&self) -> Transfers {
        self.transfers.get()
    }
    /// Waits for all enqueued work.
    pub fn synchronize(&self) {
        self.exec.synchronize();
    }
    /// The dtype op outputs are stored in.
    pub fn act_dtype(&self) -> DType {
        self.precision.act()
    }

    /// What `Backend::name` reports: device, architecture and precision.
    pub(crate) fn describe(&self) -> String {
        format!("cuda:{} {} (sm_{}{}, {:?})", self.ordinal, self.device_name, self.cc.0, self.cc.1, self.precision)
    }
}

/// Compiles every kernel source for compute capability `cc` and loads the modules: the function handles
/// in [`Kernel`] order.
fn load_kernels(ctx: &Arc<CudaContext>, cc: u32, max_smem: u32) -> Result<Vec<CudaFunction>, CudaError> {
    let archs = nvrtc::supported_archs()?;
    // Machine code for the device when NVRTC knows it; otherwise PTX for the newest architecture NVRTC
    // knows below it, which the driver compiles forward.
    let opts = if archs.contains(&cc) {
        Options::cubin(cc)
    } else {
        let best = archs.iter().copied().filter(|&a| a <= cc).max().ok_or_else(|| CudaError::NoDevice {
            ordinal: ctx.ordinal(),
            detail: format!("compute capability {cc} is older than anything this NVRTC targets ({archs:?})"),
        })?;
        Options { cc: best, target: Target::Ptx, ptxas_verbose: false, extra: Vec::new() }
    };
    // NVRTC is thread safe across programs: compile the sources in parallel.
    let compiled: Vec<Result<nvrtc::Compiled, NvrtcError>> = std::thread::scope(|s| {
        let handles: Vec<_> = kernels::SOURCES.iter().map(|src| s.spawn(|| nvrtc::compile(src, &opts))).collect();
        handles.into_iter().map(|h| h.join().expect("NVRTC compile thread panicked")).collect()
    });
    let mut map: HashMap<&'static str, CudaFunction> = HashMap::new();
    for (src, c) in kernels::SOURCES.iter().zip(compiled) {
        let c = c?;
        let ptx = match opts.target {
            Target::Cubin => Ptx::from_binary(c.image),
            Target::Ptx => {
                let text = String::from_utf8_lossy(&c.image).trim_end_matches('\0').to_string();
                Ptx::from_src(text)
            }
        };
        let module = ctx.load_module(ptx)?;
        for name in src.kernel_names() {
            map.insert(name, module.load_function(name)?);
        }
    }
    let mut funcs = Vec::with_capacity(Kernel::NAMES.len());
    for name in Kernel::NAMES {
        funcs.push(map.remove(name).ok_or(CudaError::MissingKernel(name))?);
    }
    // The row-cached kernels may use more than the default 48 KiB of dynamic shared memory.
    for k in [Kernel::ln_fwd, Kernel::attn_softmax_fwd, Kernel::attn_softmax_bwd] {
        let f = &funcs[k as usize];
        let static_smem = f.shared_size_bytes()?.max(0) as u32;
        f.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            (max_smem - static_smem) as i32,
        )?;
    }
    Ok(funcs)
}
