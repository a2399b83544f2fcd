//! Softmax cross-entropy, symmetric KL and detached KL against Cpu<f64>.

use crate::common::*;
use crate::cpu64;
use ernie_backend::Backend;
use proptest::prelude::*;

#[test]
fn losses() {
    on_backends("losses", |g| {
        check(g.cases(24), (1usize..30, 1usize..60, -2.0f64..2.0, any::<u64>()), |(rows, classes, scale, seed)| {
            let a = data(seed, 1, rows * classes, 4.0);
            let b = data(seed, 2, rows * classes, 4.0);
            let labels = ints(seed, 3, rows, classes as u32);
            let c = cpu64();
            let (ca, cb) = (c.upload(&a), c.upload(&b));
            let (ce, cce) = c.softmax_ce(&ca, &c.upload_ids(&labels), classes, scale);
            let (kl, ka, kb) = c.sym_kl(&ca, &cb, classes, scale);
            let (kd, kdb) = c.kl_detached(&ca, &cb, classes, scale);
            for (gpu, p) in g.both() {
                let (ga, gb) = (gpu.upload(&a), gpu.upload(&b));
                // Loss values are computed in fp32 from the fp32 logits in both precisions; gradients are
                // stored in the activation dtype.
                let gt = tol(p, F32_RED, BF16_ELEM);
                // Confident rows have gradients near 0; rounding scales with |grad_scale|.
                let g_typ = 0.01 * scale.abs();
                let (l, dl) = gpu.softmax_ce(&ga, &gpu.upload_ids(&labels), classes, scale);
                close64("ce loss", &gpu.download_f64(&l), &ce, F32_RED, 1.0)?;
                close_floor("ce grad", &gpu.download(&dl), &cce, gt, g_typ)?;
                let (l, da, db) = gpu.sym_kl(&ga, &gb, classes, scale);
                close64("sym_kl", &gpu.download_f64(&l), &kl, F32_RED, 0.01)?;
                close_floor("sym_kl da", &gpu.download(&da), &ka, gt, g_typ)?;
                close_floor("sym_kl db", &gpu.download(&db), &kb, gt, g_typ)?;
                let (l, db) = gpu.kl_detached(&ga, &gb, classes, scale);
                close64("kl_detached", &gpu.download_f64(&l), &kd, F32_RED, 0.01)?;
                close_floor("kl_detached db", &gpu.download(&db), &kdb, gt, g_typ)?;
            }
            Ok(())
        });
    });
}
