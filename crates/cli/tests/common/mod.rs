//! Shared by the binary's tests: a work directory with the tiny random model of tests/fixtures (hidden 32,
//! 2 layers, 64 positions; a copy with a small WordPiece vocabulary) and a synthetic 3-class task it learns
//! in a second or two (the label is which of three marker characters the sentence contains), and helpers
//! to run `ernie-ft` and read what it wrote. The `encode` tests' own work directory and helpers are in
//! [`encode`].
#![allow(dead_code)]

pub mod encode;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_ernie-ft");
/// Fields of metrics.json that measure time or memory (they differ between identical runs).
pub const TIMING_FIELDS: [&str; 6] =
    ["train_seconds", "seconds_per_step", "samples_per_second", "eval_seconds", "peak_host_bytes", "peak_device_bytes"];

/// A temporary work dir with `model/`: the tiny model plus a vocab.txt of 5 specials + 80 characters.
pub struct Work {
    pub tmp: TempDir,
}

impl Work {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        ernie_testkit::model_in(tmp.path());
        Work { tmp }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    pub fn model(&self) -> String {
        s(&self.path("model"))
    }
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }
    /// `n` labelled examples (seeded), one JSON object per line.
    pub fn task(&self, name: &str, n: usize, seed: u64) -> PathBuf {
        ernie_testkit::task_in(self.tmp.path(), name, n, seed)
    }
    /// `train` on the synthetic task with the flags every run shares, then `extra`.
    pub fn train(&self, train: &Path, dev: Option<&Path>, out: &Path, extra: &[&str]) -> Output {
        run(&self.train_args(train, dev, out, extra))
    }
    /// The arguments of [`Work::train`].
    pub fn train_args(&self, train: &Path, dev: Option<&Path>, out: &Path, extra: &[&str]) -> Vec<String> {
        self.train_args_for(&self.path("model"), train, dev, out, extra)
    }
    /// The arguments of [`Work::train`] from another model directory.
    pub fn train_args_for(
        &self,
        model: &Path,
        train: &Path,
        dev: Option<&Path>,
        out: &Path,
        extra: &[&str],
    ) -> Vec<String> {
        let mut args = vec![
            "train".to_string(),
            "--model".into(),
            s(model),
            "--threads".into(),
            "2".into(),
            "--max-len".into(),
            "32".into(),
        ];
        args.extend(["--task", "synthetic", "--text-a-key", "sentence", "--label-key", "label"].map(String::from));
        if !extra.contains(&"--batch-size") {
            args.extend(["--batch-size".into(), "16".into()]);
        }
        args.extend(["--train".into(), s(train), "--output-dir".into(), s(out)]);
        if let Some(dev) = dev {
            args.extend(["--dev".into(), s(dev)]);
        }
        args.extend(extra.iter().map(|x| x.to_string()));
        args
    }
}

/// The real model of ../shared ($ERNIE_FT_MODEL, else ../shared/models/e5-small-zh), when it is there.
pub fn shared_model() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ERNIE_FT_MODEL").map(PathBuf::from) {
        return p.is_dir().then_some(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/e5-small-zh");
    p.is_dir().then_some(p)
}

/// Seeded (text, label index) pairs: random filler with the label's marker inserted somewhere.
pub fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_string()
}

pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    command(args).output().expect("run ernie-ft")
}

/// `ernie-ft ARGS` with the tests' environment, not started.
pub fn command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("ERNIE_FT_MODEL")
        .env_remove("ERNIE_FT_TEST_KILL")
        // Nothing may come from a data folder the tests did not name.
        .env("ERNIE_FT_DATA", "/nonexistent/ernie-ft-test-data");
    c
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "ernie-ft failed ({}):\n{}", out.status, stderr(out));
}

/// Fails cleanly (non-zero exit, `error:` message, no panic) and returns the message.
pub fn assert_fails(out: &Output) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "expected a failure; stderr:\n{err}");
    assert!(!err.contains("panicked"), "a panic instead of an error:\n{err}");
    assert!(err.contains("error:"), "{err}");
    err
}

pub fn json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

/// `eval --metrics-out` of a checkpoint on `dev`: checks that the file holds what `eval` prints and
/// returns the accuracy.
pub fn eval_accuracy(ckpt: &Path, dev: &Path, metrics_out: &Path) -> f64 {
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
