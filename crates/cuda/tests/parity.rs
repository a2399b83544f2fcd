//! Every CUDA op against the CPU reference on random shapes and data, in both precisions. Without a GPU
//! each test prints `SKIPPED (no CUDA GPU): <test>` and passes. Tolerances and their reasons are in
//! common/mod.rs; where the GPU does exactly the reference's fp32 arithmetic (data movement, embedding,
//! dropout, axpby, AdamW), the check is bit-for-bit against Cpu<f32>.

mod common;

use common::*;
use ernie_cuda::{CudaBackend, DType, Precision};
use ernie_tensor::{
    AdamWStep, AttnShape, Backend, Cpu, NoiseNorm, ParamSlot, RngStream, TokShape, TokenBatch,
};
use proptest::prelude::*;

fn cpu64() -> Cpu<f64> {
    Cpu::<f64>::new()
}
fn cpu32() -> Cpu<f32> {
    Cpu::<f32>::new()
}

fn batch<B: Backend>(
    be: &B,
    shape: TokShape,
    ids: &[u32],
    types: &[u32],
    tasks: &[u32],
    mask: &[u32],
) -> TokenBatch<B::Ids> {
    TokenBatch {
        shape,
        ids: be.upload_ids(ids),
        type_ids: be.upload_ids(types),
        task_ids: be.upload_ids(tasks),
        key_mask: be.upload_ids(mask),
    }
}

