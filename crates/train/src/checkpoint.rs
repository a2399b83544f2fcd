//! Checkpoint directories: `model.safetensors` (HF tensor names, F32: loadable by HF transformers),
//! `config.json` (HF config with `num_labels`, `id2label`, `label2id`), the tokenizer file(s), and
//! `ernie_ft.json` (task, labels, max length, training configuration, state and metrics). Every file is
//! written atomically (temporary file + rename) and `ernie_ft.json` last, so a directory with that file is
//! complete.

use anyhow::{bail, Context, Result};
use ernie_data::{LabelSet, TaskSpec};
use ernie_model::{write_atomic, HeadInit, HostParams};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const META_FILE: &str = "ernie_ft.json";
pub const METRICS_FILE: &str = "metrics.json";
const TOKENIZER_FILES: &[&str] = &["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Format version of this file.
    pub format: u32,
    pub task: TaskSpec,
    pub labels: LabelSet,
    pub max_len: usize,
    /// Where the pretrained weights came from.
    pub base_model: String,
    /// The training configuration (flags after defaults), for the record.
    pub train_config: serde_json::Value,
    /// Optimizer updates done.
    pub steps: u64,
    pub epochs_done: f64,
    /// Evaluation history and final metrics, for the record.
    pub report: serde_json::Value,
}

/// Write a checkpoint of `params` into `dir` (created if needed), copying the tokenizer from `tokenizer_dir`.
pub fn save(dir: &Path, params: &HostParams, meta: &CheckpointMeta, tokenizer_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the checkpoint directory", dir.display()))?;
    params.save_safetensors(&dir.join("model.safetensors"), None)?;
    let mut cfg = params.config.to_hf_json(params.num_labels);
    let names = meta.labels.labels();
    cfg["id2label"] = names.iter().enumerate().map(|(i, l)| (i.to_string(), serde_json::Value::from(l.clone()))).collect::<serde_json::Map<_, _>>().into();
    cfg["label2id"] = names.iter().enumerate().map(|(i, l)| (l.clone(), serde_json::Value::from(i))).collect::<serde_json::Map<_, _>>().into();
    write_atomic(&dir.join("config.json"), serde_json::to_string_pretty(&cfg)?.as_bytes())?;
    let mut copied = 0;
    for f in TOKENIZER_FILES {
        let src = tokenizer_dir.join(f);
        if src.is_file() && src.canonicalize().ok() != dir.join(f).canonicalize().ok() {
            let bytes = std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
            write_atomic(&dir.join(f), &bytes)?;
            copied += 1;
        } else if dir.join(f).is_file() {
            copied += 1;
        }
    }
    if copied == 0 {
        bail!("{}: no tokenizer.json or vocab.txt to copy into the checkpoint", tokenizer_dir.display());
    }
    write_atomic(&dir.join(META_FILE), serde_json::to_string_pretty(meta)?.as_bytes())?;
    Ok(())
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub params: HostParams,
    pub meta: CheckpointMeta,
}

/// Load a checkpoint written by [`save`].
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let meta_path = dir.join(META_FILE);
    if !meta_path.is_file() {
        bail!("{}: not an ernie-ft checkpoint ({META_FILE} not found; train one with `ernie-ft train`)", dir.display());
    }
    let text = std::fs::read_to_string(&meta_path).with_context(|| format!("{}: cannot read", meta_path.display()))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).with_context(|| format!("{}: malformed checkpoint metadata", meta_path.display()))?;
    let params = HostParams::load_dir(dir, meta.labels.len(), HeadInit::seed(0))?;
    if !params.initialised.is_empty() {
        bail!("{}: the checkpoint lacks its head tensors {:?}", dir.join("model.safetensors").display(), params.initialised);
    }
    Ok(Checkpoint { dir: dir.to_path_buf(), params, meta })
}
