//! Finding the CUDA libraries outside the loader's search path.
//!
//! cudarc opens NVRTC and cuBLAS by file name (`libnvrtc.so.13`, `libcublas.so.13`, ...), so they must be
//! on `LD_LIBRARY_PATH` or in the loader cache. A CUDA toolkit in /usr/local/cuda often is neither. Before
//! cudarc looks, [`preload`] opens the libraries it finds by full path in `$ERNIE_FT_CUDA_LIB` (colon
//! separated), `$CUDA_HOME/lib64`, `/usr/local/cuda/lib64` and the directory `.ci/install-nvrtc.sh` fills
//! (`target/nvrtc/nvidia/cu13/lib` under the current directory), with `RTLD_GLOBAL`; the dynamic loader
//! then resolves cudarc's by-name requests (and NVRTC's own request for its builtins) to these already
//! loaded libraries through their sonames.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Library file names, in dependency order (each one's dependencies first).
const LIBS: &[&str] = &["libnvrtc-builtins.so.13.0", "libnvrtc.so.13", "libcublasLt.so.13", "libcublas.so.13"];

fn dirs() -> Vec<PathBuf> {
    let mut d: Vec<PathBuf> = Vec::new();
    if let Ok(v) = std::env::var("ERNIE_FT_CUDA_LIB") {
        d.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(v) = std::env::var(var) {
            d.push(PathBuf::from(&v).join("lib64"));
            d.push(PathBuf::from(&v).join("lib"));
        }
    }
    d.push("/usr/local/cuda/lib64".into());
    d.push("/usr/local/cuda/targets/x86_64-linux/lib".into());
    if let Ok(cwd) = std::env::current_dir() {
        for base in cwd.ancestors().take(4) {
            d.push(base.join("target/nvrtc/nvidia/cu13/lib"));
        }
    }
    d
}

/// Opens what it finds (once per process); returns the paths it loaded. Never fails: whatever is still
/// missing is reported by the checks that follow.
pub fn preload() -> &'static [PathBuf] {
    static LOADED: OnceLock<Vec<PathBuf>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let mut loaded = Vec::new();
        let dirs: Vec<PathBuf> = dirs().into_iter().filter(|d| d.is_dir()).collect();
        for lib in LIBS {
            if let Some(path) = dirs.iter().map(|d| d.join(lib)).find(|p| p.is_file()) {
                #[cfg(unix)]
                {
                    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
                    // SAFETY: loading a CUDA library runs its initialisers, as cudarc's own loading would.
                    if let Ok(l) = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) } {
                        // Kept for the life of the process, as cudarc keeps its handles.
                        std::mem::forget(l);
                        loaded.push(path);
                    }
                }
            }
        }
        loaded
    })
}
