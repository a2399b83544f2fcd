//! [`CudaBackend`]: `ernie_tensor::Backend` on an NVIDIA GPU.
//!
//! One context and one stream per backend; every op enqueues its kernels and GEMMs on that stream and
//! returns without waiting (downloads, losses and `sum_squares` synchronise). Kernels are compiled by NVRTC
//! when the backend is made, for the device's own architecture, and their function handles kept in a table
//! indexed by kernel id (`exec::K`): no lookup per launch.
//!
//! The trait's methods return values, not `Result`s, as the CPU backend does: a CUDA error inside one of
//! them is a bug or a dead device, and panics with the failing call named. Only construction is fallible,
//! and it never panics: a missing driver, NVRTC, cuBLAS or GPU is an `Err` with a message saying what to do.
//! Set `ERNIE_FT_CUDA_SYNC=1` to synchronise after every launch, so an asynchronous fault is reported by
//! the kernel that caused it.

use crate::buf::{CudaBuf, CudaIds, DType, Mem, MemCounter, Precision};
use crate::emu::Emu;
use crate::exec::{CudaExec, Exec, K};
use crate::gemm::{Blas, Gemm, GemmError, Mat};
use crate::host::{block_starts, row_threads, segments};
use crate::kernels;
use crate::nvrtc::{self, NvrtcError, Options, Target};
use crate::params::{self as P, Tensor};
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{CudaContext, CudaFunction, DeviceRepr, DriverError};
use cudarc::nvrtc::Ptx;
use ernie_tensor::{AdamWStep, AttnShape, Backend, NoiseNorm, ParamSlot, RngStream, TokenBatch};
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
    NoLibrary {
        lib: &'static str,
        file: &'static str,
    },
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
            return Err(CudaError::NoLibrary {
                lib: "cuBLAS",
                file: "libcublas.so.13",
            });
        }
        if !cudarc::cublaslt::sys::is_culib_present() {
            return Err(CudaError::NoLibrary {
                lib: "cuBLASLt",
                file: "libcublasLt.so.13",
            });
        }
    }
    Ok(())
}

/// Rows per chunk of the deterministic column reductions (the CPU reference's RED_CHUNK).
const RED_CHUNK: usize = 64;
/// Elements per block of the multi-tensor kernels.
const MT_CHUNK: usize = 4096;
const SUMSQ_CHUNK: usize = 8192;
const NORM_CHUNK: usize = 16384;
/// Warps (= rows) per block of the attention and loss kernels (ATTN_WARPS / LOSS_WARPS in the sources).
const ROW_WARPS: usize = 4;
const THREADS: u32 = 256;

/// Bytes from the device as a vector of `T` (the byte vector need not be aligned for `T`).
fn pod_vec<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    let n = bytes.len() / std::mem::size_of::<T>();
    let mut v = vec![T::zeroed(); n];
    bytemuck::cast_slice_mut::<T, u8>(&mut v)
        .copy_from_slice(&bytes[..n * std::mem::size_of::<T>()]);
    v
}

fn need(have: usize, want: usize, what: &str) {
    assert!(
        have >= want,
        "ernie-cuda: {what}: buffer holds {have} elements, the op needs {want}"
    );
}

/// The CUDA backend. See the crate docs for the precision model and [`crate::CudaBuf`] for storage.
pub struct CudaBackend {
    exec: Exec,
    precision: Precision,
    mem: Arc<MemCounter>,
    sm_count: u32,
    max_smem: u32,
    device_name: String,
    ordinal: usize,
    cc: (i32, i32),
}

/// Where an attention operand lives: `[batch*seq, heads*head_dim]` activations or `[batch, heads, seq,
/// seq]` scores.
#[derive(Clone, Copy)]
enum Lay {
    Act,
    Score,
}

#[derive(Clone, Copy)]
struct AttnMat {
    m: Mat,
    lay: Lay,
}

