//! Matrix products: cuBLASLt for the linear layers (descriptors and the heuristic's algorithm cached per
//! shape), cuBLAS strided-batched GEMM for the attention products. All column-major, as the libraries
//! want; the callers in ops/linear.rs and ops/attention.rs map the row-major tensors onto them.
//!
//! Compute type is always `CUBLAS_COMPUTE_32F` (fp32 accumulation, and no TF32: fp32 operands give true
//! fp32 products, the parity path); bf16 operands with fp32 or bf16 outputs use the tensor cores.

use crate::buf::DType;
use cudarc::cublas::{result as blas_result, sys as blas_sys, CudaBlas};
use cudarc::cublaslt::{result as lt_result, sys as lt_sys};
use cudarc::driver::{CudaSlice, CudaStream};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
#[error("{what}: {status}")]
pub struct GemmError {
    what: &'static str,
    status: String,
}

fn lt_err(what: &'static str) -> impl Fn(lt_result::CublasError) -> GemmError {
    move |e| GemmError { what, status: format!("{:?}", e.0) }
}
fn blas_err(what: &'static str) -> impl Fn(blas_result::CublasError) -> GemmError {
    move |e| GemmError { what, status: format!("{:?}", e.0) }
}

/// A matrix operand: device address (already offset) and element type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat {
    pub ptr: u64,
    pub dtype: DType,
}

/// One product `C = alpha op(A) op(B) + beta C`, column-major, C is m x n.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gemm {
    pub ta: bool,
    pub tb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Mat,
    pub lda: usize,
    pub b: Mat,
    pub ldb: usize,
    pub c: Mat,
    pub ldc: usize,
    pub beta: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldb: usize,
    ldc: usize,
    a: DType,
    b: DType,
    c: DType,
}

/// cuBLASLt descriptors and the chosen algorithm for one shape.
struct Plan {
    desc: lt_sys::cublasLtMatmulDesc_t,
    a: lt_sys::cublasLtMatrixLayout_t,
    b: lt_sys::cublasLtMatrixLayout_t,
    c: lt_sys::cublasLtMatrixLayout_t,
    /// None: cuBLASLt offered no algorithm; the product goes through cublasGemmEx.
    algo: Option<lt_sys::cublasLtMatmulAlgo_t>,
}

// SAFETY: the descriptors are immutable after creation and only read by cublasLtMatmul.
unsafe impl Send for Plan {}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created once in Blas::plan, destroyed once here.
        unsafe {
            let _ = lt_result::destroy_matrix_layout(self.a);
            let _ = lt_result::destroy_matrix_layout(self.b);
            let _ = lt_result::destroy_matrix_layout(self.c);
            let _ = lt_result::destroy_matmul_desc(self.desc);
        }
    }
}

pub(crate) struct Blas {
    lt: lt_sys::cublasLtHandle_t,
    blas: CudaBlas,
    stream: Arc<CudaStream>,
    workspace: CudaSlice<u8>,
    workspace_bytes: usize,
    plans: Mutex<HashMap<PlanKey, Plan>>,
}

// SAFETY: the cuBLASLt handle is thread safe for matmul calls; the plan cache is behind a mutex.
unsafe impl Send for Blas {}
unsafe impl Sync for Blas {}

impl Drop for Blas {
    fn drop(&mut self) {
        self.plans.lock().map(|mut p| p.clear()).ok();
        // SAFETY: created in Blas::new.
        unsafe {
            let _ = lt_result::destroy_handle(self.lt);
        }
    }
}

fn lt_type(d: DType) -> lt_sys::cudaDataType {
    match d {
        DType::F32 => lt_sys::cudaDataType::CUDA_R_32F,
        DType::Bf16 => lt_sys::cudaDataType::CUDA_R_16BF,
    }
}

fn blas_type(d: DType) -> blas_sys::cudaDataType {
    match d {
        DType::F32 => blas_sys::cudaDataType::CUDA_R_32F,
        DType::Bf16 => blas_sys::cudaDataType::CUDA_R_16BF,
    }
}

fn blas_op(t: bool) -> blas_sys::cublasOperation_t {
    if t {
        blas_sys::cublasOperation_t::CUBLAS_OP_T
    } else {
        blas_sys::cublasOperation_t::CUBLAS_OP_N
    }
}

impl Blas {
    /// `cc_major`: the device's compute capability major (the workspace follows NVIDIA's advice: 32 MiB
    /// on Hopper, 4 MiB before).
    pub(crate) fn new(stream: Arc<CudaStream>, cc_major: i32) -> Result<Self, GemmError> {
        let blas = CudaBlas::new(stream.clone()).map_err(blas_err("cublasCreate"))?;
        let lt = lt_result::create_handle().map_err(lt_err("cublasLtCreate"))?;
        let workspace_bytes = if cc_major >= 9 { 32 << 20 } else { 4 << 20 };
        // SAFETY: scratch memory, never read before cuBLASLt writes it.
        let workspace = unsafe { stream.alloc::<u8>(workspace_bytes) }
            .map_err(|e| GemmError { what: "workspace allocation", status: e.to_string() })?;
        Ok(Self { lt, blas, stream, workspace, workspace_bytes, plans: Mutex::new(HashMap::new()) })
    }

