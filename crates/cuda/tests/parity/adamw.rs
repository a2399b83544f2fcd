//! Multi-tensor AdamW bit-identical to Cpu<f32>, the bf16 weight copies it refreshes, and the skipped step
//! (NaN gradient scale on the device).

use crate::common::*;
use crate::cpu32;
use ernie_backend::{AdamWStep, Backend, ParamSlot};
use ernie_cuda::Precision;
use proptest::prelude::*;

/// One AdamW step of backend `b` over every parameter: the parameters, their moments, their gradients, and
/// per parameter `(len, lr_mult, decay)`; the gradients are scaled by `grad_scale`.
#[allow(clippy::too_many_arguments)]
fn adamw_step<B: Backend>(
    b: &B,
    params: &mut [B::Buf],
    m: &mut [B::Buf],
    v: &mut [B::Buf],
    grads: &[B::Buf],
    spec: &[(usize, f64, bool)],
    step: &AdamWStep,
    grad_scale: f64,
) {
    let mut slots = Vec::new();
    for (((param, m), v), (grad, &(_, lr_mult, decay))) in
        params.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(grads.iter().zip(spec))
    {
        slots.push(ParamSlot { param, grad, m, v, lr_mult, decay });
    }
    // The scale lives in the step's statistics on the device, at slot 1 here.
    b.adamw(&mut slots, step, &b.stats_upload(&[0.0, grad_scale]));
}

#[test]
fn adamw_matches_cpu_bit_for_bit() {
    on_backends("adamw_matches_cpu_bit_for_bit", |g| {
        check(
            g.cases(16),
            (proptest::collection::vec((0usize..7000, 0.1f64..2.0, any::<bool>()), 1..5), 0.0f64..1.0, any::<u64>()),
            |(params, clip, seed)| {
                let init: Vec<Vec<f32>> =
                    params.iter().enumerate().map(|(i, &(n, _, _))| data(seed, i as u64, n, 1.0)).collect();
                let grads: Vec<Vec<Vec<f32>>> = (0..3)
                    .map(|s| {
                        params
                            .iter()
                            .enumerate()
                            .map(|(i, &(n, _, _))| data(seed, 100 + 10 * s + i as u64, n, 0.1))
                            .collect()
                    })
                    .collect();
                let step = |t: u64| AdamWStep {
                    lr: 1e-3,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.01,
                    step: t,
                    scale_slot: 1,
                };

                let c = cpu32();
                let mut cp = init.clone();
                let mut cm: Vec<Vec<f32>> = init.iter().map(|p| vec![0.0; p.len()]).collect();
                let mut cv = cm.clone();
                for (t, gs) in grads.iter().enumerate() {
                    adamw_step(&c, &mut cp, &mut cm, &mut cv, gs, &params, &step(t as u64 + 1), clip);
                }

                for (gpu, p) in g.both() {
                    let mut gp: Vec<_> = init.iter().map(|x| gpu.upload(x)).collect();
                    let mut gm: Vec<_> = init.iter().map(|x| gpu.zeros(x.len())).collect();
                    let mut gv: Vec<_> = init.iter().map(|x| gpu.zeros(x.len())).collect();
                    if p == Precision::Bf16 {
                        for x in &gp {
                            gpu.prepare_gemm_operand(x);
                        }
                    }
                    for (t, gs) in grads.iter().enumerate() {
                        let gg: Vec<_> = gs.iter().map(|x| gpu.upload(x)).collect();
                        let t = t as u64 + 1;
                        adamw_step(gpu, &mut gp, &mut gm, &mut gv, &gg, &params, &step(t), clip);
                    }
                    // A NaN scale (a step whose loss was not finite) changes nothing.
                    let gg: Vec<_> = grads[0].iter().map(|x| gpu.upload(x)).collect();
                    adamw_step(gpu, &mut gp, &mut gm, &mut gv, &gg, &params, &step(4), f64::NAN);
                    for i in 0..init.len() {
                        // fp32 master weights and moments in both precisions, f64 arithmetic without contraction.
                        exact("adamw param", &gpu.download(&gp[i]), &cp[i])?;
                        exact("adamw m", &gpu.download(&gm[i]), &cm[i])?;
                        exact("adamw v", &gpu.download(&gv[i]), &cv[i])?;
                        if p == Precision::Bf16 {
                            let shadow = gpu.download_shadow(&gp[i]).expect("the bf16 copy survives the step");
                            let want: Vec<f32> = cp[i].iter().map(|&x| half::bf16::from_f32(x).to_f32()).collect();
                            exact("bf16 copy refreshed by adamw", &shadow, &want)?;
                        }
                    }
                }
                Ok(())
            },
        );
    });
}