#[test]
fn embedding_forward_and_backward() {
    on_backends("embedding_forward_and_backward", |g| {
        check(
            g.cases(16),
            (
                1usize..4,
                1usize..24,
                1usize..80,
                1u32..50,
                any::<bool>(),
                any::<u64>(),
            ),
            |(b, l, h, vocab, with_task, seed)| {
                let shape = TokShape {
                    batch: b,
                    seq: l,
                    hidden: h,
                };
                let n = b * l;
                let (ids, types, tasks) = (
                    ints(seed, 1, n, vocab),
                    ints(seed, 2, n, 2),
                    ints(seed, 3, n, 3),
                );
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
                let (mut w_dw, mut w_dp, mut w_dt, mut w_dk) = (
                    init(10, word.len()),
                    init(11, pos.len()),
                    init(12, typ.len()),
                    init(13, task.len()),
                );
                c.embed_sum_bwd(
                    &ct,
                    &dy,
                    &mut w_dw,
                    &mut w_dp,
                    &mut w_dt,
                    with_task.then_some(&mut w_dk),
                );

                for (gpu, p) in g.both() {
                    let gt = batch(gpu, shape, &ids, &types, &tasks, &mask);
                    let (gw, gp, gy, gk) = (
                        gpu.upload(&word),
                        gpu.upload(&pos),
                        gpu.upload(&typ),
                        gpu.upload(&task),
                    );
                    let out =
                        gpu.download(&gpu.embed_sum(&gt, &gw, &gp, &gy, with_task.then_some(&gk)));
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
                    gpu.embed_sum_bwd(
                        &gt,
                        &gdy,
                        &mut dw,
                        &mut dp,
                        &mut dt,
                        with_task.then_some(&mut dk),
                    );
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

#[test]
fn layer_norm_forward_and_backward() {
    on_backends("layer_norm_forward_and_backward", |g| {
        check(
            g.cases(24),
            (1usize..40, 1usize..300, any::<bool>(), any::<u64>()),
            |(rows, cols, with_res, seed)| {
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
                        (Precision::Bf16, true) => (
                            x.iter()
                                .zip(&res)
                                .map(|(&a, &r)| half::bf16::from_f32(a + r).to_f32())
                                .collect(),
                            None,
                        ),
                        _ => (x.clone(), with_res.then_some(&res)),
                    };
                    let cx = c.upload(&input);
                    let cr = resid.map(|r| c.upload(r));
                    let (cs, cy, cm, crs) = c.layer_norm(&cx, cr.as_ref(), &cw, &cb, eps, cols);
                    let (mut cdw, mut cdb) = (c.upload(&dw0), c.upload(&db0));
                    let s_in = if cr.is_some() { &cs } else { &cx };
                    let cdx = c.layer_norm_bwd(
                        &c.upload(&dy),
                        s_in,
                        &cw,
                        &cm,
                        &crs,
                        cols,
                        &mut cdw,
                        &mut cdb,
                    );
                    let cs = if with_res { s_in.clone() } else { Vec::new() };
                    (cs, cy, cm, crs, cdx, cdw, cdb)
                };
                // Typical sizes of a row mean and of dx, for rows whose mean or gradient cancel.
                let s_rms = rms(&x
                    .iter()
                    .zip(&res)
                    .map(|(&a, &r)| if with_res { a + r } else { a })
                    .collect::<Vec<_>>());
                let mean_typ = s_rms / (cols as f64).sqrt();

                for (gpu, p) in g.both() {
                    let (gx, gr, gw, gb) = (
                        gpu.upload(&x),
                        gpu.upload(&res),
                        gpu.upload(&w),
                        gpu.upload(&b),
                    );
                    let (gs, gy, gm, grs) =
                        gpu.layer_norm(&gx, with_res.then_some(&gr), &gw, &gb, eps, cols);
                    assert_eq!(gm.dtype(), DType::F32);
                    let (cs, cy, cm, crs, cdx, cdw, cdb) = reference(p);
                    close("ln y", &gpu.download(&gy), &cy, tol(p, F32_RED, BF16_CHAIN))?;
                    close_floor(
                        "ln mean",
                        &gpu.download(&gm),
                        &cm,
                        tol(p, F32_RED, BF16_ELEM),
                        mean_typ,
                    )?;
                    close(
                        "ln rstd",
                        &gpu.download(&grs),
                        &crs,
                        tol(p, F32_RED, BF16_CHAIN),
                    )?;
                    if with_res {
                        close("ln s", &gpu.download(&gs), &cs, tol(p, F32_ELEM, BF16_ELEM))?;
                    } else {
                        prop_assert_eq!(gpu.len(&gs), 0);
                    }
                    let (mut dw, mut db) = (gpu.upload(&dw0), gpu.upload(&db0));
                    let dx = gpu.layer_norm_bwd(
                        &gpu.upload(&dy),
                        if with_res { &gs } else { &gx },
                        &gw,
                        &gm,
                        &grs,
                        cols,
                        &mut dw,
                        &mut db,
                    );
                    let rstd32: Vec<f32> = crs.iter().map(|&v| v as f32).collect();
                    let dx_typ = rms(&dy) * rms(&w) * rms(&rstd32);
                    close_floor(
                        "ln dx",
                        &gpu.download(&dx),
                        &cdx,
                        tol(p, F32_RED, BF16_CHAIN),
                        dx_typ,
                    )?;
                    close(
                        "ln dw",
                        &gpu.download(&dw),
                        &cdw,
                        tol(p, F32_RED, BF16_CHAIN),
                    )?;
                    close(
                        "ln db",
                        &gpu.download(&db),
                        &cdb,
                        tol(p, F32_RED, BF16_ELEM),
                    )?;
                }
                Ok(())
            },
        );
    });
}

#[test]
fn linear_forward_and_backward() {
    on_backends("linear_forward_and_backward", |g| {
        check(
            g.cases(24),
            (
                1usize..40,
                1usize..70,
                1usize..90,
                any::<bool>(),
                any::<u64>(),
            ),
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
                    close_floor(
                        "linear y",
                        &gpu.download(&y),
                        &cy,
                        tol(p, F32_RED, BF16_CHAIN),
                        (k as f64).sqrt() * rms(&x) * rms(&w),
                    )?;
                    let gdy = gpu.upload(&dy);
                    close_floor(
                        "linear dx",
                        &gpu.download(&gpu.linear_bwd_input(&gdy, &gw, m, n, k)),
                        &cdx,
                        tol(p, F32_RED, BF16_CHAIN),
                        (n as f64).sqrt() * rms(&dy) * rms(&w),
                    )?;
                    let (mut dw, mut db) = (gpu.upload(&dw0), gpu.upload(&db0));
                    gpu.linear_bwd_params(&gdy, &gx, m, n, k, &mut dw, Some(&mut db));
                    prop_assert_eq!(dw.dtype(), DType::F32);
                    close(
                        "linear dw",
                        &gpu.download(&dw),
                        &cdw,
                        tol(p, F32_RED, BF16_CHAIN),
                    )?;
                    // db sums fp32 dy in fp32 in both precisions.
                    close("linear db", &gpu.download(&db), &cdb, F32_RED)?;
                }
                Ok(())
            },
        );
    });
}

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
                close(
                    "gelu_bwd",
                    &gpu.download(&gpu.gelu_bwd(&gdy, &gx)),
                    &c.gelu_bwd(&cdy, &cx),
                    t,
                )?;
                let gy = gpu.tanh(&gx);
                close("tanh", &gpu.download(&gy), &cy_t, t)?;
                // tanh_bwd from the reference's own forward output, so only the backward is measured.
                let gyr = gpu.upload(&cy_t.iter().map(|&v| v as f32).collect::<Vec<_>>());
                close(
                    "tanh_bwd",
                    &gpu.download(&gpu.tanh_bwd(&gdy, &gyr)),
                    &c.tanh_bwd(&cdy, &cy_t),
                    t,
                )?;
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
            (
                1usize..10000,
                0.0f32..0.9,
                any::<u64>(),
                any::<u64>(),
                offsets,
            ),
            |(n, p, seed, stream, offset)| {
                let x: Vec<f32> = data(seed, 1, n, 1.0)
                    .into_iter()
                    .map(|v| if v == 0.0 { 0.5 } else { v })
                    .collect();
                let rng = RngStream::new(seed, stream).with_offset(offset);
                let c = cpu32();
                let want = c.dropout(&x, p, rng);
                let want0 = c.dropout(&x, 0.0, rng);
                for (gpu, prec) in g.both() {
                    let got = gpu.download(&gpu.dropout(&gpu.upload(&x), p, rng));
                    match prec {
                        Precision::F32 => {
                            exact("dropout", &got, &want)?;
                            exact(
                                "dropout p=0",
                                &gpu.download(&gpu.dropout(&gpu.upload(&x), 0.0, rng)),
                                &want0,
                            )?;
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

#[allow(clippy::type_complexity)]
fn attention_case(
    b: usize,
    heads: usize,
    l: usize,
    d: usize,
    seed: u64,
) -> (
    AttnShape,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<u32>,
    Vec<f32>,
    Vec<f32>,
) {
    let a = AttnShape {
        batch: b,
        seq: l,
        heads,
        head_dim: d,
    };
    let n = b * l * heads * d;
    let q = data(seed, 1, n, 1.5);
    let k = data(seed, 2, n, 1.5);
    let v = data(seed, 3, n, 1.0);
    // Key mask: random, with the first key of every row real (as [CLS] is).
    let mut mask = ints(seed, 4, b * l, 4)
        .into_iter()
        .map(|x| (x != 0) as u32)
        .collect::<Vec<_>>();
    for bi in 0..b {
        mask[bi * l] = 1;
    }
    let delta = data(seed, 5, a.score_len(), 0.5);
    let dctx = data(seed, 6, n, 1.0);
    (a, q, k, v, mask, delta, dctx)
}

#[test]
fn attention_forward_and_backward() {
    on_backends("attention_forward_and_backward", |g| {
        let dropouts = prop_oneof![Just(0.0f32), Just(0.1f32), 0.0f32..0.6];
        check(
            g.cases(24),
            (
                1usize..4,
                1usize..5,
                1usize..40,
                1usize..33,
                any::<bool>(),
                dropouts,
                any::<u64>(),
                0u64..100,
            ),
            |(b, heads, l, d, with_delta, p, seed, offset)| {
                let (a, q, k, v, mask, delta, dctx) = attention_case(b, heads, l, d, seed);
                // For attention the offset counts (batch, head) blocks.
                let rng = RngStream::new(seed, 77).with_offset(offset);
                let c = cpu64();
                let cmask = c.upload_ids(&mask);
                let (cq, ck, cv, cdl) =
                    (c.upload(&q), c.upload(&k), c.upload(&v), c.upload(&delta));
                let (cctx, cprobs) =
                    c.attention(a, &cq, &ck, &cv, &cmask, with_delta.then_some(&cdl), p, rng);
                let (cdq, cdk, cdv, cds) =
                    c.attention_bwd(a, &c.upload(&dctx), &cq, &ck, &cv, &cprobs, p, rng, true);
                let cds = cds.unwrap();

                for (gpu, prec) in g.both() {
                    let gmask = gpu.upload_ids(&mask);
                    let (gq, gk, gv, gdl) = (
                        gpu.upload(&q),
                        gpu.upload(&k),
                        gpu.upload(&v),
                        gpu.upload(&delta),
                    );
                    let (ctx, probs) =
                        gpu.attention(a, &gq, &gk, &gv, &gmask, with_delta.then_some(&gdl), p, rng);
                    let gprobs = gpu.download(&probs);
                    same_zeros("probs on padded keys", &gprobs, &cprobs)?;
                    close("probs", &gprobs, &cprobs, tol(prec, F32_RED, BF16_CHAIN))?;
                    close(
                        "ctx",
                        &gpu.download(&ctx),
                        &cctx,
                        tol(prec, F32_RED, BF16_CHAIN),
                    )?;
                    let (dq, dk, dv, ds) = gpu.attention_bwd(
                        a,
                        &gpu.upload(&dctx),
                        &gq,
                        &gk,
                        &gv,
                        &probs,
                        p,
                        rng,
                        true,
                    );
                    let t = tol(prec, F32_RED, BF16_ATTN_BWD);
                    // Typical sizes without cancellation (the softmax backward cancels where one key
                    // takes nearly all the probability): d(probs) ~ sqrt(d) |dctx| |v| / (1 - p).
                    let p32: Vec<f32> = cprobs.iter().map(|&v| v as f32).collect();
                    let ds_typ =
                        rms(&p32) * (d as f64).sqrt() * rms(&dctx) * rms(&v) / (1.0 - p as f64);
                    let dqk_typ = (l as f64 / d as f64).sqrt() * ds_typ;
                    close_floor(
                        "dv",
                        &gpu.download(&dv),
                        &cdv,
                        t,
                        (l as f64).sqrt() * rms(&p32) * rms(&dctx),
                    )?;
                    close_floor("dq", &gpu.download(&dq), &cdq, t, dqk_typ * rms(&k))?;
                    close_floor("dk", &gpu.download(&dk), &cdk, t, dqk_typ * rms(&q))?;
                    let ds = gpu.download(&ds.expect("dscores asked for"));
                    close_floor("dscores", &ds, &cds, t, ds_typ)?;
                    // Without dscores the other gradients do not change.
                    let (dq2, _, _, none) = gpu.attention_bwd(
                        a,
                        &gpu.upload(&dctx),
                        &gq,
                        &gk,
                        &gv,
                        &probs,
                        p,
                        rng,
                        false,
                    );
                    prop_assert!(none.is_none());
                    exact(
                        "dq without dscores",
                        &gpu.download(&dq2),
                        &gpu.download(&dq),
                    )?;
                }
                Ok(())
            },
        );
    });
}

#[test]
fn row_gather_scatter_slice_concat() {
    on_backends("row_gather_scatter_slice_concat", |g| {
        check(
            g.cases(24),
            (1usize..30, 1usize..70, 0usize..40, any::<u64>()),
            |(rows, cols, picks, seed)| {
                let x = data(seed, 1, rows * cols, 1.0);
                let idx: Vec<usize> = ints(seed, 2, picks, rows as u32)
                    .into_iter()
                    .map(|r| r as usize)
                    .collect();
                let dy = data(seed, 3, picks * cols, 1.0);
                let y = data(seed, 4, (rows / 2 + 1) * cols, 1.0);
                let start = rows / 3;
                let count = rows - start;
                let c = cpu32();
                for (gpu, _) in g.both() {
                    let (gx, gdy, gy) = (gpu.upload(&x), gpu.upload(&dy), gpu.upload(&y));
                    // Data movement keeps the input's dtype (fp32 here), so these are exact in both precisions.
                    exact(
                        "gather_rows",
                        &gpu.download(&gpu.gather_rows(&gx, &idx, cols)),
                        &c.gather_rows(&x, &idx, cols),
                    )?;
                    // Repeated rows accumulate in the reference's order.
                    exact(
                        "scatter_rows",
                        &gpu.download(&gpu.scatter_rows(&gdy, &idx, cols, rows)),
                        &c.scatter_rows(&dy, &idx, cols, rows),
                    )?;
                    exact(
                        "slice_rows",
                        &gpu.download(&gpu.slice_rows(&gx, start, count, cols)),
                        &c.slice_rows(&x, start, count, cols),
                    )?;
                    exact(
                        "concat_rows",
                        &gpu.download(&gpu.concat_rows(&gx, &gy)),
                        &c.concat_rows(&x, &y),
                    )?;
                    exact("copy", &gpu.download(&gpu.copy(&gx)), &x)?;
                }
                Ok(())
            },
        );
    });
}

#[test]
fn losses() {
    on_backends("losses", |g| {
        check(
            g.cases(24),
            (1usize..30, 1usize..60, -2.0f64..2.0, any::<u64>()),
            |(rows, classes, scale, seed)| {
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
                    close64("ce loss", &l, &ce, F32_RED, 1.0)?;
                    close_floor("ce grad", &gpu.download(&dl), &cce, gt, g_typ)?;
                    let (l, da, db) = gpu.sym_kl(&ga, &gb, classes, scale);
                    close64("sym_kl", &l, &kl, F32_RED, 0.01)?;
                    close_floor("sym_kl da", &gpu.download(&da), &ka, gt, g_typ)?;
                    close_floor("sym_kl db", &gpu.download(&db), &kb, gt, g_typ)?;
                    let (l, db) = gpu.kl_detached(&ga, &gb, classes, scale);
                    close64("kl_detached", &l, &kd, F32_RED, 0.01)?;
                    close_floor("kl_detached db", &gpu.download(&db), &kdb, gt, g_typ)?;
                }
                Ok(())
            },
        );
    });
}

#[test]
fn noise_draw_and_normalisation() {
    on_backends("noise_draw_and_normalisation", |g| {
        check(
            g.cases(16),
            (
                1usize..4,
                1usize..4,
                1usize..40,
                0.01f32..2.0,
                any::<u64>(),
                prop_oneof![Just(0u64), 0u64..9],
            ),
            |(b, heads, l, sigma, seed, offset)| {
                let a = AttnShape {
                    batch: b,
                    seq: l,
                    heads,
                    head_dim: 8,
                };
                let mut mask: Vec<u32> = ints(seed, 1, b * l, 3)
                    .into_iter()
                    .map(|x| (x != 0) as u32)
                    .collect();
                mask[0] = 1;
                let rng = RngStream::new(seed, 5).with_offset(offset);
                let c32 = cpu32();
                let want = c32.randn_key_masked(a, &mask, sigma, rng);
                let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
                for (gpu, p) in g.both() {
                    let got =
                        gpu.download(&gpu.randn_key_masked(a, &gpu.upload_ids(&mask), sigma, rng));
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
            (
                1usize..5,
                1usize..40000,
                0.01f32..1.0,
                any::<bool>(),
                any::<bool>(),
                any::<u64>(),
            ),
            |(b, per, eps, max, zero_first, seed)| {
                let mut gr = data(seed, 1, b * per, 3.0);
                if zero_first {
                    gr[..per].iter_mut().for_each(|v| *v = 0.0); // a zero gradient gives zero noise, not NaN
                }
                let norm = if max { NoiseNorm::Max } else { NoiseNorm::L2 };
                let c = cpu64();
                let want = c.normalize_per_example(&c.upload(&gr), b, eps, norm);
                for (gpu, p) in g.both() {
                    let got =
                        gpu.download(&gpu.normalize_per_example(&gpu.upload(&gr), b, eps, norm));
                    // f64 norms and scaling as the reference: the only error is the final rounding.
                    close(
                        "normalize_per_example",
                        &got,
                        &want,
                        tol(p, F32_ELEM, BF16_ELEM),
                    )?;
                }
                Ok(())
            },
        );
    });
}

#[test]
fn vector_ops_are_exact() {
    on_backends("vector_ops_are_exact", |g| {
        check(
            g.cases(24),
            (
                proptest::collection::vec(0usize..9000, 1..6),
                -2.0f64..2.0,
                -2.0f64..2.0,
                any::<u64>(),
            ),
            |(lens, a, b, seed)| {
                let ys: Vec<Vec<f32>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| data(seed, 10 + i as u64, n, 1.0))
                    .collect();
                let xs: Vec<Vec<f32>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| data(seed, 20 + i as u64, n, 1.0))
                    .collect();
                let c = cpu32();
                let mut want = ys.clone();
                for (y, x) in want.iter_mut().zip(&xs) {
                    c.axpby(y, a, x, b);
                }
                let c64 = cpu64();
                let c64b: Vec<Vec<f64>> = xs.iter().map(|x| c64.upload(x)).collect();
                let want_ss = c64.sum_squares(&c64b.iter().collect::<Vec<_>>());
                for (gpu, _) in g.both() {
                    // axpby: the same two fp32 products and one sum, unfused: bit-identical.
                    let mut gy: Vec<_> = ys.iter().map(|y| gpu.upload(y)).collect();
                    let gx: Vec<_> = xs.iter().map(|x| gpu.upload(x)).collect();
                    gpu.axpby(&mut gy[0], a, &gx[0], b);
                    exact("axpby", &gpu.download(&gy[0]), &want[0])?;
                    let mut gy: Vec<_> = ys.iter().map(|y| gpu.upload(y)).collect();
                    {
                        let mut refs: Vec<&mut _> = gy.iter_mut().collect();
                        gpu.axpby_many(&mut refs, a, &gx.iter().collect::<Vec<_>>(), b);
                    }
                    for (i, y) in gy.iter().enumerate() {
                        exact(&format!("axpby_many[{i}]"), &gpu.download(y), &want[i])?;
                    }
                    let mut f = gpu.upload(&xs[0]);
                    gpu.fill(&mut f, a as f32);
                    exact("fill", &gpu.download(&f), &vec![a as f32; xs[0].len()])?;
                    // Squares of fp32 values are exact in f64; only the summation order differs.
                    let ss = gpu.sum_squares(&gx.iter().collect::<Vec<_>>());
                    prop_assert!(
                        (ss - want_ss).abs() <= 1e-12 * want_ss.abs().max(1e-300),
                        "sum_squares {} vs {}",
                        ss,
                        want_ss
                    );
                }
                Ok(())
            },
        );
    });
}

#[test]
fn adamw_matches_cpu_bit_for_bit() {
    on_backends("adamw_matches_cpu_bit_for_bit", |g| {
        check(
            g.cases(16),
            (
                proptest::collection::vec((0usize..7000, 0.1f64..2.0, any::<bool>()), 1..5),
                0.0f64..1.0,
                any::<u64>(),
            ),
            |(params, clip, seed)| {
                let init: Vec<Vec<f32>> = params
                    .iter()
                    .enumerate()
                    .map(|(i, &(n, _, _))| data(seed, i as u64, n, 1.0))
                    .collect();
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
                    grad_scale: clip,
                };

                let c = cpu32();
                let mut cp = init.clone();
                let mut cm: Vec<Vec<f32>> = init.iter().map(|p| vec![0.0; p.len()]).collect();
                let mut cv = cm.clone();
                for (t, gs) in grads.iter().enumerate() {
                    let mut slots: Vec<ParamSlot<'_, Vec<f32>>> = Vec::new();
                    for (((p, m), v), (gr, &(_, lr_mult, decay))) in cp
                        .iter_mut()
                        .zip(cm.iter_mut())
                        .zip(cv.iter_mut())
                        .zip(gs.iter().zip(&params))
                    {
                        slots.push(ParamSlot {
                            param: p,
                            grad: gr,
                            m,
                            v,
                            lr_mult,
                            decay,
                        });
                    }
                    c.adamw(&mut slots, &step(t as u64 + 1));
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
                        let mut slots = Vec::new();
                        for (((pp, m), v), (gr, &(_, lr_mult, decay))) in gp
                            .iter_mut()
                            .zip(gm.iter_mut())
                            .zip(gv.iter_mut())
                            .zip(gg.iter().zip(&params))
                        {
                            slots.push(ParamSlot {
                                param: pp,
                                grad: gr,
                                m,
                                v,
                                lr_mult,
                                decay,
                            });
                        }
                        gpu.adamw(&mut slots, &step(t as u64 + 1));
                    }
                    for i in 0..init.len() {
                        // fp32 master weights and moments in both precisions, f64 arithmetic without contraction.
                        exact("adamw param", &gpu.download(&gp[i]), &cp[i])?;
                        exact("adamw m", &gpu.download(&gm[i]), &cm[i])?;
                        exact("adamw v", &gpu.download(&gv[i]), &cv[i])?;
                        if p == Precision::Bf16 {
                            let shadow = gpu
                                .download_shadow(&gp[i])
                                .expect("the bf16 copy survives the step");
                            let want: Vec<f32> = cp[i]
                                .iter()
                                .map(|&x| half::bf16::from_f32(x).to_f32())
                                .collect();
                            exact("bf16 copy refreshed by adamw", &shadow, &want)?;
                        }
                    }
                }
                Ok(())
            },
        );
    });
}

#[test]
fn reductions_are_deterministic() {
    on_backends("reductions_are_deterministic", |g| {
        // Several 64-row chunks and more columns than a block has threads, smaller under emulation.
        let (rows, cols, seed) = if g.emulated {
            (130, 70, 42)
        } else {
            (300, 257, 42)
        };
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
                    shape: TokShape {
                        batch: 3,
                        seq: 37,
                        hidden: 16,
                    },
                    ids: gpu.upload_ids(&ids),
                    type_ids: gpu.upload_ids(&vec![0; ids.len()]),
                    task_ids: gpu.upload_ids(&vec![0; ids.len()]),
                    key_mask: gm,
                };
                let (mut ew, mut ep, mut et) =
                    (gpu.zeros(11 * 16), gpu.zeros(37 * 16), gpu.zeros(2 * 16));
                gpu.embed_sum_bwd(&t, &dq, &mut ew, &mut ep, &mut et, None);
                let ss = gpu.sum_squares(&[&dx, &dw, &db, &lw, &lb]);
                let mut all = Vec::new();
                for buf in [
                    &dx,
                    &dw,
                    &db,
                    &lw,
                    &lb,
                    &dq,
                    &dk,
                    &dvv,
                    ds.as_ref().unwrap(),
                    &ew,
                    &ep,
                ] {
                    all.extend(gpu.download(buf));
                }
                all.push(ss as f32);
                all
            };
            let first = run();
            for _ in 0..if g.emulated { 1 } else { 3 } {
                let again = run();
                assert!(
                    first
                        .iter()
                        .zip(&again)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "results differ between identical runs"
                );
            }
        }
    });
}

