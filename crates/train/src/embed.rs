//! Sentence embeddings from an encoder's final hidden states, as `ernie-ft encode` writes them: for each
//! text (or pair), the first token's state (`cls`) and the mean of the states over its real tokens
//! (`mean`), in input order.
//!
//! [`Embedder::load`] reads a model directory (any checkpoint: its classifier is not used) and
//! [`Embedder::tokenize`] checks each input against the model; [`embed`] then runs the encoder, sorting
//! inputs by length inside windows of [`WINDOW_BATCHES`] consecutive batches so that batches carry little
//! padding, and hands each window's embeddings to a sink in input order (outputs stream window by window).
//! Padding never changes a result (attention gives padded keys exactly zero weight), so the embeddings do
//! not depend on the batch size. [`Embedder::embed_texts`] does it all and returns the embeddings.

use anyhow::{anyhow, bail, Context, Result};
use ernie_data::{Encoded, TextTokenizer};
use ernie_model::{Encoder, HeadInit, HostParams, Tokens};
use ernie_tensor::Backend;
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Batches sorted together: inputs are sorted by length within windows of this many batches.
pub const WINDOW_BATCHES: usize = 64;

/// The maximum length when none is given (or the model's `max_position_embeddings` when smaller).
pub const DEFAULT_MAX_LEN: usize = 128;

/// The embeddings of one input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Embedding {
    /// The first token's final hidden state.
    pub cls: Vec<f32>,
    /// The mean of the final hidden states over the real (non-padding) tokens, accumulated in f64.
    pub mean: Vec<f32>,
}

/// An input the model cannot take: its 0-based position and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub index: usize,
    pub message: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "input #{}: {}", self.index + 1, self.message)
    }
}

impl std::error::Error for InputError {}

/// A model directory loaded on the host for embedding, with its tokenizer and maximum length.
pub struct Embedder {
    pub dir: PathBuf,
    pub host: HostParams,
    pub tokenizer: TextTokenizer,
    /// Checked against the model's position table.
    pub max_len: usize,
}

impl Embedder {
    /// The model in `model` (else `$ERNIE_FT_MODEL`, else `../shared/models/e5-small-zh`; see
    /// [`ernie_data::resolve_model_dir`]): config, weights and tokenizer. Any checkpoint loads, a classifier
    /// being unused. `max_len` must not exceed `max_position_embeddings` (default: [`DEFAULT_MAX_LEN`], or
    /// `max_position_embeddings` when smaller).
    pub fn load(model: Option<&Path>, max_len: Option<usize>) -> Result<Self> {
        let dir = ernie_data::resolve_model_dir(model).context("cannot find the model")?;
        let head = HeadInit { seed: 0, replace_mismatched_classifier: true };
        let host = HostParams::load_dir(&dir, 2, head).context("cannot load the model")?;
        let tokenizer = TextTokenizer::from_dir(&dir).context("cannot load the tokenizer")?;
        let max_pos = host.config.max_position_embeddings;
        let max_len = match max_len {
            Some(n) if n > max_pos => bail!(
                "--max-len {n} exceeds the model's max_position_embeddings {max_pos} ({}); use --max-len {max_pos} or less",
                ernie_model::formats::ModelFiles::detect(&dir).map(|f| f.config).unwrap_or_else(|_| dir.join("config.json")).display()
            ),
            Some(n) => n,
            None => DEFAULT_MAX_LEN.min(max_pos),
        };
        Ok(Embedder { dir, host, tokenizer, max_len })
    }

    /// `DIR (L layers, hidden H)`, for messages.
    pub fn describe(&self) -> String {
        let c = &self.host.config;
        format!("{} ({} layers, hidden {})", self.dir.display(), c.num_hidden_layers, c.hidden_size)
    }

