//! Activations and dropout (the CUDA side: kernels/activation.cu): exact GELU, tanh, their backwards, and
//! inverted dropout with counter-based masks.

use super::map2;
use crate::cpu::buffer::zeroed;
use crate::philox::{to_uniform, RngStream};
use crate::Float;
use rayon::prelude::*;

const INV_SQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Exact (erf) GELU: `0.5 x (1 + erf(x / sqrt 2))`.
pub fn gelu_fwd<T: Float>(x: &[T]) -> Vec<T> {
    map2(x, x, |v, _| T::c(0.5) * v * (T::one() + (v * T::c(INV_SQRT2)).erf()))
}

pub fn gelu_bwd<T: Float>(dy: &[T], x: &[T]) -> Vec<T> {
    map2(dy, x, |g, v| {
        let cdf = T::c(0.5) * (T::one() + (v * T::c(INV_SQRT2)).erf());
        let pdf = T::c(INV_SQRT_2PI) * (T::c(-0.5) * v * v).exp_fast();
        g * (cdf + v * pdf)
    })
}

pub fn tanh_fwd<T: Float>(x: &[T]) -> Vec<T> {
    map2(x, x, |v, _| v.tanh())
}

/// Backward of tanh given its output `y`.
pub fn tanh_bwd<T: Float>(dy: &[T], y: &[T]) -> Vec<T> {
    map2(dy, y, |g, t| g * (T::one() - t * t))
}

/// Inverted dropout: element `i` is kept (and scaled by `1/(1-p)`) when `uniform(rng, i) >= p`.
/// The same function serves the backward (apply the same mask to the gradient).
pub fn dropout<T: Float>(x: &[T], p: f32, rng: RngStream) -> Vec<T> {
    if p <= 0.0 {
        return x.to_vec();
    }
    let mut y = zeroed(x.len());
    const CHUNK: usize = 4096; // a multiple of 4: chunks start on Philox block boundaries
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(c, (yc, xc))| {
        dropout_scales(yc, c * CHUNK, p, rng);
        yc.iter_mut().zip(xc).for_each(|(y, &x)| *y *= x);
    });
    y
}

/// Fill `out` with the dropout factors (`1/(1-p)` kept, 0 dropped) of elements `start..start+out.len()`
/// of stream `rng`. `start` must be a multiple of 4.
pub fn dropout_scales<T: Float>(out: &mut [T], start: usize, p: f32, rng: RngStream) {
    debug_assert_eq!(start % 4, 0);
    let scale = T::c(1.0 / (1.0 - p as f64));
    let abs = start as u64 + rng.offset;
    if !abs.is_multiple_of(4) {
        // Unaligned offset: one Philox block per element (rare: only row offsets of odd-sized rows).
        for (j, o) in out.iter_mut().enumerate() {
            *o = if to_uniform(rng.word((start + j) as u64)) >= p { scale } else { T::zero() };
        }
        return;
    }
    // 128 elements (32 Philox blocks) at a time through the vectorised generator: 32 lanes measured
    // 3.2x faster than 8 with AVX-512 and with AVX2 alone (about 1.2 ns per element on one core).
    const BLOCKS: usize = 32;
    for (c, run) in out.chunks_mut(4 * BLOCKS).enumerate() {
        let w = rng.blocks::<BLOCKS>(abs / 4 + (BLOCKS * c) as u64);
        // Decide in the generator's word-major layout (vector compares), then interleave to element order:
        // with a full chunk's fixed bounds the interleave compiles to shuffles (about 30% faster than the
        // indexed loop, which only the tail of a buffer that is not a multiple of 128 needs).
        let f = w.map(|wk| wk.map(|x| if to_uniform(x) >= p { scale } else { T::zero() }));
        if run.len() == 4 * BLOCKS {
            for j in 0..BLOCKS {
                for k in 0..4 {
                    run[4 * j + k] = f[k][j];
                }
            }
        } else {
            for (e, o) in run.iter_mut().enumerate() {
                *o = f[e % 4][e / 4];
            }
        }
    }
}
