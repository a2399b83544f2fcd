//! Construction never panics: on a machine without a GPU (or without the CUDA libraries) it is an error
//! that says what is missing. On a GPU machine the backend comes up and reports its name.

use ernie_backend::Backend;
use ernie_cuda::{CudaBackend, Precision};

#[test]
fn new_returns_err_instead_of_panicking() {
    for precision in [Precision::F32, Precision::Bf16] {
        match std::panic::catch_unwind(|| CudaBackend::with_precision(0, precision)) {
            Err(_) => panic!("CudaBackend::with_precision panicked"),
            Ok(Ok(b)) => eprintln!("CUDA backend available: {}", b.name()),
            Ok(Err(e)) => {
                let msg = e.to_string();
                eprintln!("no CUDA backend here: {msg}");
                assert!(!msg.is_empty());
                if ernie_cuda::preflight().is_err() {
                    assert!(
                        msg.contains("libcuda")
                            || msg.contains("NVRTC")
                            || msg.contains("cuBLAS")
                            || msg.contains("cuBLASLt"),
                        "{msg}"
                    );
                }
            }
        }
    }
    // A device ordinal that cannot exist is an error too, never a panic.
    assert!(CudaBackend::new(1 << 20).is_err());
}