impl AttnMat {
    fn new(ptr: u64, dtype: DType, lay: Lay) -> Self {
        AttnMat { m: Mat { ptr, dtype }, lay }
    }
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
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::open(ordinal, precision)
        })) {
            Ok(r) => r,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(CudaError::NoDevice { ordinal, detail: format!("the CUDA libraries failed to initialise ({msg}); a CUDA 13 driver (R580 or newer) is needed") })
            }
        }
    }

    fn open(ordinal: usize, precision: Precision) -> Result<Self, CudaError> {
        let no_device = |detail: String| CudaError::NoDevice { ordinal, detail };
        let count = CudaContext::device_count()
            .map_err(|e| no_device(format!("{e} (is there an NVIDIA GPU?)")))?;
        if ordinal as i32 >= count {
            return Err(no_device(format!("{count} CUDA device(s) visible")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| no_device(e.to_string()))?;
        // One stream, in order: cudarc's per-buffer event tracking is only needed across streams.
        // SAFETY: nothing is allocated through this context handle yet; all work goes to the one stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream()?;
        let cc = ctx.compute_capability()?;
        let sm_count = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?
            .max(1) as u32;
        let max_smem = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
            .max(48 << 10) as u32;
        let device_name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let funcs = load_kernels(&ctx, (cc.0 * 10 + cc.1) as u32, max_smem)?;
        let blas = Blas::new(stream.clone(), cc.0)?;
        let flag = |v: &str| {
            std::env::var(v)
                .map(|v| v != "0" && !v.is_empty())
                .unwrap_or(false)
        };
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
        let emu = Emu::build(K::NAMES).map_err(CudaError::Emulation)?;
        Ok(Self {
            exec: Exec::Emu(emu),
            precision,
            mem: Arc::new(MemCounter::default()),
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
    /// Whether this is the host emulation rather than a GPU.
    pub fn is_emulated(&self) -> bool {
        matches!(self.exec, Exec::Emu(_))
    }
    /// Waits for all enqueued work.
    pub fn synchronize(&self) {
        self.exec.synchronize();
    }
    /// The dtype op outputs are stored in.
    pub fn act_dtype(&self) -> DType {
        self.precision.act()
    }
    /// A copy of `buf` in `dtype` (rounded when narrowing).
    pub fn to_dtype(&self, buf: &CudaBuf, dtype: DType) -> CudaBuf {
        let mut out = self.alloc(dtype, buf.len);
        self.cast_into(buf.arg(), out.arg_mut(), buf.len);
        out
    }

    /// The bf16 copy a buffer holds for the GEMMs, if any (tests check that AdamW refreshes it).
    pub fn download_shadow(&self, buf: &CudaBuf) -> Option<Vec<f32>> {
        let s = buf.shadow.get()?;
        let bytes = self.exec.download(s, buf.len * 2);
        let bits: Vec<u16> = pod_vec(&bytes);
        Some(
            bits.into_iter()
                .map(|b| half::bf16::from_bits(b).to_f32())
                .collect(),
        )
    }

    /// Makes the bf16 copy of an fp32 buffer now (as its first use in a GEMM would), under
    /// Precision::Bf16; no-op otherwise.
    pub fn prepare_gemm_operand(&self, buf: &CudaBuf) {
        let _ = self.operand(buf);
    }

    // ------------------------------------------------------------------ plumbing
    fn launch<T: DeviceRepr>(&self, k: K, grid: (u32, u32, u32), block: u32, smem: u32, p: T) {
        self.exec.launch(k, grid, block, smem, &p);
    }

    /// `y = f(x)` elementwise in the activation type.
    fn unary(&self, k: K, x: &CudaBuf) -> CudaBuf {
        let mut y = self.alloc(self.act(), x.len);
        let p = P::UnaryParams { x: x.arg(), y: y.arg_mut(), n: x.len as u64 };
        self.launch(k, self.grid(x.len), THREADS, 0, p);
        y
    }

    /// `out = f(a, b)` elementwise in the activation type (`what` names `b` in a length mismatch).
    fn binary(&self, k: K, a: &CudaBuf, b: &CudaBuf, what: &str) -> CudaBuf {
        need(b.len, a.len, what);
        let mut out = self.alloc(self.act(), a.len);
        let p = P::BinaryParams { a: a.arg(), b: b.arg(), out: out.arg_mut(), n: a.len as u64 };
        self.launch(k, self.grid(a.len), THREADS, 0, p);
        out
    }

    /// One warp per row, ROW_WARPS rows per block (the loss kernels).
    fn launch_rows<T: DeviceRepr>(&self, k: K, rows: usize, p: T) {
        self.launch(k, (rows.div_ceil(ROW_WARPS) as u32, 1, 1), (ROW_WARPS * 32) as u32, 0, p);
    }

    /// A grid-stride grid for n elements.
    fn grid(&self, n: usize) -> (u32, u32, u32) {
        let blocks = n
            .div_ceil(THREADS as usize)
            .min(self.sm_count as usize * 32);
        (blocks as u32, 1, 1)
    }

    fn alloc(&self, dtype: DType, len: usize) -> CudaBuf {
        CudaBuf::new(
            self.exec.alloc(len * dtype.size(), false),
            dtype,
            len,
            self.mem.clone(),
        )
    }

    fn alloc_zeroed(&self, dtype: DType, len: usize) -> CudaBuf {
        CudaBuf::new(
            self.exec.alloc(len * dtype.size(), true),
            dtype,
            len,
            self.mem.clone(),
        )
    }

    fn act(&self) -> DType {
        self.precision.act()
    }

    /// Scratch for `len` elements of `T` (written by a kernel before it is read).
    fn tmp<T>(&self, len: usize) -> Mem {
        self.exec.alloc(len * std::mem::size_of::<T>(), false)
    }

    fn upload_u32(&self, v: &[u32]) -> Mem {
        self.exec.upload(bytemuck::cast_slice(v))
    }

    fn upload_table<T: bytemuck::Pod>(&self, v: &[T]) -> Mem {
        self.exec.upload(bytemuck::cast_slice(v))
    }

    fn download_f32(&self, m: &Mem, n: usize) -> Vec<f32> {
        pod_vec(&self.exec.download(m, n * 4))
    }

    fn download_f64(&self, m: &Mem, n: usize) -> Vec<f64> {
        pod_vec(&self.exec.download(m, n * 8))
    }

    fn cast_into(&self, x: Tensor, y: Tensor, n: usize) {
        self.launch(
            K::cast,
            self.grid(n),
            THREADS,
            0,
            P::UnaryParams { x, y, n: n as u64 },
        );
    }

    fn ftensor(m: &Mem) -> Tensor {
        Tensor {
            ptr: m.ptr(),
            dtype: DType::F32.tag(),
            _pad: 0,
        }
    }

    /// `buf` as a GEMM operand in the compute dtype: itself, its bf16 shadow (made now if missing), or an
    /// fp32 temporary (a bf16 buffer under Precision::F32) returned alongside to keep it alive.
    fn operand(&self, buf: &CudaBuf) -> (Mat, Option<Mem>) {
        match (self.precision, buf.dtype) {
            (Precision::F32, DType::F32) | (Precision::Bf16, DType::Bf16) => (
                Mat {
                    ptr: buf.ptr(),
                    dtype: buf.dtype,
                },
                None,
            ),
            (Precision::Bf16, DType::F32) => {
                let s = buf.shadow.get_or_init(|| {
                    let s = self.tmp::<u16>(buf.len);
                    self.cast_into(
                        buf.arg(),
                        Tensor {
                            ptr: s.ptr(),
                            dtype: DType::Bf16.tag(),
                            _pad: 0,
                        },
                        buf.len,
                    );
                    buf.counter.add(s.bytes());
                    s
                });
                (
                    Mat {
                        ptr: s.ptr(),
                        dtype: DType::Bf16,
                    },
                    None,
                )
            }
            (Precision::F32, DType::Bf16) => {
                let t = self.tmp::<f32>(buf.len);
                self.cast_into(buf.arg(), Self::ftensor(&t), buf.len);
                (
                    Mat {
                        ptr: t.ptr(),
                        dtype: DType::F32,
                    },
                    Some(t),
                )
            }
        }
    }

    fn run_gemm(&self, g: Gemm) {
        if g.m == 0 || g.n == 0 || g.k == 0 {
            return; // k == 0: outputs were zero-initialised (or hold the bias) by the caller
        }
        self.exec.gemm(&g);
    }

    /// One product per (batch, head): loops over the smaller of the two and batches the other with a
    /// constant stride (cublasGemmStridedBatchedEx).
    #[allow(clippy::too_many_arguments)]
    fn attn_gemm(
        &self,
        s: AttnShape,
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: AttnMat,
        lda: usize,
        b: AttnMat,
        ldb: usize,
        c: AttnMat,
        ldc: usize,
    ) {
        let (nb, nh, l, d) = (s.batch, s.heads, s.seq, s.head_dim);
        if nb == 0 || nh == 0 || m == 0 || n == 0 || k == 0 {
            return;
        }
        let hd = nh * d;
        let off = |lay: Lay, bi: usize, hi: usize| match lay {
            Lay::Act => bi * l * hd + hi * d,
            Lay::Score => (bi * nh + hi) * l * l,
        };
        let stride_b = |lay: Lay| match lay {
            Lay::Act => l * hd,
            Lay::Score => nh * l * l,
        };
        let stride_h = |lay: Lay| match lay {
            Lay::Act => d,
            Lay::Score => l * l,
        };
        let at = |x: AttnMat, e: usize| Mat {
            ptr: x.m.ptr + (e * x.m.dtype.size()) as u64,
            dtype: x.m.dtype,
        };
        let g = |bi: usize, hi: usize| Gemm {
            ta,
            tb,
            m,
            n,
            k,
            a: at(a, off(a.lay, bi, hi)),
            lda,
            b: at(b, off(b.lay, bi, hi)),
            ldb,
            c: at(c, off(c.lay, bi, hi)),
            ldc,
            beta: 0.0,
        };
        if nh <= nb {
            for hi in 0..nh {
                self.exec.gemm_batched(
                    &g(0, hi),
                    stride_b(a.lay),
                    stride_b(b.lay),
                    stride_b(c.lay),
                    nb,
                );
            }
        } else {
            for bi in 0..nb {
                self.exec.gemm_batched(
                    &g(bi, 0),
                    stride_h(a.lay),
                    stride_h(b.lay),
                    stride_h(c.lay),
                    nh,
                );
            }
        }
    }

    /// `d[rows[t]] += dy[t]` (rows of `cols`) without atomics: see `segment_add` in embedding.cu.
    fn segment_add(&self, d: &mut CudaBuf, dy: &CudaBuf, rows: &[u32], cols: usize, what: &str) {
        if rows.is_empty() || cols == 0 {
            return;
        }
        let table_rows = d.len / cols;
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= table_rows) {
            panic!("ernie-cuda: {what}: row {bad} out of range for a table of {table_rows} rows");
        }
        need(dy.len, rows.len() * cols, what);
        let (perm, start, seg_row) = segments(rows);
        let nseg = seg_row.len();
        let mut packed = perm;
        let off_start = packed.len();
        packed.extend_from_slice(&start);
        let off_row = packed.len();
        packed.extend_from_slice(&seg_row);
        let dev = self.upload_u32(&packed);
        let base = dev.ptr();
        let p = P::SegmentAddParams {
            d: d.arg_mut(),
            dy: dy.arg(),
            perm: base,
            seg_start: base + 4 * off_start as u64,
            seg_row: base + 4 * off_row as u64,
            nseg: nseg as u64,
            cols: cols as u64,
        };
        let ytiles = cols.div_ceil(THREADS as usize);
        assert!(
            ytiles <= 65535,
            "ernie-cuda: {what}: {cols} columns is too many"
        );
        self.launch(
            K::segment_add,
            (nseg as u32, ytiles as u32, 1),
            THREADS,
            0,
            p,
        );
    }

    /// `out[j] += colsum(partials)` for the column-reduction kernels.
    fn col_finish(
        &self,
        partial: &Mem,
        chunks: usize,
        width: usize,
        split: usize,
        out0: Tensor,
        out1: Tensor,
    ) {
        let p = P::ColFinishParams {
            partial: partial.ptr(),
            out0,
            out1,
            chunks: chunks as u64,
            width: width as u64,
            split: split as u64,
        };
        self.launch(
            K::col_finish,
            (width.div_ceil(THREADS as usize) as u32, 1, 1),
            THREADS,
            0,
            p,
        );
    }

    fn check_ids(ids: &CudaIds, n: usize, limit: usize, what: &str) {
        need(ids.len(), n, what);
        if let Some(&bad) = ids.host[..n].iter().find(|&&v| v as usize >= limit) {
            panic!("ernie-cuda: {what}: id {bad} out of range for a table of {limit} rows");
        }
    }

    fn row_smem(&self, floats: usize, what: &str) -> u32 {
        let bytes = floats * 4;
        assert!(
            bytes + 1024 <= self.max_smem as usize,
            "ernie-cuda: {what}: a row of {floats} floats needs {bytes} bytes of shared memory, the device has {}",
            self.max_smem
        );
        bytes as u32
    }

    fn loss_rows(&self, loss: &Mem, rows: usize) -> Vec<f64> {
        self.download_f32(loss, rows)
            .into_iter()
            .map(|x| x as f64)
            .collect()
    }
}

fn load_kernels(
    ctx: &Arc<CudaContext>,
    cc: u32,
    max_smem: u32,
) -> Result<Vec<CudaFunction>, CudaError> {
    let archs = nvrtc::supported_archs()?;
    // Machine code for the device when NVRTC knows it; otherwise PTX for the newest architecture NVRTC
    // knows below it, which the driver compiles forward.
    let opts = if archs.contains(&cc) {
        Options::cubin(cc)
    } else {
        let best = archs
            .iter()
            .copied()
            .filter(|&a| a <= cc)
            .max()
            .ok_or_else(|| CudaError::NoDevice {
                ordinal: ctx.ordinal(),
                detail: format!(
                    "compute capability {cc} is older than anything this NVRTC targets ({archs:?})"
                ),
            })?;
        Options {
            cc: best,
            target: Target::Ptx,
            ptxas_verbose: false,
            extra: Vec::new(),
        }
    };
    // NVRTC is thread safe across programs: compile the sources in parallel.
    let compiled: Vec<Result<nvrtc::Compiled, NvrtcError>> = std::thread::scope(|s| {
        let handles: Vec<_> = kernels::SOURCES
            .iter()
            .map(|src| s.spawn(|| nvrtc::compile(src, &opts)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("NVRTC compile thread panicked"))
            .collect()
    });
    let mut map: HashMap<&'static str, CudaFunction> = HashMap::new();
    for (src, c) in kernels::SOURCES.iter().zip(compiled) {
        let c = c?;
        let ptx = match opts.target {
            Target::Cubin => Ptx::from_binary(c.image),
            Target::Ptx => {
                let text = String::from_utf8_lossy(&c.image)
                    .trim_end_matches('\0')
                    .to_string();
                Ptx::from_src(text)
            }
        };
        let module = ctx.load_module(ptx)?;
        for name in src.kernel_names() {
            map.insert(name, module.load_function(name)?);
        }
    }
    let mut funcs = Vec::with_capacity(K::NAMES.len());
    for name in K::NAMES {
        funcs.push(map.remove(name).ok_or(CudaError::MissingKernel(name))?);
    }
    // The row-cached kernels may use more than the default 48 KiB of dynamic shared memory.
    for k in [K::ln_fwd, K::attn_softmax_fwd, K::attn_softmax_bwd] {
        let f = &funcs[k as usize];
        let static_smem = f.shared_size_bytes()?.max(0) as u32;
        f.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            (max_smem - static_smem) as i32,
        )?;
    }
    Ok(funcs)
}

impl Backend for CudaBackend {
    type Buf = CudaBuf;
    type Ids = CudaIds;

    fn name(&self) -> String {
        format!(
            "cuda:{} {} (sm_{}{}, {:?})",
            self.ordinal, self.device_name, self.cc.0, self.cc.1, self.precision
        )
    }

    // ------------------------------------------------------------------ memory
    fn upload(&self, data: &[f32]) -> CudaBuf {
        CudaBuf::new(
            self.exec.upload(bytemuck::cast_slice(data)),
            DType::F32,
            data.len(),
            self.mem.clone(),
        )
    }
    fn upload_f64(&self, data: &[f64]) -> CudaBuf {
        let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        self.upload(&v)
    }
    fn download(&self, buf: &CudaBuf) -> Vec<f32> {
        match buf.dtype {
            DType::F32 => self.download_f32(&buf.mem, buf.len),
            DType::Bf16 => {
                let bits: Vec<u16> = pod_vec(&self.exec.download(&buf.mem, buf.len * 2));
                bits.into_iter()
                    .map(|b| half::bf16::from_bits(b).to_f32())
                    .collect()
            }
        }
    }
    fn download_f64(&self, buf: &CudaBuf) -> Vec<f64> {
        self.download(buf).into_iter().map(|x| x as f64).collect()
    }
    fn upload_ids(&self, ids: &[u32]) -> CudaIds {
        CudaIds {
            dev: self.upload_u32(ids),
            host: ids.to_vec(),
        }
    }
    fn zeros(&self, len: usize) -> CudaBuf {
        self.alloc_zeroed(DType::F32, len)
    }
    fn len(&self, buf: &CudaBuf) -> usize {
        buf.len
    }
    fn copy(&self, buf: &CudaBuf) -> CudaBuf {
        self.to_dtype(buf, buf.dtype)
    }
    fn peak_bytes(&self) -> usize {
        self.mem.peak()
    }
    fn reset_peak(&self) {
        self.mem.reset_peak()
    }

    // ------------------------------------------------------------------ embeddings
    fn embed_sum(
        &self,
        t: &TokenBatch<CudaIds>,
        word: &CudaBuf,
        pos: &CudaBuf,
        typ: &CudaBuf,
        task: Option<&CudaBuf>,
    ) -> CudaBuf {
        let (l, h) = (t.shape.seq, t.shape.hidden);
        let tokens = t.shape.batch * l;
        let mut out = self.alloc(self.act(), tokens * h);
        if tokens == 0 || h == 0 {
            return out;
        }
        Self::check_ids(&t.ids, tokens, word.len / h, "embed_sum: word ids");
        Self::check_ids(&t.type_ids, tokens, typ.len / h, "embed_sum: type ids");
        need(pos.len, l * h, "embed_sum: position table");
        if let Some(task) = task {
            Self::check_ids(&t.task_ids, tokens, task.len / h, "embed_sum: task ids");
        }
        let p = P::EmbedFwdParams {
            out: out.arg_mut(),
            word: word.arg(),
            pos: pos.arg(),
            typ: typ.arg(),
            task: task.map(|x| x.arg()).unwrap_or(Tensor::NONE),
            ids: t.ids.ptr(),
            type_ids: t.type_ids.ptr(),
            task_ids: if task.is_some() { t.task_ids.ptr() } else { 0 },
            tokens: tokens as u64,
            seq: l as u64,
            hidden: h as u64,
        };
        self.launch(K::embed_fwd, self.grid(tokens * h), THREADS, 0, p);
        out
    }

    fn embed_sum_bwd(
        &self,
        t: &TokenBatch<CudaIds>,
        dy: &CudaBuf,
        dword: &mut CudaBuf,
        dpos: &mut CudaBuf,
        dtyp: &mut CudaBuf,
        dtask: Option<&mut CudaBuf>,
    ) {
        let (l, h) = (t.shape.seq, t.shape.hidden);
        let tokens = t.shape.batch * l;
        if tokens == 0 || h == 0 {
            return;
        }
        need(t.ids.len(), tokens, "embed_sum_bwd: ids");
        need(t.type_ids.len(), tokens, "embed_sum_bwd: type ids");
        self.segment_add(
            dword,
            dy,
            &t.ids.host[..tokens],
            h,
            "embed_sum_bwd: word table",
        );
        let pos_rows: Vec<u32> = (0..tokens).map(|i| (i % l) as u32).collect();
        self.segment_add(dpos, dy, &pos_rows, h, "embed_sum_bwd: position table");
        self.segment_add(
            dtyp,
            dy,
            &t.type_ids.host[..tokens],
            h,
            "embed_sum_bwd: type table",
        );
        if let Some(dtask) = dtask {
            need(t.task_ids.len(), tokens, "embed_sum_bwd: task ids");
            self.segment_add(
                dtask,
                dy,
                &t.task_ids.host[..tokens],
                h,
                "embed_sum_bwd: task table",
            );
        }
    }

    // ------------------------------------------------------------------ layer norm
    fn layer_norm(
        &self,
        x: &CudaBuf,
        residual: Option<&CudaBuf>,
        w: &CudaBuf,
        b: &CudaBuf,
        eps: f64,
        cols: usize,
    ) -> (CudaBuf, CudaBuf, CudaBuf, CudaBuf) {
        assert!(cols > 0, "ernie-cuda: layer_norm: cols = 0");
        let rows = x.len / cols;
        let n = rows * cols;
        need(w.len, cols, "layer_norm: weight");
        need(b.len, cols, "layer_norm: bias");
        if let Some(r) = residual {
            need(r.len, n, "layer_norm: residual");
        }
        let mut s = self.alloc(self.act(), if residual.is_some() { n } else { 0 });
        let mut y = self.alloc(self.act(), n);
        let mean = self.alloc(DType::F32, rows);
        let rstd = self.alloc(DType::F32, rows);
        let p = P::LnFwdParams {
            x: x.arg(),
            res: residual.map(|r| r.arg()).unwrap_or(Tensor::NONE),
            w: w.arg(),
            b: b.arg(),
            s: if residual.is_some() {
                s.arg_mut()
            } else {
                Tensor::NONE
            },
            y: y.arg_mut(),
            mean: mean.ptr(),
            rstd: rstd.ptr(),
            rows: rows as u64,
            cols: cols as u64,
            eps: eps as f32,
            _pad: 0,
        };
        let smem = self.row_smem(cols, "layer_norm");
        self.launch(K::ln_fwd, (rows as u32, 1, 1), row_threads(cols), smem, p);
        (s, y, mean, rstd)
    }

    fn layer_norm_bwd(
        &self,
        dy: &CudaBuf,
        s: &CudaBuf,
        w: &CudaBuf,
        mean: &CudaBuf,
        rstd: &CudaBuf,
        cols: usize,
        dw: &mut CudaBuf,
        db: &mut CudaBuf,
    ) -> CudaBuf {
        assert!(cols > 0, "ernie-cuda: layer_norm_bwd: cols = 0");
        let rows = dy.len / cols;
        let n = rows * cols;
        need(s.len, n, "layer_norm_bwd: input");
        need(mean.len, rows, "layer_norm_bwd: mean");
        need(rstd.len, rows, "layer_norm_bwd: rstd");
        need(w.len, cols, "layer_norm_bwd: weight");
        need(dw.len, cols, "layer_norm_bwd: dw");
        need(db.len, cols, "layer_norm_bwd: db");
        let mut dx = self.alloc(self.act(), n);
        if rows == 0 {
            return dx;
        }
        let p = P::LnBwdParams {
            dy: dy.arg(),
            s: s.arg(),
            w: w.arg(),
            dx: dx.arg_mut(),
            mean: mean.ptr(),
            rstd: rstd.ptr(),
            rows: rows as u64,
            cols: cols as u64,
        };
        self.launch(K::ln_bwd_dx, (rows as u32, 1, 1), row_threads(cols), 0, p);
        let chunks = rows.div_ceil(RED_CHUNK);
        assert!(
            chunks <= 65535,
            "ernie-cuda: layer_norm_bwd: too many rows ({rows})"
        );
        let partial = self.tmp::<f32>(chunks * 2 * cols);
        let pp = P::LnWbPartialParams {
            dy: dy.arg(),
            s: s.arg(),
            mean: mean.ptr(),
            rstd: rstd.ptr(),
            partial: partial.ptr(),
            rows: rows as u64,
            cols: cols as u64,
            chunk_rows: RED_CHUNK as u64,
        };
        self.launch(
            K::ln_wb_partial,
            (cols.div_ceil(THREADS as usize) as u32, chunks as u32, 1),
            THREADS,
            0,
            pp,
        );
        self.col_finish(&partial, chunks, 2 * cols, cols, dw.arg_mut(), db.arg_mut());
        dx
    }

    // ------------------------------------------------------------------ linear
    fn linear(
        &self,
        x: &CudaBuf,
        w: &CudaBuf,
        b: Option<&CudaBuf>,
        m: usize,
        n: usize,
        k: usize,
    ) -> CudaBuf {
        need(x.len, m * k, "linear: x");
        need(w.len, n * k, "linear: w");
        let mut y = if k == 0 && b.is_none() {
            self.alloc_zeroed(self.act(), m * n)
        } else {
            self.alloc(self.act(), m * n)
        };
        if let Some(b) = b {
            need(b.len, n, "linear: bias");
            let p = P::BiasRowsParams {
                bias: b.arg(),
                y: y.arg_mut(),
                rows: m as u64,
                cols: n as u64,
            };
            self.launch(K::bias_rows, self.grid(m * n), THREADS, 0, p);
        }
        let (wa, _hw) = self.operand(w);
        let (xb, _hx) = self.operand(x);
        let c = Mat {
            ptr: y.arg_mut().ptr,
            dtype: y.dtype(),
        };
        // y^T (n x m, col-major) = w (k x n stored, transposed) * x^T (k x m)
        self.run_gemm(Gemm {
            ta: true,
            tb: false,
            m: n,
            n: m,
            k,
            a: wa,
            lda: k,
            b: xb,
            ldb: k,
            c,
            ldc: n,
            beta: if b.is_some() { 1.0 } else { 0.0 },
        });
        y
    }

    fn linear_bwd_input(&self, dy: &CudaBuf, w: &CudaBuf, m: usize, n: usize, k: usize) -> CudaBuf {
        need(dy.len, m * n, "linear_bwd_input: dy");
        need(w.len, n * k, "linear_bwd_input: w");
        let mut dx = if n == 0 {
            self.alloc_zeroed(self.act(), m * k)
        } else {
            self.alloc(self.act(), m * k)
        };
        let (wa, _hw) = self.operand(w);
        let (db, _hd) = self.operand(dy);
        let c = Mat {
            ptr: dx.arg_mut().ptr,
            dtype: dx.dtype(),
        };
        // dx^T (k x m) = w^T-stored (k x n) * dy^T (n x m)
        self.run_gemm(Gemm {
            ta: false,
            tb: false,
            m: k,
            n: m,
            k: n,
            a: wa,
            lda: k,
            b: db,
            ldb: n,
            c,
            ldc: k,
            beta: 0.0,
        });
        dx
    }

    fn linear_bwd_params(
        &self,
        dy: &CudaBuf,
        x: &CudaBuf,
        m: usize,
        n: usize,
        k: usize,
        dw: &mut CudaBuf,
        db: Option<&mut CudaBuf>,
    ) {
        need(dy.len, m * n, "linear_bwd_params: dy");
        need(x.len, m * k, "linear_bwd_params: x");
        need(dw.len, n * k, "linear_bwd_params: dw");
        let (xa, _hx) = self.operand(x);
        let (dyb, _hd) = self.operand(dy);
        let c = Mat {
            ptr: dw.arg_mut().ptr,
            dtype: dw.dtype(),
        };
        // dw^T (k x n) += x^T (k x m) * dy (m x n)
        self.run_gemm(Gemm {
            ta: false,
            tb: true,
            m: k,
            n,
            k: m,
            a: xa,
            lda: k,
            b: dyb,
            ldb: n,
            c,
            ldc: k,
            beta: 1.0,
        });
        if let Some(db) = db {
            need(db.len, n, "linear_bwd_params: db");
            if m == 0 || n == 0 {
                return;
            }
            let chunks = m.div_ceil(RED_CHUNK);
            assert!(
                chunks <= 65535,
                "ernie-cuda: linear_bwd_params: too many rows ({m})"
            );
            let partial = self.tmp::<f32>(chunks * n);
            let p = P::ColSumPartialParams {
                x: dy.arg(),
                partial: partial.ptr(),
                rows: m as u64,
                cols: n as u64,
                chunk_rows: RED_CHUNK as u64,
            };
            self.launch(
                K::colsum_partial,
                (n.div_ceil(THREADS as usize) as u32, chunks as u32, 1),
                THREADS,
                0,
                p,
            );
            self.col_finish(&partial, chunks, n, n, db.arg_mut(), Tensor::NONE);
        }
    }

    // ------------------------------------------------------------------ activations, dropout
    fn gelu(&self, x: &CudaBuf) -> CudaBuf {
        self.unary(K::gelu_fwd, x)
    }
    fn gelu_bwd(&self, dy: &CudaBuf, x: &CudaBuf) -> CudaBuf {
        self.binary(K::gelu_bwd, dy, x, "gelu_bwd: x")
    }
    fn tanh(&self, x: &CudaBuf) -> CudaBuf {
        self.unary(K::tanh_fwd, x)
    }
    fn tanh_bwd(&self, dy: &CudaBuf, y: &CudaBuf) -> CudaBuf {
        self.binary(K::tanh_bwd, dy, y, "tanh_bwd: y")
    }
    fn dropout(&self, x: &CudaBuf, p: f32, rng: RngStream) -> CudaBuf {
        let mut y = self.alloc(self.act(), x.len);
        if p <= 0.0 {
            self.cast_into(x.arg(), y.arg_mut(), x.len);
            return y;
        }
        let params = P::DropoutParams {
            x: x.arg(),
            y: y.arg_mut(),
            rng: P::Rng::from(rng),
            n: x.len as u64,
            per_block: 0,
            p,
            scale: (1.0 / (1.0 - p as f64)) as f32,
        };
        self.launch(
            K::dropout_fwd,
            self.grid(x.len.div_ceil(4) + 1),
            THREADS,
            0,
            params,
        );
        y
    }

    // ------------------------------------------------------------------ attention
    fn attention(
        &self,
        a: AttnShape,
        q: &CudaBuf,
        k: &CudaBuf,
        v: &CudaBuf,
        key_mask: &CudaIds,
        delta: Option<&CudaBuf>,
        dropout_p: f32,
        rng: RngStream,
    ) -> (CudaBuf, CudaBuf) {
        let (l, d, hd) = (a.seq, a.head_dim, a.hidden());
        let n_act = a.batch * l * hd;
        let n_sc = a.score_len();
        need(q.len, n_act, "attention: q");
        need(k.len, n_act, "attention: k");
        need(v.len, n_act, "attention: v");
        need(key_mask.len(), a.batch * l, "attention: key mask");
        if let Some(dl) = delta {
            need(dl.len, n_sc, "attention: delta");
        }
        let act = self.act();
        if n_sc == 0 || d == 0 {
            return (self.alloc_zeroed(act, n_act), self.alloc_zeroed(act, n_sc));
        }
        let mut ctx = self.alloc(act, n_act);
        let mut probs = self.alloc(act, n_sc);
        let (qm, _hq) = self.operand(q);
        let (km, _hk) = self.operand(k);
        let (vm, _hv) = self.operand(v);
        let scores = self.tmp::<f32>(n_sc);
        let sc = AttnMat::new(scores.ptr(), DType::F32, Lay::Score);
        let act_mat = |m: Mat| AttnMat { m, lay: Lay::Act };
        // scores^T per head (col-major L x L) = k_h (d x L stored, transposed) * q_h (d x L)
        self.attn_gemm(
            a,
            true,
            false,
            l,
            l,
            d,
            act_mat(km),
            hd,
            act_mat(qm),
            hd,
            sc,
            l,
        );

        let mut dropped = (dropout_p > 0.0).then(|| self.alloc(act, n_sc));
        let p = P::AttnFwdParams {
            scores: scores.ptr(),
            mask: key_mask.ptr(),
            delta: delta.map(|x| x.arg()).unwrap_or(Tensor::NONE),
            probs: probs.arg_mut(),
            dropped: dropped
                .as_mut()
                .map(|x| x.arg_mut())
                .unwrap_or(Tensor::NONE),
            rng: P::Rng::from(rng),
            batch: a.batch as u64,
            heads: a.heads as u64,
            seq: l as u64,
            scale: (1.0 / (d as f64).sqrt()) as f32,
            p: dropout_p,
            keep_scale: if dropout_p > 0.0 {
                (1.0 / (1.0 - dropout_p as f64)) as f32
            } else {
                1.0
            },
            _pad: 0,
        };
        let rows = a.batch * a.heads * l;
        let smem = self.row_smem(ROW_WARPS * l, "attention");
        self.launch(
            K::attn_softmax_fwd,
            (rows.div_ceil(ROW_WARPS) as u32, 1, 1),
            (ROW_WARPS * 32) as u32,
            smem,
            p,
        );

        let pm = dropped.as_ref().unwrap_or(&probs);
        let pmat = AttnMat::new(pm.ptr(), act, Lay::Score);
        let cm = AttnMat::new(ctx.arg_mut().ptr, act, Lay::Act);
        // ctx_h^T (d x L) = v_h (d x L) * P^T-stored (L x L)
        self.attn_gemm(a, false, false, d, l, l, act_mat(vm), hd, pmat, l, cm, hd);
        (ctx, probs)
    }

    fn attention_bwd(
        &self,
        a: AttnShape,
        dctx: &CudaBuf,
        q: &CudaBuf,
        k: &CudaBuf,
        v: &CudaBuf,
        probs: &CudaBuf,
        dropout_p: f32,
        rng: RngStream,
        want_dscores: bool,
    ) -> (CudaBuf, CudaBuf, CudaBuf, Option<CudaBuf>) {
        let (l, d, hd) = (a.seq, a.head_dim, a.hidden());
        let n_act = a.batch * l * hd;
        let n_sc = a.score_len();
        need(dctx.len, n_act, "attention_bwd: dctx");
        need(q.len, n_act, "attention_bwd: q");
        need(k.len, n_act, "attention_bwd: k");
        need(v.len, n_act, "attention_bwd: v");
        need(probs.len, n_sc, "attention_bwd: probs");
        let act = self.act();
        if n_sc == 0 || d == 0 {
            let z = || self.alloc_zeroed(act, n_act);
            return (
                z(),
                z(),
                z(),
                want_dscores.then(|| self.alloc_zeroed(act, n_sc)),
            );
        }
        let (mut dq, mut dk, mut dv) = (
            self.alloc(act, n_act),
            self.alloc(act, n_act),
            self.alloc(act, n_act),
        );
        let mut dscores = want_dscores.then(|| self.alloc(act, n_sc));
        let (dcm, _h0) = self.operand(dctx);
        let (qm, _h1) = self.operand(q);
        let (km, _h2) = self.operand(k);
        let (vm, _h3) = self.operand(v);
        let act_mat = |m: Mat| AttnMat { m, lay: Lay::Act };
        let keep_scale = if dropout_p > 0.0 {
            (1.0 / (1.0 - dropout_p as f64)) as f32
        } else {
            1.0
        };
        let rngp = P::Rng::from(rng);

        // The dropped probabilities of the forward, regenerated from the same streams.
        let (pmat, _hold_pd, _hold_p) = if dropout_p > 0.0 {
            let mut pd = self.alloc(act, n_sc);
            let dp = P::DropoutParams {
                x: probs.arg(),
                y: pd.arg_mut(),
                rng: rngp,
                n: n_sc as u64,
                per_block: (l * l) as u64,
                p: dropout_p,
                scale: keep_scale,
            };
            self.launch(K::dropout_fwd, self.grid(n_sc.div_ceil(4)), THREADS, 0, dp);
            (
                Mat {
                    ptr: pd.ptr(),
                    dtype: act,
                },
                Some(pd),
                None,
            )
        } else {
            let (pm, hold) = self.operand(probs);
            (pm, None, hold)
        };
        let pmat = AttnMat {
            m: pmat,
            lay: Lay::Score,
        };
        // dv_h^T (d x L) = dctx_h (d x L) * P-stored^T
        let dvm = AttnMat::new(dv.arg_mut().ptr, act, Lay::Act);
        self.attn_gemm(a, false, true, d, l, l, act_mat(dcm), hd, pmat, l, dvm, hd);
        // dP^T (L x L) = v_h^T-stored (transposed) * dctx_h
        let dp = self.tmp::<f32>(n_sc);
        let dpm = AttnMat::new(dp.ptr(), DType::F32, Lay::Score);
        self.attn_gemm(
            a,
            true,
            false,
            l,
            l,
            d,
            act_mat(vm),
            hd,
            act_mat(dcm),
            hd,
            dpm,
            l,
        );

        let mut ds = self.alloc(act, n_sc);
        let p = P::AttnBwdParams {
            dp: dp.ptr(),
            probs: probs.arg(),
            ds: ds.arg_mut(),
            dscores: dscores
                .as_mut()
                .map(|x| x.arg_mut())
                .unwrap_or(Tensor::NONE),
            rng: rngp,
            batch: a.batch as u64,
            heads: a.heads as u64,
            seq: l as u64,
            scale: (1.0 / (d as f64).sqrt()) as f32,
            p: dropout_p,
            keep_scale,
            _pad: 0,
        };
        let rows = a.batch * a.heads * l;
        let smem = self.row_smem(ROW_WARPS * l, "attention_bwd");
        self.launch(
            K::attn_softmax_bwd,
            (rows.div_ceil(ROW_WARPS) as u32, 1, 1),
            (ROW_WARPS * 32) as u32,
            smem,
            p,
        );

        let dsm = AttnMat::new(ds.ptr(), act, Lay::Score);
        // dq_h^T = k_h * dS-stored ; dk_h^T = q_h * dS-stored^T
        let dqm = AttnMat::new(dq.arg_mut().ptr, act, Lay::Act);
        self.attn_gemm(a, false, false, d, l, l, act_mat(km), hd, dsm, l, dqm, hd);
        let dkm = AttnMat::new(dk.arg_mut().ptr, act, Lay::Act);
        self.attn_gemm(a, false, true, d, l, l, act_mat(qm), hd, dsm, l, dkm, hd);
        (dq, dk, dv, dscores)
    }

    // ------------------------------------------------------------------ rows
    fn gather_rows(&self, x: &CudaBuf, rows: &[usize], cols: usize) -> CudaBuf {
        let mut out = self.alloc(x.dtype(), rows.len() * cols);
        if rows.is_empty() || cols == 0 {
            return out;
        }
        let limit = x.len / cols;
        let idx: Vec<u32> = rows
            .iter()
            .map(|&r| {
                assert!(
                    r < limit,
                    "ernie-cuda: gather_rows: row {r} out of range ({limit} rows)"
                );
                r as u32
            })
            .collect();
        let dev = self.upload_u32(&idx);
        let p = P::GatherRowsParams {
            x: x.arg(),
            y: out.arg_mut(),
            rows: dev.ptr(),
            nrows: rows.len() as u64,
            cols: cols as u64,
        };
        self.launch(K::gather_rows, self.grid(rows.len() * cols), THREADS, 0, p);
        out
    }

    fn scatter_rows(
        &self,
        dy: &CudaBuf,
        rows: &[usize],
        cols: usize,
        total_rows: usize,
    ) -> CudaBuf {
        let mut out = self.alloc_zeroed(dy.dtype(), total_rows * cols);
        let idx: Vec<u32> = rows
            .iter()
            .map(|&r| {
                assert!(
                    r < total_rows,
                    "ernie-cuda: scatter_rows: row {r} out of range ({total_rows} rows)"
                );
                r as u32
            })
            .collect();
        self.segment_add(&mut out, dy, &idx, cols, "scatter_rows");
        out
    }

    fn slice_rows(&self, x: &CudaBuf, start: usize, count: usize, cols: usize) -> CudaBuf {
        let (a, n) = (start * cols, count * cols);
        need(x.len, a + n, "slice_rows");
        let mut out = self.alloc(x.dtype(), n);
        if n == 0 {
            return out;
        }
        let src = Tensor {
            ptr: x.ptr() + (a * x.dtype.size()) as u64,
            ..x.arg()
        };
        self.cast_into(src, out.arg_mut(), n);
        out
    }

    fn concat_rows(&self, a: &CudaBuf, b: &CudaBuf) -> CudaBuf {
        let n = a.len + b.len;
        let same = a.dtype() == b.dtype();
        let mut out = self.alloc(if same { a.dtype } else { DType::F32 }, n);
        let dst = out.arg_mut();
        let size = if same { a.dtype().size() } else { 4 };
        if a.len > 0 {
            self.cast_into(a.arg(), dst, a.len);
        }
        if b.len > 0 {
            let at = Tensor {
                ptr: dst.ptr + (a.len * size) as u64,
                ..dst
            };
            self.cast_into(b.arg(), at, b.len);
        }
        out
    }

    // ------------------------------------------------------------------ losses
    fn softmax_ce(
        &self,
        logits: &CudaBuf,
        labels: &CudaIds,
        classes: usize,
        grad_scale: f64,
    ) -> (Vec<f64>, CudaBuf) {
        let rows = labels.len();
        need(logits.len, rows * classes, "softmax_ce: logits");
        if let Some(&bad) = labels.host.iter().find(|&&y| y as usize >= classes) {
            panic!("ernie-cuda: softmax_ce: label {bad} out of range for {classes} classes");
        }
        let mut grad = self.alloc(self.act(), rows * classes);
        let loss = self.tmp::<f32>(rows);
        let p = P::CeParams {
            logits: logits.arg(),
            labels: labels.ptr(),
            loss: loss.ptr(),
            grad: grad.arg_mut(),
            rows: rows as u64,
            classes: classes as u64,
            grad_scale: grad_scale as f32,
            _pad: 0,
        };
        self.launch_rows(K::softmax_ce, rows, p);
        (self.loss_rows(&loss, rows), grad)
    }

    fn sym_kl(
        &self,
        a: &CudaBuf,
        b: &CudaBuf,
        classes: usize,
        grad_scale: f64,
    ) -> (Vec<f64>, CudaBuf, CudaBuf) {
        let rows = a.len.checked_div(classes).unwrap_or(0);
        need(b.len, rows * classes, "sym_kl: b");
        let mut ga = self.alloc(self.act(), a.len);
        let mut gb = self.alloc(self.act(), b.len);
        let loss = self.tmp::<f32>(rows);
        let p = P::KlParams {
            a: a.arg(),
            b: b.arg(),
            loss: loss.ptr(),
            ga: ga.arg_mut(),
            gb: gb.arg_mut(),
            rows: rows as u64,
            classes: classes as u64,
            grad_scale: (0.5 * grad_scale) as f32,
            _pad: 0,
        };
        self.launch_rows(K::sym_kl, rows, p);
        (self.loss_rows(&loss, rows), ga, gb)
    }

    fn kl_detached(
        &self,
        a: &CudaBuf,
        b: &CudaBuf,
        classes: usize,
        grad_scale: f64,
    ) -> (Vec<f64>, CudaBuf) {
        let rows = a.len.checked_div(classes).unwrap_or(0);
        need(b.len, rows * classes, "kl_detached: b");
        let mut gb = self.alloc(self.act(), b.len);
        let loss = self.tmp::<f32>(rows);
        let p = P::KlParams {
            a: a.arg(),
            b: b.arg(),
            loss: loss.ptr(),
            ga: Tensor::NONE,
            gb: gb.arg_mut(),
            rows: rows as u64,
            classes: classes as u64,
            grad_scale: grad_scale as f32,
            _pad: 0,
        };
        self.launch_rows(K::kl_detached, rows, p);
        (self.loss_rows(&loss, rows), gb)
    }

    // ------------------------------------------------------------------ adversarial noise
    fn randn_key_masked(
        &self,
        a: AttnShape,
        key_mask: &CudaIds,
        sigma: f32,
        rng: RngStream,
    ) -> CudaBuf {
        need(
            key_mask.len(),
            a.batch * a.seq,
            "randn_key_masked: key mask",
        );
        let n = a.score_len();
        let mut out = self.alloc(self.act(), n);
        let p = P::RandnParams {
            out: out.arg_mut(),
            mask: key_mask.ptr(),
            rng: P::Rng::from(rng),
            batch: a.batch as u64,
            heads: a.heads as u64,
            seq: a.seq as u64,
            sigma,
            _pad: 0,
        };
        self.launch(K::randn_key_masked, self.grid(n), THREADS, 0, p);
        out
    }

    fn normalize_per_example(
        &self,
        g: &CudaBuf,
        batch: usize,
        eps: f32,
        norm: NoiseNorm,
    ) -> CudaBuf {
        let mut out = self.alloc(self.act(), g.len);
        if batch == 0 || g.len == 0 {
            return out;
        }
        assert!(
            g.len.is_multiple_of(batch),
            "ernie-cuda: normalize_per_example: {} elements do not split into {batch} examples",
            g.len
        );
        assert!(
            batch <= 65535,
            "ernie-cuda: normalize_per_example: batch {batch} too large"
        );
        let per = g.len / batch;
        let chunks = per.div_ceil(NORM_CHUNK);
        let kind = match norm {
            NoiseNorm::L2 => 0,
            NoiseNorm::Max => 1,
        };
        let partial = self.tmp::<f64>(batch * chunks);
        let scale = self.tmp::<f64>(batch);
        let pp = P::NormPartialParams {
            g: g.arg(),
            partial: partial.ptr(),
            per: per as u64,
            chunks: chunks as u64,
            chunk: NORM_CHUNK as u64,
            kind,
            _pad: 0,
        };
        self.launch(
            K::norm_partial,
            (chunks as u32, batch as u32, 1),
            THREADS,
            0,
            pp,
        );
        let pf = P::NormFinishParams {
            partial: partial.ptr(),
            scale: scale.ptr(),
            batch: batch as u64,
            chunks: chunks as u64,
            eps: eps as f64,
            kind,
            _pad: 0,
        };
        self.launch(K::norm_finish, (batch as u32, 1, 1), THREADS, 0, pf);
        let pa = P::NormApplyParams {
            g: g.arg(),
            out: out.arg_mut(),
            scale: scale.ptr(),
            per: per as u64,
            n: g.len as u64,
        };
        self.launch(K::norm_apply, self.grid(g.len), THREADS, 0, pa);
        out
    }

    // ------------------------------------------------------------------ vector ops, optimizer
    fn axpby(&self, y: &mut CudaBuf, a: f64, x: &CudaBuf, b: f64) {
        let n = y.len.min(x.len);
        let p = P::AxpbyParams {
            y: y.arg_mut(),
            x: x.arg(),
            n: n as u64,
            a: a as f32,
            b: b as f32,
        };
        self.launch(K::axpby, self.grid(n), THREADS, 0, p);
    }

    fn axpby_many(&self, ys: &mut [&mut CudaBuf], a: f64, xs: &[&CudaBuf], b: f64) {
        let pairs = ys.len().min(xs.len());
        if pairs == 0 {
            return;
        }
        let lens: Vec<usize> = (0..pairs).map(|i| ys[i].len.min(xs[i].len)).collect();
        let (starts, total) = block_starts(lens.iter().copied(), MT_CHUNK);
        let mut table = Vec::with_capacity(pairs);
        for i in 0..pairs {
            table.push(P::AxpbyEntry {
                y: ys[i].arg_mut(),
                x: xs[i].arg(),
                n: lens[i] as u64,
                block_start: starts[i],
            });
        }
        if total == 0 {
            return;
        }
        let dev = self.upload_table(&table);
        let p = P::AxpbyManyParams {
            table: dev.ptr(),
            ntensors: pairs as u32,
            chunk: MT_CHUNK as u32,
            a: a as f32,
            b: b as f32,
        };
        self.launch(K::axpby_many, (total as u32, 1, 1), THREADS, 0, p);
    }

    fn fill(&self, buf: &mut CudaBuf, value: f32) {
        let n = buf.len;
        let p = P::FillParams {
            y: buf.arg_mut(),
            n: n as u64,
            value,
            _pad: 0,
        };
        self.launch(K::fill, self.grid(n), THREADS, 0, p);
    }

    fn sum_squares(&self, bufs: &[&CudaBuf]) -> f64 {
        if bufs.is_empty() {
            return 0.0;
        }
        let (starts, total) = block_starts(bufs.iter().map(|b| b.len), SUMSQ_CHUNK);
        if total == 0 {
            return 0.0;
        }
        let table: Vec<P::SumSqEntry> = bufs
            .iter()
            .zip(&starts)
            .map(|(b, &s)| P::SumSqEntry {
                x: b.arg(),
                n: b.len as u64,
                block_start: s,
            })
            .collect();
        let dev = self.upload_table(&table);
        let partial = self.tmp::<f64>(total as usize);
        let out = self.tmp::<f64>(bufs.len());
        let p = P::SumSqParams {
            table: dev.ptr(),
            partial: partial.ptr(),
            ntensors: bufs.len() as u32,
            chunk: SUMSQ_CHUNK as u32,
        };
        self.launch(K::sum_squares_partial, (total as u32, 1, 1), THREADS, 0, p);
        let pf = P::SumSqFinishParams {
            table: dev.ptr(),
            partial: partial.ptr(),
            out: out.ptr(),
            ntensors: bufs.len() as u32,
            total_blocks: total as u32,
        };
        self.launch(
            K::sum_squares_finish,
            (bufs.len() as u32, 1, 1),
            THREADS,
            0,
            pf,
        );
        let per = self.download_f64(&out, bufs.len());
        // Per-buffer sums added in buffer order, as the CPU reference.
        per[..bufs.len()].iter().sum()
    }

    fn adamw(&self, slots: &mut [ParamSlot<'_, CudaBuf>], st: &AdamWStep) {
        if slots.is_empty() {
            return;
        }
        let bc1 = 1.0 - st.beta1.powi(st.step as i32);
        let bc2 = 1.0 - st.beta2.powi(st.step as i32);
        let (starts, total) = block_starts(slots.iter().map(|s| s.param.len), MT_CHUNK);
        let mut table = Vec::with_capacity(slots.len());
        for (s, &start) in slots.iter_mut().zip(&starts) {
            let n = s.param.len;
            need(s.grad.len, n, "adamw: grad");
            need(s.m.len, n, "adamw: m");
            need(s.v.len, n, "adamw: v");
            // The parameter keeps its bf16 copy: the kernel rewrites it from the new fp32 value.
            let shadow = s.param.shadow.get_mut().map(|sh| sh.ptr()).unwrap_or(0);
            table.push(P::AdamEntry {
                param: s.param.arg(),
                grad: s.grad.arg(),
                m: s.m.arg_mut(),
                v: s.v.arg_mut(),
                shadow,
                n: n as u64,
                lr: st.lr * s.lr_mult,
                wd: if s.decay { st.weight_decay } else { 0.0 },
                block_start: start,
            });
        }
        if total == 0 {
            return;
        }
        let dev = self.upload_table(&table);
        let p = P::AdamParams {
            table: dev.ptr(),
            ntensors: table.len() as u32,
            chunk: MT_CHUNK as u32,
            beta1: st.beta1,
            beta2: st.beta2,
            one_minus_beta1: 1.0 - st.beta1,
            one_minus_beta2: 1.0 - st.beta2,
            eps: st.eps,
            bc1,
            bc2,
            grad_scale: st.grad_scale,
        };
        self.launch(K::adamw, (total as u32, 1, 1), THREADS, 0, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_table_matches_sources() {
        let mut from_sources = kernels::all_kernel_names();
        from_sources.sort();
        let mut table: Vec<&str> = K::NAMES.to_vec();
        table.sort();
        assert_eq!(from_sources, table);
    }
}
