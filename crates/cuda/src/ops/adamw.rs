//! Multi-tensor AdamW (kernels/adamw.cu): one launch updates every parameter of the step, and refreshes the
//! bf16 copies the GEMMs use.

use super::need;
use crate::buf::{CudaBuf, CudaStats};
use crate::host::block_starts;
use crate::kernels::Kernel;
use crate::params::{launch_params, Tensor};
use crate::CudaBackend;
use ernie_backend::{AdamWStep, ParamSlot};

/// Elements per block.
const CHUNK: usize = 4096;

launch_params! {
    /// One parameter: `shadow` is its bf16 copy to refresh (0 if none), `lr` the base lr times its
    /// multiplier, `wd` its weight decay (0 where none applies).
    struct AdamEntry {
        param: Tensor, grad: Tensor, m: Tensor, v: Tensor, shadow: u64, n: u64,
        lr: f64, wd: f64, block_start: u64,
    }
    /// The gradient multiplier is `((double*)stats)[scale_slot]`: the clip factor, computed on the device
    /// (`ops/stats.rs`); NaN there skips the update.
    struct AdamParams {
        table: u64, ntensors: u32, chunk: u32, beta1: f64, beta2: f64, one_minus_beta1: f64,
        one_minus_beta2: f64, eps: f64, bc1: f64, bc2: f64, stats: u64, scale_slot: u64,
    }
}

pub(crate) fn adamw(cuda: &CudaBackend, slots: &mut [ParamSlot<'_, CudaBuf>], st: &AdamWStep, stats: &CudaStats) {
    if slots.is_empty() {
        return;
    }
    stats.check(st.scale_slot, "adamw: gradient scale");
    let bc1 = 1.0 - st.beta1.powi(st.step as i32);
    let bc2 = 1.0 - st.beta2.powi(st.step as i32);
    let (starts, total) = block_starts(slots.iter().map(|s| s.param.len), CHUNK);
    let mut table = Vec::with_capacity(slots.len());
    for (s, &start) in slots.iter_mut().zip(&starts) {
        let n = s.param.len;
        need(s.grad.len, n, "adamw: grad");
        need(s.m.len, n, "adamw: m");
        need(s.v.len, n, "adamw: v");
        // The parameter keeps its bf16 copy: the kernel rewrites it from the new fp32 value.
        let shadow = s.param.shadow.get_mut().map(|sh| sh.ptr()).unwrap_or(0);
        table.push(AdamEntry {
            param: s.param.arg(),
            grad: s.grad.arg(),
            m: s.m.arg_mut(),
            v: s.v.arg_mut(),
            shadow,
            n: n as u64,
            lr: st.lr * s.lr_mult,
            wd: if s.decay { st.weight_decay } else { 0.0 },
            block_start: start,
        });
    }
    if total == 0 {
        return;
    }
    let dev = cuda.upload_pod(&table);
    let p = AdamParams {
        table: dev.ptr(),
        ntensors: table.len() as u32,
        chunk: CHUNK as u32,
        beta1: st.beta1,
        beta2: st.beta2,
        one_minus_beta1: 1.0 - st.beta1,
        one_minus_beta2: 1.0 - st.beta2,
        eps: st.eps,
        bc1,
        bc2,
        stats: stats.ptr(),
        scale_slot: st.scale_slot as u64,
    };
    cuda.launch_blocks(Kernel::adamw, total as usize, p);
}