#[test]
fn storage_follows_the_precision() {
    on_backends("storage_follows_the_precision", |g| {
        for (gpu, p) in g.both() {
            let x = gpu.upload(&data(1, 1, 1000, 1.0));
            assert_eq!(x.dtype(), DType::F32, "uploads are fp32 (parameters)");
            assert_eq!(
                gpu.zeros(10).dtype(),
                DType::F32,
                "zeros are fp32 (gradients, moments)"
            );
            let y = gpu.gelu(&x);
            assert_eq!(y.dtype(), p.act(), "op outputs use the activation dtype");
            assert_eq!(gpu.copy(&y).dtype(), p.act(), "copies keep the dtype");
            let w = gpu.upload(&data(1, 2, 1000, 1.0));
            let _ = gpu.linear(&y, &w, None, 10, 10, 100);
            assert_eq!(
                w.has_shadow(),
                p == Precision::Bf16,
                "weights get a bf16 copy for the GEMMs under Bf16 only"
            );
            let mut w = w;
            gpu.fill(&mut w, 1.0);
            assert!(!w.has_shadow(), "a write drops the stale copy");
            gpu.reset_peak();
            let before = gpu.peak_bytes();
            let big = gpu.zeros(1 << 20);
            assert!(gpu.peak_bytes() >= before + 4 * (1 << 20));
            drop(big);
            assert!(!gpu.name().is_empty());
        }
    });
}

