//! Embedding sum and its scatter-add backward: bit-identical to Cpu<f32> (fp32 additions in the same order).

use crate::common::*;
use crate::{batch, cpu32};
use ernie_backend::{Backend, TokShape};
use ernie_cuda::Precision;
use proptest::prelude::*;

#[test]
fn embedding_forward_and_backward() {
    on_backends("embedding_forward_and_backward", |g| {
        check(
            g.cases(16),
            (1usize..4, 1usize..24, 1usize..80, 1u32..50, any::<bool>(), any::<u64>()),
            |(b, l, h, vocab, with_task, seed)| {
                let shape = TokShape { batch: b, seq: l, hidden: h };
                let n = b * l;
                let (ids, types, tasks) = (ints(seed, 1, n, vocab), ints(seed, 2, n, 2), ints(seed, 3, n, 3));
                let mask = vec![1u32; n];
                let word = data(seed, 4, vocab as usize * h, 1.0);
                let pos = data(seed, 5, l * h, 1.0);
                let typ = data(seed, 6, 2 * h, 1.0);
                let task = data(seed, 7, 3 * h, 1.0);
                let dy = data(seed, 8, n * h, 1.0);
                let init = |k: u64, len: usize| data(seed, k, len, 0.5);

                let c = cpu32();
                let ct = batch(&c, shape, &ids, &types, &tasks, &mask);
                let want = c.embed_sum(&ct, &word, &pos, &typ, with_task.then_some(&task));
                let (mut w_dw, mut w_dp, mut w_dt, mut w_dk) =
                    (init(10, word.len()), init(11, pos.len()), init(12, typ.len()), init(13, task.len()));
                c.embed_sum_bwd(&ct, &dy, &mut w_dw, &mut w_dp, &mut w_dt, with_task.then_some(&mut w_dk));

                for (gpu, p) in g.both() {
                    let gt = batch(gpu, shape, &ids, &types, &tasks, &mask);
                    let (gw, gp, gy, gk) = (gpu.upload(&word), gpu.upload(&pos), gpu.upload(&typ), gpu.upload(&task));
                    let out = gpu.download(&gpu.embed_sum(&gt, &gw, &gp, &gy, with_task.then_some(&gk)));
                    match p {
                        // The same fp32 additions in the same order.
                        Precision::F32 => exact("embed_sum", &out, &want)?,
                        Precision::Bf16 => close(
                            "embed_sum bf16",
                            &out,
                            &want.iter().map(|&x| x as f64).collect::<Vec<_>>(),
                            BF16_ELEM,
                        )?,
                    }
                    let gdy = gpu.upload(&dy);
                    let (mut dw, mut dp, mut dt, mut dk) = (
                        gpu.upload(&init(10, word.len())),
                        gpu.upload(&init(11, pos.len())),
                        gpu.upload(&init(12, typ.len())),
                        gpu.upload(&init(13, task.len())),
                    );
                    gpu.embed_sum_bwd(&gt, &gdy, &mut dw, &mut dp, &mut dt, with_task.then_some(&mut dk));
                    // fp32 gradients accumulated token by token in the reference's order: bit-identical in both
                    // precisions (the tables' gradients are fp32 buffers either way).
                    exact("d word", &gpu.download(&dw), &w_dw)?;
                    exact("d pos", &gpu.download(&dp), &w_dp)?;
                    exact("d type", &gpu.download(&dt), &w_dt)?;
                    if with_task {
                        exact("d task", &gpu.download(&dk), &w_dk)?;
                    }
                }
                Ok(())
            },
        );
    });
}
