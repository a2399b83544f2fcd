//! Sentence embeddings from an encoder's final hidden states, as `ernie-ft encode` writes them: for each
//! text (or pair), the first token's state (`cls`) and the mean of the states over its real tokens
//! (`mean`), in input order.
//!
//! [`Embedder::load`] reads a model directory (any checkpoint: its classifier is not used) and
//! [`Embedder::encode_one`] checks an input against the model; [`Embedder::embed`] runs the encoder on a
//! stream of inputs of any length, window by window ([`eval::windowed`]: a window is tokenized in parallel
//! and run sorted by length, so that batches carry little padding), and hands each window's embeddings to a
//! sink in input order. Padding never changes a result (attention gives padded keys exactly zero weight),
//! so the embeddings do not depend on the batch size or the window (up to float rounding). [`Embedder::embed_texts`] does it all
//! for texts in memory and returns the embeddings.

use crate::eval::{self, LengthOrder, Windows};
use anyhow::{anyhow, bail, Context, Result};
use ernie_backend::Backend;
use ernie_data::{Encoded, TextTokenizer};
use ernie_model::{Encoder, HeadInit, HostParams};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

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

    /// The token ids of one input (a text, or a pair), checked against the model's vocabulary and token
    /// types; the error says why the model cannot take it.
    pub fn encode_one(&self, first: &str, second: Option<&str>) -> Result<Encoded, String> {
        let vocab = self.host.config.vocab_size;
        let types = self.host.config.type_vocab_size;
        let enc = self.tokenizer.encode(first, second, self.max_len).map_err(|e| e.to_string())?;
        if enc.ids.is_empty() {
            return Err("the input has no tokens (the tokenizer adds no special tokens)".into());
        }
        if let Some(&id) = enc.ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(format!(
                "token id {id} is outside the model's vocabulary ({vocab} entries): the tokenizer in {} does not match the model",
                self.dir.display()
            ));
        }
        if let Some(&t) = enc.type_ids.iter().find(|&&t| t as usize >= types) {
            return Err(format!(
                "token type {t} is outside the model's type_vocab_size {types} (a sentence pair needs 2)"
            ));
        }
        Ok(enc)
    }

    /// Token ids of every input (a text, or a pair), in parallel, each checked as [`Self::encode_one`]
    /// does; the error is the first failing input's.
    pub fn tokenize<S: AsRef<str> + Sync>(&self, inputs: &[(S, Option<S>)]) -> Result<Vec<Encoded>, InputError> {
        let results: Vec<Result<Encoded, InputError>> = inputs
            .par_iter()
            .enumerate()
            .map(|(index, (first, second))| {
                self.encode_one(first.as_ref(), second.as_ref().map(|s| s.as_ref()))
                    .map_err(|message| InputError { index, message })
            })
            .collect();
        results.into_iter().collect()
    }

    /// The embeddings of `inputs` (texts, or pairs), in input order, `batch_size` inputs per forward pass.
    /// Errors name the input by its position ([`InputError`]).
    pub fn embed_texts<B: Backend, S: AsRef<str> + Sync>(
        &self,
        b: &B,
        inputs: &[(S, Option<S>)],
        batch_size: usize,
    ) -> Result<Vec<Embedding>> {
        let mut out = Vec::with_capacity(inputs.len());
        self.embed(
            b,
            Windows::new(batch_size),
            inputs.iter().enumerate().map(Ok),
            |(index, (first, second))| {
                let second = second.as_ref().map(|s| s.as_ref());
                self.encode_one(first.as_ref(), second).map_err(|message| InputError { index: *index, message }.into())
            },
            |_| {},
            |_, e| {
                out.push(e);
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// Runs the model on a stream of inputs, window by window ([`eval::windowed`]: `windows` sets the batch
    /// size and how many inputs are held at once), and hands each input with its embeddings to `sink`, in
    /// input order, as its window finishes. `tokenize` turns an input into token ids (in parallel within a
    /// window), normally with [`Self::encode_one`], naming the input in its error; `on_batch` gets the number
    /// of inputs of each forward pass. The first error (of `inputs`, `tokenize` or `sink`) stops the run,
    /// after the windows before it went to `sink`.
    ///
    /// Inputs run longest first within a window. Padding never changes a result (attention gives padded keys
    /// exactly zero weight), so the embeddings depend neither on the batch size nor on the window, up to
    /// float rounding (the CPU kernels' last bits depend on which rows share a batch).
    pub fn embed<B: Backend, X: Sync>(
        &self,
        b: &B,
        windows: Windows,
        inputs: impl IntoIterator<Item = Result<X>>,
        tokenize: impl Fn(&X) -> Result<Encoded> + Sync,
        mut on_batch: impl FnMut(usize),
        sink: impl FnMut(X, Embedding) -> Result<()>,
    ) -> Result<()> {
        let encoder = Encoder::from_host(b, &self.host);
        let pad_id = self.tokenizer.pad_id();
        let h = encoder.config.hidden_size;
        eval::windowed(
            inputs,
            windows,
            LengthOrder::LongestFirst,
            tokenize,
            |rows, positions| {
                let tokens = eval::tokens_of_rows(rows, pad_id);
                encoder.check_tokens(&tokens).map_err(|e| {
                    anyhow!("a batch of inputs {} does not fit the model: {e}", describe_batch(positions))
                })?;
                let fw = encoder.infer(b, &tokens);
                let hidden = b.download(&fw.final_hidden);
                drop(fw);
                let seq = tokens.seq;
                let out = rows
                    .iter()
                    .enumerate()
                    .map(|(r, row)| {
                        let block = &hidden[r * seq * h..(r * seq + row.len()) * h];
                        Embedding { cls: block[..h].to_vec(), mean: mean_rows(block, h) }
                    })
                    .collect();
                on_batch(rows.len());
                Ok(out)
            },
            sink,
        )
    }
}

/// `#3, #17, ...` (1-based input positions), for the rare error after tokenization.
fn describe_batch(positions: &[usize]) -> String {
    positions.iter().map(|&i| format!("#{}", i + 1)).collect::<Vec<_>>().join(", ")
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
}
