//! ernie-testkit: the tiny random model of `tests/fixtures/tiny_random_model` (hidden 32, 2 layers, 4 heads,
//! 97 ids, 64 positions) with a small WordPiece vocabulary, and a synthetic 3-class task it learns in a
//! second or two: the label is which of three marker characters the sentence contains, the rest is filler.
//!
//! The tests of every crate and the campaign's numerics fingerprint (xtask) train on these; the pinned
//! training hashes (crates/train/tests/end_to_end.rs) and the fingerprints of finished campaign cells
//! depend on exactly what is written here, so a change to the vocabulary or the generator changes them.

use std::path::{Path, PathBuf};

/// The 80 characters of the vocabulary, after the 5 specials; the first three are the task's markers.
pub const CHARS: &str = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经";
/// The task's labels, in the order of their markers `的`, `是`, `在`.
pub const LABELS: [&str; 3] = ["甲", "乙", "丙"];
/// The WordPiece specials, ids 0 to 4.
pub const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
/// The ernie-ft flags that read the synthetic task.
pub const TASK_FLAGS: [&str; 6] = ["--task", "synthetic", "--text-a-key", "sentence", "--label-key", "label"];
/// The tiny model's vocabulary size: a vocab.txt must fit in it.
const MODEL_VOCAB: usize = 97;

/// `tests/fixtures/tiny_random_model` of this workspace (config.json + model.safetensors, no vocabulary).
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny_random_model")
}

/// `dir/`: the tiny model's config and weights plus a vocab.txt of the 5 specials + [`CHARS`].
pub fn write_model(dir: &Path) -> std::io::Result<()> {
    write_model_with_chars(dir, CHARS)
}

/// `dir/`: the tiny model's config and weights plus a vocab.txt of the 5 specials + `chars`, one token
/// each (so that a sentence of those characters is one token per character).
pub fn write_model_with_chars(dir: &Path, chars: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let src = fixture_dir();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f))
            .map_err(|e| std::io::Error::new(e.kind(), format!("copying {}: {e}", src.join(f).display())))?;
    }
    let mut vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    for c in chars.chars().map(String::from) {
        assert!(!vocab.contains(&c), "the vocabulary would hold {c} twice");
        vocab.push(c);
    }
    assert!(vocab.len() <= MODEL_VOCAB, "a vocab of {} must fit the tiny model's {MODEL_VOCAB} ids", vocab.len());
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n")
}

/// A copy of the tiny model (see [`write_model`]) in `dir/model`; returns that path.
pub fn model_in(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    write_model(&m).unwrap_or_else(|e| panic!("writing the tiny model to {}: {e}", m.display()));
    m
}

/// `n` examples of the synthetic task (seeded): (sentence, label index). 4 to 11 filler characters with
/// the label's marker inserted at a random place.
pub fn examples(n: usize, seed: u64) -> Vec<(String, usize)> {
    let chars: Vec<char> = CHARS.chars().collect();
    let markers = ['的', '是', '在'];
    let filler = &chars[3..];
    let mut st = seed;
    let mut next = || {
        st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (st >> 33) as usize
    };
    (0..n)
        .map(|_| {
            let label = next() % 3;
            let len = 4 + next() % 8;
            let mut text: Vec<char> = (0..len).map(|_| filler[next() % filler.len()]).collect();
            let at = next() % (len + 1);
            text.insert(at, markers[label]);
            (text.into_iter().collect(), label)
        })
        .collect()
}

/// [`examples`] as JSON lines, `{"sentence": ..., "label": ...}` with the label's name.
pub fn task_lines(n: usize, seed: u64) -> String {
    examples(n, seed)
        .iter()
        .map(|(text, label)| serde_json::json!({ "sentence": text, "label": LABELS[*label] }).to_string() + "\n")
        .collect()
}

/// Writes [`task_lines`] to `path`.
pub fn write_task(path: &Path, n: usize, seed: u64) -> std::io::Result<()> {
    std::fs::write(path, task_lines(n, seed))
}

/// [`write_task`] to `dir/name`; returns that path.
pub fn task_in(dir: &Path, name: &str, n: usize, seed: u64) -> PathBuf {
    let p = dir.join(name);
    write_task(&p, n, seed).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    p
}

/// A fresh directory for one test (`<temp>/ernie-ft-<pid>-<name>`), removed with everything in it when
/// dropped, a failing test's too: tests leave nothing behind in the temporary directory. Derefs to its path.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// The directory, emptied if a run of this process's id left one.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ernie-ft-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self(dir)
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prints a `SKIPPED (why): test` line straight to the process's stderr, so that a passing test's skip is
/// visible in `cargo test`'s output: the harness captures `println!` and `eprintln!` of passing tests and
/// shows them only on failure.
#[macro_export]
macro_rules! skipped {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
