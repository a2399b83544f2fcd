//! GELU and tanh against Cpu<f64>; dropout masks bit-identical to Cpu<f32>.

use crate::common::*;
use crate::{cpu32, cpu64};
use ernie_backend::{Backend, RngStream};
use ernie_cuda::Precision;
use proptest::prelude::*;

#[test]
fn activations() {
    on_backends("activations", |g| {
        check(g.cases(24), (1usize..5000, any::<u64>()), |(n, seed)| {
            let x = data(seed, 1, n, 4.0);
            let dy = data(seed, 2, n, 1.0);
            let c = cpu64();
            let (cx, cdy) = (c.upload(&x), c.upload(&dy));
            let cy_t = c.tanh(&cx);
            for (gpu, p) in g.both() {
                let t = tol(p, F32_ELEM, BF16_ELEM);
                let (gx, gdy) = (gpu.upload(&x), gpu.upload(&dy));
                close("gelu", &gpu.download(&gpu.gelu(&gx)), &c.gelu(&cx), t)?;
                close("gelu_bwd", &gpu.download(&gpu.gelu_bwd(&gdy, &gx)), &c.gelu_bwd(&cdy, &cx), t)?;
                let gy = gpu.tanh(&gx);
                close("tanh", &gpu.download(&gy), &cy_t, t)?;
                // tanh_bwd from the reference's own forward output, so only the backward is measured.
                let gyr = gpu.upload(&cy_t.iter().map(|&v| v as f32).collect::<Vec<_>>());
                close("tanh_bwd", &gpu.download(&gpu.tanh_bwd(&gdy, &gyr)), &c.tanh_bwd(&cdy, &cy_t), t)?;
            }
            Ok(())
        });
    });
}

#[test]
fn dropout_masks_are_the_cpu_masks() {
    on_backends("dropout_masks_are_the_cpu_masks", |g| {
        // Offsets: 0, small (unaligned to Philox blocks) and large (a slice of a bigger batch).
        let offsets = prop_oneof![Just(0u64), 0u64..8, 0u64..1_000_000];
        check(
            g.cases(32),
            (1usize..10000, 0.0f32..0.9, any::<u64>(), any::<u64>(), offsets),
            |(n, p, seed, stream, offset)| {
                let x: Vec<f32> = data(seed, 1, n, 1.0).into_iter().map(|v| if v == 0.0 { 0.5 } else { v }).collect();
                let rng = RngStream::new(seed, stream).with_offset(offset);
                let c = cpu32();
                let want = c.dropout(&x, p, rng);
                let want0 = c.dropout(&x, 0.0, rng);
                for (gpu, prec) in g.both() {
                    let got = gpu.download(&gpu.dropout(&gpu.upload(&x), p, rng));
                    match prec {
                        Precision::F32 => {
                            exact("dropout", &got, &want)?;
                            exact("dropout p=0", &gpu.download(&gpu.dropout(&gpu.upload(&x), 0.0, rng)), &want0)?;
                        }
                        Precision::Bf16 => {
                            let w: Vec<f64> = want.iter().map(|&v| v as f64).collect();
                            same_zeros("dropout mask (bf16)", &got, &w)?;
                            close("dropout (bf16)", &got, &w, BF16_ELEM)?;
                        }
                    }
                }
                Ok(())
            },
        );
    });
}
