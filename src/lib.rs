//! Support for the workspace's integration tests (tests/) and benchmarks (benches/): locating the shared
//! model, data and reference fixtures, and reading fixture tensors.

use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The workspace root (where this crate lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared folder with model, data and fixtures: `$ERNIE_FT_SHARED`, else `../shared` beside the workspace.
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ERNIE_FT_SHARED").map(PathBuf::from) {
        return p.is_dir().then_some(p);
    }
    let p = workspace_root().join("../shared");
    p.is_dir().then(|| p.canonicalize().unwrap_or(p))
}

/// The fixtures folder: `$ERNIE_FT_FIXTURES` (set by the device carry script), else `../shared/fixtures`.
pub fn shared_fixtures() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ERNIE_FT_FIXTURES").map(PathBuf::from) {
        return p.is_dir().then_some(p);
    }
    shared_dir().map(|s| s.join("fixtures")).filter(|p| p.is_dir())
}

/// The e5-small-zh model: `$ERNIE_FT_MODEL`, else `../shared/models/e5-small-zh`.
pub fn shared_model() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ERNIE_FT_MODEL").map(PathBuf::from) {
        return p.is_dir().then_some(p);
    }
    shared_dir().map(|s| s.join("models/e5-small-zh")).filter(|p| p.is_dir())
}

/// The tiny model's fixtures, copied into the repository so the suite stands on its own.
pub fn local_fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// Print a visible skip line and return true when `what` is missing.
pub fn skip_unless<T>(what: &Option<T>, test: &str, need: &str) -> bool {
    if what.is_none() {
        eprintln!("SKIPPED (needs {need}): {test}");
        true
    } else {
        false
    }
}

/// One tensor of a fixture file, as f64 (floats) with its shape.
#[derive(Clone, Debug)]
pub struct FixtureTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl FixtureTensor {
    pub fn as_u32(&self) -> Vec<u32> {
        self.data.iter().map(|&v| v as u32).collect()
    }
}

/// All tensors of a safetensors fixture file.
pub fn read_fixture(path: &Path) -> BTreeMap<String, FixtureTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            let d = t.data();
            let data: Vec<f64> = match t.dtype() {
                Dtype::F64 => d.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
                Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
                Dtype::I64 => d.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
                other => panic!("{}: tensor {name}: unexpected dtype {other:?}", path.display()),
            };
            (name, FixtureTensor { shape: t.shape().to_vec(), data })
        })
        .collect()
}

/// The token batch and labels stored in a fixture file (`input_ids`, `token_type_ids`, `attention_mask`,
/// `labels`).
pub fn fixture_tokens(fx: &BTreeMap<String, FixtureTensor>) -> (ernie_model::Tokens, Vec<u32>) {
    let ids = &fx["input_ids"];
    let t = ernie_model::Tokens {
        batch: ids.shape[0],
        seq: ids.shape[1],
        ids: ids.as_u32(),
        type_ids: fx["token_type_ids"].as_u32(),
        task_ids: vec![],
        mask: fx["attention_mask"].as_u32(),
    };
    (t, fx["labels"].as_u32())
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Largest absolute difference relative to the reference's largest magnitude.
pub fn rel_max_err(got: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    max_abs_diff(got, want) / scale.max(1e-300)
}

/// The e5-small-zh config (used with random weights when the shared model is absent, e.g. in benchmarks).
pub const E5_SMALL_CONFIG: &str = r#"{"model_type": "bert", "vocab_size": 21356, "hidden_size": 384, "num_hidden_layers": 12,
 "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2,
 "layer_norm_eps": 1e-12, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}"#;

/// e5-small-zh with a fresh head from the shared folder, or the same shape with random weights.
pub fn e5_or_random(num_labels: usize) -> (ernie_model::HostParams, &'static str) {
    use ernie_model::{HeadInit, HostParams, ModelConfig};
    match shared_model() {
        Some(dir) => (
            HostParams::load_dir(&dir, num_labels, HeadInit::seed(0)).expect("e5-small-zh loads"),
            "e5-small-zh weights",
        ),
        None => (
            HostParams::random(ModelConfig::from_json(E5_SMALL_CONFIG).unwrap(), num_labels, 0),
            "random weights, e5-small shape",
        ),
    }
}
