//! Whole-buffer vector ops (kernels/vector.cu): fill, `y = a*y + b*x`, and the sum of squares over many
//! buffers (the global gradient norm), left in a step's statistics on the device.

use crate::buf::{CudaBuf, CudaStats};
use crate::host::block_starts;
use crate::kernels::Kernel;
use crate::params::{launch_params, Tensor};
use crate::CudaBackend;

/// Elements per block of the sum of squares' first pass.
const SUMSQ_CHUNK: usize = 8192;

launch_params! {
    struct FillParams { y: Tensor, n: u64, value: f32, _pad: u32 }
    /// `y = a*y + b*x`.
    struct AxpbyParams { y: Tensor, x: Tensor, n: u64, a: f32, b: f32 }
    /// One buffer of a multi-tensor launch: its first block is `block_start`.
    struct SumSqEntry { x: Tensor, n: u64, block_start: u64 }
    struct SumSqParams { table: u64, partial: u64, ntensors: u32, chunk: u32 }
    struct SumSqFinishParams { table: u64, partial: u64, out: u64, ntensors: u32, total_blocks: u32 }
    /// `stats[slot]` = the per-tensor sums `per[0..ntensors]` added in order.
    struct SumSqTotalParams { per: u64, stats: u64, ntensors: u64, slot: u64 }
}

pub(crate) fn fill(cuda: &CudaBackend, buf: &mut CudaBuf, value: f32) {
    let n = buf.len;
    let p = FillParams { y: buf.arg_mut(), n: n as u64, value, _pad: 0 };
    cuda.launch_over(Kernel::fill, n, p);
}

/// `y = a*y + b*x` over the shorter of the two.
pub(crate) fn axpby(cuda: &CudaBackend, y: &mut CudaBuf, a: f64, x: &CudaBuf, b: f64) {
    let n = y.len.min(x.len);
    let p = AxpbyParams { y: y.arg_mut(), x: x.arg(), n: n as u64, a: a as f32, b: b as f32 };
    cuda.launch_over(Kernel::axpby, n, p);
}

/// `stats[slot]` = the sum of squares over all buffers in f64: per-buffer sums (two fixed-order passes on
/// the device) added in buffer order by one thread, as the CPU reference adds them.
pub(crate) fn sum_squares(cuda: &CudaBackend, bufs: &[&CudaBuf], stats: &mut CudaStats, slot: usize) {
    stats.check(slot, "sum_squares");
    let out_mem = cuda.scratch::<f64>(bufs.len());
    let (starts, total) = block_starts(bufs.iter().map(|b| b.len), SUMSQ_CHUNK);
    // The table and partials only when there is a buffer (an empty table would still be an upload).
    let _keep = (!bufs.is_empty()).then(|| {
        let entries: Vec<SumSqEntry> = bufs
            .iter()
            .zip(&starts)
            .map(|(b, &s)| SumSqEntry { x: b.arg(), n: b.len as u64, block_start: s })
            .collect();
        let dev = cuda.upload_pod(&entries);
        let partial_mem = cuda.scratch::<f64>(total as usize);
        let (table, partial, out) = (dev.ptr(), partial_mem.ptr(), out_mem.ptr());
        let ntensors = bufs.len() as u32;
        let chunk = SUMSQ_CHUNK as u32;
        let p = SumSqParams { table, partial, ntensors, chunk };
        cuda.launch_blocks(Kernel::sum_squares_partial, total as usize, p);
        let total_blocks = total as u32;
        let pf = SumSqFinishParams { table, partial, out, ntensors, total_blocks };
        cuda.launch_blocks(Kernel::sum_squares_finish, bufs.len(), pf);
        (dev, partial_mem)
    });
    let pt =
        SumSqTotalParams { per: out_mem.ptr(), stats: stats.ptr(), ntensors: bufs.len() as u64, slot: slot as u64 };
    cuda.launch_one_warp(Kernel::sum_squares_total, pt);
}
