//! ernie-cuda: the CUDA backend of ernie-ft.
//!
//! [`CudaBackend`] implements [`ernie_backend::Backend`] with hand-written kernels (`kernels/*.cu`, compiled
//! at run time by NVRTC for the device at hand) and cuBLASLt / cuBLAS for the matrix products. Everything
//! CUDA is loaded at run time: the crate builds, and the rest of the workspace runs, on machines without
//! CUDA; [`CudaBackend::new`] then returns an error saying what is missing instead of panicking.
//!
//! # Precision
//!
//! [`Precision::F32`] computes in fp32 throughout (GEMMs without TF32) and is the path compared with the CPU
//! reference. [`Precision::Bf16`] stores activations in bf16 and accumulates in fp32, keeps parameters,
//! gradients and AdamW moments in fp32 and gives each weight a bf16 copy for the GEMMs, refreshed by the
//! AdamW kernel. See [`buf`] for which buffer gets which dtype and why.
//!
//! # Determinism
//!
//! No kernel uses floating-point atomics: column reductions (bias, LayerNorm parameter gradients) sum fixed
//! 64-row chunks then the chunks in order, the embedding backward groups tokens by row on the host and gives
//! each (row, column) to one thread, and the norm reductions are two fixed passes. Dropout and noise come
//! from the counter-based Philox of `ernie_backend::philox`, so masks equal the CPU's bit for bit.
//!
//! # Where things are
//!
//! `device.rs` makes a backend (device, stream, NVRTC modules, or the host emulation); `ops/<family>.rs`
//! launches the kernels of `kernels/<family>.cu` and declares their parameter structs; `backend.rs`
//! implements the `Backend` trait by calling the ops. Below them: `exec.rs` (allocate, copy, launch, GEMM
//! on a device or the emulation), `gemm.rs` (cuBLASLt / cuBLAS), `buf.rs` (buffers and dtypes),
//! `kernels.rs` (the sources and their kernel ids), `params.rs` (the shared parameter structs).
//!
//! # Environment
//!
//! * `ERNIE_FT_CUDA_INCLUDE`: colon-separated directories with `cuda_bf16.h` (and CCCL) for NVRTC;
//!   `.ci/install-nvrtc.sh` prints it. CUDA's usual locations and `target/nvrtc` are searched too.
//! * `ERNIE_FT_CUDA_LIB`: colon-separated directories with libnvrtc / libcublas / libcublasLt when they are
//!   not on the loader's path (see [`libs`]).
//! * `ERNIE_FT_CUDA_SYNC=1`: synchronise after every kernel, so a fault names its kernel.
//! * `ERNIE_FT_CUDA_POISON=1`: fill fresh allocations with NaN, so an unwritten output element shows.
//!
//! # Testing without a GPU
//!
//! `cargo xtask kernels` and the `nvrtc_compile` tests compile every kernel with NVRTC (no GPU needed).
//! [`CudaBackend::emulated`] runs the backend on a host emulation of the kernels ([`emu`]), which the
//! parity tests use when no GPU is present; on a GPU they run on it as well. [`CudaBackend::transfers`]
//! counts every host <-> device transfer, so tests bound what a training step moves (`tests/transfers.rs`:
//! one upload of the batch, one read at the end).

mod backend;
pub mod buf;
mod device;
pub mod emu;
mod exec;
mod gemm;
pub mod host;
pub mod kernels;
pub mod libs;
pub mod nvrtc;
mod ops;
pub mod params;

pub use buf::{CudaBuf, CudaIds, CudaStats, DType, Precision, Transfers};
pub use device::{preflight, CudaBackend, CudaError};
