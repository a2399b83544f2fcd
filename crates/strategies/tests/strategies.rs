//! Each strategy against an independent computation.

use ernie_backend::{Backend, Cpu, NoiseNorm, RngStream};
use ernie_model::{BackwardWants, Encoder, ForwardOpts, Grads, HostParams, ModelConfig, Tokens};
use ernie_strategies::{
    adv, fma, layer_decay, objective, rdrop, AdvConfig, AdvObjective, Dropout, LabelledBatch, RDropConfig, Recipe,
    StepReport,
};

type B = Cpu<f64>;

fn config(layers: usize) -> ModelConfig {
    ModelConfig::bert(13, 8, layers, 2, 12, 16)
}

fn batch() -> (Tokens, Vec<u32>) {
    let rows = vec![
        (vec![1, 4, 5, 6, 2], vec![0, 0, 0, 1, 1]),
        (vec![1, 7, 2], vec![0, 0, 0]),
        (vec![1, 9, 10, 2], vec![0, 0, 1, 1]),
    ];
    (Tokens::from_rows(&rows, 0), vec![2, 0, 1])
}

#[test]
fn layer_decay_multipliers_follow_the_formula() {
    let host = HostParams::random(ModelConfig::bert(100, 384, 12, 12, 1536, 16), 2, 0);
    let m = layer_decay::multipliers(&host.specs, 12, 0.8);
    for (s, &mult) in host.specs.iter().zip(&m) {
        let want = if s.name.starts_with("embeddings.") {
            0.8f64.powi(14)
        } else if let Some(rest) = s.name.strip_prefix("encoder.layer.") {
            let i: i32 = rest.split('.').next().unwrap().parse().unwrap();
            0.8f64.powi(13 - i)
        } else {
            assert!(s.name.starts_with("pooler") || s.name.starts_with("classifier"), "{}", s.name);
            1.0
        };
        assert!((mult - want).abs() < 1e-15, "{}: {mult} vs {want}", s.name);
    }
    let t = layer_decay::table(12, 0.8);
    assert!(t.contains("embeddings") && t.contains("encoder.layer.11") && t.contains("1.000000"), "{t}");
    assert!(t.contains(&format!("{:.6}", 0.8f64.powi(14))));
}

#[test]
fn rdrop_one_doubled_forward_equals_two_forwards_with_the_same_masks() {
    let b = B::new();
    let enc = Encoder::from_host(&b, &HostParams::random(config(2), 3, 1));
    let (t, _) = batch();
    let opts = |row_offset| ForwardOpts::<B> {
        train: true,
        hidden_dropout: 0.3,
        attn_dropout: 0.3,
        rng: RngStream::new(5, 9),
        score_noise: None,
        row_offset,
    };
    let both = enc.forward(&b, &t.doubled(), &opts(0));
    let first = enc.forward(&b, &t, &opts(0));
    let second = enc.forward(&b, &t, &opts(t.batch));
    let c = 3;
    let (l1, l2) = (&both.logits[..t.batch * c], &both.logits[t.batch * c..]);
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
    assert!(close(l1, &first.logits) && close(l2, &second.logits), "halves equal the separate forwards");
    assert!(!close(l1, l2), "the two copies get independent dropout masks");
    // And the hidden states too (not just the logits).
    let h = 8 * t.seq * t.batch;
    assert!(close(&both.final_hidden()[h..], second.final_hidden()));
}

