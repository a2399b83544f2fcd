//! A fine-tuned checkpoint put to use on a file, as `ernie-ft eval` and `ernie-ft predict` do:
//! [`Finetuned`] (a checkpoint on a backend, with its tokenizer), the labelled [`Dataset`] of a file and its
//! [`Metrics`], and the [`Prediction`]s for a file in input order, each with the example's id exactly as
//! written (an int stays an int, a string stays a string, even `"0042"`) and its CLUE submission row.

use crate::checkpoint::{self, Checkpoint};
use crate::eval;
use crate::metrics::Metrics;
use anyhow::{bail, Result};
use ernie_data::{read_examples, Dataset, TextTokenizer};
use ernie_model::Encoder;
use ernie_tensor::Backend;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// A checkpoint written by training or averaging, on a backend, with its tokenizer and metadata.
pub struct Finetuned<B: Backend> {
    pub encoder: Encoder<B>,
    pub tokenizer: TextTokenizer,
    pub checkpoint: Checkpoint,
}

/// The examples of a file to predict, tokenized, with their ids as written.
pub struct PredictionInput {
    pub dataset: Dataset,
    /// The id value of each line that has one, by 1-based line number.
    raw_ids: HashMap<usize, Value>,
}

impl PredictionInput {
    pub fn len(&self) -> usize {
        self.dataset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dataset.is_empty()
    }
}

/// The prediction for one example.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The example's id as written in the file; its 0-based position when it has none.
    pub id: Value,
    /// The predicted label's name.
    pub label: String,
    /// The logits, in the checkpoint's label order.
    pub logits: Vec<f32>,
}

impl Prediction {
    /// The CLUE submission row `{"id": ..., "label": "..."}`, with `"logits": [...]` when `with_logits`.
    pub fn to_json(&self, with_logits: bool) -> Value {
        let mut row = serde_json::json!({ "id": self.id, "label": self.label });
        if with_logits {
            row["logits"] = self.logits.iter().map(|&x| f64::from(x)).collect();
        }
        row
    }
}

impl<B: Backend> Finetuned<B> {
    /// Load the checkpoint in `dir` (refused unless complete; see [`checkpoint::load`]) and its tokenizer.
    pub fn open(b: &B, dir: &Path) -> Result<Self> {
        let checkpoint = checkpoint::load(dir)?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        Ok(Finetuned { encoder: Encoder::from_host(b, &checkpoint.params), tokenizer, checkpoint })
    }

    /// A maximum length to use instead of the checkpoint's: 3 ([CLS], one text token, [SEP]) to the
    /// model's `max_position_embeddings`.
    pub fn check_max_len(&self, n: usize) -> Result<()> {
        let max_pos = self.checkpoint.params.config.max_position_embeddings;
        if n < 3 {
            bail!("--max-len {n}: the maximum length must be at least 3 ([CLS], one text token, [SEP])");
        }
        if n > max_pos {
            bail!(
                "--max-len {n} exceeds the model's max_position_embeddings {max_pos} ({}); use --max-len {max_pos} or less",
                self.checkpoint.dir.join("config.json").display()
            );
        }
        Ok(())
    }

    /// The labelled examples of `file` (the first `limit` of them when given), read with the checkpoint's
    /// task and labels and cut at `max_len` (default: the checkpoint's).
    pub fn labelled(&self, file: &Path, limit: Option<usize>, max_len: Option<usize>) -> Result<Dataset> {
        let meta = &self.checkpoint.meta;
        let mut ex = read_examples(file, &meta.task, true)?;
        if let Some(n) = limit {
            ex.truncate(n);
        }
        Ok(Dataset::build(&ex, &self.tokenizer, max_len.unwrap_or(meta.max_len), &meta.labels)?)
    }

    /// Accuracy, macro-F1 and loss on a labelled dataset (`on_batch` gets the examples of each batch).
    pub fn evaluate(&self, b: &B, data: &Dataset, batch_size: usize, on_batch: impl FnMut(usize)) -> Metrics {
        eval::evaluate(b, &self.encoder, data, batch_size, self.tokenizer.pad_id(), on_batch)
    }

    /// The examples of `file` to predict: labels, if present, are not read; ids are kept as written.
    pub fn unlabelled(&self, file: &Path) -> Result<PredictionInput> {
        let meta = &self.checkpoint.meta;
        let mut spec = meta.task.clone();
        spec.label_key = None; // labels, if present, are not read
        let ex = read_examples(file, &spec, false)?;
        let raw_ids = raw_ids(file, &spec.id_key)?;
        let dataset = Dataset::build(&ex, &self.tokenizer, meta.max_len, &meta.labels)?;
        Ok(PredictionInput { dataset, raw_ids })
    }

    /// The prediction of every example, in input order (`on_batch` gets the examples of each batch).
    pub fn predict(
        &self,
        b: &B,
        input: &PredictionInput,
        batch_size: usize,
        on_batch: impl FnMut(usize),
    ) -> Vec<Prediction> {
        let (pred, _, logits) =
            eval::predict_with_logits(b, &self.encoder, &input.dataset, batch_size, self.tokenizer.pad_id(), on_batch);
        let labels = &self.checkpoint.meta.labels;
        input
            .dataset
            .items()
            .iter()
            .zip(pred)
            .zip(logits)
            .enumerate()
            .map(|(i, ((item, p), logits))| {
                let id: Value = match &item.id {
                    Some(s) => input.raw_ids.get(&item.line).cloned().unwrap_or_else(|| s.clone().into()),
                    None => i.into(),
                };
                Prediction { id, label: labels.name(p).unwrap_or_default().to_string(), logits }
            })
            .collect()
    }
}

/// The value under `key` of every line of a JSON-lines file that has one, by 1-based line number (blank
/// lines counted, a UTF-8 byte-order mark skipped). Meant for a file [`read_examples`] has accepted.
fn raw_ids(path: &Path, key: &str) -> Result<HashMap<usize, Value>> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut ids = HashMap::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw)
            .map_err(|e| anyhow::anyhow!("{}:{line}: not valid UTF-8 ({e})", path.display()))?
            .trim();
        if text.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}:{line}: malformed JSON: {e}", path.display()))?;
        if let Some(id) = value.get(key) {
            ids.insert(line, id.clone());
        }
    }
    Ok(ids)
}
