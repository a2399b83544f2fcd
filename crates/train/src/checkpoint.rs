//! Checkpoint directories: `model.safetensors` (HF tensor names, F32: loadable by HF transformers),
//! `config.json` (HF config with `num_labels`, `id2label`, `label2id`), the tokenizer file(s), and
//! `ernie_ft.json` (task, labels, max length, training configuration, state and metrics). Every file is
//! written atomically (temporary file + rename), and `manifest.json` last, listing each file with its size
//! and blake3: [`load`] accepts only a directory whose files match it, so a save killed half-way is
//! refused (naming the file) instead of pairing new weights with old metadata.

use crate::files::{verify_manifest, DirWriter};
use anyhow::{bail, Context, Result};
use ernie_data::{LabelSet, TaskSpec};
use ernie_model::{HeadInit, HostParams};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const META_FILE: &str = "ernie_ft.json";
pub const METRICS_FILE: &str = "metrics.json";

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
    let mut w = DirWriter::begin(dir)?;
    w.write(
        "model.safetensors",
        &params
            .safetensors_bytes(None)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("model.safetensors").display()))?,
    )?;
    crate::state::kill_point("final");
    let cfg = hf_config(params, &meta.labels, tokenizer_dir)?;
    w.write("config.json", serde_json::to_string_pretty(&cfg)?.as_bytes())?;
    // As HF reads them: a PaddleNLP vocab.txt / tokenizer_config.json made HF's, any other copied as is.
    let mut copied = 0;
    for (f, bytes) in ernie_model::formats::convert::hf_tokenizer_files(tokenizer_dir)? {
        w.write(f, &bytes)?;
        copied += 1;
    }
    if copied == 0 {
        bail!("{}: no tokenizer.json or vocab.txt to copy into the checkpoint", tokenizer_dir.display());
    }
    w.write(META_FILE, serde_json::to_string_pretty(meta)?.as_bytes())?;
    w.commit()
}

/// The checkpoint's `config.json`: the source directory's `config.json` (the base model's, or the source
/// checkpoint's) with every key ernie-ft does not own kept as it is (`tokenizer_class`, notes, ...), so that
/// HF transformers picks the same tokenizer class, and ours overwritten: every key of
/// [`ernie_model::ModelConfig::to_hf_json`] (with `architectures` `*ForSequenceClassification`,
/// `model_type`, `num_labels`), `id2label`, `label2id`, and the weights' dtype where the source names one
/// (`torch_dtype` / `dtype`: the weights are saved as float32). Without a source `config.json` (or with
/// PaddleNLP's), ours alone.
pub fn hf_config(params: &HostParams, labels: &LabelSet, source_dir: &Path) -> Result<serde_json::Value> {
    use serde_json::{Map, Value};
    let src = source_dir.join("config.json");
    // A PaddleNLP directory's config.json is PaddleNLP's (num_classes, fuse, paddlenlp_version, ...): not kept.
    let paddle = ernie_model::formats::ModelFiles::detect(source_dir)
        .is_ok_and(|f| f.config_style == ernie_model::formats::ConfigStyle::PaddleNlp);
    let mut cfg: Map<String, Value> = match std::fs::read_to_string(&src) {
        Ok(_) if paddle => Map::new(),
        Ok(text) => match serde_json::from_str(&text).with_context(|| format!("{}: malformed JSON", src.display()))? {
            Value::Object(m) => m,
            _ => bail!("{}: not a JSON object", src.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", src.display())),
    };
    let Value::Object(ours) = params.config.to_hf_json(params.num_labels) else {
        unreachable!("to_hf_json is an object")
    };
    cfg.extend(ours);
    for k in ["torch_dtype", "dtype"] {
        if cfg.contains_key(k) {
            cfg.insert(k.into(), "float32".into());
        }
    }
    let names = labels.labels();
    cfg.insert(
        "id2label".into(),
        names.iter().enumerate().map(|(i, l)| (i.to_string(), Value::from(l.clone()))).collect::<Map<_, _>>().into(),
    );
    cfg.insert(
        "label2id".into(),
        names.iter().enumerate().map(|(i, l)| (l.clone(), Value::from(i))).collect::<Map<_, _>>().into(),
    );
    Ok(Value::Object(cfg))
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
    verify_manifest(dir)?;
    let text = std::fs::read_to_string(&meta_path).with_context(|| format!("{}: cannot read", meta_path.display()))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .with_context(|| format!("{}: malformed checkpoint metadata", meta_path.display()))?;
    let params = HostParams::load_dir(dir, meta.labels.len(), HeadInit::seed(0))?;
    if !params.initialised.is_empty() {
        bail!(
            "{}: the checkpoint lacks its head tensors {:?}",
            dir.join("model.safetensors").display(),
            params.initialised
        );
    }
    Ok(Checkpoint { dir: dir.to_path_buf(), params, meta })
}

/// Check that fine-tuned checkpoints can be averaged (FMA): the same head initialisation (the
/// `--head-seed` recorded in each `ernie_ft.json`; an averaged checkpoint keeps its first member's), max
/// length, task, labels and model config. Errors name the two checkpoint directories and the field.
pub fn check_averageable(cks: &[Checkpoint]) -> Result<()> {
    let Some(first) = cks.first() else { bail!("nothing to average") };
    let (d0, m0) = (first.dir.display(), &first.meta);
    for c in &cks[1..] {
        let (d, m) = (c.dir.display(), &c.meta);
        let seed = |m: &CheckpointMeta| m.train_config.get("head_seed").filter(|v| !v.is_null()).cloned();
        if let (Some(a), Some(b)) = (seed(m), seed(m0)) {
            if a != b {
                bail!(
                    "{d}: head seed {a} vs {b} in {d0}: FMA averages runs that share the head initialisation (train them with the same --head-seed)"
                );
            }
        }
        if m.max_len != m0.max_len {
            bail!("{d}: max length {} vs {} in {d0}", m.max_len, m0.max_len);
        }
        if m.task != m0.task {
            let (a, b) = (serde_json::to_value(&m.task)?, serde_json::to_value(&m0.task)?);
            let field = a
                .as_object()
                .and_then(|o| o.iter().find(|(k, v)| b.get(*k) != Some(*v)))
                .map(|(k, v)| format!("{k} {v} vs {}", b.get(k).unwrap_or(&serde_json::Value::Null)))
                .unwrap_or_else(|| "the task specs differ".into());
            bail!("{d}: task differs from {d0}'s: {field}");
        }
        if m.labels.labels() != m0.labels.labels() {
            let (a, b) = (m.labels.labels(), m0.labels.labels());
            let what = if a.len() != b.len() {
                format!("{} labels vs {}", a.len(), b.len())
            } else {
                let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
                format!("label {i} is \"{}\" vs \"{}\"", a[i], b[i])
            };
            bail!("{d}: its labels differ from {d0}'s ({what}); averaging needs the same labels in the same order");
        }
        if let Some(what) = c.params.config.difference(&first.params.config) {
            bail!("{d}: model config differs from {d0}'s: {what}");
        }
    }
    Ok(())
}

/// The output directory of an average must not be one of its inputs (compared canonicalized when both
/// exist): the error names both.
pub fn check_average_out(out: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(o) = out.canonicalize() else { return Ok(()) };
    for i in inputs {
        if i.canonicalize().is_ok_and(|c| c == o) {
            bail!(
                "--out {} is the input checkpoint {}: the average would overwrite a checkpoint it reads; choose another directory",
                out.display(),
                i.display()
            );
        }
    }
    Ok(())
}
