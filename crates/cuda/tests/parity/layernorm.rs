//! LayerNorm with and without the fused residual, forward and backward, against Cpu<f64>.

use crate::common::*;
use crate::cpu64;
use ernie_backend::Backend;
use ernie_cuda::{DType, Precision};
use proptest::prelude::*;

#[test]
fn layer_norm_forward_and_backward() {
    on_backends("layer_norm_forward_and_backward", |g| {
        check(g.cases(24), (1usize..40, 1usize..300, any::<bool>(), any::<u64>()), |(rows, cols, with_res, seed)| {
            let n = rows * cols;
            let x = data(seed, 1, n, 2.0);
            let res = data(seed, 2, n, 1.0);
            let w = data(seed, 3, cols, 1.5);
            let b = data(seed, 4, cols, 0.5);
            let dy = data(seed, 5, n, 1.0);
            let (dw0, db0) = (data(seed, 6, cols, 0.3), data(seed, 7, cols, 0.3));
            let eps = 1e-5;

            // The reference for one precision. Under Bf16 with a residual the GPU stores s = x + res
            // in bf16 (fp32 sum, one rounding) and normalises the stored values; the reference does the
            // same, or a nearly constant row would make the comparison about bf16, not the kernel.
            let reference = |p: Precision| {
                let c = cpu64();
                let (cw, cb) = (c.upload(&w), c.upload(&b));
                let (input, resid): (Vec<f32>, Option<&Vec<f32>>) = match (p, with_res) {
                    (Precision::Bf16, true) => {
                        (x.iter().zip(&res).map(|(&a, &r)| half::bf16::from_f32(a + r).to_f32()).collect(), None)
                    }
                    _ => (x.clone(), with_res.then_some(&res)),
                };
                let cx = c.upload(&input);
                let cr = resid.map(|r| c.upload(r));
                let (cs, cy, cm, crs) = c.layer_norm(&cx, cr.as_ref(), &cw, &cb, eps, cols);
                let (mut cdw, mut cdb) = (c.upload(&dw0), c.upload(&db0));
                let s_in = if cr.is_some() { &cs } else { &cx };
                let cdy = c.upload(&dy);
                let cdx = c.layer_norm_bwd(&cdy, s_in, &cw, &cm, &crs, cols, &mut cdw, &mut cdb);
                let cs = if with_res { s_in.clone() } else { Vec::new() };
                (cs, cy, cm, crs, cdx, cdw, cdb)
            };
            // Typical sizes of a row mean and of dx, for rows whose mean or gradient cancel.
            let s_rms = rms(&x.iter().zip(&res).map(|(&a, &r)| if with_res { a + r } else { a }).collect::<Vec<_>>());
            let mean_typ = s_rms / (cols as f64).sqrt();

            for (gpu, p) in g.both() {
                let (gx, gr, gw, gb) = (gpu.upload(&x), gpu.upload(&res), gpu.upload(&w), gpu.upload(&b));
                let (gs, gy, gm, grs) = gpu.layer_norm(&gx, with_res.then_some(&gr), &gw, &gb, eps, cols);
                assert_eq!(gm.dtype(), DType::F32);
                let (cs, cy, cm, crs, cdx, cdw, cdb) = reference(p);
                let (chain, elem) = (tol(p, F32_RED, BF16_CHAIN), tol(p, F32_RED, BF16_ELEM));
                close("ln y", &gpu.download(&gy), &cy, chain)?;
                close_floor("ln mean", &gpu.download(&gm), &cm, elem, mean_typ)?;
                close("ln rstd", &gpu.download(&grs), &crs, chain)?;
                if with_res {
                    close("ln s", &gpu.download(&gs), &cs, tol(p, F32_ELEM, BF16_ELEM))?;
                } else {
                    prop_assert_eq!(gpu.len(&gs), 0);
                }
                let (mut dw, mut db) = (gpu.upload(&dw0), gpu.upload(&db0));
                let (gdy, s_in) = (gpu.upload(&dy), if with_res { &gs } else { &gx });
                let dx = gpu.layer_norm_bwd(&gdy, s_in, &gw, &gm, &grs, cols, &mut dw, &mut db);
                let rstd32: Vec<f32> = crs.iter().map(|&v| v as f32).collect();
                let dx_typ = rms(&dy) * rms(&w) * rms(&rstd32);
                close_floor("ln dx", &gpu.download(&dx), &cdx, chain, dx_typ)?;
                close("ln dw", &gpu.download(&dw), &cdw, chain)?;
                close("ln db", &gpu.download(&db), &cdb, elem)?;
            }
            Ok(())
        });
    });
}