    /// Token ids of every input (a text, or a pair), in parallel, each checked against the model's
    /// vocabulary and token types; the error is the first failing input's.
    pub fn tokenize<S: AsRef<str> + Sync>(&self, inputs: &[(S, Option<S>)]) -> Result<Vec<Encoded>, InputError> {
        let vocab = self.host.config.vocab_size;
        let types = self.host.config.type_vocab_size;
        let results: Vec<Result<Encoded, InputError>> = inputs
            .par_iter()
            .enumerate()
            .map(|(index, (first, second))| {
                let err = |message: String| InputError { index, message };
                let second: Option<&str> = second.as_ref().map(|s| s.as_ref());
                let enc = self.tokenizer.encode(first.as_ref(), second, self.max_len).map_err(|e| err(e.to_string()))?;
                if enc.ids.is_empty() {
                    return Err(err("the input has no tokens (the tokenizer adds no special tokens)".into()));
                }
                if let Some(&id) = enc.ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(err(format!(
                        "token id {id} is outside the model's vocabulary ({vocab} entries): the tokenizer in {} does not match the model",
                        self.dir.display()
                    )));
                }
                if let Some(&t) = enc.type_ids.iter().find(|&&t| t as usize >= types) {
                    return Err(err(format!("token type {t} is outside the model's type_vocab_size {types} (a sentence pair needs 2)")));
                }
                Ok(enc)
            })
            .collect();
        results.into_iter().collect()
    }

    /// The embeddings of `inputs` (texts, or pairs), in input order, `batch_size` inputs per forward pass.
    pub fn embed_texts<B: Backend, S: AsRef<str> + Sync>(
        &self,
        b: &B,
        inputs: &[(S, Option<S>)],
        batch_size: usize,
    ) -> Result<Vec<Embedding>> {
        let encoded = self.tokenize(inputs)?;
        let encoder = Encoder::from_host(b, &self.host);
        let mut out = Vec::with_capacity(inputs.len());
        embed(
            b,
            &encoder,
            &encoded,
            self.tokenizer.pad_id(),
            batch_size,
            || {},
            |e| {
                out.push(e);
                Ok(())
            },
        )?;
        Ok(out)
    }
}

/// How many forward passes [`embed`] makes for `inputs` inputs (for a progress bar).
pub fn batch_count(inputs: usize, batch_size: usize) -> usize {
    let batch_size = batch_size.max(1);
    let window = batch_size * WINDOW_BATCHES;
    inputs / window * WINDOW_BATCHES + (inputs % window).div_ceil(batch_size)
}

/// Runs `encoder` on every input and hands the embeddings to `sink` in input order, window by window;
/// `on_batch` is called after each forward pass. Errors from `sink` stop the run.
pub fn embed<B: Backend>(
    b: &B,
    encoder: &Encoder<B>,
    inputs: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    mut on_batch: impl FnMut(),
    mut sink: impl FnMut(Embedding) -> Result<()>,
) -> Result<()> {
    let batch_size = batch_size.max(1);
    let window = batch_size * WINDOW_BATCHES;
    let h = encoder.config.hidden_size;
    for (w, chunk) in inputs.chunks(window).enumerate() {
        let base = w * window;
        // Longest first, ties in input order, so batches hold similar lengths.
        let mut order: Vec<usize> = (0..chunk.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(chunk[i].len()));
        let mut cls = vec![Vec::new(); chunk.len()];
        let mut mean = vec![Vec::new(); chunk.len()];
        for batch in order.chunks(batch_size) {
            let rows: Vec<(Vec<u32>, Vec<u32>)> =
                batch.iter().map(|&i| (chunk[i].ids.clone(), chunk[i].type_ids.clone())).collect();
            let tokens = Tokens::from_rows(&rows, pad_id);
            encoder.check_tokens(&tokens).map_err(|e| {
                anyhow!("a batch of inputs {} does not fit the model: {e}", describe_batch(base, batch))
            })?;
            let fw = encoder.infer(b, &tokens);
            let hidden = b.download(&fw.final_hidden);
            drop(fw);
            let seq = tokens.seq;
            for (r, &i) in batch.iter().enumerate() {
                let len = rows[r].0.len();
                let block = &hidden[r * seq * h..(r * seq + len) * h];
                cls[i] = block[..h].to_vec();
                mean[i] = mean_rows(block, h);
            }
            on_batch();
        }
        for (cls, mean) in cls.into_iter().zip(mean) {
            sink(Embedding { cls, mean })?;
        }
    }
    Ok(())
}

/// `#3, #17, ...` (1-based input positions), for the rare error after tokenization.
fn describe_batch(base: usize, batch: &[usize]) -> String {
    batch.iter().map(|&i| format!("#{}", base + i + 1)).collect::<Vec<_>>().join(", ")
}

/// Column means of a row-major `[rows, h]` block, accumulated in f64.
fn mean_rows(block: &[f32], h: usize) -> Vec<f32> {
    let rows = block.len() / h;
    let mut acc = vec![0f64; h];
    for row in block.chunks_exact(h) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    acc.iter().map(|&a| (a / rows as f64) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_rows() {
        let m = mean_rows(&[1.0, 2.0, 3.0, 6.0], 2);
        assert_eq!(m, vec![2.0, 4.0]);
    }

    #[test]
    fn batch_count_matches_the_windows() {
        for bs in [1, 3, 32] {
            for n in [1, 2, 63, 64, 65, 64 * bs, 64 * bs + 1, 200 * bs + 7] {
                let want: usize =
                    (0..n).collect::<Vec<_>>().chunks(bs * WINDOW_BATCHES).map(|w| w.len().div_ceil(bs)).sum();
                assert_eq!(batch_count(n, bs), want, "{n} inputs, batch {bs}");
            }
        }
    }
}
