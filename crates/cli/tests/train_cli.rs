//! `ernie-ft train` alone: --holdout, bad data, bad flags, determinism and OS errors, run as the real
//! binary on the tiny random model of tests/fixtures (hidden 32, 2 layers, 64 positions; a copy with a
//! small WordPiece vocabulary) and a synthetic 3-class task it learns in a second or two: the label is
//! which of three marker characters the sentence contains (helpers in tests/common/mod.rs).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// 5. --holdout: trains on part of the training file, evaluates on the rest, and never touches dev.
#[test]
fn holdout_splits_train_and_ignores_dev() {
    let w = Work::new();
    let train = w.task("train.json", 150, 21);
    // No --dev, and no data folder to find one in (ERNIE_FT_DATA names a missing directory).
    let d = w.path("ho");
    let out = w.train(&train, None, &d, &["--holdout", "0.2", "--lr", "3e-3", "--epochs", "2"]);
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
    let out = w.train(&train, Some(&missing), &w.path("ho2"), &["--holdout", "0.2", "--max-steps", "1", "--no-save"]);
    assert_ok(&out);
    assert_eq!(json(&w.path("ho2/metrics.json"))["dev_examples"], 30);

    // A fraction that leaves nothing on one side is a clear error.
    for frac in ["0", "1", "0.001"] {
        let err = assert_fails(&w.train(&train, None, &w.path("ho3"), &["--holdout", frac, "--max-steps", "1"]));
        assert!(err.contains("--holdout"), "{err}");
    }
}

/// 6. Bad data: non-zero exit, FILE:LINE in the message, no checkpoint.
#[test]
fn data_errors_name_file_and_line() {
    let w = Work::new();
    let good = w.task("train.json", 30, 31);
    let dev = w.task("dev.json", 12, 32);
    let rows: Vec<String> = std::fs::read_to_string(&good).unwrap().lines().map(String::from).collect();
    let with_line = |name: &str, line: usize, content: &str| {
        let mut r = rows.clone();
        r[line - 1] = content.into();
        w.write(name, &(r.join("\n") + "\n"))
    };
    let labels_ab = w.write("labels_ab.json", "{\"label\": \"甲\"}\n{\"label\": \"乙\"}\n");
    let first_c = rows.iter().position(|l| l.contains("\"丙\"")).expect("a 丙 example") + 1;
    let cases: Vec<(PathBuf, Vec<&str>, usize, &str)> = vec![
        (with_line("malformed.json", 2, "{\"sentence\": \"的\", \"label\": "), vec![], 2, "malformed JSON"),
        (with_line("nolabel.json", 3, "{\"sentence\": \"的一\"}"), vec![], 3, "missing label key \"label\""),
        (good.clone(), vec!["--labels", labels_ab.to_str().unwrap()], first_c, "unknown label \"丙\""),
        (w.write("empty.json", "\n  \n"), vec![], 1, "empty"),
    ];
    for (i, (train, extra, line, what)) in cases.into_iter().enumerate() {
        let out_dir = w.path(&format!("out{i}"));
        let err = assert_fails(&w.train(&train, Some(&dev), &out_dir, &[&["--epochs", "1"], &extra[..]].concat()));
        assert!(
            err.contains(&format!("{}:{line}", train.display())),
            "case {i}: no {}:{line} in:\n{err}",
            train.display()
        );
        assert!(err.contains(what), "case {i}: no {what:?} in:\n{err}");
        for f in ["model.safetensors", "ernie_ft.json", "config.json", "metrics.json"] {
            assert!(!out_dir.join(f).exists(), "case {i}: {f} written after an error");
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
        let err = assert_fails(&w.train(&train, Some(&train), &w.path("cuda"), &["--device", "cuda"]));
        assert!(err.contains("--device cuda") && err.contains("--device cpu"), "{err}");
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
                assert!(m.as_object_mut().unwrap().remove(f).is_some(), "{f} missing from metrics.json");
            }
            // The one configuration field that differs: where the run was written.
            m["config"].as_object_mut().unwrap().remove("output_dir");
            m
        })
        .collect();
    assert!(metrics[0]["history"].as_array().unwrap().len() > 2, "{}", metrics[0]);
    assert_eq!(metrics[0]["final_dev"], metrics[1]["final_dev"]);
    assert_eq!(metrics[0]["history"], metrics[1]["history"]);
    assert_eq!(metrics[0].to_string(), metrics[1].to_string(), "metrics.json apart from time and memory fields");
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
        let mut args =
            vec!["eval".to_string(), "--model".into(), s(&d), "--dev".into(), s(dev), "--threads".into(), "2".into()];
        args.extend(extra.iter().map(|x| x.to_string()));
        run(&args)
    };
    once(&eval(&w.path("no-such-dev.json"), &[]), "eval --dev MISSING");
    // The model crate's error (write_atomic): --metrics-out into a directory that does not exist.
    let out = eval(&train, &["--metrics-out", &s(&w.path("no-such-dir/m.json"))]);
    once(&out, "eval --metrics-out MISSING_DIR/FILE");
    assert!(stderr(&out).contains("no-such-dir"), "{}", stderr(&out));
}
