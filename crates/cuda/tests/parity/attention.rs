//! Fused attention, forward and backward, with and without noise and dropout, against Cpu<f64>.

use crate::common::*;
use crate::{attention_case, cpu64};
use ernie_backend::{Backend, RngStream};
use proptest::prelude::*;

#[test]
fn attention_forward_and_backward() {
    on_backends("attention_forward_and_backward", |g| {
        let dropouts = prop_oneof![Just(0.0f32), Just(0.1f32), 0.0f32..0.6];
        check(
            g.cases(24),
            (1usize..4, 1usize..5, 1usize..40, 1usize..33, any::<bool>(), dropouts, any::<u64>(), 0u64..100),
            |(b, heads, l, d, with_delta, p, seed, offset)| {
                let (a, q, k, v, mask, delta, dctx) = attention_case(b, heads, l, d, seed);
                // For attention the offset counts (batch, head) blocks.
                let rng = RngStream::new(seed, 77).with_offset(offset);
                let c = cpu64();
                let cmask = c.upload_ids(&mask);
                let (cq, ck, cv, cdl) = (c.upload(&q), c.upload(&k), c.upload(&v), c.upload(&delta));
                let (cctx, cprobs) = c.attention(a, &cq, &ck, &cv, &cmask, with_delta.then_some(&cdl), p, rng);
                let (cdq, cdk, cdv, cds) = c.attention_bwd(a, &c.upload(&dctx), &cq, &ck, &cv, &cprobs, p, rng, true);
                let cds = cds.unwrap();

                for (gpu, prec) in g.both() {
                    let gmask = gpu.upload_ids(&mask);
                    let (gq, gk, gv, gdl) = (gpu.upload(&q), gpu.upload(&k), gpu.upload(&v), gpu.upload(&delta));
                    let (ctx, probs) = gpu.attention(a, &gq, &gk, &gv, &gmask, with_delta.then_some(&gdl), p, rng);
                    let gprobs = gpu.download(&probs);
                    same_zeros("probs on padded keys", &gprobs, &cprobs)?;
                    let fwd_tol = tol(prec, F32_RED, BF16_CHAIN);
                    close("probs", &gprobs, &cprobs, fwd_tol)?;
                    close("ctx", &gpu.download(&ctx), &cctx, fwd_tol)?;
                    let gdctx = gpu.upload(&dctx);
                    let bwd = |want| gpu.attention_bwd(a, &gdctx, &gq, &gk, &gv, &probs, p, rng, want);
                    let (dq, dk, dv, ds) = bwd(true);
                    let t = tol(prec, F32_RED, BF16_ATTN_BWD);
                    // Typical sizes without cancellation (the softmax backward cancels where one key
                    // takes nearly all the probability): d(probs) ~ sqrt(d) |dctx| |v| / (1 - p).
                    let p32: Vec<f32> = cprobs.iter().map(|&v| v as f32).collect();
                    let ds_typ = rms(&p32) * (d as f64).sqrt() * rms(&dctx) * rms(&v) / (1.0 - p as f64);
                    let dqk_typ = (l as f64 / d as f64).sqrt() * ds_typ;
                    close_floor("dv", &gpu.download(&dv), &cdv, t, (l as f64).sqrt() * rms(&p32) * rms(&dctx))?;
                    close_floor("dq", &gpu.download(&dq), &cdq, t, dqk_typ * rms(&k))?;
                    close_floor("dk", &gpu.download(&dk), &cdk, t, dqk_typ * rms(&q))?;
                    let ds = gpu.download(&ds.expect("dscores asked for"));
                    close_floor("dscores", &ds, &cds, t, ds_typ)?;
                    // Without dscores the other gradients do not change.
                    let (dq2, _, _, none) = bwd(false);
                    prop_assert!(none.is_none());
                    let dq = gpu.download(&dq);
                    exact("dq without dscores", &gpu.download(&dq2), &dq)?;
                }
                Ok(())
            },
        );
    });
}
