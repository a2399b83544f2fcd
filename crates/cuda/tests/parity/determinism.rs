//! Every reduction (LayerNorm, bias and embedding gradients, attention, sum of squares) gives the same
//! bits run after run.

use crate::attention_case;
use crate::common::*;
use ernie_backend::{Backend, RngStream, TokShape, TokenBatch};

#[test]
fn reductions_are_deterministic() {
    on_backends("reductions_are_deterministic", |g| {
        // Several 64-row chunks and more columns than a block has threads, smaller under emulation.
        let (rows, cols, seed) = if g.emulated { (130, 70, 42) } else { (300, 257, 42) };
        let (a, q, k, v, mask, _delta, dctx) = attention_case(3, 4, 37, 16, seed);
        let ids = ints(seed, 9, 3 * 37, 11);
        for (gpu, _) in g.both() {
            let run = || {
                let x = gpu.upload(&data(seed, 1, rows * cols, 1.0));
                let dy = gpu.upload(&data(seed, 2, rows * cols, 1.0));
                let w = gpu.upload(&data(seed, 3, cols, 1.0));
                let b = gpu.upload(&data(seed, 4, cols, 1.0));
                let (_, _, m, r) = gpu.layer_norm(&x, None, &w, &b, 1e-12, cols);
                let (mut dw, mut db) = (gpu.zeros(cols), gpu.zeros(cols));
                let dx = gpu.layer_norm_bwd(&dy, &x, &w, &m, &r, cols, &mut dw, &mut db);
                let (mut lw, mut lb) = (gpu.zeros(cols * cols), gpu.zeros(cols));
                gpu.linear_bwd_params(&dy, &x, rows, cols, cols, &mut lw, Some(&mut lb));
                let gm = gpu.upload_ids(&mask);
                let (_, probs) = gpu.attention(
                    a,
                    &gpu.upload(&q),
                    &gpu.upload(&k),
                    &gpu.upload(&v),
                    &gm,
                    None,
                    0.1,
                    RngStream::new(1, 2),
                );
                let (dq, dk, dvv, ds) = gpu.attention_bwd(
                    a,
                    &gpu.upload(&dctx),
                    &gpu.upload(&q),
                    &gpu.upload(&k),
                    &gpu.upload(&v),
                    &probs,
                    0.1,
                    RngStream::new(1, 2),
                    true,
                );
                let t = TokenBatch {
                    shape: TokShape { batch: 3, seq: 37, hidden: 16 },
                    ids: gpu.upload_ids(&ids),
                    type_ids: gpu.upload_ids(&vec![0; ids.len()]),
                    task_ids: gpu.upload_ids(&vec![0; ids.len()]),
                    key_mask: gm,
                };
                let (mut ew, mut ep, mut et) = (gpu.zeros(11 * 16), gpu.zeros(37 * 16), gpu.zeros(2 * 16));
                gpu.embed_sum_bwd(&t, &dq, &mut ew, &mut ep, &mut et, None);
                let mut st = gpu.stats_zeros(1);
                gpu.sum_squares(&[&dx, &dw, &db, &lw, &lb], &mut st, 0);
                let ss = gpu.stats_download(&st)[0];
                let mut all = Vec::new();
                for buf in [&dx, &dw, &db, &lw, &lb, &dq, &dk, &dvv, ds.as_ref().unwrap(), &ew, &ep] {
                    all.extend(gpu.download(buf));
                }
                all.push(ss as f32);
                all
            };
            let first = run();
            for _ in 0..if g.emulated { 1 } else { 3 } {
                let again = run();
                assert!(
                    first.iter().zip(&again).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "results differ between identical runs"
                );
            }
        }
    });
}