#[test]
fn rdrop_loss_and_gradient() {
    let b = B::new();
    let (batch, c) = (3, 4);
    let r = RngStream::new(1, 1);
    let logits: Vec<f64> = (0..2 * batch * c).map(|i| 2.0 * r.normal(i as u64) as f64).collect();
    let labels = vec![1, 3, 0, 1, 3, 0];
    let cfg = RDropConfig { alpha: 0.7 };
    let mut stats = b.stats_zeros(objective::stat::LEN);
    let dlogits = rdrop::loss(&b, &logits, &labels, batch, c, &cfg, &mut stats);
    let total = stats[objective::stat::CE] + 0.7 * stats[objective::stat::RDROP_KL];
    // Independent computation of the value.
    let lsm = |row: &[f64]| {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z = row.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m;
        row.iter().map(|v| v - z).collect::<Vec<_>>()
    };
    let f = |x: &[f64]| {
        let rows: Vec<Vec<f64>> = x.chunks(c).map(lsm).collect();
        let ce = (0..2 * batch).map(|r| -rows[r][labels[r] as usize]).sum::<f64>() / (2 * batch) as f64;
        let kl = (0..batch)
            .map(|r| {
                let (p, q) = (&rows[r], &rows[r + batch]);
                0.5 * (0..c).map(|k| (p[k].exp() - q[k].exp()) * (p[k] - q[k])).sum::<f64>()
            })
            .sum::<f64>()
            / batch as f64;
        ce + 0.7 * kl
    };
    assert!((total - f(&logits)).abs() < 1e-12);
    for i in 0..logits.len() {
        let mut x = logits.clone();
        x[i] += 1e-6;
        let fp = f(&x);
        x[i] -= 2e-6;
        let num = (fp - f(&x)) / 2e-6;
        assert!((num - dlogits[i]).abs() < 1e-8, "dlogits[{i}]: {num} vs {}", dlogits[i]);
    }
}

/// `compute_gradients` into fresh gradients (returned) on the batch `(t, y)`, and the one read of its
/// statistics.
fn step<Be: Backend>(
    b: &Be,
    enc: &Encoder<Be>,
    (t, y): (&Tokens, &[u32]),
    recipe: &Recipe,
    drop: Dropout,
    rng: RngStream,
) -> (StepReport, Grads<Be>) {
    let mut grads = enc.zero_grads(b);
    let mut stats = b.stats_zeros(objective::stat::LEN);
    let batch = LabelledBatch { tokens: t, labels: y };
    let pending = objective::compute_gradients(b, enc, &mut grads, batch, recipe, drop, rng, &mut stats);
    (pending.read(&b.stats_download(&stats)), grads)
}

fn adv_setup() -> (B, Encoder<B>, Tokens, Vec<u32>) {
    let b = B::new();
    let enc = Encoder::from_host(&b, &HostParams::random(config(2), 3, 2));
    let (t, y) = batch();
    (b, enc, t, y)
}

#[test]
fn adv_noise_gradient_matches_finite_differences_and_is_normalised() {
    let (b, enc, t, _) = adv_setup();
    let opts = ForwardOpts::<B>::train(0.1, 0.1, RngStream::new(3, 3));
    let clean = enc.forward(&b, &t, &opts);
    // The probe gradient g: recompute it here as the backward of KL(clean || probe) w.r.t. the noise and
    // compare with finite differences of that KL.
    let shape = ernie_backend::AttnShape { batch: t.batch, seq: t.seq, heads: 2, head_dim: 4 };
    let delta0: Vec<Vec<f64>> = (0..2).map(|l| b.randn_key_masked(shape, &t.mask, 0.3, RngStream::new(8, l))).collect();
    let kl_of = |noise: &[Vec<f64>]| {
        let fw = enc.forward(&b, &t, &ForwardOpts { score_noise: Some(noise), ..opts });
        b.kl_detached(&clean.logits, &fw.logits, 3, 1.0 / t.batch as f64).0.iter().sum::<f64>() / t.batch as f64
    };
    let probe = enc.forward(&b, &t, &ForwardOpts { score_noise: Some(&delta0), ..opts });
    let (_, d) = b.kl_detached(&clean.logits, &probe.logits, 3, 1.0 / t.batch as f64);
    let g = enc.backward(
        &b,
        &probe,
        &d,
        BackwardWants { params: false, score_noise: true },
        &mut ernie_model::Grads { bufs: vec![] },
    );
    let scale = g.iter().flatten().map(|v| v.abs()).fold(0.0, f64::max);
    for l in 0..2 {
        for i in (0..shape.score_len()).step_by(7) {
            let mut nz = delta0.clone();
            nz[l][i] += 1e-6;
            let fp = kl_of(&nz);
            nz[l][i] -= 2e-6;
            let num = (fp - kl_of(&nz)) / 2e-6;
            assert!((num - g[l][i]).abs() < 1e-6 * scale + 1e-10, "layer {l} score {i}: {num:e} vs {:e}", g[l][i]);
        }
    }
    // adversarial_noise: per example and per layer, ||delta|| = epsilon, zero on padded keys.
    for (norm, measure) in [(NoiseNorm::L2, 0), (NoiseNorm::Max, 1)] {
        let cfg = AdvConfig { epsilon: 0.5, norm, init_sigma: 0.3, ..AdvConfig::default() };
        let (delta, kl) =
            adv::adversarial_noise(&b, &enc, &t.to_device(&b, 8), &clean.logits, &opts, &cfg, RngStream::new(4, 4));
        assert!(kl.iter().sum::<f64>() > 0.0);
        let per = shape.score_len() / t.batch;
        for dl in &delta {
            for (e, blk) in dl.chunks(per).enumerate() {
                let n = if measure == 0 {
                    blk.iter().map(|v| v * v).sum::<f64>().sqrt()
                } else {
                    blk.iter().map(|v| v.abs()).fold(0.0, f64::max)
                };
                assert!((n - 0.5).abs() < 1e-9, "example {e}: norm {n}");
                for (k, &v) in blk.iter().enumerate() {
                    let key = k % t.seq;
                    if t.mask[e * t.seq + key] == 0 {
                        assert_eq!(v, 0.0, "noise on a padded key");
                    }
                }
            }
        }
    }
}

