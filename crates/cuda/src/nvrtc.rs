//! Run-time compilation of the kernel sources with NVRTC, and the reading of ptxas's resource report.
//!
//! Used by the backend (cubin for the device's own architecture, compiled once per process) and by
//! `cargo xtask kernels` (cubins for sm_80 and sm_90 with `--ptxas-options=-v`, to print registers, shared
//! memory, stack and spills per kernel). NVRTC is loaded at run time: every entry point checks that the
//! library is there first and returns [`NvrtcError::NotFound`] rather than letting cudarc panic.

use crate::kernels::{Source, HEADERS};
use cudarc::nvrtc::sys;
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::PathBuf;

/// Where to get NVRTC, for error messages.
pub const INSTALL_HINT: &str = "install it with `bash .ci/install-nvrtc.sh DIR` (PyPI wheels of CUDA 13.0's NVRTC and \
headers, no GPU needed) and export the LD_LIBRARY_PATH and ERNIE_FT_CUDA_INCLUDE lines it prints; or put a CUDA \
13.0 toolkit's lib64 on LD_LIBRARY_PATH";

#[derive(Debug, thiserror::Error)]
pub enum NvrtcError {
    #[error("NVRTC not found (libnvrtc.so / libnvrtc.so.13 on the library path): {INSTALL_HINT}")]
    NotFound,
    #[error("NVRTC: {call} failed: {status}")]
    Call { call: &'static str, status: String },
    #[error("compiling {file} for {arch} failed:\n{log}")]
    Compile { file: String, arch: String, log: String },
}

/// What NVRTC should produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Machine code for one real architecture (`sm_XY`): loads without JIT.
    Cubin,
    /// PTX for a virtual architecture (`compute_XY`): the driver compiles it at load time.
    Ptx,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Compute capability as major * 10 + minor (90 for sm_90).
    pub cc: u32,
    pub target: Target,
    /// Pass `--ptxas-options=-v` so the log carries ptxas's resource usage (cubin only).
    pub ptxas_verbose: bool,
    /// Further NVRTC options.
    pub extra: Vec<String>,
}

impl Options {
    pub fn cubin(cc: u32) -> Self {
        Self { cc, target: Target::Cubin, ptxas_verbose: false, extra: Vec::new() }
    }
    pub fn arch(&self) -> String {
        match self.target {
            Target::Cubin => format!("sm_{}", self.cc),
            Target::Ptx => format!("compute_{}", self.cc),
        }
    }
}

/// A compiled program: the cubin (or the PTX text, NUL-terminated) and NVRTC's log.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub image: Vec<u8>,
    pub log: String,
}

/// Whether libnvrtc can be loaded.
pub fn is_available() -> bool {
    crate::libs::preload();
    // SAFETY: only tries to dlopen the candidate names.
    unsafe { sys::is_culib_present() }
}

fn ensure() -> Result<(), NvrtcError> {
    if is_available() {
        Ok(())
    } else {
        Err(NvrtcError::NotFound)
    }
}

fn check(call: &'static str, r: sys::nvrtcResult) -> Result<(), NvrtcError> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(NvrtcError::Call { call, status: format!("{r:?}") })
    }
}

/// NVRTC's version, (major, minor).
pub fn version() -> Result<(i32, i32), NvrtcError> {
    ensure()?;
    let (mut major, mut minor) = (0 as c_int, 0 as c_int);
    // SAFETY: library present; out-pointers valid.
    check("nvrtcVersion", unsafe { sys::nvrtcVersion(&mut major, &mut minor) })?;
    Ok((major, minor))
}

/// The real architectures this NVRTC can produce cubins for (e.g. 75, 80, 86, ..., 90, 100, 120).
pub fn supported_archs() -> Result<Vec<u32>, NvrtcError> {
    ensure()?;
    let mut n: c_int = 0;
    // SAFETY: library present; out-pointers valid and sized by the first call.
    check("nvrtcGetNumSupportedArchs", unsafe { sys::nvrtcGetNumSupportedArchs(&mut n) })?;
    let mut v = vec![0 as c_int; n.max(0) as usize];
    check("nvrtcGetSupportedArchs", unsafe { sys::nvrtcGetSupportedArchs(v.as_mut_ptr()) })?;
    Ok(v.into_iter().map(|a| a as u32).collect())
}

