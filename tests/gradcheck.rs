//! Central finite differences in f64 against the explicit backward: for each op, and for the whole model's
//! loss on random tiny configs (proptest: shapes, padding, one or two segments, ERNIE task-type embeddings,
//! dropout on or off, attention-score noise).
//!
//! With h = 1e-6 the central difference has truncation error O(h^2 f''') ~ 1e-12 and round-off
//! O(eps_f64 |f| / h) ~ 1e-10; we require 1e-6 relative agreement (scaled by the gradient's magnitude),
//! which still catches any wrong term (they show up as O(1) relative errors).

use ernie_backend::cpu::ops;
use ernie_backend::{AttnShape, Backend, Cpu, RngStream};
use ernie_model::{BackwardWants, Encoder, ForwardOpts, HostParams, ModelConfig, ModelType, Tokens};
use proptest::prelude::*;

type B = Cpu<f64>;
const H: f64 = 1e-6;

fn randn(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let r = RngStream::new(seed, 99);
    (0..n).map(|i| scale * r.normal(i as u64) as f64).collect()
}

/// Check `grad` against central differences of the scalar `f` at `x`, on `probes` coordinates.
fn check_grad(name: &str, x: &[f64], grad: &[f64], probes: &[usize], f: impl Fn(&[f64]) -> f64) {
    let scale = grad.iter().map(|g| g.abs()).fold(0.0, f64::max).max(1e-8);
    for &i in probes {
        let mut xp = x.to_vec();
        xp[i] += H;
        let fp = f(&xp);
        xp[i] -= 2.0 * H;
        let fm = f(&xp);
        let num = (fp - fm) / (2.0 * H);
        // Relative to the tensor's largest gradient, with an absolute floor for (near-)zero gradients:
        // the difference quotient's round-off is ~eps * |f| / h ~ 1e-10 * |f|.
        let err = (num - grad[i]).abs() / (scale + 1e-2);
        assert!(err < 1e-6, "{name}[{i}]: numeric {num:e} vs analytic {:e} (rel {err:e})", grad[i]);
    }
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn layer_norm_with_residual() {
    let (rows, cols) = (3, 7);
    let (x, r, w, b) =
        (randn(rows * cols, 1, 1.0), randn(rows * cols, 2, 1.0), randn(cols, 3, 1.0), randn(cols, 4, 1.0));
    let u = randn(rows * cols, 5, 1.0);
    let f = |x: &[f64], r: &[f64], w: &[f64], b: &[f64]| dot(&ops::layer_norm_fwd(x, Some(r), w, b, 1e-12, cols).1, &u);
    let (s, _, mean, rstd) = ops::layer_norm_fwd(&x, Some(&r), &w, &b, 1e-12, cols);
    let (mut dw, mut db) = (vec![0.0; cols], vec![0.0; cols]);
    let dx = ops::layer_norm_bwd(&u, &s, &w, &mean, &rstd, cols, &mut dw, &mut db);
    check_grad("ln.x", &x, &dx, &all(x.len()), |x| f(x, &r, &w, &b));
    check_grad("ln.residual", &r, &dx, &all(r.len()), |r| f(&x, r, &w, &b));
    check_grad("ln.w", &w, &dw, &all(cols), |w| f(&x, &r, w, &b));
    check_grad("ln.b", &b, &db, &all(cols), |b| f(&x, &r, &w, b));
}

#[test]
fn gelu_tanh_dropout() {
    let x = randn(50, 6, 2.0);
    let u = randn(50, 7, 1.0);
    check_grad("gelu", &x, &ops::gelu_bwd(&u, &x), &all(50), |x| dot(&ops::gelu_fwd(x), &u));
    let y = ops::tanh_fwd(&x);
    check_grad("tanh", &x, &ops::tanh_bwd(&u, &y), &all(50), |x| dot(&ops::tanh_fwd(x), &u));
    let rng = RngStream::new(3, 4);
    let d = ops::dropout(&u, 0.3, rng);
    check_grad("dropout", &x, &d, &all(50), |x| dot(&ops::dropout(x, 0.3, rng), &u));
    let kept = ops::dropout(&vec![1.0; 10000], 0.3, rng).iter().filter(|&&v| v != 0.0).count();
    assert!((6700..7300).contains(&kept), "keep rate {kept}/10000");
}

#[test]
fn linear_all_inputs() {
    let (m, n, k) = (4, 3, 5);
    let (x, w, b) = (randn(m * k, 8, 1.0), randn(n * k, 9, 1.0), randn(n, 10, 1.0));
    let u = randn(m * n, 11, 1.0);
    let f = |x: &[f64], w: &[f64], b: &[f64]| dot(&ops::linear_fwd(x, w, Some(b), m, n, k), &u);
    let dx = ops::linear_bwd_input(&u, &w, m, n, k);
    let (mut dw, mut db) = (vec![0.0; n * k], vec![0.0; n]);
    ops::linear_bwd_params(&u, &x, m, n, k, &mut dw, Some(&mut db));
    check_grad("linear.x", &x, &dx, &all(m * k), |x| f(x, &w, &b));
    check_grad("linear.w", &w, &dw, &all(n * k), |w| f(&x, w, &b));
    check_grad("linear.b", &b, &db, &all(n), |b| f(&x, &w, b));
}

#[test]
fn attention_with_mask_noise_and_dropout() {
    let a = AttnShape { batch: 2, seq: 5, heads: 2, head_dim: 3 };
    let n = a.batch * a.seq * a.hidden();
    let (q, k, v) = (randn(n, 12, 1.0), randn(n, 13, 1.0), randn(n, 14, 1.0));
    let delta = randn(a.score_len(), 15, 0.5);
    let mask = vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 1];
    let u = randn(n, 16, 1.0);
    let rng = RngStream::new(5, 6);
    let f = |q: &[f64], k: &[f64], v: &[f64], d: &[f64]| {
        dot(&ops::attention_fwd(a, q, k, v, &mask, Some(d), 0.25, rng).0, &u)
    };
    let (_, probs) = ops::attention_fwd(a, &q, &k, &v, &mask, Some(&delta), 0.25, rng);
    let (dq, dk, dv, dd) = ops::attention_bwd(a, &u, &q, &k, &v, &probs, 0.25, rng, true);
    let dd = dd.unwrap();
    check_grad("attn.q", &q, &dq, &all(n), |x| f(x, &k, &v, &delta));
    check_grad("attn.k", &k, &dk, &all(n), |x| f(&q, x, &v, &delta));
    check_grad("attn.v", &v, &dv, &all(n), |x| f(&q, &k, x, &delta));
    check_grad("attn.delta", &delta, &dd, &all(a.score_len()), |x| f(&q, &k, &v, x));
    // Padded keys get exactly zero probability and zero noise gradient.
    for bh in 0..a.heads {
        for i in 0..a.seq {
            for j in 3..5 {
                assert_eq!(probs[(bh * a.seq + i) * a.seq + j], 0.0);
                assert_eq!(dd[(bh * a.seq + i) * a.seq + j], 0.0);
            }
        }
    }
}

