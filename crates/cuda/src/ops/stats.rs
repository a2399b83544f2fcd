//! A training step's scalars on the device (kernels/stats.cu): batch means of per-row losses, the count of
//! correct predictions, the loss from its parts and the global-norm clip factor, all in f64, so that a step
//! reads the device once, at its end (`stats_download`). The CPU reference is
//! `ernie_backend::cpu::ops::stats`; each kernel does the reference's f64 operations in its order (one thread
//! where the order matters: the rows of a batch are a few hundred at most), so the results agree bit for
//! bit given the same inputs.

use super::need;
use crate::buf::{CudaBuf, CudaIds, CudaStats};
use crate::kernels::Kernel;
use crate::params::{launch_params, Tensor};
use crate::CudaBackend;
use ernie_backend::{Clip, MAX_COMBINE_TERMS};

/// "No slot" in the parameter structs.
const NO_SLOT: u64 = u64::MAX;

launch_params! {
    /// `stats[slot] = (scale * sum(rows[0..n])) / divisor`.
    struct StatsMeanParams { stats: u64, rows: Tensor, n: u64, slot: u64, scale: f64, divisor: f64 }
    /// `stats[slot]` = correct predictions among the first `rows` rows.
    struct StatsCorrectParams { stats: u64, logits: Tensor, labels: u64, rows: u64, classes: u64, slot: u64 }
    /// `stats[dst] = sum_k weight[k] * stats[slot[k]]`, `k < n`, left to right.
    struct StatsCombineParams { stats: u64, dst: u64, n: u64, _pad: u64, slot: [u64; 4], weight: [f64; 4] }
    /// The clip factor (see ernie_backend::Clip); `guard` NO_SLOT for none, `clip` 0 for no clipping.
    struct ClipParams { stats: u64, sumsq: u64, norm: u64, scale: u64, guard: u64, max_norm: f64, clip: u32, _pad: u32 }
}

pub(crate) fn stats_zeros(cuda: &CudaBackend, len: usize) -> CudaStats {
    CudaStats { mem: cuda.exec.alloc(len * 8, true), len }
}

pub(crate) fn stats_upload(cuda: &CudaBackend, values: &[f64]) -> CudaStats {
    CudaStats { mem: cuda.upload_data(values), len: values.len() }
}

pub(crate) fn stats_download(cuda: &CudaBackend, stats: &CudaStats) -> Vec<f64> {
    cuda.download_pod(&stats.mem, stats.len)
}

pub(crate) fn stats_mean(
    cuda: &CudaBackend,
    stats: &mut CudaStats,
    slot: usize,
    rows: &CudaBuf,
    scale: f64,
    divisor: f64,
) {
    stats.check(slot, "stats_mean");
    let p =
        StatsMeanParams { stats: stats.ptr(), rows: rows.arg(), n: rows.len as u64, slot: slot as u64, scale, divisor };
    cuda.launch_one_warp(Kernel::stats_mean, p);
}

pub(crate) fn stats_correct(
    cuda: &CudaBackend,
    stats: &mut CudaStats,
    slot: usize,
    logits: &CudaBuf,
    labels: &CudaIds,
    rows: usize,
    classes: usize,
) {
    stats.check(slot, "stats_correct");
    need(logits.len, rows * classes, "stats_correct: logits");
    need(labels.len(), rows, "stats_correct: labels");
    let p = StatsCorrectParams {
        stats: stats.ptr(),
        logits: logits.arg(),
        labels: labels.ptr(),
        rows: rows as u64,
        classes: classes as u64,
        slot: slot as u64,
    };
    cuda.launch_blocks(Kernel::stats_correct, 1, p);
}

pub(crate) fn stats_combine(cuda: &CudaBackend, stats: &mut CudaStats, dst: usize, terms: &[(f64, usize)]) {
    assert!(
        terms.len() <= MAX_COMBINE_TERMS,
        "ernie-cuda: stats_combine: {} terms, at most {MAX_COMBINE_TERMS}",
        terms.len()
    );
    stats.check(dst, "stats_combine");
    let mut p = StatsCombineParams { stats: stats.ptr(), dst: dst as u64, n: terms.len() as u64, ..Default::default() };
    for (i, &(w, k)) in terms.iter().enumerate() {
        stats.check(k, "stats_combine");
        p.slot[i] = k as u64;
        p.weight[i] = w;
    }
    cuda.launch_one_warp(Kernel::stats_combine, p);
}

pub(crate) fn clip_scale(cuda: &CudaBackend, stats: &mut CudaStats, c: &Clip) {
    for s in [c.sumsq, c.norm, c.scale].into_iter().chain(c.guard) {
        stats.check(s, "clip_scale");
    }
    let p = ClipParams {
        stats: stats.ptr(),
        sumsq: c.sumsq as u64,
        norm: c.norm as u64,
        scale: c.scale as u64,
        guard: c.guard.map_or(NO_SLOT, |g| g as u64),
        max_norm: c.max_norm.unwrap_or(0.0),
        clip: c.max_norm.is_some() as u32,
        _pad: 0,
    };
    cuda.launch_one_warp(Kernel::clip_scale, p);
}
