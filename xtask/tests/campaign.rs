//! End-to-end campaigns on the tiny random model of tests/fixtures and a synthetic 3-class task, with the
//! real `xtask` and `ernie-ft` binaries: a campaign killed (SIGKILL of the runner in the middle of a cell),
//! stopped (SIGINT) and resumed, with two jobs at once, ends with the same table as an uninterrupted one;
//! `--report-only` marks missing seeds; a campaign of fewer rows keeps the others in the table; deleted
//! member models are retrained for the FMA cells (resuming when stopped; checked against the recorded
//! weights on their numerics class, recorded as retrained on another); a cell of other numerics or another
//! configuration is refused by name, and `--fresh` recomputes it.
//!
//! The ernie-ft binary: $ERNIE_FT_BIN, else xtask builds the workspace's (`cargo build --release`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// $ERNIE_FT_BIN, else the workspace's, built once here (so that the campaigns need not each ask cargo).
fn ernie_ft_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("ERNIE_FT_BIN") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let st = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "--bin", "ernie-ft"])
            .current_dir(root)
            .status()
            .expect("cargo");
        assert!(st.success(), "building ernie-ft failed");
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("release/ernie-ft")
    })
    .clone()
}

struct Work {
    tmp: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let tmp = tempfile::tempdir().unwrap();
        ernie_testkit::write_model(&tmp.path().join("model")).unwrap();
        ernie_testkit::write_task(&tmp.path().join("train.json"), 96, 21).unwrap();
        ernie_testkit::write_task(&tmp.path().join("dev.json"), 32, 22).unwrap();
        Work { tmp }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `xtask bench-task` on the synthetic task into `out`, with `args` before `--` and `env`.
    fn campaign(&self, out: &str, args: &[&str], train_flags: &[&str], env: &[(&str, &str)]) -> Output {
        let s = |p: PathBuf| p.display().to_string();
        let mut a: Vec<String> = ["bench-task", "--task", "synthetic"].map(String::from).to_vec();
        a.extend([
            "--model".into(),
            s(self.p("model")),
            "--train".into(),
            s(self.p("train.json")),
            "--dev".into(),
            s(self.p("dev.json")),
        ]);
        a.extend([
            "--out".into(),
            s(self.p(out)),
            "--seeds".into(),
            "3".into(),
            "--rows".into(),
            "fma,adv,rdrop+layer-decay+fma".into(),
        ]);
        a.extend(["--save-every".into(), "4".into()]);
        a.extend(args.iter().map(|x| x.to_string()));
        a.push("--".into());
        a.extend(
            [
                "--text-a-key",
                "sentence",
                "--label-key",
                "label",
                "--max-len",
                "32",
                "--batch-size",
                "8",
                "--epochs",
                "2",
            ]
            .map(String::from),
        );
        a.extend(train_flags.iter().map(|x| x.to_string()));
        let mut cmd = Command::new(XTASK);
        cmd.args(&a)
            .env("ERNIE_FT_BIN", ernie_ft_bin())
            .env_remove("ERNIE_FT_MODEL")
            .env("ERNIE_FT_DATA", "/nonexistent/ernie-ft-test-data");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let t = std::time::Instant::now();
        let o = cmd.output().expect("run xtask");
        eprintln!("[{:.1}s] xtask {}: {}", t.elapsed().as_secs_f64(), args.join(" "), o.status);
        o
    }
}

fn text(o: &Output) -> String {
    format!("status {}\nstderr:\n{}", o.status, String::from_utf8_lossy(&o.stderr))
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", text(o));
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// The table without what measures time or memory (which differs between identical runs).
fn numbers(table: &Value) -> Value {
    let mut rows = table["rows"].clone();
    for r in rows.as_array_mut().unwrap() {
        for k in ["seconds_per_step", "step_time_ratio", "peak_memory_bytes", "memory_ratio"] {
            r.as_object_mut().unwrap().remove(k);
        }
    }
    let cells: Vec<Value> = table["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::json!([
                c["cell"],
                c["accuracy"],
                c["macro_f1"],
                c["best_during_training"],
                c["members_mean_accuracy"],
                c["steps"],
                c["final_weights_blake3"]
            ])
        })
        .collect();
    serde_json::json!({"rows": rows, "cells": cells})
}