/// Directories searched for the CUDA headers the kernels include (cuda_bf16.h and what it pulls in):
/// `$ERNIE_FT_CUDA_INCLUDE` (colon separated) first, then `$CUDA_HOME`/`$CUDA_PATH`, then the usual
/// toolkit locations, then `target/nvrtc/nvidia/cu13/include` as `.ci/install-nvrtc.sh` leaves it (looked
/// for from the current directory up). Only existing directories are returned.
pub fn include_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(v) = std::env::var("ERNIE_FT_CUDA_INCLUDE") {
        dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Ok(v) = std::env::var(var) {
            let base = PathBuf::from(v).join("include");
            dirs.push(base.join("cccl"));
            dirs.push(base);
        }
    }
    // Toolkit locations, taken only where they hold the CUDA headers (never a bare /usr/include with the
    // host's C library in it).
    for base in ["/usr/local/cuda/include", "/usr/local/cuda-13.0/include", "/opt/cuda/include", "/usr/include"] {
        let base = PathBuf::from(base);
        if base.join("cuda_bf16.h").is_file() {
            dirs.push(base.join("cccl"));
            dirs.push(base);
        }
    }
    // Where .ci/install-nvrtc.sh puts the headers, from the workspace root or a crate directory.
    if let Ok(cwd) = std::env::current_dir() {
        for base in cwd.ancestors().take(4) {
            let inc = base.join("target/nvrtc/nvidia/cu13/include");
            if inc.join("cuda_bf16.h").is_file() {
                dirs.push(inc.clone());
                dirs.push(inc.join("cccl"));
                break;
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    dirs.into_iter().filter(|d| d.is_dir() && seen.insert(d.clone())).collect()
}

/// Whether some include directory has `cuda_bf16.h`.
pub fn headers_found() -> bool {
    include_dirs().iter().any(|d| d.join("cuda_bf16.h").is_file())
}

/// The option list handed to NVRTC.
pub fn option_list(opts: &Options) -> Vec<String> {
    let mut o = vec![format!("--gpu-architecture={}", opts.arch()), "-std=c++17".to_string()];
    // The kernels rely on IEEE division and square root (parity with the CPU reference); these are
    // NVRTC's defaults, stated so that nobody adds --use_fast_math by accident.
    o.push("--prec-div=true".into());
    o.push("--prec-sqrt=true".into());
    o.push("--ftz=false".into());
    for d in include_dirs() {
        o.push(format!("--include-path={}", d.display()));
    }
    if opts.ptxas_verbose && opts.target == Target::Cubin {
        o.push("--ptxas-options=-v".into());
    }
    o.extend(opts.extra.iter().cloned());
    o
}

/// Compiles one source (with the in-memory headers of [`HEADERS`]).
pub fn compile(src: &Source, opts: &Options) -> Result<Compiled, NvrtcError> {
    compile_text(src.file, src.text, opts)
}

/// Compiles arbitrary source text (tests use this for the parameter layout check).
pub fn compile_text(file: &str, text: &str, opts: &Options) -> Result<Compiled, NvrtcError> {
    ensure()?;
    let c_src = CString::new(text).expect("kernel source contains NUL");
    let c_name = CString::new(file).expect("file name contains NUL");
    let header_src: Vec<CString> = HEADERS.iter().map(|(_, t)| CString::new(*t).expect("header NUL")).collect();
    let header_names: Vec<CString> = HEADERS.iter().map(|(n, _)| CString::new(*n).expect("header NUL")).collect();
    let header_src_ptrs: Vec<*const c_char> = header_src.iter().map(|c| c.as_ptr()).collect();
    let header_name_ptrs: Vec<*const c_char> = header_names.iter().map(|c| c.as_ptr()).collect();
    let options: Vec<CString> = option_list(opts).into_iter().map(|o| CString::new(o).expect("option NUL")).collect();
    let option_ptrs: Vec<*const c_char> = options.iter().map(|c| c.as_ptr()).collect();

    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: all strings outlive the program; counts match the arrays.
    check("nvrtcCreateProgram", unsafe {
        sys::nvrtcCreateProgram(
            &mut prog,
            c_src.as_ptr(),
            c_name.as_ptr(),
            HEADERS.len() as c_int,
            header_src_ptrs.as_ptr(),
            header_name_ptrs.as_ptr(),
        )
    })?;
    struct Guard(sys::nvrtcProgram);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: created above, destroyed once.
            unsafe { sys::nvrtcDestroyProgram(&mut self.0) };
        }
    }
    let guard = Guard(prog);

    // SAFETY: valid program and option array.
    let status = unsafe { sys::nvrtcCompileProgram(guard.0, option_ptrs.len() as c_int, option_ptrs.as_ptr()) };
    let log = program_log(guard.0)?;
    if status != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(NvrtcError::Compile {
            file: file.to_string(),
            arch: opts.arch(),
            log: if log.trim().is_empty() { format!("{status:?}") } else { log },
        });
    }
    let image = match opts.target {
        Target::Cubin => {
            let mut size = 0usize;
            check("nvrtcGetCUBINSize", unsafe { sys::nvrtcGetCUBINSize(guard.0, &mut size) })?;
            let mut buf = vec![0u8; size];
            check("nvrtcGetCUBIN", unsafe { sys::nvrtcGetCUBIN(guard.0, buf.as_mut_ptr() as *mut c_char) })?;
            buf
        }
        Target::Ptx => {
            let mut size = 0usize;
            check("nvrtcGetPTXSize", unsafe { sys::nvrtcGetPTXSize(guard.0, &mut size) })?;
            let mut buf = vec![0u8; size];
            check("nvrtcGetPTX", unsafe { sys::nvrtcGetPTX(guard.0, buf.as_mut_ptr() as *mut c_char) })?;
            buf
        }
    };
    Ok(Compiled { image, log })
}

