//! The tiny random model of tests/fixtures (hidden 32, 2 layers, 64 positions) with a small WordPiece
//! vocabulary, and a synthetic 3-class task it can learn: the label is which of three marker characters the
//! sentence contains (as in crates/cli/tests/common/mod.rs). Used by the numerics fingerprint and the
//! campaign tests; also included by xtask/tests/campaign.rs.

use std::path::{Path, PathBuf};

const CHARS: &str = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经";
const LABELS: [&str; 3] = ["甲", "乙", "丙"];

/// tests/fixtures/tiny_random_model of this workspace.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_random_model")
}

/// `dir/`: the tiny model's config and weights plus a vocab.txt of 5 specials + 80 characters.
pub fn write_model(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let src = fixture_dir();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f))?;
    }
    let vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .chain(CHARS.chars().map(String::from))
        .collect();
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n")
}

/// `n` labelled examples (seeded), one `{"sentence": ..., "label": ...}` per line.
pub fn write_task(path: &Path, n: usize, seed: u64) -> std::io::Result<()> {
    let chars: Vec<char> = CHARS.chars().collect();
    let markers = ['的', '是', '在'];
    let filler = &chars[3..];
    let mut st = seed;
    let mut next = || {
        st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (st >> 33) as usize
    };
    let mut out = String::new();
    for _ in 0..n {
        let label = next() % 3;
        let len = 4 + next() % 8;
        let mut text: Vec<char> = (0..len).map(|_| filler[next() % filler.len()]).collect();
        let at = next() % (len + 1);
        text.insert(at, markers[label]);
        let text: String = text.into_iter().collect();
        out += &serde_json::json!({ "sentence": text, "label": LABELS[label] }).to_string();
        out.push('\n');
    }
    std::fs::write(path, out)
}

/// The ernie-ft flags that read the synthetic task.
pub const TASK_FLAGS: [&str; 6] = ["--task", "synthetic", "--text-a-key", "sentence", "--label-key", "label"];