#[test]
fn losses() {
    let (rows, c) = (4, 6);
    let (x, y) = (randn(rows * c, 17, 2.0), randn(rows * c, 18, 2.0));
    let labels = vec![0, 5, 2, 2];
    let (_, g) = ops::softmax_ce(&x, &labels, c, 0.25);
    check_grad("ce", &x, &g, &all(x.len()), |x| ops::softmax_ce(x, &labels, c, 1.0).0.iter().sum::<f64>() * 0.25);
    let (_, ga, gb) = ops::sym_kl(&x, &y, c, 0.5);
    check_grad("symkl.a", &x, &ga, &all(x.len()), |x| ops::sym_kl(x, &y, c, 1.0).0.iter().sum::<f64>() * 0.5);
    check_grad("symkl.b", &y, &gb, &all(y.len()), |y| ops::sym_kl(&x, y, c, 1.0).0.iter().sum::<f64>() * 0.5);
    let (_, gd) = ops::kl_detached(&x, &y, c, 1.0);
    check_grad("kl.detached", &y, &gd, &all(y.len()), |y| ops::kl_detached(&x, y, c, 1.0).0.iter().sum::<f64>());
    // Symmetric KL is zero for equal inputs and symmetric.
    let (k0, _, _) = ops::sym_kl(&x, &x, c, 1.0);
    assert!(k0.iter().all(|v| v.abs() < 1e-15));
    let (k1, _, _) = ops::sym_kl(&x, &y, c, 1.0);
    let (k2, _, _) = ops::sym_kl(&y, &x, c, 1.0);
    assert!(k1.iter().zip(&k2).all(|(a, b)| (a - b).abs() < 1e-14 && *a > 0.0));
}

