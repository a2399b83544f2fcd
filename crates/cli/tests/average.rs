//! `ernie-ft average` (FMA) of checkpoints trained by `ernie-ft train`, run as the real binary on the tiny
//! random model of tests/fixtures (hidden 32, 2 layers, 64 positions; a copy with a small WordPiece
//! vocabulary) and a synthetic 3-class task it learns in a second or two: the label is which of three
//! marker characters the sentence contains (helpers in tests/common/mod.rs).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The tensors of a safetensors file as f32 vectors, by name.
fn tensors(p: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
            (name, t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
        })
        .collect()
}

/// Every tensor of checkpoint `avg` is `w1 * a + w2 * b` of checkpoints `a` and `b` (same names, same sizes).
fn assert_weighted_mean(avg: &Path, a: &Path, b: &Path, w1: f64, w2: f64) {
    let weights = |dir: &Path| tensors(&dir.join("model.safetensors"));
    let (avg, a, b) = (weights(avg), weights(a), weights(b));
    assert_eq!(avg.keys().collect::<Vec<_>>(), a.keys().collect::<Vec<_>>());
    assert!(avg.contains_key("classifier.weight"), "{:?}", avg.keys());
    let mut differ = false;
    for (name, v) in &avg {
        let (x, y) = (&a[name], &b[name]);
        assert_eq!((v.len(), x.len()), (y.len(), y.len()), "{name}");
        for (i, ((&m, &p), &q)) in v.iter().zip(x).zip(y).enumerate() {
            let want = w1 * p as f64 + w2 * q as f64;
            assert!(
                (m as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{name}[{i}]: {m} vs {w1}*{p} + {w2}*{q} = {want}"
            );
            differ |= p != q;
        }
    }
    assert!(differ, "the two runs should differ (different --seed)");
}

/// 4. `average` of two runs (different --seed, same --head-seed): uniform, weighted, greedy, and its errors.
#[test]
fn average_checkpoints() {
    let w = Work::new();
    let train = w.task("train.json", 160, 11);
    let dev = w.task("dev.json", 60, 12);
    let holdout = w.task("holdout.json", 40, 13);
    let flags = ["--strategy", "rdrop", "--lr", "3e-3", "--epochs", "3", "--head-seed", "5"];
    let (d1, d2) = (w.path("seed1"), w.path("seed2"));
    assert_ok(&w.train(&train, Some(&dev), &d1, &[&flags[..], &["--seed", "1"]].concat()));
    assert_ok(&w.train(&train, Some(&dev), &d2, &[&flags[..], &["--seed", "2"]].concat()));
    let average = |out: &Path, extra: &[&str], cks: &[&Path]| {
        let mut args = vec!["average".to_string(), "--threads".into(), "2".into(), "--out".into(), s(out)];
        args.extend(extra.iter().map(|x| x.to_string()));
        args.extend(cks.iter().map(|p| s(p)));
        run(&args)
    };

    let a = w.path("avg");
    assert_ok(&average(&a, &[], &[&d1, &d2]));
    assert_weighted_mean(&a, &d1, &d2, 0.5, 0.5);
    assert!(eval_accuracy(&a, &dev, &w.path("avg.eval.json")).is_finite());
    assert_eq!(json(&a.join("config.json"))["id2label"], json(&d1.join("config.json"))["id2label"]);

    let aw = w.path("avg31");
    assert_ok(&average(&aw, &["--weights", "3,1"], &[&d1, &d2]));
    assert_weighted_mean(&aw, &d1, &d2, 0.75, 0.25);
    let err = assert_fails(&average(&w.path("avg_w"), &["--weights", "1,2,3"], &[&d1, &d2]));
    assert!(err.contains("--weights"), "{err}");
    let err = assert_fails(&average(&w.path("avg_w"), &["--weights", "0,0"], &[&d1, &d2]));
    assert!(err.contains("--weights"), "{err}");

    let err = assert_fails(&average(&w.path("avg_g"), &["--greedy"], &[&d1, &d2]));
    assert!(err.contains("--greedy needs --holdout"), "{err}");
    assert!(!w.path("avg_g").exists());
    let g = w.path("soup");
    let out = average(&g, &["--greedy", "--holdout", &s(&holdout)], &[&d1, &d2]);
    assert_ok(&out);
    assert!(stderr(&out).contains("greedy soup"), "{}", stderr(&out));
    assert!(eval_accuracy(&g, &dev, &w.path("soup.eval.json")).is_finite());

    // Another label set: a run on a file whose labels appear in another order.
    let mut rows: Vec<String> = std::fs::read_to_string(&train).unwrap().lines().map(String::from).collect();
    let label_of = |l: &str| serde_json::from_str::<Value>(l).unwrap()["label"].clone();
    let first_other = rows.iter().position(|l| label_of(l) != label_of(&rows[0])).unwrap();
    rows.swap(0, first_other);
    let train_b = w.write("train_b.json", &(rows.join("\n") + "\n"));
    let d3 = w.path("other_labels");
    assert_ok(&w.train(&train_b, Some(&dev), &d3, &["--max-steps", "1", "--head-seed", "5"]));
    assert_ne!(json(&d3.join("config.json"))["id2label"], json(&d1.join("config.json"))["id2label"]);
    let err = assert_fails(&average(&w.path("avg_l"), &[], &[&d1, &d3]));
    assert!(err.contains(&d3.display().to_string()) && err.contains("labels"), "{err}");
    assert!(!w.path("avg_l").exists());

    // Checkpoints that cannot be averaged: each a 1-step run that differs from D1 in one setting. The
    // error names both directories and the differing field, and nothing is written.
    let train_one = |name: &str, model: &Path, flags: &[&str]| -> PathBuf {
        let d = w.path(name);
        let mut args: Vec<String> = [
            "train",
            "--model",
            &s(model),
            "--threads",
            "2",
            "--text-a-key",
            "sentence",
            "--label-key",
            "label",
            "--batch-size",
            "16",
            "--max-steps",
            "1",
            "--train",
            &s(&train),
            "--dev",
            &s(&dev),
            "--output-dir",
            &s(&d),
        ]
        .map(String::from)
        .to_vec();
        args.extend(flags.iter().map(|x| x.to_string()));
        for (flag, default) in [("--task", "synthetic"), ("--max-len", "32"), ("--head-seed", "5")] {
            if !flags.contains(&flag) {
                args.extend([flag.to_string(), default.to_string()]);
            }
        }
        assert_ok(&run(&args));
        d
    };
    let mismatch = |out: &str, other: &Path, wants: &[&str]| {
        let err = assert_fails(&average(&w.path(out), &[], &[&d1, other]));
        for want in [&d1.display().to_string(), &other.display().to_string(), &"error:".to_string()]
            .into_iter()
            .chain(&wants.iter().map(|x| x.to_string()).collect::<Vec<_>>())
        {
            assert!(err.contains(want.as_str()), "no {want:?} in:\n{err}");
        }
        assert!(!w.path(out).exists(), "{out} written after an error");
    };
    // Another model config: a base model with another layer_norm_eps (the field is named, no Debug dump).
    let model2 = w.path("model_eps");
    std::fs::create_dir(&model2).unwrap();
    for e in std::fs::read_dir(w.path("model")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model2.join(e.file_name())).unwrap();
    }
    let mut cfg = json(&model2.join("config.json"));
    cfg["layer_norm_eps"] = serde_json::json!(1e-5);
    std::fs::write(model2.join("config.json"), cfg.to_string()).unwrap();
    let d4 = train_one("other_config", &model2, &[]);
    mismatch("avg_c", &d4, &["model config", "layer_norm_eps 1e-5 vs 1e-12"]);
    let err = assert_fails(&average(&w.path("avg_c"), &[], &[&d1, &d4]));
    assert!(!err.contains("ModelConfig {"), "a Debug dump: {err}");
    // Another head seed (FMA needs a shared head initialisation).
    let d5 = train_one("other_head_seed", &w.path("model"), &["--head-seed", "6"]);
    mismatch("avg_h", &d5, &["head seed 6 vs 5", "--head-seed"]);
    // Another max length.
    let d6 = train_one("other_max_len", &w.path("model"), &["--max-len", "24"]);
    mismatch("avg_m", &d6, &["max length 24 vs 32"]);
    // Another task (same keys, another name).
    let d7 = train_one("other_task", &w.path("model"), &["--task", "synthetic2"]);
    mismatch("avg_t", &d7, &["task", "\"synthetic2\" vs \"synthetic\""]);
    // The same settings average fine (the checks compare what matters, not the run seed).
    let d8 = train_one("same", &w.path("model"), &["--seed", "8"]);
    assert_ok(&average(&w.path("avg_ok"), &[], &[&d1, &d8]));

    // --out equal to one of the inputs (also when spelled differently): an error naming both.
    for out in [d2.clone(), w.path("seed2/../seed2")] {
        let before = std::fs::read(d2.join("model.safetensors")).unwrap();
        let err = assert_fails(&average(&out, &[], &[&d1, &d2]));
        assert!(
            err.contains("--out")
                && err.contains(&out.display().to_string())
                && err.contains(&d2.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read(d2.join("model.safetensors")).unwrap(), before, "the input is untouched");
    }
}