    fn make_plan(&self, key: &PlanKey) -> Result<Plan, GemmError> {
        let desc = lt_result::create_matmul_desc(
            lt_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            lt_sys::cudaDataType::CUDA_R_32F,
        )
        .map_err(lt_err("cublasLtMatmulDescCreate"))?;
        let (ta, tb): (i32, i32) = (key.ta as i32, key.tb as i32); // CUBLAS_OP_N = 0, CUBLAS_OP_T = 1
                                                                   // SAFETY: valid descriptor; attribute buffers are i32 as the API expects.
        unsafe {
            lt_result::set_matmul_desc_attribute(
                desc,
                lt_sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &ta as *const i32 as *const c_void,
                4,
            )
            .map_err(lt_err("CUBLASLT_MATMUL_DESC_TRANSA"))?;
            lt_result::set_matmul_desc_attribute(
                desc,
                lt_sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
                &tb as *const i32 as *const c_void,
                4,
            )
            .map_err(lt_err("CUBLASLT_MATMUL_DESC_TRANSB"))?;
        }
        // Stored shapes (before op): A is m x k, or k x m when transposed; B is k x n, or n x k.
        let (ar, ac) = if key.ta { (key.k, key.m) } else { (key.m, key.k) };
        let (br, bc) = if key.tb { (key.n, key.k) } else { (key.k, key.n) };
        let a = lt_result::create_matrix_layout(lt_type(key.a), ar as u64, ac as u64, key.lda as i64)
            .map_err(lt_err("cublasLtMatrixLayoutCreate(A)"))?;
        let b = lt_result::create_matrix_layout(lt_type(key.b), br as u64, bc as u64, key.ldb as i64)
            .map_err(lt_err("cublasLtMatrixLayoutCreate(B)"))?;
        let c = lt_result::create_matrix_layout(lt_type(key.c), key.m as u64, key.n as u64, key.ldc as i64)
            .map_err(lt_err("cublasLtMatrixLayoutCreate(C)"))?;
        let mut plan = Plan { desc, a, b, c, algo: None };

        let pref = lt_result::create_matmul_pref().map_err(lt_err("cublasLtMatmulPreferenceCreate"))?;
        let ws = self.workspace_bytes as u64;
        // SAFETY: valid handles; the preference is destroyed right after the query.
        let heuristic = unsafe {
            let set = lt_result::set_matmul_pref_attribute(
                pref,
                lt_sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const u64 as *const c_void,
                8,
            );
            let h = set.and_then(|_| lt_result::get_matmul_algo_heuristic(self.lt, desc, a, b, c, c, pref));
            let _ = lt_result::destroy_matmul_pref(pref);
            h
        };
        // No algorithm (or an unsupported type combination): fall back to cublasGemmEx rather than fail.
        plan.algo = heuristic.ok().map(|h| h.algo);
        Ok(plan)
    }

    /// `C = op(A) op(B) + beta C`.
    pub(crate) fn gemm(&self, g: &Gemm) -> Result<(), GemmError> {
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        let key = PlanKey {
            ta: g.ta,
            tb: g.tb,
            m: g.m,
            n: g.n,
            k: g.k,
            lda: g.lda,
            ldb: g.ldb,
            ldc: g.ldc,
            a: g.a.dtype,
            b: g.b.dtype,
            c: g.c.dtype,
        };
        let mut plans = self.plans.lock().expect("gemm plan cache poisoned");
        if let std::collections::hash_map::Entry::Vacant(e) = plans.entry(key) {
            e.insert(self.make_plan(&key)?);
        }
        let plan = &plans[&key];
        let Some(algo) = plan.algo else {
            drop(plans);
            return self.gemm_batched(g, 0, 0, 0, 1);
        };
        let (alpha, beta) = (1.0f32, g.beta);
        let (ws, _sync) = cudarc::driver::DevicePtr::device_ptr(&self.workspace, &self.stream);
        // SAFETY: operands are live device buffers sized by the caller for these shapes; D aliases C.
        unsafe {
            lt_result::matmul(
                self.lt,
                plan.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                g.a.ptr as *const c_void,
                plan.a,
                g.b.ptr as *const c_void,
                plan.b,
                g.c.ptr as *const c_void,
                plan.c,
                g.c.ptr as *mut c_void,
                plan.c,
                &algo,
                ws as *mut c_void,
                self.workspace_bytes,
                self.stream.cu_stream() as lt_sys::cudaStream_t,
            )
            .map_err(lt_err("cublasLtMatmul"))
        }
    }

    /// `batch` products with the operands `stride_*` elements apart (cublasGemmStridedBatchedEx).
    pub(crate) fn gemm_batched(
        &self,
        g: &Gemm,
        stride_a: usize,
        stride_b: usize,
        stride_c: usize,
        batch: usize,
    ) -> Result<(), GemmError> {
        if g.m == 0 || g.n == 0 || batch == 0 {
            return Ok(());
        }
        let (alpha, beta) = (1.0f32, g.beta);
        // SAFETY: as in gemm; alpha/beta are host scalars (default pointer mode).
        unsafe {
            blas_result::gemm_strided_batched_ex(
                *self.blas.handle(),
                blas_op(g.ta),
                blas_op(g.tb),
                g.m as i32,
                g.n as i32,
                g.k as i32,
                &alpha as *const f32 as *const c_void,
                g.a.ptr as *const c_void,
                blas_type(g.a.dtype),
                g.lda as i32,
                stride_a as i64,
                g.b.ptr as *const c_void,
                blas_type(g.b.dtype),
                g.ldb as i32,
                stride_b as i64,
                &beta as *const f32 as *const c_void,
                g.c.ptr as *mut c_void,
                blas_type(g.c.dtype),
                g.ldc as i32,
                stride_c as i64,
                batch as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
            .map_err(blas_err("cublasGemmStridedBatchedEx"))
        }
    }
}
