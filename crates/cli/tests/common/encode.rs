//! The `encode` tests' helpers: a work directory with a copy of the tiny random model of tests/fixtures and
//! a small WordPiece vocabulary holding every character of the test sentences ([`Tiny`]), running
//! `ernie-ft encode`, reading its rows, and the pooled states computed by hand with the library
//! ([`by_hand`]) to compare them with.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ernie_backend::{Backend, Cpu};
use ernie_data::TextTokenizer;
use ernie_model::{Encoder, ForwardOpts, HeadInit, HostParams, Tokens};
use tempfile::TempDir;

pub use super::BIN;
pub const HIDDEN: usize = 32;
pub const TOL: f32 = 1e-5;

/// Every character of the test sentences is in the vocabulary, so one character is one token.
pub const CHARS: &str = "我你他她们的是在有不了人这中大来上国个到说时要就出会可也天好今气很去公园玩吧明下雨学习文喜欢吃苹果书看电影工作家猫狗跑快慢红花，。";

/// A temporary work dir with `model/` (the tiny model plus a vocab.txt). Its classifier has 5 labels, so
/// every test also checks that `encode` loads a checkpoint whatever its head.
pub struct Tiny {
    pub tmp: TempDir,
}

/// Runs `ernie-ft encode --model MODEL --input INPUT --output OUTPUT EXTRA...`.
pub fn encode_with(model: &Path, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec!["encode".as_ref(), "--model".as_ref(), model.as_os_str()];
    args.extend(["--input".as_ref(), input.as_os_str(), "--output".as_ref(), output.as_os_str()]);
    args.extend(extra.iter().map(OsStr::new));
    run(&args)
}

impl Tiny {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        ernie_testkit::write_model_with_chars(&tmp.path().join("model"), CHARS).expect("writing the tiny model");
        Tiny { tmp }
    }
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }
    pub fn model(&self) -> PathBuf {
        self.dir().join("model")
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }
    /// The `*.tmp` files left in the work directory (none once a command has ended, whatever its outcome).
    pub fn temp_files(&self) -> Vec<String> {
        std::fs::read_dir(self.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }
    /// Runs `encode` on the tiny model: `input` -> `output`, with `extra` flags.
    pub fn encode(&self, input: &Path, output: &Path, extra: &[&str]) -> Output {
        encode_with(&self.model(), input, output, extra)
    }
    /// Encodes `lines` (JSON strings) and returns the rows; panics on failure.
    pub fn rows(&self, name: &str, lines: &[String], extra: &[&str]) -> Vec<Row> {
        let input = self.write(&format!("{name}.jsonl"), lines.join("\n") + "\n");
        let output = self.path(&format!("{name}.out.jsonl"));
        let out = self.encode(&input, &output, extra);
        assert_success(&out);
        read_rows(&output)
    }
}

pub fn run(args: &[&OsStr]) -> Output {
    Command::new(BIN).args(args).env_remove("ERNIE_FT_MODEL").output().expect("run ernie-ft")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_success(out: &Output) {
    assert!(out.status.success(), "ernie-ft failed ({}):\n{}", out.status, stderr(out));
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cls: Vec<f32>,
    pub mean: Vec<f32>,
}

pub fn floats(v: &serde_json::Value, key: &str) -> Vec<f32> {
    v.get(key)
        .and_then(|a| a.as_array())
        .unwrap_or_else(|| panic!("no array {key} in {v}"))
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn read_rows(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("output line is JSON");
            assert_eq!(v.as_object().unwrap().len(), 2, "only cls and mean: {l}");
            Row { cls: floats(&v, "cls"), mean: floats(&v, "mean") }
        })
        .collect()
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn assert_rows_close(a: &Row, b: &Row, what: &str) {
    let d = max_diff(&a.cls, &b.cls).max(max_diff(&a.mean, &b.mean));
    assert!(d <= TOL, "{what}: rows differ by {d}");
}

pub fn single(s: &str) -> String {
    serde_json::json!({ "sentence": s }).to_string()
}

pub fn pair(a: &str, b: &str) -> String {
    serde_json::json!({ "sentence1": a, "sentence2": b }).to_string()
}

/// `n` characters of the vocabulary starting at `start` (wrapping).
pub fn text(start: usize, n: usize) -> String {
    let chars: Vec<char> = CHARS.chars().filter(|c| !"，。".contains(*c)).collect();
    (0..n).map(|i| chars[(start + i) % chars.len()]).collect()
}

/// Twenty inputs of very different lengths, singles and pairs.
pub fn mixed_inputs() -> Vec<String> {
    (0..20)
        .map(|i| {
            let len = 1 + (i * 7) % 23;
            if i % 3 == 2 {
                pair(&text(i, len), &text(i + 5, 1 + (i * 5) % 13))
            } else {
                single(&text(i, len))
            }
        })
        .collect()
}

/// Forward pass of one input with the library, pooled by hand.
pub fn by_hand(model: &Path, first: &str, second: Option<&str>, max_len: usize) -> Row {
    let host = HostParams::load_dir(model, 5, HeadInit::seed(0)).unwrap();
    let tok = TextTokenizer::from_dir(model).unwrap();
    let b = Cpu::<f32>::new();
    let enc = Encoder::from_host(&b, &host);
    let e = tok.encode(first, second, max_len).unwrap();
    let n = e.ids.len();
    let tokens = Tokens::from_rows(&[(e.ids, e.type_ids)], tok.pad_id());
    let fw = enc.forward(&b, &tokens, &ForwardOpts::eval());
    let hidden = b.download(fw.final_hidden());
    assert_eq!(hidden.len(), n * HIDDEN, "a single row has no padding");
    let mean = (0..HIDDEN)
        .map(|j| (0..n).map(|t| hidden[t * HIDDEN + j] as f64).sum::<f64>() / n as f64)
        .map(|v| v as f32)
        .collect();
    Row { cls: hidden[..HIDDEN].to_vec(), mean }
}
