//! `ernie-ft train`, `eval`, `predict` and `average`, run as the real binary on the tiny random model of
//! tests/fixtures (hidden 32, 2 layers, 64 positions; a copy with a small WordPiece vocabulary) and a
//! synthetic 3-class task it learns in a second or two: the label is which of three marker characters the
//! sentence contains.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn eval_accuracy(ckpt: &Path, dev: &Path, metrics_out: &Path) -> f64 {
    let out = run(&[
        "eval".into(),
        "--model".into(),
        s(ckpt),
        "--dev".into(),
        s(dev),
        "--threads".into(),
        "2".into(),
        "--metrics-out".into(),
        s(metrics_out),
    ]);
    assert_ok(&out);
    let printed: Value = serde_json::from_slice(&out.stdout).expect("eval prints JSON");
    let written = json(metrics_out);
    assert_eq!(printed, written, "--metrics-out holds what eval prints");
    written["accuracy"].as_f64().expect("accuracy")
}

/// The tensors of a safetensors file as f32 vectors, by name.
fn tensors(p: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
            (
                name,
                t.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            )
        })
        .collect()
}

/// Every tensor of `avg` is `w1 * a + w2 * b` (same names, same sizes).
fn assert_weighted_mean(avg: &Path, a: &Path, b: &Path, w1: f64, w2: f64) {
    let (avg, a, b) = (tensors(avg), tensors(a), tensors(b));
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

/// 1-3: `train` with every strategy, then `eval` and `predict` of its checkpoint.
#[test]
fn train_eval_and_predict() {
    let w = Work::new();
    let train = w.task("train.json", 240, 1);
    let dev = w.task("dev.json", 90, 2);
    let d = w.path("run");
    let out = w.train(
        &train,
        Some(&dev),
        &d,
        &[
            "--strategy",
            "adv,rdrop,layer-decay",
            "--lr",
            "3e-3",
            "--epochs",
            "6",
            "--head-seed",
            "3",
        ],
    );
    assert_ok(&out);
    let err = stderr(&out);
    // The layer-decay multiplier table: embeddings, both layers and the head, with their multipliers.
    assert!(err.contains("layer decay 0.8: lr multiplier"), "{err}");
    for row in [
        "embeddings",
        "encoder.layer.0",
        "encoder.layer.1",
        "pooler+classifier",
    ] {
        assert!(
            err.lines().any(|l| l.trim_start().starts_with(row)),
            "no row {row} in:\n{err}"
        );
    }
    assert!(
        err.contains("1.000000") && err.contains("0.409600"),
        "{err}"
    );

    for f in [
        "model.safetensors",
        "config.json",
        "vocab.txt",
        "ernie_ft.json",
        "metrics.json",
    ] {
        assert!(d.join(f).is_file(), "{f} missing from the checkpoint");
    }
    let config = json(&d.join("config.json"));
    assert_eq!(config["num_labels"], 3, "{config}");
    let id2label = config["id2label"].as_object().expect("id2label");
    let label2id = config["label2id"].as_object().expect("label2id");
    let mut names: Vec<&str> = id2label.values().map(|v| v.as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["丙", "乙", "甲"]);
    for (i, l) in id2label {
        assert_eq!(
            label2id[l.as_str().unwrap()].to_string(),
            *i,
            "label2id inverts id2label"
        );
    }
    assert_eq!(
        std::fs::read(d.join("vocab.txt")).unwrap(),
        std::fs::read(w.path("model/vocab.txt")).unwrap()
    );
    let meta = json(&d.join("ernie_ft.json"));
    assert_eq!(meta["max_len"], 32);
    let metrics = json(&d.join("metrics.json"));
    let final_acc = metrics["final_dev"]["accuracy"]
        .as_f64()
        .expect("final_dev accuracy");
    assert!(
        final_acc > 0.8,
        "final dev accuracy {final_acc} (chance 0.33): {metrics}"
    );
    assert_eq!(
        metrics["strategies"],
        serde_json::json!(["adv", "rdrop", "layer-decay"])
    );
    assert_eq!(
        (
            metrics["train_examples"].as_u64(),
            metrics["dev_examples"].as_u64(),
            metrics["steps"].as_u64()
        ),
        (Some(240), Some(90), Some(90))
    );

    // 2. eval reproduces the final dev accuracy.
    let m = w.path("eval.json");
    let acc = eval_accuracy(&d, &dev, &m);
    assert_eq!(
        acc, final_acc,
        "eval of the checkpoint vs metrics.json final_dev"
    );
    assert_eq!(json(&m)["examples"], 90);

    // 3. predict: ids as written (ints stay ints, strings stay strings), input order, known labels.
    let test: Vec<(Value, String, usize)> = examples(40, 9)
        .into_iter()
        .enumerate()
        .map(|(i, (text, label))| {
            let id = match i % 4 {
                0 => Value::from(1000 + i as i64),
                1 => Value::from(format!("t-{i}")),
                2 => Value::from(format!("{:04}", i)), // a string that looks like a number
                _ => Value::from(i as i64),
            };
            (id, text, label)
        })
        .collect();
    let lines: Vec<String> = test
        .iter()
        .map(|(id, text, _)| serde_json::json!({ "id": id, "sentence": text }).to_string())
        .collect();
    let t = w.write("test.json", &(lines.join("\n") + "\n"));
    let p = w.path("pred.json");
    let out = run(&[
        "predict".into(),
        "--model".into(),
        s(&d),
        "--test".into(),
        s(&t),
        "--output".into(),
        s(&p),
        "--threads".into(),
        "2".into(),
    ]);
    assert_ok(&out);
    let text = std::fs::read_to_string(&p).unwrap();
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), test.len());
    let mut correct = 0;
    for (row, (id, _, label)) in rows.iter().zip(&test) {
        let obj = row.as_object().expect("an object");
        assert_eq!(obj.len(), 2, "{row}");
        assert_eq!(&row["id"], id, "ids preserved, in input order");
        let l = row["label"].as_str().expect("label is a string");
        assert!(LABELS.contains(&l), "{l}");
        correct += usize::from(l == LABELS[*label]);
    }
    assert!(
        correct * 10 > test.len() * 7,
        "{correct}/{} predictions right",
        test.len()
    );

    // A failing predict names FILE:LINE and leaves no output.
    let mut bad = lines.clone();
    bad[2] = "{\"id\": 3, \"sentence\": ".into();
    let t_bad = w.write("test_bad.json", &(bad.join("\n") + "\n"));
    let p_bad = w.path("pred_bad.json");
    let out = run(&[
        "predict".into(),
        "--model".into(),
        s(&d),
        "--test".into(),
        s(&t_bad),
        "--output".into(),
        s(&p_bad),
        "--threads".into(),
        "2".into(),
    ]);
    let err = assert_fails(&out);
    assert!(err.contains(&format!("{}:3", t_bad.display())), "{err}");
    assert!(!p_bad.exists(), "no output after a failure");
    let leftovers: Vec<_> = std::fs::read_dir(w.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("pred_bad"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// 4. `average` of two runs (different --seed, same --head-seed): uniform, weighted, greedy, and its errors.
#[test]
fn average_checkpoints() {
    let w = Work::new();
    let train = w.task("train.json", 160, 11);
    let dev = w.task("dev.json", 60, 12);
    let holdout = w.task("holdout.json", 40, 13);
    let flags = [
        "--strategy",
        "rdrop",
        "--lr",
        "3e-3",
        "--epochs",
        "3",
        "--head-seed",
        "5",
    ];
    let (d1, d2) = (w.path("seed1"), w.path("seed2"));
    assert_ok(&w.train(
        &train,
        Some(&dev),
        &d1,
        &[&flags[..], &["--seed", "1"]].concat(),
    ));
    assert_ok(&w.train(
        &train,
        Some(&dev),
        &d2,
        &[&flags[..], &["--seed", "2"]].concat(),
    ));
    let average = |out: &Path, extra: &[&str], cks: &[&Path]| {
        let mut args = vec![
            "average".to_string(),
            "--threads".into(),
            "2".into(),
            "--out".into(),
            s(out),
        ];
        args.extend(extra.iter().map(|x| x.to_string()));
        args.extend(cks.iter().map(|p| s(p)));
        run(&args)
    };

    let a = w.path("avg");
    assert_ok(&average(&a, &[], &[&d1, &d2]));
    assert_weighted_mean(
        &a.join("model.safetensors"),
        &d1.join("model.safetensors"),
        &d2.join("model.safetensors"),
        0.5,
        0.5,
    );
    assert!(eval_accuracy(&a, &dev, &w.path("avg.eval.json")).is_finite());
    assert_eq!(
        json(&a.join("config.json"))["id2label"],
        json(&d1.join("config.json"))["id2label"]
    );

    let aw = w.path("avg31");
    assert_ok(&average(&aw, &["--weights", "3,1"], &[&d1, &d2]));
    assert_weighted_mean(
        &aw.join("model.safetensors"),
        &d1.join("model.safetensors"),
        &d2.join("model.safetensors"),
        0.75,
        0.25,
    );
    let err = assert_fails(&average(
        &w.path("avg_w"),
        &["--weights", "1,2,3"],
        &[&d1, &d2],
    ));
    assert!(err.contains("--weights"), "{err}");
    let err = assert_fails(&average(
        &w.path("avg_w"),
        &["--weights", "0,0"],
        &[&d1, &d2],
    ));
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
    let mut rows: Vec<String> = std::fs::read_to_string(&train)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let label_of = |l: &str| serde_json::from_str::<Value>(l).unwrap()["label"].clone();
    let first_other = rows
        .iter()
        .position(|l| label_of(l) != label_of(&rows[0]))
        .unwrap();
    rows.swap(0, first_other);
    let train_b = w.write("train_b.json", &(rows.join("\n") + "\n"));
    let d3 = w.path("other_labels");
    assert_ok(&w.train(
        &train_b,
        Some(&dev),
        &d3,
        &["--max-steps", "1", "--head-seed", "5"],
    ));
    assert_ne!(
        json(&d3.join("config.json"))["id2label"],
        json(&d1.join("config.json"))["id2label"]
    );
    let err = assert_fails(&average(&w.path("avg_l"), &[], &[&d1, &d3]));
    assert!(
        err.contains(&d3.display().to_string()) && err.contains("labels"),
        "{err}"
    );
    assert!(!w.path("avg_l").exists());

    // Checkpoints that cannot be averaged: each a 1-step run that differs from D1 in one setting. The
    // error names both directories and the differing field, and nothing is written.
    let train_one = |name: &str, model: &Path, flags: &[&str]| -> PathBuf {
        let d = w.path(name);
        let mut args: Vec<String> = [
            "train", "--model", &s(model), "--threads", "2", "--text-a-key", "sentence",
            "--label-key", "label", "--batch-size", "16", "--max-steps", "1", "--train", &s(&train),
            "--dev", &s(&dev), "--output-dir", &s(&d),
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
            err.contains("--out") && err.contains(&out.display().to_string()) && err.contains(&d2.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read(d2.join("model.safetensors")).unwrap(), before, "the input is untouched");
    }
}

/// 5. --holdout: trains on part of the training file, evaluates on the rest, and never touches dev.
#[test]
fn holdout_splits_train_and_ignores_dev() {
    let w = Work::new();
    let train = w.task("train.json", 150, 21);
    // No --dev, and no data folder to find one in (ERNIE_FT_DATA names a missing directory).
    let d = w.path("ho");
    let out = w.train(
        &train,
        None,
        &d,
        &["--holdout", "0.2", "--lr", "3e-3", "--epochs", "2"],
    );
    assert_ok(&out);
    let metrics = json(&d.join("metrics.json"));
    assert_eq!(metrics["dev_examples"], 30, "{metrics}");
    assert_eq!(metrics["train_examples"], 120, "{metrics}");
    assert_eq!(metrics["final_dev"]["examples"], 30);
    // The split is made in memory (ernie_data::split_holdout: disjoint parts that together are the file,
    // tested in the data crate); nothing of it is written beside the run.
    assert!(!d.join("holdout-split").exists());

    // A --dev that does not exist is not read either.
    let missing = w.path("no-such-dev.json");
    let out = w.train(
        &train,
        Some(&missing),
        &w.path("ho2"),
        &["--holdout", "0.2", "--max-steps", "1", "--no-save"],
    );
    assert_ok(&out);
    assert_eq!(json(&w.path("ho2/metrics.json"))["dev_examples"], 30);

    // A fraction that leaves nothing on one side is a clear error.
    for frac in ["0", "1", "0.001"] {
        let err = assert_fails(&w.train(
            &train,
            None,
            &w.path("ho3"),
            &["--holdout", frac, "--max-steps", "1"],
        ));
        assert!(err.contains("--holdout"), "{err}");
    }
}

/// 6. Bad data: non-zero exit, FILE:LINE in the message, no checkpoint.
#[test]
fn data_errors_name_file_and_line() {
    let w = Work::new();
    let good = w.task("train.json", 30, 31);
    let dev = w.task("dev.json", 12, 32);
    let rows: Vec<String> = std::fs::read_to_string(&good)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let with_line = |name: &str, line: usize, content: &str| {
        let mut r = rows.clone();
        r[line - 1] = content.into();
        w.write(name, &(r.join("\n") + "\n"))
    };
    let labels_ab = w.write(
        "labels_ab.json",
        "{\"label\": \"甲\"}\n{\"label\": \"乙\"}\n",
    );
    let first_c = rows
        .iter()
        .position(|l| l.contains("\"丙\""))
        .expect("a 丙 example")
        + 1;
    let cases: Vec<(PathBuf, Vec<&str>, usize, &str)> = vec![
        (
            with_line("malformed.json", 2, "{\"sentence\": \"的\", \"label\": "),
            vec![],
            2,
            "malformed JSON",
        ),
        (
            with_line("nolabel.json", 3, "{\"sentence\": \"的一\"}"),
            vec![],
            3,
            "missing label key \"label\"",
        ),
        (
            good.clone(),
            vec!["--labels", labels_ab.to_str().unwrap()],
            first_c,
            "unknown label \"丙\"",
        ),
        (w.write("empty.json", "\n  \n"), vec![], 1, "empty"),
    ];
    for (i, (train, extra, line, what)) in cases.into_iter().enumerate() {
        let out_dir = w.path(&format!("out{i}"));
        let err = assert_fails(&w.train(
            &train,
            Some(&dev),
            &out_dir,
            &[&["--epochs", "1"], &extra[..]].concat(),
        ));
        assert!(
            err.contains(&format!("{}:{line}", train.display())),
            "case {i}: no {}:{line} in:\n{err}",
            train.display()
        );
        assert!(err.contains(what), "case {i}: no {what:?} in:\n{err}");
        for f in [
            "model.safetensors",
            "ernie_ft.json",
            "config.json",
            "metrics.json",
        ] {
            assert!(
                !out_dir.join(f).exists(),
                "case {i}: {f} written after an error"
            );
        }
    }
}

/// 7. Unusable flags are clear errors, not panics.
#[test]
fn bad_flags_are_clear_errors() {
    let w = Work::new();
    let train = w.task("train.json", 20, 41);
    let no_gpu = ernie_cuda::preflight().is_err();
    if no_gpu {
        let err =
            assert_fails(&w.train(&train, Some(&train), &w.path("cuda"), &["--device", "cuda"]));
        assert!(
            err.contains("--device cuda") && err.contains("--device cpu"),
            "{err}"
        );
    }
    let err = assert_fails(&w.train(&train, Some(&train), &w.path("b0"), &["--batch-size", "0"]));
    assert!(err.contains("--batch-size must be at least 1"), "{err}");
    for d in ["cuda", "b0"] {
        assert!(!w.path(d).join("model.safetensors").exists());
    }
    let out = run(&[
        "eval".into(),
        "--model".into(),
        s(&w.path("nothing")),
        "--dev".into(),
        s(&train),
        "--device".into(),
        "cuda".to_string(),
    ]);
    if no_gpu {
        assert!(assert_fails(&out).contains("--device cuda"));
    } else {
        assert_fails(&out); // the checkpoint does not exist
    }
}

/// 8. Same flags, same seeds: the same metrics.json apart from time and memory.
#[test]
fn training_is_deterministic() {
    let w = Work::new();
    let train = w.task("train.json", 96, 51);
    let dev = w.task("dev.json", 40, 52);
    let flags = [
        "--strategy",
        "adv,rdrop,layer-decay",
        "--lr",
        "3e-3",
        "--epochs",
        "2",
        "--seed",
        "9",
        "--no-save",
        "--eval-every",
        "3",
    ];
    let metrics: Vec<Value> = ["a", "b"]
        .iter()
        .map(|n| {
            let d = w.path(n);
            assert_ok(&w.train(&train, Some(&dev), &d, &flags));
            assert!(
                !d.join("model.safetensors").exists() && !d.join("ernie_ft.json").exists(),
                "--no-save writes no checkpoint"
            );
            let mut m = json(&d.join("metrics.json"));
            for f in TIMING_FIELDS {
                assert!(
                    m.as_object_mut().unwrap().remove(f).is_some(),
                    "{f} missing from metrics.json"
                );
            }
            // The one configuration field that differs: where the run was written.
            m["config"].as_object_mut().unwrap().remove("output_dir");
            m
        })
        .collect();
    assert!(
        metrics[0]["history"].as_array().unwrap().len() > 2,
        "{}",
        metrics[0]
    );
    assert_eq!(metrics[0]["final_dev"], metrics[1]["final_dev"]);
    assert_eq!(metrics[0]["history"], metrics[1]["history"]);
    assert_eq!(
        metrics[0].to_string(),
        metrics[1].to_string(),
        "metrics.json apart from time and memory fields"
    );
}

/// 9. An OS error (a missing file) is printed once.
///
/// Error types that print their cause must not also chain it, or `{:#}` prints
/// `...: No such file or directory (os error 2): No such file or directory (os error 2)`.
#[test]
fn os_errors_are_printed_once() {
    let w = Work::new();
    let train = w.task("train.json", 30, 61);
    let once = |out: &Output, what: &str| {
        let err = assert_fails(out);
        assert_eq!(err.matches("os error 2").count(), 1, "{what}:\n{err}");
    };
    // The data crate's error: a missing training file.
    let missing = w.path("no-such-train.json");
    let out = w.train(&missing, Some(&train), &w.path("m1"), &["--max-steps", "1"]);
    once(&out, "train --train MISSING");
    assert!(stderr(&out).contains("no-such-train.json"), "{}", stderr(&out));
    // ... and a missing dev file for eval, on a checkpoint.
    let d = w.path("ck");
    assert_ok(&w.train(&train, Some(&train), &d, &["--max-steps", "1"]));
    let eval = |dev: &Path, extra: &[&str]| {
        let mut args = vec!["eval".to_string(), "--model".into(), s(&d), "--dev".into(), s(dev), "--threads".into(), "2".into()];
        args.extend(extra.iter().map(|x| x.to_string()));
        run(&args)
    };
    once(&eval(&w.path("no-such-dev.json"), &[]), "eval --dev MISSING");
    // The model crate's error (write_atomic): --metrics-out into a directory that does not exist.
    let out = eval(&train, &["--metrics-out", &s(&w.path("no-such-dir/m.json"))]);
    once(&out, "eval --metrics-out MISSING_DIR/FILE");
    assert!(stderr(&out).contains("no-such-dir"), "{}", stderr(&out));
}

/// 10. `predict --logits` and the range checks of `eval`.
///
/// Each row gets its logits (their argmax is the label); `eval --max-len` and `--dev-limit` are checked.
#[test]
fn predict_logits_and_eval_ranges() {
    let w = Work::new();
    let train = w.task("train.json", 60, 71);
    let d = w.path("ck");
    assert_ok(&w.train(&train, Some(&train), &d, &["--max-steps", "3", "--lr", "3e-3"]));
    let labels: Vec<String> = json(&d.join("ernie_ft.json"))["labels"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let p = w.path("pred.json");
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict".to_string(), "--model".into(), s(&d), "--test".into(), s(&train), "--output".into(), s(&p), "--threads".into(), "2".into()];
        args.extend(extra.iter().map(|x| x.to_string()));
        run(&args)
    };
    assert_ok(&predict(&["--logits"]));
    let rows: Vec<Value> = std::fs::read_to_string(&p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 60);
    for row in &rows {
        let logits: Vec<f64> = row["logits"].as_array().expect("logits").iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(logits.len(), labels.len(), "{row}");
        let best = (0..logits.len()).max_by(|&i, &j| logits[i].total_cmp(&logits[j])).unwrap();
        assert_eq!(row["label"], labels[best].as_str(), "{row}");
    }
    assert_ok(&predict(&[]));
    let first: Value = serde_json::from_str(std::fs::read_to_string(&p).unwrap().lines().next().unwrap()).unwrap();
    assert!(first.get("logits").is_none(), "no logits without --logits: {first}");

    let eval = |extra: &[&str]| {
        let mut args = vec!["eval".to_string(), "--model".into(), s(&d), "--dev".into(), s(&train), "--threads".into(), "2".into()];
        args.extend(extra.iter().map(|x| x.to_string()));
        run(&args)
    };
    let err = assert_fails(&eval(&["--max-len", "2"]));
    assert!(err.contains("--max-len 2"), "{err}");
    let err = assert_fails(&eval(&["--max-len", "65"]));
    assert!(err.contains("--max-len 65") && err.contains("max_position_embeddings 64"), "{err}");
    let out = eval(&["--dev-limit", "0"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", stderr(&out));
    assert!(stderr(&out).contains("--dev-limit"), "{}", stderr(&out));
    assert_ok(&eval(&["--dev-limit", "5", "--max-len", "16"]));
}
