//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `$ERNIE_FT_SHARED`, else `<workspace root>/../shared`; `None` when that folder is absent.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("ERNIE_FT_SHARED").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    dir.is_dir().then_some(dir)
}

/// Prints `SKIPPED (needs ../shared): name` where a passing test's output is seen.
pub fn report_skip(name: &str) {
    ernie_testkit::skipped!("SKIPPED (needs ../shared): {name}");
}

/// Binds the shared folder or returns from the test with a visible SKIPPED line.
#[macro_export]
macro_rules! require_shared {
    ($name:expr) => {
        match common::shared_dir() {
            Some(dir) => dir,
            None => {
                common::report_skip($name);
                return;
            }
        }
    };
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test file");
    path
}

/// A small BERT-style vocabulary: specials, a few Chinese chars, English word pieces, punctuation.
pub const VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", // 0..4
    "我", "爱", "北", "京", "天", "安", "门", // 5..11
    "un", "##aff", "##able", "hello", "world", "!", ",", // 12..18
    "a", "b", "c", "d", "e", "f", // 19..24
];

/// A model folder holding only `vocab.txt` = [`VOCAB`].
pub fn vocab_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "vocab.txt", &(VOCAB.join("\n") + "\n"));
    dir
}

pub fn vocab_id(token: &str) -> u32 {
    VOCAB.iter().position(|t| *t == token).expect("token in test vocab") as u32
}
