//! Output buffers filled by the thread pool.
//!
//! An op's output starts as zeros (or as the bias rows a product accumulates onto) before its parallel
//! loop writes it. `vec![0.0; n]` and `slice::repeat` fill it on the calling thread while the pool waits:
//! profiled in an adv update on 2 threads (e5-small, batch 32 x 128), those fills were 11% of the wall
//! time with both pool threads idle. Here the pool fills large buffers, one chunk per task. The contents
//! are the same values either way, so no op's numbers change.

use crate::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Below this many elements the calling thread fills the buffer itself: a hand-off to the pool costs
/// more than the fill.
const PARALLEL_MIN: usize = 1 << 15;

/// Elements per pool task (256 KiB of f32).
const CHUNK: usize = 1 << 16;

/// Whether the caller fills a buffer of `len` elements itself: small ones, and inside a one-thread pool
/// (an inference lane), where a hand-off only adds work.
fn serial(len: usize) -> bool {
    len < PARALLEL_MIN || rayon::current_num_threads() == 1
}

/// `len` zeros.
pub fn zeroed<T: Float>(len: usize) -> Vec<T> {
    if serial(len) {
        return vec![T::zero(); len];
    }
    filled(len, CHUNK, |chunk| chunk.fill(MaybeUninit::new(T::zero())))
}

/// `row` repeated `times` times (`row.repeat(times)`).
pub fn repeated<T: Float>(row: &[T], times: usize) -> Vec<T> {
    let n = row.len();
    if n == 0 || serial(n * times) {
        return row.repeat(times);
    }
    // Whole rows per task, so that every task copies the row from its start.
    let rows_per_chunk = CHUNK.div_ceil(n);
    filled(n * times, rows_per_chunk * n, |chunk| {
        for dst in chunk.chunks_mut(n) {
            for (d, &s) in dst.iter_mut().zip(row) {
                d.write(s);
            }
        }
    })
}

/// A `len`-element vector whose chunks of `chunk` elements (the last one shorter) `init` writes in
/// parallel.
fn filled<T: Send>(len: usize, chunk: usize, init: impl Fn(&mut [MaybeUninit<T>]) + Sync + Send) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    let spare = &mut v.spare_capacity_mut()[..len];
    spare.par_chunks_mut(chunk).for_each(init);
    // SAFETY: the chunks cover `spare[..len]`, and every caller's `init` writes each element of its chunk.
    unsafe { v.set_len(len) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_is_zeros_at_every_size() {
        for len in [0, 1, PARALLEL_MIN - 1, PARALLEL_MIN, CHUNK + 3, 3 * CHUNK] {
            let v: Vec<f32> = zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x.to_bits() == 0), "len {len}");
        }
    }

    #[test]
    fn repeated_equals_slice_repeat() {
        for (n, times) in [(0, 5), (3, 0), (7, 2), (384, 4096), (1536, 100), (1000, 67), (CHUNK + 1, 3)] {
            let row: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            assert_eq!(repeated(&row, times), row.repeat(times), "n {n} times {times}");
        }
    }
}
