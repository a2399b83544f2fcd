//! Embedding sum and its deterministic backward (the CUDA side: kernels/embedding.cu).

use super::SendPtr;
use crate::backend::TokShape;
use crate::cpu::buffer::zeroed;
use crate::Float;
use rayon::prelude::*;

/// `out[t] = word[ids[t]] + pos[t % seq] + typ[type_ids[t]] (+ task[task_ids[t]])`.
#[allow(clippy::too_many_arguments)]
pub fn embed_sum_fwd<T: Float>(
    s: TokShape,
    word: &[T],
    pos: &[T],
    typ: &[T],
    task: Option<&[T]>,
    ids: &[u32],
    type_ids: &[u32],
    task_ids: &[u32],
) -> Vec<T> {
    let h = s.hidden;
    let mut out = zeroed(s.batch * s.seq * h);
    out.par_chunks_mut(h).enumerate().for_each(|(t, o)| {
        let (w, p, y) = (ids[t] as usize, t % s.seq, type_ids[t] as usize);
        for j in 0..h {
            o[j] = word[w * h + j] + pos[p * h + j] + typ[y * h + j];
        }
        if let Some(task) = task {
            let k = task_ids[t] as usize;
            for j in 0..h {
                o[j] += task[k * h + j];
            }
        }
    });
    out
}

/// Backward of [`embed_sum_fwd`]: `dy` scatter-added into the gradients of the word, position, type and
/// (when given) task tables.
#[allow(clippy::too_many_arguments)]
pub fn embed_sum_bwd<T: Float>(
    s: TokShape,
    dy: &[T],
    ids: &[u32],
    type_ids: &[u32],
    task_ids: &[u32],
    dword: &mut [T],
    dpos: &mut [T],
    dtyp: &mut [T],
    dtask: Option<&mut [T]>,
) {
    let (h, l) = (s.hidden, s.seq);
    embed_scatter_add(dy, |i| ids[i] as usize, h, dword);
    embed_scatter_add(dy, |i| i % l, h, dpos);
    embed_scatter_add(dy, |i| type_ids[i] as usize, h, dtyp);
    if let Some(dtask) = dtask {
        embed_scatter_add(dy, |i| task_ids[i] as usize, h, dtask);
    }
}

/// Scatter-add of `dy` into a table's gradient: `d[rows[t]] += dy[t]`. Deterministic: each thread owns a
/// band of columns and walks the tokens in order.
pub fn embed_scatter_add<T: Float>(dy: &[T], rows: impl Fn(usize) -> usize + Sync, hidden: usize, d: &mut [T]) {
    let tokens = dy.len() / hidden;
    let table_rows = d.len() / hidden;
    const BAND: usize = 32;
    // Split the table into column bands; a band of every row is owned by one task.
    let bands = hidden.div_ceil(BAND);
    let ptr = SendPtr(d.as_mut_ptr());
    (0..bands).into_par_iter().for_each(|b| {
        let (lo, hi) = (b * BAND, ((b + 1) * BAND).min(hidden));
        for t in 0..tokens {
            let r = rows(t);
            debug_assert!(r < table_rows);
            for j in lo..hi {
                // SAFETY: bands are disjoint column ranges, so no two tasks touch the same element.
                unsafe { *ptr.get().add(r * hidden + j) += dy[t * hidden + j] };
            }
        }
    });
}