fn finished(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("cells"))
        .map(|r| r.flatten().filter(|e| e.path().join("metrics.json").is_file()).count())
        .unwrap_or(0)
}

fn logs(dir: &Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(dir.join("cells")).unwrap().flatten() {
        s += &std::fs::read_to_string(e.path().join("train.log")).unwrap_or_default();
    }
    s
}

#[test]
fn interrupted_and_resumed_campaign_ends_with_the_same_table() {
    use std::os::unix::process::ExitStatusExt;
    let w = Work::new();
    let t = std::time::Instant::now();
    ernie_ft_bin();
    eprintln!("[{:.1}s] ernie-ft built", t.elapsed().as_secs_f64());
    const CELLS: usize = 15; // 3 training rows x 3 seeds + 2 FMA rows x 3 leave-one-out averages

    // Uninterrupted, one job.
    ok(&w.campaign("a", &[], &[], &[]));
    let a = json(&w.p("a/table.json"));
    assert_eq!(finished(&w.p("a")), CELLS);
    for f in ["table.md", "table.csv", "chart.png", "chart.svg"] {
        assert!(w.p("a").join(f).is_file(), "{f}");
    }
    let md = std::fs::read_to_string(w.p("a/table.md")).unwrap();
    assert!(
        md.contains("- Learning rate: ernie-ft's default for the task, doubled for the rows with layer decay\n"),
        "the settings do not state the learning rate:\n{md}"
    );
    // Weights and checkpoints are gone once nothing needs them.
    for e in std::fs::read_dir(w.p("a/cells")).unwrap().flatten() {
        assert!(
            !e.path().join("run").exists() && !e.path().join("avg").exists(),
            "{} kept its model",
            e.path().display()
        );
    }

    // Training a subset of the rows (here nothing is left to train) keeps the other rows in the table.
    ok(&w.campaign("a", &["--rows", "adv"], &[], &[]));
    assert_eq!(numbers(&a), numbers(&json(&w.p("a/table.json"))), "--rows adv dropped rows from the table");

    // Training some rows alone keeps the models that the FMA rows left out will average, so that those
    // rows, run later, train nothing again.
    let o = w.campaign("c", &["--rows", "rdrop+layer-decay"], &[], &[]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("keeping the models of base-seed1"), "{}", text(&o));
    for row in ["base", "rdrop+layer-decay"] {
        for seed in 1..=3 {
            let model = w.p(&format!("c/cells/{row}-seed{seed}/run/ernie_ft.json"));
            assert!(model.is_file(), "{} is missing", model.display());
        }
    }
    let o = w.campaign("c", &[], &[], &[]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 model(s) to regenerate"), "{}", text(&o));
    assert_eq!(numbers(&a), numbers(&json(&w.p("c/table.json"))), "the table in two invocations differs");
    for e in std::fs::read_dir(w.p("c/cells")).unwrap().flatten() {
        assert!(!e.path().join("run").exists(), "{} kept its model", e.path().display());
    }

    // Two jobs at once; the runner is SIGKILLed while a cell trains (its children checkpoint on SIGTERM).
    let o = w.campaign("b", &["--jobs", "2"], &[], &[("XTASK_CAMPAIGN_TEST_KILL_AFTER", "3")]);
    assert_eq!(o.status.signal(), Some(9), "{}", text(&o));
    let after_kill = finished(&w.p("b"));
    assert!((3..CELLS).contains(&after_kill), "{after_kill} cells finished");

    // Rerun: waits for the killed campaign's children, resumes; stopped by SIGINT a few cells later.
    let o = w.campaign("b", &["--jobs", "2"], &[], &[("XTASK_CAMPAIGN_TEST_SIGINT_AFTER", "4")]);
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    // The hook signals while a cell is in the middle of its run: that cell stops with a training state.
    assert!(String::from_utf8_lossy(&o.stderr).contains(": interrupted (resumable)"), "{}", text(&o));
    let after_int = finished(&w.p("b"));
    assert!(after_int > after_kill && after_int < CELLS, "{after_kill} then {after_int} cells");
    let partial = std::fs::read_to_string(w.p("b/table.md")).unwrap();
    assert!(partial.contains(&format!("{after_int} of {CELLS} cells finished")), "{partial}");

    // The table from what exists, training nothing.
    let o = w.campaign("b", &["--report-only"], &[], &[]);
    ok(&o);
    assert_eq!(finished(&w.p("b")), after_int, "--report-only trained");
    let rep = json(&w.p("b/table.json"));
    let n: usize = rep["rows"].as_array().unwrap().iter().map(|r| r["n"].as_u64().unwrap() as usize).sum();
    assert_eq!(n, after_int);
    let md = std::fs::read_to_string(w.p("b/table.md")).unwrap();
    assert!(md.contains("/3 |"), "{md}");
    // The settings describe the cells' training runs, not this invocation's unused jobs and threads.
    assert!(md.contains("- Device cpu; this invocation trained nothing (`--report-only`)\n"), "{md}");
    assert!(md.contains("- Threads per training process of the cells (their commands' `--threads`): "), "{md}");
    assert_eq!(rep["settings"]["jobs"], Value::Null);

    // To the end.
    let o = w.campaign("b", &["--jobs", "2"], &[], &[]);
    ok(&o);
    let b = json(&w.p("b/table.json"));
    assert_eq!(numbers(&a), numbers(&b), "the resumed campaign's table differs from the uninterrupted one's");
    if logs(&w.p("b")).contains("--resume auto") {
        assert!(logs(&w.p("b")).contains("resuming from"), "no cell was resumed from a training-state checkpoint");
    }

    // Rerunning a finished campaign trains nothing.
    let o = w.campaign("b", &[], &[], &[]);
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("plan: {CELLS} finished, 0 to resume, 0 to run")),
        "{}",
        text(&o)
    );

    // An FMA cell whose members' models were deleted: the members are trained again (to the recorded
    // final weights) and the average recomputed. Stopped (SIGINT) while the second member trains again, that
    // regeneration resumes from its checkpoint, and its cell stays finished meanwhile.
    std::fs::remove_dir_all(w.p("b/cells/fma-seeds2+3")).unwrap();
    let o = w.campaign("b", &[], &[], &[("XTASK_CAMPAIGN_TEST_SIGINT_AFTER", "1")]);
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 model(s) to regenerate"), "{}", text(&o));
    let stopped: Vec<&str> = ["base-seed2", "base-seed3"]
        .into_iter()
        .filter(|id| !w.p(&format!("b/cells/{id}/run/ernie_ft.json")).exists())
        .collect();
    let [stopped] = stopped[..] else { panic!("not one regeneration stopped: {stopped:?}\n{}", text(&o)) };
    assert_eq!(json(&w.p(&format!("b/cells/{stopped}/cell.json")))["status"], "finished");
    // A stopped run writes its training state after the update under way.
    let checkpoints = w.p(&format!("b/cells/{stopped}/run/checkpoints"));
    assert!(
        std::fs::read_dir(&checkpoints).is_ok_and(|mut d| d.next().is_some()),
        "{} is empty",
        checkpoints.display()
    );
    let o = w.campaign("b", &[], &[], &[]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 model(s) to regenerate"), "{}", text(&o));
    assert!(err.contains(&format!("{stopped}: regenerating its model (resuming)")), "{}", text(&o));
    let log = std::fs::read_to_string(w.p(&format!("b/cells/{stopped}/train.log"))).unwrap();
    let last = log.rsplit("=== ").next().unwrap();
    assert!(last.contains("resuming from"), "{last}");
    assert_eq!(numbers(&a), numbers(&json(&w.p("b/table.json"))));
    assert!(!w.p("b/cells/base-seed2/run").exists(), "the regenerated model was kept");

    // Once more, the member's record claiming other weights. Computed on this numerics class, that is
    // refused; the cell stays finished with its metrics.
    let rec_path = w.p("b/cells/base-seed2/cell.json");
    let original = std::fs::read_to_string(&rec_path).unwrap();
    let mut rec: Value = serde_json::from_str(&original).unwrap();
    let weights = rec["weights_blake3"].clone();
    rec["weights_blake3"] = "0".repeat(64).into();
    std::fs::write(&rec_path, serde_json::to_string_pretty(&rec).unwrap()).unwrap();
    std::fs::remove_dir_all(w.p("b/cells/fma-seeds2+3")).unwrap();
    let o = w.campaign("b", &[], &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("base-seed2: the regenerated model differs from the recorded one"), "{}", text(&o));
    assert_eq!(json(&rec_path)["status"], "finished");
    assert!(w.p("b/cells/base-seed2/metrics.json").is_file());
    // Recorded on another numerics class (AVX-512 or not), the retrained model cannot be the same: it is
    // averaged, and the FMA cell records its accuracy and weights as the member's, with a note.
    let mut rec = json(&rec_path);
    rec["identity"]["host"]["avx512f"] = (!rec["identity"]["host"]["avx512f"].as_bool().unwrap()).into();
    rec["identity"]["fingerprint"] = "fedcba9876543210".into();
    std::fs::write(&rec_path, serde_json::to_string_pretty(&rec).unwrap()).unwrap();
    let o = w.campaign("b", &[], &[], &[]);
    ok(&o);
    let fma = json(&w.p("b/cells/fma-seeds2+3/metrics.json"));
    let member = fma["members"].as_array().unwrap().iter().find(|m| m["cell"] == "base-seed2").unwrap().clone();
    assert_eq!(member["final_weights_blake3"], weights, "{member}");
    assert!(member["retrained"].as_str().is_some_and(|n| n.contains("was deleted")), "{member}");
    let rec = json(&rec_path);
    assert_eq!(rec["status"], "finished");
    let last = rec["segments"].as_array().unwrap().last().unwrap()["outcome"].as_str().unwrap().to_string();
    assert!(last.contains("not the one recorded on"), "{last}");
    assert_eq!(numbers(&a), numbers(&json(&w.p("b/table.json"))));
    std::fs::write(&rec_path, original).unwrap();

    // A cell of other numerics is refused by name, and recomputed with --fresh.
    let rec_path = w.p("b/cells/adv-seed2/cell.json");
    let mut rec = json(&rec_path);
    rec["identity"]["fingerprint"] = "0123456789abcdef".into();
    std::fs::write(&rec_path, serde_json::to_string_pretty(&rec).unwrap()).unwrap();
    let o = w.campaign("b", &[], &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("fingerprint 0123456789abcdef") && err.contains("adv-seed2") && err.contains("--fresh --rows adv"),
        "{err}"
    );
    let o = w.campaign("b", &["--report-only"], &[], &[]);
    assert_eq!(o.status.code(), Some(1), "--report-only built a mixed table: {}", text(&o));
    ok(&w.campaign("b", &["--fresh"], &[], &[]));
    assert_eq!(numbers(&a), numbers(&json(&w.p("b/table.json"))));

    // Another configuration is refused, naming the difference.
    let o = w.campaign("b", &[], &["--weight-decay", "0.02"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("base-seed1: --weight-decay: recorded absent, now 0.02"), "{err}");
}