#[test]
fn embedding_scatter() {
    let s = ops::TokShape { batch: 2, seq: 3, hidden: 4 };
    let (word, pos, typ, task) = (randn(20, 19, 1.0), randn(12, 20, 1.0), randn(8, 21, 1.0), randn(12, 22, 1.0));
    let (ids, tids, kids) = (vec![1, 3, 3, 0, 4, 1], vec![0, 0, 1, 0, 1, 1], vec![2, 2, 2, 1, 1, 0]);
    let u = randn(24, 23, 1.0);
    let f = |w: &[f64], p: &[f64], t: &[f64], k: &[f64]| {
        dot(&ops::embed_sum_fwd(s, w, p, t, Some(k), &ids, &tids, &kids), &u)
    };
    let b = B::new();
    let tb = ernie_backend::TokenBatch {
        shape: s,
        ids: ids.clone(),
        type_ids: tids.clone(),
        task_ids: kids.clone(),
        key_mask: vec![1; 6],
    };
    let (mut dw, mut dp, mut dt, mut dk) = (vec![0.0; 20], vec![0.0; 12], vec![0.0; 8], vec![0.0; 12]);
    b.embed_sum_bwd(&tb, &u, &mut dw, &mut dp, &mut dt, Some(&mut dk));
    check_grad("emb.word", &word, &dw, &all(20), |x| f(x, &pos, &typ, &task));
    check_grad("emb.pos", &pos, &dp, &all(12), |x| f(&word, x, &typ, &task));
    check_grad("emb.type", &typ, &dt, &all(8), |x| f(&word, &pos, x, &task));
    check_grad("emb.task", &task, &dk, &all(12), |x| f(&word, &pos, &typ, x));
}

/// A random tiny model and batch for the whole-model check.
#[derive(Debug, Clone)]
struct Case {
    hidden_per_head: usize,
    heads: usize,
    layers: usize,
    batch: usize,
    lens: Vec<usize>,
    seq: usize,
    two_segments: bool,
    ernie: bool,
    dropout: bool,
    noise: bool,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..4,
        1usize..3,
        1usize..3,
        1usize..4,
        2usize..7,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_flat_map(|(hph, heads, layers, batch, seq, two, ernie, dropout, noise, seed)| {
            (
                proptest::collection::vec(1..=seq, batch),
                Just((hph * 2, heads, layers, batch, seq, two, ernie, dropout, noise, seed)),
            )
        })
        .prop_map(
            |(mut lens, (hidden_per_head, heads, layers, batch, seq, two_segments, ernie, dropout, noise, seed))| {
                lens[0] = seq; // one row fills the batch, the others are padded
                Case { hidden_per_head, heads, layers, batch, lens, seq, two_segments, ernie, dropout, noise, seed }
            },
        )
}

fn model_and_batch(c: &Case) -> (HostParams, Tokens, Vec<u32>) {
    let hidden = c.hidden_per_head * c.heads;
    let cfg = ModelConfig {
        model_type: if c.ernie { ModelType::Ernie } else { ModelType::Bert },
        hidden_dropout_prob: 0.2,
        attention_probs_dropout_prob: 0.2,
        use_task_id: c.ernie,
        ..ModelConfig::bert(11, hidden, c.layers, c.heads, 2 * hidden + 1, 8)
    };
    let host = HostParams::random(cfg, 3, c.seed);
    let r = RngStream::new(c.seed, 7);
    let rows: Vec<(Vec<u32>, Vec<u32>)> = c
        .lens
        .iter()
        .enumerate()
        .map(|(b, &len)| {
            let ids = (0..len).map(|i| 1 + r.word((b * 16 + i) as u64) % 10).collect();
            let types = (0..len).map(|i| u32::from(c.two_segments && i >= len / 2)).collect();
            (ids, types)
        })
        .collect();
    let mut t = Tokens::from_rows(&rows, 0);
    t.seq = c.seq;
    if c.ernie {
        t.task_ids = (0..t.batch * t.seq).map(|i| (i % 3) as u32).collect();
    }
    let labels = (0..c.batch).map(|b| r.word(1000 + b as u64) % 3).collect();
    (host, t, labels)
}

