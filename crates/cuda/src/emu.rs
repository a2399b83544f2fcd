//! Host emulation of the device side, for tests on machines without a GPU.
//!
//! The kernel sources are compiled by the host C++ compiler after `emu_prelude.h` (CUDA's built-ins shimmed;
//! each block's threads run as OS threads with real barriers for `__syncthreads`, `__syncwarp` and the warp
//! shuffles) into a shared library that is loaded with dlopen; "device memory" is host memory; the GEMMs
//! are a plain triple loop with cuBLAS's column-major semantics and fp32 accumulation. With this,
//! [`crate::CudaBackend::emulated`] runs the whole backend (its host code, launch configurations, parameter
//! structs, index arithmetic, reductions, RNG streams and GEMM mappings) on the CPU, so the parity tests
//! exercise it here. What it cannot show: the device's own math library (erff, expf, log, cos), cuBLAS
//! itself, real concurrency between blocks, memory-model subtleties and timing.

use crate::buf::DType;
use crate::gemm::Gemm;
use crate::kernels::{HEADERS, SOURCES};
use std::collections::hash_map::DefaultHasher;
use std::ffi::{c_char, c_void, CString};
use std::hash::{Hash, Hasher};
use std::process::Command;
use std::sync::Mutex;

const PRELUDE: &str = include_str!("emu_prelude.h");

type LaunchFn = unsafe extern "C" fn(*const c_char, u32, u32, u32, u32, u32, *const c_void) -> i32;

pub(crate) struct Emu {
    _lib: libloading::Library,
    launch: LaunchFn,
    lock: Mutex<()>,
}

/// The host C++ compiler: `$CXX`, else c++, g++ or clang++, whichever answers.
pub fn host_compiler() -> Option<String> {
    let mut candidates: Vec<String> = Vec::new();
    if let Ok(c) = std::env::var("CXX") {
        candidates.push(c);
    }
    candidates.extend(["c++", "g++", "clang++"].map(String::from));
    candidates
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().map(|o| o.status.success()).unwrap_or(false))
}

fn source_text(names: &[&str]) -> String {
    let mut s = String::from(PRELUDE);
    for src in SOURCES {
        s.push_str(&format!("#include \"{}\"\n", src.file));
    }
    s.push_str(
        r#"
#include <mutex>
template <typename P>
static void emu_call(void (*f)(const P), const void* p) { f(*reinterpret_cast<const P*>(p)); }
struct EmuKernel { const char* name; void (*run)(const void*); };
static const EmuKernel emu_kernels[] = {
"#,
    );
    for n in names {
        s.push_str(&format!("    {{\"{n}\", [](const void* p) {{ emu_call(&{n}, p); }}}},\n"));
    }
    s.push_str(
        r#"};

extern "C" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned smem, const void* params) {
    static std::mutex one_at_a_time;
    std::lock_guard<std::mutex> guard(one_at_a_time);
    const EmuKernel* k = nullptr;
    for (const EmuKernel& e : emu_kernels) if (strcmp(e.name, name) == 0) k = &e;
    if (!k) return -1;
    if (bx == 0 || bx > 1024 || bx % 32 != 0) return -2;
    gridDim = dim3{gx, gy, gz};
    blockDim = dim3{bx, 1, 1};
    std::vector<unsigned long long> dyn(smem / 8 + 2, ~0ull);  // poisoned: NaN until written
    std::barrier<> block(bx);
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    EmuBlock blk{};
    blk.block = &block;
    blk.dyn = reinterpret_cast<unsigned char*>(dyn.data());
    for (unsigned w = 0; w < bx / 32; ++w) {
        warps.emplace_back(new std::barrier<>(32));
        blk.warps[w] = warps.back().get();
    }
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < bx; ++t) {
        threads.emplace_back([&, t] {
            emu_blk = &blk;
            threadIdx = dim3{t, 0, 0};
            for (unsigned z = 0; z < gz; ++z)
                for (unsigned y = 0; y < gy; ++y)
                    for (unsigned x = 0; x < gx; ++x) {
                        blockIdx = dim3{x, y, z};
                        k->run(params);
                        block.arrive_and_wait();  // blocks one at a time: statics are the block's shared memory
                    }
        });
    }
    for (std::thread& th : threads) th.join();
    return 0;
}
"#,
    );
    s
}

