//! A fine-tuned checkpoint put to use on a file, as `ernie-ft eval` and `ernie-ft predict` do:
//! [`Finetuned`] (a checkpoint on a backend, with its tokenizer), the labelled [`Dataset`] of a file and its
//! [`Metrics`], and the [`Prediction`]s for a file of any length, streamed window by window in input order
//! ([`Finetuned::predict_file`]), each with the example's id exactly as written (an int stays an int, a
//! string stays a string, even `"0042"`) and its CLUE submission row.

use crate::checkpoint::{self, Checkpoint};
use crate::eval::{self, LengthOrder, Windows};
use crate::metrics::{argmax_rows, Metrics};
use anyhow::{anyhow, bail, Result};
use ernie_backend::Backend;
use ernie_data::{read_examples, Dataset, Example, JsonLines, TextTokenizer};
use ernie_model::Encoder;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A checkpoint written by training or averaging, on a backend, with its tokenizer and metadata.
pub struct Finetuned<B: Backend> {
    pub encoder: Encoder<B>,
    pub tokenizer: TextTokenizer,
    pub checkpoint: Checkpoint,
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

    /// The prediction of every example of `file`, streamed: the file is read, tokenized and run window by
    /// window (see [`eval::windowed`]; `windows` sets the batch size and the window), and each prediction
    /// goes to `sink` in input order as its window finishes. Labels, if present, are not read; ids are
    /// taken from each line as written. `on_batch` gets the number of examples of each forward pass.
    /// Returns the number of predictions.
    ///
    /// Errors name `FILE:LINE` (malformed JSON, a missing text key, a bad id, a text the tokenizer refuses)
    /// and stop the stream: predictions of earlier windows have gone to `sink` by then, later ones never
    /// do. A file that fits in one window runs exactly the batches [`eval::predict`] runs on its dataset;
    /// over more windows, which examples share a batch changes, and with it the last bits of some logits
    /// (the CPU kernels round differently for different batches), never more.
    pub fn predict_file(
        &self,
        b: &B,
        file: &Path,
        windows: Windows,
        mut on_batch: impl FnMut(usize),
        mut sink: impl FnMut(Prediction) -> Result<()>,
    ) -> Result<usize> {
        let meta = &self.checkpoint.meta;
        let mut spec = meta.task.clone();
        spec.label_key = None; // labels, if present, are not read
        let source: Arc<Path> = Arc::from(file);
        let lines = JsonLines::open(file)?;
        let inputs = lines.enumerate().map(|(position, line)| -> Result<Pending> {
            let line = line?;
            let example = Example::from_line(&source, &line, &spec, false)?;
            // The id as written (int or string, `"0042"` included); the position when there is none.
            let id = match example.id {
                Some(_) => line.obj.get(&spec.id_key).cloned().unwrap_or(Value::Null),
                None => position.into(),
            };
            Ok(Pending { example, id })
        });
        let pad_id = self.tokenizer.pad_id();
        let num_labels = self.encoder.num_labels;
        let mut count = 0;
        eval::windowed(
            inputs,
            windows,
            LengthOrder::ShortestFirst,
            |p| {
                let e = &p.example;
                self.tokenizer
                    .encode(&e.text_a, e.text_b.as_deref(), meta.max_len)
                    .map_err(|err| anyhow!("{}: {err}", e.location()))
            },
            |rows, _| {
                let (logits, _) = eval::classify(b, &self.encoder, &eval::tokens_of_rows(rows, pad_id), None);
                on_batch(rows.len());
                Ok(logits.chunks_exact(num_labels).map(<[f32]>::to_vec).collect())
            },
            |p, logits| {
                let class = argmax_rows(&logits, num_labels)[0];
                let label = meta.labels.name(class).unwrap_or_default().to_string();
                count += 1;
                sink(Prediction { id: p.id, label, logits })
            },
        )?;
        Ok(count)
    }
}

/// A line of a file to predict, read and waiting for its window to run.
struct Pending {
    example: Example,
    id: Value,
}
