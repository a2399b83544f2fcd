//! CPU reference kernels for every op of the encoder, forward and backward, one file per op family (the
//! same families, under the same names, as the CUDA backend's `kernels/<family>.cu` and
//! `crates/cuda/src/ops/<family>.rs`). They are the definition the CUDA kernels are tested against, so each
//! is written for clarity first; rayon splits rows across cores. Reductions across rows (bias and LayerNorm
//! parameter gradients, embedding scatter) use fixed-size chunks summed in a fixed order, so results do not
//! depend on the thread count.

mod activation;
mod adamw;
mod attention;
mod copy;
mod embedding;
mod layernorm;
mod linear;
mod loss;
mod noise;
mod stats;
mod vector;

pub use crate::backend::{AttnShape, TokShape};
pub use activation::{dropout, dropout_scales, gelu_bwd, gelu_fwd, tanh_bwd, tanh_fwd};
pub use adamw::adamw;
pub use attention::{attention_block_stream, attention_bwd, attention_fwd, attention_infer};
pub use copy::{concat_rows, gather_rows, scatter_rows, slice_rows, transpose};
pub use embedding::{embed_scatter_add, embed_sum_bwd, embed_sum_fwd};
pub use layernorm::{layer_norm_bwd, layer_norm_fwd};
pub use linear::{
    linear_bwd_input, linear_bwd_params, linear_fwd, linear_fwd_wt, transposed_weight_pays, transposed_weight_same_bits,
};
pub use loss::{kl_detached, softmax_ce, sym_kl};
pub use noise::{normalize_per_example, randn_key_masked};
pub use stats::{clip_scale, combine, count_correct, stats_mean};
pub use vector::{axpby, sum_squares};

use crate::cpu::buffer::zeroed;
use crate::Float;
use rayon::prelude::*;

/// Rows per chunk for order-fixed reductions.
const RED_CHUNK: usize = 64;

/// Sum `f(chunk_of_rows) -> partial[cols]` over row chunks in a fixed order.
fn chunked_col_reduce<T: Float>(
    rows: usize,
    cols: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [T]) + Sync,
) -> Vec<T> {
    let chunks = rows.div_ceil(RED_CHUNK);
    let partials: Vec<Vec<T>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut p = vec![T::zero(); cols];
            f(c * RED_CHUNK..((c + 1) * RED_CHUNK).min(rows), &mut p);
            p
        })
        .collect();
    let mut out = zeroed(cols);
    for p in partials {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
    out
}

/// Elementwise `out[i] = f(a[i], b[i])` in chunks, so the inner loop vectorises (rayon's per-item
/// iterators do not).
fn map2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    const CHUNK: usize = 1 << 14;
    let mut out = zeroed(a.len());
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (a, b))| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    });
    out
}

/// `a + b` elementwise.
pub fn add<T: Float>(a: &[T], b: &[T]) -> Vec<T> {
    map2(a, b, |a, b| a + b)
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}
