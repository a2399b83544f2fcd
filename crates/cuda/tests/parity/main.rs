//! Every CUDA op against the CPU reference on random shapes and data, in both precisions, one module per
//! op family (the families of `kernels/<family>.cu` and `src/ops/<family>.rs`). Without a GPU each test
//! prints `SKIPPED (no CUDA GPU): <test>` and passes, and runs on the host emulation of the kernels.
//! Tolerances and their reasons are in common/mod.rs; where the GPU does exactly the reference's fp32
//! arithmetic (data movement, embedding, dropout, axpby, AdamW, the step statistics), the check is
//! bit-for-bit against Cpu<f32>.
//!
//! One test binary, not one per family: the emulation's kernel library and the backends are made once.

#[path = "../common/mod.rs"]
mod common;

mod activation;
mod adamw;
mod attention;
mod copy;
mod determinism;
mod embedding;
mod layernorm;
mod linear;
mod loss;
mod noise;
mod precision;
mod stats;
mod vector;

use common::*;
use ernie_backend::{AttnShape, Backend, Cpu, TokShape, TokenBatch};

fn cpu64() -> Cpu<f64> {
    Cpu::<f64>::new()
}
fn cpu32() -> Cpu<f32> {
    Cpu::<f32>::new()
}

fn batch<B: Backend>(
    be: &B,
    shape: TokShape,
    ids: &[u32],
    types: &[u32],
    tasks: &[u32],
    mask: &[u32],
) -> TokenBatch<B::Ids> {
    TokenBatch {
        shape,
        ids: be.upload_ids(ids),
        type_ids: be.upload_ids(types),
        task_ids: be.upload_ids(tasks),
        key_mask: be.upload_ids(mask),
    }
}

#[allow(clippy::type_complexity)]
fn attention_case(
    b: usize,
    heads: usize,
    l: usize,
    d: usize,
    seed: u64,
) -> (AttnShape, Vec<f32>, Vec<f32>, Vec<f32>, Vec<u32>, Vec<f32>, Vec<f32>) {
    let a = AttnShape { batch: b, seq: l, heads, head_dim: d };
    let n = b * l * heads * d;
    let q = data(seed, 1, n, 1.5);
    let k = data(seed, 2, n, 1.5);
    let v = data(seed, 3, n, 1.0);
    // Key mask: random, with the first key of every row real (as [CLS] is).
    let mut mask = ints(seed, 4, b * l, 4).into_iter().map(|x| (x != 0) as u32).collect::<Vec<_>>();
    for bi in 0..b {
        mask[bi * l] = 1;
    }
    let delta = data(seed, 5, a.score_len(), 0.5);
    let dctx = data(seed, 6, n, 1.0);
    (a, q, k, v, mask, delta, dctx)
}
