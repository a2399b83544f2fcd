//! Where the backend's work runs: a CUDA device (one context, one stream, the NVRTC-compiled modules and
//! cuBLAS handles), or the host emulation of [`crate::emu`]. The backend only sees [`Exec`]: allocate,
//! copy in and out, launch a kernel by id ([`Kernel`]) with its parameter struct, run a GEMM.

use crate::buf::{raw, HostMem, Mem};
use crate::emu::{self, Emu};
use crate::gemm::{Blas, Gemm, GemmError};
use crate::kernels::Kernel;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};
use std::fmt::Display;
use std::sync::Arc;

pub(crate) fn ck<T, E: Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("ernie-cuda: {what} failed: {e}"))
}

pub(crate) struct CudaExec {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    /// Function handles in `Kernel` order.
    pub(crate) funcs: Vec<CudaFunction>,
    pub(crate) blas: Blas,
    /// `ERNIE_FT_CUDA_SYNC`: synchronise after every launch.
    pub(crate) sync_each_launch: bool,
    /// `ERNIE_FT_CUDA_POISON`: fill fresh (uninitialised) allocations with 0xFF bytes (NaN in fp32 and
    /// bf16), so an element a kernel forgets to write shows up.
    pub(crate) poison: bool,
}

pub(crate) enum Exec {
    Cuda(CudaExec),
    Emu(Emu),
}

impl Exec {
    /// `bytes` of device memory (at least 8), zeroed or left uninitialised (poisoned under emulation or
    /// with ERNIE_FT_CUDA_POISON).
    pub(crate) fn alloc(&self, bytes: usize, zeroed: bool) -> Mem {
        let bytes = bytes.max(8);
        match self {
            Exec::Cuda(c) => {
                // SAFETY: written before read (or zeroed right here).
                let mut s = ck(unsafe { c.stream.alloc::<u8>(bytes) }, "cuMemAlloc");
                if zeroed {
                    ck(c.stream.memset_zeros(&mut s), "cuMemsetD8");
                } else if c.poison {
                    // SAFETY: the allocation just made, on its stream.
                    ck(
                        unsafe { cudarc::driver::result::memset_d8_async(raw(&s), 0xFF, bytes, c.stream.cu_stream()) },
                        "cuMemsetD8",
                    );
                }
                Mem::Cuda(s)
            }
            Exec::Emu(_) => Mem::Host(HostMem::new(bytes, if zeroed { 0 } else { u64::MAX })),
        }
    }

    pub(crate) fn upload(&self, bytes: &[u8]) -> Mem {
        let mut m = self.alloc(bytes.len(), bytes.is_empty());
        if bytes.is_empty() {
            return m;
        }
        match (&self, &mut m) {
            (Exec::Cuda(c), Mem::Cuda(s)) => {
                ck(c.stream.memcpy_htod(bytes, &mut s.slice_mut(0..bytes.len())), "upload")
            }
            // SAFETY: the host allocation holds at least bytes.len() bytes.
            (Exec::Emu(_), Mem::Host(_)) => unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), m.ptr() as *mut u8, bytes.len())
            },
            _ => unreachable!("memory of another executor"),
        }
        m
    }

    pub(crate) fn download(&self, m: &Mem, bytes: usize) -> Vec<u8> {
        if bytes == 0 {
            return Vec::new();
        }
        assert!(bytes <= m.bytes(), "download past the allocation");
        match (self, m) {
            (Exec::Cuda(c), Mem::Cuda(s)) => ck(c.stream.clone_dtoh(&s.slice(0..bytes)), "download"),
            // SAFETY: in bounds (checked above); the emulated stream is synchronous.
            (Exec::Emu(_), Mem::Host(_)) => unsafe { std::slice::from_raw_parts(m.ptr() as *const u8, bytes).to_vec() },
            _ => unreachable!("memory of another executor"),
        }
    }

    pub(crate) fn launch<T: DeviceRepr>(&self, k: Kernel, grid: (u32, u32, u32), block: u32, smem: u32, p: &T) {
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return;
        }
        match self {
            Exec::Cuda(c) => {
                let cfg = LaunchConfig { grid_dim: grid, block_dim: (block, 1, 1), shared_mem_bytes: smem };
                let mut b = c.stream.launch_builder(&c.funcs[k as usize]);
                b.arg(p);
                // SAFETY: every kernel takes exactly one parameter struct, mirrored in Rust (params.rs,
                // ops/<family>.rs) and checked against params.cuh by the layout tests; callers check
                // buffer sizes before launching.
                ck(unsafe { b.launch(cfg) }, k.name());
                if c.sync_each_launch {
                    ck(c.stream.synchronize(), k.name());
                }
            }
            Exec::Emu(e) => e.launch(k.name(), grid, block, smem, p as *const T as *const std::ffi::c_void),
        }
    }

    pub(crate) fn gemm(&self, g: &Gemm) {
        match self {
            Exec::Cuda(c) => {
                ck(c.ctx.bind_to_thread(), "cuCtxSetCurrent");
                ck(c.blas.gemm(g), "GEMM");
            }
            Exec::Emu(_) => emu::gemm(g, 0, 0, 0, 1),
        }
    }

    pub(crate) fn gemm_batched(&self, g: &Gemm, sa: usize, sb: usize, sc: usize, batch: usize) {
        match self {
            Exec::Cuda(c) => {
                ck(c.ctx.bind_to_thread(), "cuCtxSetCurrent");
                ck(c.blas.gemm_batched(g, sa, sb, sc, batch).map_err(|e: GemmError| e), "batched GEMM");
            }
            Exec::Emu(_) => emu::gemm(g, sa, sb, sc, batch),
        }
    }

    pub(crate) fn synchronize(&self) {
        if let Exec::Cuda(c) = self {
            ck(c.stream.synchronize(), "stream synchronize");
        }
    }
}