#[test]
fn adv_step_gradient_is_that_of_its_objective_with_the_noise_fixed() {
    let (b, enc, t, y) = adv_setup();
    for objective in [AdvObjective::Kl, AdvObjective::Ce] {
        let cfg = AdvConfig { epsilon: 0.8, alpha: 0.6, init_sigma: 1e-2, norm: NoiseNorm::L2, objective };
        let recipe = Recipe { adv: Some(cfg), ..Recipe::default() };
        let drop = Dropout { hidden: 0.1, attention: 0.1 };
        let rng = RngStream::new(6, 6);
        let (report, grads) = step(&b, &enc, (&t, &y), &recipe, drop, rng);
        assert_eq!((report.forwards, report.backwards), (3, 2), "3 forwards, 2 backwards");
        // Rebuild the objective with the same (fixed) noise and differentiate it numerically.
        let opts = ForwardOpts::<B>::train(0.1, 0.1, rng.derive(1));
        let clean = enc.forward(&b, &t, &opts);
        let (delta, _) =
            adv::adversarial_noise(&b, &enc, &t.to_device(&b, 8), &clean.logits, &opts, &cfg, rng.derive(2));
        let labels = y.clone();
        let objective_at = |e: &Encoder<B>| {
            let c = e.forward(&b, &t, &opts);
            let a = e.forward(&b, &t, &ForwardOpts { score_noise: Some(&delta), ..opts });
            let ce = b.softmax_ce(&c.logits, &labels, 3, 1.0).0.iter().sum::<f64>() / 3.0;
            let extra = match objective {
                AdvObjective::Kl => b.sym_kl(&c.logits, &a.logits, 3, 1.0).0.iter().sum::<f64>() / 3.0,
                AdvObjective::Ce => b.softmax_ce(&a.logits, &labels, 3, 1.0).0.iter().sum::<f64>() / 3.0,
            };
            ce + 0.6 * extra
        };
        assert!((objective_at(&enc) - report.loss).abs() < 1e-12, "reported loss");
        for pi in [0, 5, 9, 20, enc.specs.len() - 3] {
            let scale = grads.bufs[pi].iter().map(|v| v.abs()).fold(0.0, f64::max);
            for j in [0, 3, 7] {
                let mut e2 = Encoder::from_host(&b, &enc.to_host(&b));
                e2.params[pi] = enc.params[pi].clone();
                e2.params[pi][j] += 1e-6;
                let fp = objective_at(&e2);
                e2.params[pi][j] -= 2e-6;
                let num = (fp - objective_at(&e2)) / 2e-6;
                assert!(
                    (num - grads.bufs[pi][j]).abs() < 1e-6 * scale + 1e-9,
                    "{objective:?} {}[{j}]: {num:e} vs {:e}",
                    enc.specs[pi].name,
                    grads.bufs[pi][j]
                );
            }
        }
    }
}

