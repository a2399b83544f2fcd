//! Adversarial noise: the masked Gaussian draw and the per-example normalisation.

use crate::common::*;
use crate::{cpu32, cpu64};
use ernie_backend::{AttnShape, Backend, NoiseNorm, RngStream};
use proptest::prelude::*;

#[test]
fn noise_draw_and_normalisation() {
    on_backends("noise_draw_and_normalisation", |g| {
        check(
            g.cases(16),
            (1usize..4, 1usize..4, 1usize..40, 0.01f32..2.0, any::<u64>(), prop_oneof![Just(0u64), 0u64..9]),
            |(b, heads, l, sigma, seed, offset)| {
                let a = AttnShape { batch: b, seq: l, heads, head_dim: 8 };
                let mut mask: Vec<u32> = ints(seed, 1, b * l, 3).into_iter().map(|x| (x != 0) as u32).collect();
                mask[0] = 1;
                let rng = RngStream::new(seed, 5).with_offset(offset);
                let c32 = cpu32();
                let want = c32.randn_key_masked(a, &mask, sigma, rng);
                let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
                for (gpu, p) in g.both() {
                    let got = gpu.download(&gpu.randn_key_masked(a, &gpu.upload_ids(&mask), sigma, rng));
                    same_zeros("noise on padded keys", &got, &want64)?;
                    // Same Philox words and Box-Muller formula; the device's f64 log/cos may differ from the host
                    // libm in the last bit, which the rounding to f32 almost always absorbs.
                    close("randn_key_masked", &got, &want64, tol(p, 1e-6, BF16_ELEM))?;
                }
                Ok(())
            },
        );
        check(
            g.cases(16),
            (1usize..5, 1usize..40000, 0.01f32..1.0, any::<bool>(), any::<bool>(), any::<u64>()),
            |(b, per, eps, max, zero_first, seed)| {
                let mut gr = data(seed, 1, b * per, 3.0);
                if zero_first {
                    gr[..per].iter_mut().for_each(|v| *v = 0.0); // a zero gradient gives zero noise, not NaN
                }
                let norm = if max { NoiseNorm::Max } else { NoiseNorm::L2 };
                let c = cpu64();
                let want = c.normalize_per_example(&c.upload(&gr), b, eps, norm);
                for (gpu, p) in g.both() {
                    let got = gpu.download(&gpu.normalize_per_example(&gpu.upload(&gr), b, eps, norm));
                    // f64 norms and scaling as the reference: the only error is the final rounding.
                    close("normalize_per_example", &got, &want, tol(p, F32_ELEM, BF16_ELEM))?;
                }
                Ok(())
            },
        );
    });
}
