//! Adversarial noise on the attention scores (the CUDA side: kernels/noise.cu).

use crate::backend::{AttnShape, NoiseNorm};
use crate::cpu::buffer::zeroed;
use crate::philox::{box_muller, RngStream};
use crate::Float;
use rayon::prelude::*;

/// Noise `N(0, sigma^2)` on `[batch, heads, seq, seq]` scores, zero on padded keys (`mask[b, j] == 0`).
pub fn randn_key_masked<T: Float>(a: AttnShape, mask: &[u32], sigma: f32, rng: RngStream) -> Vec<T> {
    let l = a.seq;
    let mut out = zeroed(a.score_len());
    // Normal n takes elements 2n and 2n+1 of the stream: a row's 2l words come from the vectorised
    // generator at once (the same words as `rng.normal(n)` draws one block per word for).
    out.par_chunks_mut(l).enumerate().for_each_init(
        || vec![0u32; 2 * l],
        |words, (row, o)| {
            let b = row / (a.heads * l);
            rng.words(2 * (row * l) as u64, words);
            for j in 0..l {
                if mask[b * l + j] != 0 {
                    o[j] = T::from_f32(sigma * box_muller(words[2 * j], words[2 * j + 1]));
                }
            }
        },
    );
    out
}

/// `g * eps / norm(g[b])` with the norm (in f64) over each example's block of `g.len() / batch` elements.
pub fn normalize_per_example<T: Float>(g: &[T], batch: usize, eps: f32, norm: NoiseNorm) -> Vec<T> {
    let per = g.len() / batch;
    let mut out = zeroed(g.len());
    out.par_chunks_mut(per).zip(g.par_chunks(per)).for_each(|(o, gi)| {
        let n = match norm {
            NoiseNorm::L2 => gi.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>().sqrt(),
            NoiseNorm::Max => gi.iter().map(|v| v.as_f64().abs()).fold(0.0, f64::max),
        };
        // A zero gradient gives zero noise rather than NaN.
        let s = if n > 0.0 { eps as f64 / n } else { 0.0 };
        for (a, b) in o.iter_mut().zip(gi) {
            *a = T::from_f64(b.as_f64() * s);
        }
    });
    out
}