fn program_log(prog: sys::nvrtcProgram) -> Result<String, NvrtcError> {
    let mut size = 0usize;
    // SAFETY: valid program; buffer sized by the first call.
    check("nvrtcGetProgramLogSize", unsafe { sys::nvrtcGetProgramLogSize(prog, &mut size) })?;
    if size <= 1 {
        return Ok(String::new());
    }
    let mut buf = vec![0u8; size];
    check("nvrtcGetProgramLog", unsafe { sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char) })?;
    Ok(CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default())
}

/// ptxas's resource report for one kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelUsage {
    pub name: String,
    pub arch: String,
    pub registers: u32,
    pub barriers: u32,
    /// Static shared memory (dynamic shared memory is decided at launch).
    pub smem_bytes: u32,
    pub stack_bytes: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

/// Reads the `--ptxas-options=-v` lines of an NVRTC log:
///
/// ```text
/// ptxas info    : Compiling entry function 'ln_fwd' for 'sm_90'
/// ptxas info    : Function properties for ln_fwd
/// ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 25 registers, used 1 barriers, 128 bytes smem
/// ```
///
/// Only entry functions are reported ("Function properties" of non-inlined device functions are folded
/// into nothing: their stack shows up in the entry's cumulative stack size where it matters).
pub fn parse_ptxas_log(log: &str) -> Vec<KernelUsage> {
    let mut out: Vec<KernelUsage> = Vec::new();
    let mut current: Option<usize> = None; // index into out of the entry being described
    let mut props_for_entry = false;
    for line in log.lines() {
        let l = line.trim();
        if let Some(rest) = l.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            let arch = rest.split("for '").nth(1).and_then(|a| a.split('\'').next()).unwrap_or("").to_string();
            out.push(KernelUsage { name, arch, ..Default::default() });
            current = Some(out.len() - 1);
            props_for_entry = false;
        } else if let Some(rest) = l.split("Function properties for ").nth(1) {
            props_for_entry = current.map(|i| out[i].name == rest.trim()).unwrap_or(false);
        } else if l.contains("bytes stack frame") {
            if let (true, Some(i)) = (props_for_entry, current) {
                out[i].stack_bytes = number_before(l, "bytes stack frame");
                out[i].spill_stores = number_before(l, "bytes spill stores");
                out[i].spill_loads = number_before(l, "bytes spill loads");
            }
        } else if l.contains("Used ") && l.contains(" registers") {
            if let Some(i) = current {
                out[i].registers = number_before(l, "registers");
                out[i].barriers = number_before(l, "barriers");
                out[i].smem_bytes = number_before(l, "bytes smem");
            }
        }
    }
    out
}

/// The integer just before `unit` in `s` ("0 bytes spill stores" -> 0), 0 when absent.
fn number_before(s: &str, unit: &str) -> u32 {
    let Some(at) = s.find(unit) else { return 0 };
    s[..at].split(|c: char| !c.is_ascii_digit()).rfind(|t| !t.is_empty()).and_then(|t| t.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k2' for 'sm_90'
ptxas info    : Function properties for k2
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 20 registers, used 0 barriers
ptxas info    : Compile time = 7.239 ms
ptxas info    : Compiling entry function 'k' for 'sm_80'
ptxas info    : Function properties for k
ptxas         .     40 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 15 registers, used 1 barriers, 256 bytes smem, 400 bytes cmem[0]
ptxas info    : Function properties for __internal_trig_reduction_slowpathd
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
";

    #[test]
    fn parses_ptxas_report() {
        let u = parse_ptxas_log(LOG);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0], KernelUsage { name: "k2".into(), arch: "sm_90".into(), registers: 20, ..Default::default() });
        assert_eq!(
            u[1],
            KernelUsage {
                name: "k".into(),
                arch: "sm_80".into(),
                registers: 15,
                barriers: 1,
                smem_bytes: 256,
                stack_bytes: 40,
                spill_stores: 8,
                spill_loads: 12
            }
        );
    }

    #[test]
    fn options_name_the_arch() {
        let o = option_list(&Options::cubin(90));
        assert!(o.contains(&"--gpu-architecture=sm_90".to_string()));
        assert!(o.contains(&"-std=c++17".to_string()));
        let p = Options { target: Target::Ptx, ptxas_verbose: true, ..Options::cubin(80) };
        let o = option_list(&p);
        assert!(o.contains(&"--gpu-architecture=compute_80".to_string()));
        assert!(!o.iter().any(|x| x.contains("ptxas")));
    }
}