/// Loss = mean CE + 0.3 * a fixed random functional of the logits (so every logit gets gradient).
fn loss_of(host: &HostParams, t: &Tokens, labels: &[u32], c: &Case, noise: Option<&[Vec<f64>]>) -> f64 {
    let b = B::new();
    let enc = Encoder::from_host(&b, host);
    let opts = ForwardOpts {
        train: c.dropout,
        hidden_dropout: 0.2,
        attn_dropout: 0.2,
        rng: RngStream::new(c.seed, 1),
        score_noise: noise,
        row_offset: 0,
    };
    let fw = enc.forward(&b, t, &opts);
    let (ce, _) = b.softmax_ce(&fw.logits, &labels.to_vec(), 3, 1.0);
    let u = randn(fw.logits.len(), 77, 1.0);
    ce.iter().sum::<f64>() / t.batch as f64 + 0.3 * dot(&fw.logits, &u)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn whole_model_gradients(c in case()) {
        let (host, t, labels) = model_and_batch(&c);
        let b = B::new();
        let enc = Encoder::from_host(&b, &host);
        let a = AttnShape { batch: t.batch, seq: t.seq, heads: c.heads, head_dim: c.hidden_per_head };
        let noise: Option<Vec<Vec<f64>>> = c.noise.then(|| (0..c.layers).map(|l| b.randn_key_masked(a, &t.mask, 0.5, RngStream::new(c.seed, 50 + l as u64))).collect());
        let opts = ForwardOpts { train: c.dropout, hidden_dropout: 0.2, attn_dropout: 0.2, rng: RngStream::new(c.seed, 1), score_noise: noise.as_deref(), row_offset: 0 };
        let fw = enc.forward(&b, &t, &opts);
        let (_, mut dl) = b.softmax_ce(&fw.logits, &labels, 3, 1.0 / t.batch as f64);
        b.axpby(&mut dl, 1.0, &randn(fw.logits.len(), 77, 1.0), 0.3);
        let mut grads = enc.zero_grads(&b);
        let dnoise = enc.backward(&b, &fw, &dl, BackwardWants { params: true, score_noise: c.noise }, &mut grads);
        for (pi, spec) in host.specs.iter().enumerate() {
            // A few coordinates of every parameter (all of the small ones).
            let n = spec.numel();
            let probes: Vec<usize> = if n <= 8 { all(n) } else { (0..6).map(|j| (RngStream::new(c.seed, pi as u64).word(j) as usize) % n).collect() };
            check_grad(&spec.name, &host.values[pi].iter().map(|&v| v as f64).collect::<Vec<_>>(), &grads.bufs[pi], &probes, |x| {
                // Host parameters are f32: perturb the f64 device copy instead.
                let mut enc2 = Encoder::from_host(&b, &host);
                enc2.params[pi] = x.to_vec();
                let fw = enc2.forward(&b, &t, &opts);
                let (ce, _) = b.softmax_ce(&fw.logits, &labels, 3, 1.0);
                ce.iter().sum::<f64>() / t.batch as f64 + 0.3 * dot(&fw.logits, &randn(fw.logits.len(), 77, 1.0))
            });
        }
        // The same backward without parameter gradients (adv's probe) gives the same noise gradients.
        if let Some(noise) = &noise {
            let mut scratch = enc.zero_grads(&b);
            let probe = enc.backward(&b, &fw, &dl, BackwardWants { params: false, score_noise: true }, &mut scratch);
            prop_assert_eq!(&probe, &dnoise);
            prop_assert!(scratch.bufs.iter().all(|g| g.iter().all(|&v| v == 0.0)), "the probe backward must not touch parameter gradients");
            for l in 0..c.layers {
                let probes: Vec<usize> = (0..8).map(|j| (RngStream::new(c.seed, 900 + l as u64).word(j) as usize) % a.score_len()).collect();
                check_grad(&format!("noise[{l}]"), &noise[l], &dnoise[l], &probes, |x| {
                    let mut nz = noise.clone();
                    nz[l] = x.to_vec();
                    loss_of(&host, &t, &labels, &c, Some(&nz))
                });
            }
        }
    }
}