#[test]
fn bf16_buffers_work_as_inputs_everywhere() {
    // Op outputs (bf16 under Precision::Bf16) fed back as inputs, including as accumulators' sources and
    // in an fp32 backend via conversion: the mixed-dtype paths of the kernels and GEMM operand handling.
    on_backends("bf16_buffers_work_as_inputs_everywhere", |g| {
        let (m, n, k) = (17, 23, 31);
        let x = data(3, 1, m * k, 1.0);
        let w = data(3, 2, n * k, 0.5);
        let c = cpu64();
        let want = c.linear(&c.gelu(&c.upload(&x)), &c.upload(&w), None, m, n, k);
        let gpu = &g.bf16;
        let h = gpu.gelu(&gpu.upload(&x)); // bf16
        assert_eq!(h.dtype(), DType::Bf16);
        let y = gpu.linear(&h, &gpu.upload(&w), None, m, n, k);
        let got = gpu.download(&y);
        let e = rel_err(&got, &want);
        assert!(e < BF16_CHAIN, "relative error {e}");
        // A bf16 buffer converted for the fp32 backend's view.
        let h32 = gpu.to_dtype(&h, DType::F32);
        assert_eq!(gpu.download(&h32), gpu.download(&h));
        let _: &CudaBackend = gpu;
    });
}