impl Emu {
    /// Compiles (once per content, cached in the temp directory) and loads the emulated kernels.
    pub(crate) fn build(names: &[&str]) -> Result<Self, String> {
        let cxx = host_compiler().ok_or("no host C++ compiler (c++, g++ or clang++; or set CXX)")?;
        let main = source_text(names);
        let mut h = DefaultHasher::new();
        cxx.hash(&mut h);
        main.hash(&mut h);
        for (n, t) in HEADERS {
            n.hash(&mut h);
            t.hash(&mut h);
        }
        for s in SOURCES {
            s.text.hash(&mut h);
        }
        let dir = std::env::temp_dir().join(format!("ernie-cuda-emu-{:016x}", h.finish()));
        let lib_path = dir.join("libernie_emu.so");
        if !lib_path.is_file() {
            let tmp_dir = dir.with_extension(format!("tmp{}", std::process::id()));
            std::fs::create_dir_all(&tmp_dir).map_err(|e| e.to_string())?;
            for (n, t) in HEADERS {
                std::fs::write(tmp_dir.join(n), t).map_err(|e| e.to_string())?;
            }
            for s in SOURCES {
                std::fs::write(tmp_dir.join(s.file), s.text).map_err(|e| e.to_string())?;
            }
            std::fs::write(tmp_dir.join("emu.cpp"), &main).map_err(|e| e.to_string())?;
            let out = Command::new(&cxx)
                .args(["-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-ffp-contract=off", "-w", "-o"])
                .arg(tmp_dir.join("libernie_emu.so"))
                .arg(tmp_dir.join("emu.cpp"))
                .output()
                .map_err(|e| format!("running {cxx}: {e}"))?;
            if !out.status.success() {
                return Err(format!("host build of the kernels failed:\n{}", String::from_utf8_lossy(&out.stderr)));
            }
            // Publish atomically: concurrent test binaries may race to build the same library.
            if std::fs::rename(&tmp_dir, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp_dir);
            }
        }
        // SAFETY: our own library, built above from the kernel sources.
        let lib = unsafe { libloading::Library::new(&lib_path) }.map_err(|e| e.to_string())?;
        let launch = unsafe { *lib.get::<LaunchFn>(b"emu_launch\0").map_err(|e| e.to_string())? };
        Ok(Self { _lib: lib, launch, lock: Mutex::new(()) })
    }

    pub(crate) fn launch(&self, name: &str, grid: (u32, u32, u32), block: u32, smem: u32, params: *const c_void) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let c = CString::new(name).expect("kernel name");
        // SAFETY: params points at the kernel's parameter struct; its pointers are live host buffers.
        let r = unsafe { (self.launch)(c.as_ptr(), grid.0, grid.1, grid.2, block, smem, params) };
        assert_eq!(r, 0, "emulated launch of {name} failed ({r})");
    }
}

unsafe fn load(ptr: u64, dtype: DType, i: usize) -> f32 {
    match dtype {
        DType::F32 => *(ptr as *const f32).add(i),
        DType::Bf16 => half::bf16::from_bits(*(ptr as *const u16).add(i)).to_f32(),
    }
}

unsafe fn store(ptr: u64, dtype: DType, i: usize, v: f32) {
    match dtype {
        DType::F32 => *(ptr as *mut f32).add(i) = v,
        DType::Bf16 => *(ptr as *mut u16).add(i) = half::bf16::from_f32(v).to_bits(),
    }
}

/// `batch` column-major products `C = op(A) op(B) + beta C` with fp32 accumulation, as
/// cublasGemmStridedBatchedEx with CUBLAS_COMPUTE_32F (C is not read when beta is 0).
pub(crate) fn gemm(g: &Gemm, stride_a: usize, stride_b: usize, stride_c: usize, batch: usize) {
    for bi in 0..batch {
        let (a, b, c) = (
            g.a.ptr + (bi * stride_a * g.a.dtype.size()) as u64,
            g.b.ptr + (bi * stride_b * g.b.dtype.size()) as u64,
            g.c.ptr + (bi * stride_c * g.c.dtype.size()) as u64,
        );
        for j in 0..g.n {
            for i in 0..g.m {
                let mut acc = 0.0f32;
                for p in 0..g.k {
                    // SAFETY: the caller sized the operands for these shapes and leading dimensions.
                    unsafe {
                        let av = load(a, g.a.dtype, if g.ta { p + i * g.lda } else { i + p * g.lda });
                        let bv = load(b, g.b.dtype, if g.tb { j + p * g.ldb } else { p + j * g.ldb });
                        acc += av * bv;
                    }
                }
                let at = i + j * g.ldc;
                unsafe {
                    let v = if g.beta != 0.0 { acc + g.beta * load(c, g.c.dtype, at) } else { acc };
                    store(c, g.c.dtype, at, v);
                }
            }
        }
    }
}
