//! ernie-backend: the bottom layer of ernie-ft. The [`Backend`] trait every device implements, the CPU
//! backend with its reference kernels, the Philox RNG shared with the CUDA kernels, and dtype decoding for
//! checkpoints.

pub mod backend;
pub mod cpu;
pub mod dtype;
pub mod float;
pub mod philox;

pub use backend::{AdamWStep, AttnShape, Backend, Clip, NoiseNorm, ParamSlot, TokShape, TokenBatch, MAX_COMBINE_TERMS};
pub use cpu::{simd_class, Cpu, WeightLayout};
pub use float::Float;
pub use philox::RngStream;