#[test]
fn strategies_compose() {
    let (b, enc, t, y) = adv_setup();
    let recipe = Recipe { rdrop: Some(RDropConfig { alpha: 1.0 }), adv: Some(AdvConfig::default()), layer_decay: None };
    let (r, grads) = step(&b, &enc, (&t, &y), &recipe, Dropout { hidden: 0.1, attention: 0.1 }, RngStream::new(1, 2));
    assert!(r.rdrop_kl.unwrap() > 0.0 && r.adv_kl.unwrap() >= 0.0 && r.loss.is_finite());
    assert!(grads.bufs.iter().all(|g| g.iter().all(|v| v.is_finite())));
}

/// The step's values, now left on the device and read once, are bit for bit what the host computed before
/// from the downloaded per-row losses (on Cpu<f32>, the training path): the reported numbers did not move.
#[test]
fn step_report_is_the_host_arithmetic_bit_for_bit() {
    type F = Cpu<f32>;
    let b = F::new();
    let enc = Encoder::from_host(&b, &HostParams::random(config(2), 3, 2));
    let (t, y) = batch();
    let drop = Dropout { hidden: 0.1, attention: 0.1 };
    let rng = RngStream::new(7, 3);
    let rdrop = Some(RDropConfig { alpha: 0.7 });
    let kl = AdvConfig { epsilon: 0.5, ..AdvConfig::default() };
    let ce = AdvConfig { objective: AdvObjective::Ce, alpha: 0.6, ..kl };
    for recipe in [
        Recipe::default(),
        Recipe { rdrop, ..Recipe::default() },
        Recipe { adv: Some(kl), ..Recipe::default() },
        Recipe { adv: Some(ce), ..Recipe::default() },
        Recipe { rdrop, adv: Some(kl), layer_decay: None },
        Recipe { rdrop, adv: Some(ce), layer_decay: None },
    ] {
        let (got, _) = step(&b, &enc, (&t, &y), &recipe, drop, rng);
        // Before: per-row losses downloaded as f64, summed and combined on the host.
        let mean = |rows: Vec<f32>, n: usize| b.download_f64(&rows).iter().sum::<f64>() / n as f64;
        let opts = ForwardOpts::<F>::train(0.1, 0.1, rng.derive(1));
        let (tt, yy) = if recipe.rdrop.is_some() {
            (t.doubled(), [y.clone(), y.clone()].concat())
        } else {
            (t.clone(), y.clone())
        };
        let fw = enc.forward(&b, &tt, &opts);
        let n = t.batch;
        let (want_ce, mut want_loss, want_rkl) = match recipe.rdrop {
            Some(cfg) => {
                let ce = mean(b.softmax_ce(&fw.logits, &yy, 3, 1.0 / (2 * n) as f64).0, 2 * n);
                let (l1, l2) = (b.slice_rows(&fw.logits, 0, n, 3), b.slice_rows(&fw.logits, n, n, 3));
                let kl = mean(b.sym_kl(&l1, &l2, 3, cfg.alpha / n as f64).0, n);
                (ce, ce + cfg.alpha * kl, Some(kl))
            }
            None => {
                let ce = mean(b.softmax_ce(&fw.logits, &yy, 3, 1.0 / n as f64).0, n);
                (ce, ce, None)
            }
        };
        let mut want_akl = None;
        if let Some(cfg) = recipe.adv {
            let (delta, _) =
                adv::adversarial_noise(&b, &enc, &tt.to_device(&b, 8), &fw.logits, &opts, &cfg, rng.derive(2));
            let a = enc.forward(&b, &tt, &ForwardOpts { score_noise: Some(&delta), ..opts });
            let rows = tt.batch;
            let kl = mean(b.sym_kl(&fw.logits, &a.logits, 3, cfg.alpha / rows as f64).0, rows);
            let extra = match cfg.objective {
                AdvObjective::Kl => cfg.alpha * kl,
                AdvObjective::Ce => {
                    cfg.alpha
                        * b.download_f64(&b.softmax_ce(&a.logits, &yy, 3, cfg.alpha / rows as f64).0)
                            .iter()
                            .sum::<f64>()
                        / rows as f64
                }
            };
            want_loss += extra;
            want_akl = Some(kl);
        }
        let logits = b.download(&fw.logits);
        let want_correct = (0..n)
            .filter(|&r| {
                let row = &logits[r * 3..(r + 1) * 3];
                row.iter().enumerate().fold(0, |bi, (i, &v)| if v > row[bi] { i } else { bi }) == y[r] as usize
            })
            .count();
        let bits = |x: Option<f64>| x.map(f64::to_bits);
        assert_eq!(got.loss.to_bits(), want_loss.to_bits(), "{recipe:?}: loss {} vs {want_loss}", got.loss);
        assert_eq!(got.ce.to_bits(), want_ce.to_bits(), "{recipe:?}: ce");
        assert_eq!(bits(got.rdrop_kl), bits(want_rkl), "{recipe:?}: rdrop kl");
        assert_eq!(bits(got.adv_kl), bits(want_akl), "{recipe:?}: adv kl");
        assert_eq!(got.correct, want_correct, "{recipe:?}: correct");
    }
}

