//! Linear layers (cuBLASLt products, bias broadcast, bias-gradient column sums) against Cpu<f64>.

use crate::common::*;
use crate::cpu64;
use ernie_backend::Backend;
use ernie_cuda::DType;
use proptest::prelude::*;

#[test]
fn linear_forward_and_backward() {
    on_backends("linear_forward_and_backward", |g| {
        check(
            g.cases(24),
            (1usize..40, 1usize..70, 1usize..90, any::<bool>(), any::<u64>()),
            |(m, n, k, with_bias, seed)| {
                let x = data(seed, 1, m * k, 1.0);
                let w = data(seed, 2, n * k, 0.5);
                let b = data(seed, 3, n, 0.5);
                let dy = data(seed, 4, m * n, 1.0);
                let (dw0, db0) = (data(seed, 5, n * k, 0.2), data(seed, 6, n, 0.2));
                let c = cpu64();
                let (cx, cw, cb) = (c.upload(&x), c.upload(&w), c.upload(&b));
                let cy = c.linear(&cx, &cw, with_bias.then_some(&cb), m, n, k);
                let cdx = c.linear_bwd_input(&c.upload(&dy), &cw, m, n, k);
                let (mut cdw, mut cdb) = (c.upload(&dw0), c.upload(&db0));
                c.linear_bwd_params(&c.upload(&dy), &cx, m, n, k, &mut cdw, Some(&mut cdb));

                for (gpu, p) in g.both() {
                    let (gx, gw, gb) = (gpu.upload(&x), gpu.upload(&w), gpu.upload(&b));
                    let y = gpu.linear(&gx, &gw, with_bias.then_some(&gb), m, n, k);
                    prop_assert_eq!(y.dtype(), p.act());
                    let t = tol(p, F32_RED, BF16_CHAIN);
                    let y_typ = (k as f64).sqrt() * rms(&x) * rms(&w);
                    close_floor("linear y", &gpu.download(&y), &cy, t, y_typ)?;
                    let gdy = gpu.upload(&dy);
                    let dx = gpu.linear_bwd_input(&gdy, &gw, m, n, k);
                    let dx_typ = (n as f64).sqrt() * rms(&dy) * rms(&w);
                    close_floor("linear dx", &gpu.download(&dx), &cdx, t, dx_typ)?;
                    let (mut dw, mut db) = (gpu.upload(&dw0), gpu.upload(&db0));
                    gpu.linear_bwd_params(&gdy, &gx, m, n, k, &mut dw, Some(&mut db));
                    prop_assert_eq!(dw.dtype(), DType::F32);
                    close("linear dw", &gpu.download(&dw), &cdw, t)?;
                    // db sums fp32 dy in fp32 in both precisions.
                    close("linear db", &gpu.download(&db), &cdb, F32_RED)?;
                }
                Ok(())
            },
        );
    });
}