#[test]
fn averaging() {
    let a = HostParams::random(config(1), 3, 1);
    let c = HostParams::random(config(1), 3, 2);
    let avg = fma::average(&[("a".into(), &a), ("c".into(), &c)], None).unwrap();
    for ((x, y), z) in a.values.iter().zip(&c.values).zip(&avg.values) {
        for ((x, y), z) in x.iter().zip(y).zip(z) {
            assert!((((*x as f64 + *y as f64) / 2.0) as f32 - z).abs() <= f32::EPSILON * z.abs());
        }
    }
    let w = fma::average(&[("a".into(), &a), ("c".into(), &c)], Some(&[3.0, 1.0])).unwrap();
    assert!((w.values[0][0] - (0.75 * a.values[0][0] + 0.25 * c.values[0][0])).abs() < 1e-6);
    // Mismatches name the model and tensor.
    let other = HostParams::random(ModelConfig { intermediate_size: 10, ..config(1) }, 3, 1);
    let e = fma::average(&[("a".into(), &a), ("wide".into(), &other)], None).unwrap_err().to_string();
    assert!(e.contains("wide") && e.contains("config"), "{e}");
    // The differing field is named with both values, not a Debug dump of two configs.
    assert!(e.contains("intermediate_size 10 vs 12") && !e.contains("ModelConfig"), "{e}");
    let eps = HostParams::random(ModelConfig { layer_norm_eps: 1e-5, ..config(1) }, 3, 1);
    let e = fma::average(&[("a".into(), &a), ("eps".into(), &eps)], None).unwrap_err().to_string();
    assert!(e.contains("layer_norm_eps 1e-5 vs 1e-12"), "{e}");
    let labels4 = HostParams::random(config(1), 4, 1);
    let e = fma::average(&[("a".into(), &a), ("four".into(), &labels4)], None).unwrap_err().to_string();
    assert!(e.contains("four") && e.contains("classifier.weight") && e.contains("[4, 8]"), "{e}");
    // Greedy soup keeps a model only if the held-out score does not drop.
    let models = [("a".to_string(), &a), ("c".to_string(), &c), ("a2".to_string(), &a)];
    let (kept, _, best) = fma::greedy_soup(&models, &[0.5, 0.9, 0.4], |m| {
        if (m.values[0][0] - c.values[0][0]).abs() < 1e-9 {
            0.9
        } else {
            0.1
        }
    })
    .unwrap();
    assert_eq!(kept, vec![1]);
    assert_eq!(best, 0.9);
}
