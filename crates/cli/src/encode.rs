//! `ernie-ft encode`: sentence embeddings from the encoder's final hidden states.
//!
//! Input: JSON lines `{"sentence": ...}` or `{"sentence1": ..., "sentence2": ...}` (other keys ignored).
//! Output: one line per input, in input order, `{"cls": [...], "mean": [...]}`: the final hidden state of
//! the first token, and the mean of the final hidden states over the real (non-padding) tokens.
//!
//! Inputs are sorted by length inside windows of consecutive lines so that batches carry little padding;
//! padding never changes a result (attention gives padded keys exactly zero weight), so the output does not
//! depend on the batch size.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;
use ernie_data::Encoded;
use ernie_model::{Encoder, Tokens};
use ernie_tensor::Backend;
use rayon::prelude::*;
use serde::Serialize;

use crate::common::{positive, progress_bar, DeviceArgs, LoadedModel, ModelArgs};
use crate::io::{line_error, read_json_lines, str_field, AtomicOutput, JsonLine};

/// Batches sorted together: inputs are sorted by length within windows of this many batches.
const WINDOW_BATCHES: usize = 64;

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// JSON lines, each {"sentence": ...} or {"sentence1": ..., "sentence2": ...}
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,

    /// JSON lines written in input order, each {"cls": [...], "mean": [...]}; replaced only on success
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,

    #[command(flatten)]
    pub model: ModelArgs,

    /// Inputs per forward pass
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = positive)]
    pub batch_size: usize,

    #[command(flatten)]
    pub device: DeviceArgs,
}

/// One input text or pair, with the line it came from.
#[derive(Debug, Clone)]
struct Input {
    line: usize,
    first: String,
    second: Option<String>,
}

#[derive(Serialize)]
struct OutputRow<'a> {
    cls: &'a [f32],
    mean: &'a [f32],
}

pub fn run(args: &EncodeArgs) -> Result<()> {
    crate::with_backend!(args.device, b => run_on(b, args))
}

fn run_on<B: Backend>(backend: &B, args: &EncodeArgs) -> Result<()> {
    let mut output = AtomicOutput::create(&args.output)?;
    let model = LoadedModel::load(&args.model, None)?;
    let inputs = read_inputs(&args.input)?;
    let encoded = tokenize(&model, &inputs, &args.input, model.max_len)?;

    eprintln!(
        "encoding {} inputs with {} on {}, max-len {}, batch size {}",
        inputs.len(),
        model.describe(),
        backend.name(),
        model.max_len,
        args.batch_size
    );
    let start = Instant::now();
    let encoder = Encoder::from_host(backend, &model.host);
    let pad_id = model.tokenizer.pad_id();
    encode_all(
        backend,
        &encoder,
        &encoded,
        pad_id,
        args.batch_size,
        |row| {
            let mut line = serde_json::to_vec(&row)
                .map_err(|e| anyhow!("cannot serialise an output row: {e}"))?;
            line.push(b'\n');
            output.write_all(&line)
        },
    )?;
    output.commit()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "encoded {} examples in {secs:.2} s ({:.1} examples/s) -> {}",
        inputs.len(),
        inputs.len() as f64 / secs.max(1e-9),
        args.output.display()
    );
    Ok(())
}

fn read_inputs(path: &Path) -> Result<Vec<Input>> {
    read_json_lines(path)?
        .into_iter()
        .map(|l| parse_input(path, l))
        .collect()
}

fn parse_input(path: &Path, l: JsonLine) -> Result<Input> {
    let at = |msg: String| line_error(path, l.line, msg);
    let single = str_field(&l.obj, "sentence").map_err(at)?;
    let first = str_field(&l.obj, "sentence1").map_err(at)?;
    let second = str_field(&l.obj, "sentence2").map_err(at)?;
    let (first, second) = match (single, first, second) {
        (Some(s), None, None) => (s, None),
        (None, Some(a), Some(b)) => (a, Some(b)),
        (Some(_), _, _) => {
            return Err(at(
                "has both \"sentence\" and \"sentence1\"/\"sentence2\"; use one form".into(),
            ))
        }
        (None, Some(_), None) => return Err(at("has \"sentence1\" but no \"sentence2\"".into())),
        (None, None, Some(_)) => return Err(at("has \"sentence2\" but no \"sentence1\"".into())),
        (None, None, None) => {
            return Err(at(
                "missing key \"sentence\" (or the pair \"sentence1\", \"sentence2\")".into(),
            ))
        }
    };
    Ok(Input {
        line: l.line,
        first: first.to_owned(),
        second: second.map(str::to_owned),
    })
}

/// Token ids of every input (in parallel); errors name the input file and line.
fn tokenize(
    model: &LoadedModel,
    inputs: &[Input],
    path: &Path,
    max_len: usize,
) -> Result<Vec<Encoded>> {
    let vocab = model.host.config.vocab_size;
    let types = model.host.config.type_vocab_size;
    let results: Vec<Result<Encoded>> = inputs
        .par_iter()
        .map(|x| {
            let enc = model
                .tokenizer
                .encode(&x.first, x.second.as_deref(), max_len)
                .map_err(|e| line_error(path, x.line, e))?;
            if enc.ids.is_empty() {
                return Err(line_error(path, x.line, "the input has no tokens (the tokenizer adds no special tokens)"));
            }
            if let Some(&id) = enc.ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(line_error(
                    path,
                    x.line,
                    format!(
                        "token id {id} is outside the model's vocabulary ({vocab} entries): the tokenizer in {} does not match the model",
                        model.dir.display()
                    ),
                ));
            }
            if let Some(&t) = enc.type_ids.iter().find(|&&t| t as usize >= types) {
                return Err(line_error(
                    path,
                    x.line,
                    format!("token type {t} is outside the model's type_vocab_size {types} (a sentence pair needs 2)"),
                ));
            }
            Ok(enc)
        })
        .collect();
    results.into_iter().collect()
}

/// Encodes every input and hands the rows to `sink` in input order.
fn encode_all<B: Backend>(
    b: &B,
    encoder: &Encoder<B>,
    inputs: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    mut sink: impl FnMut(OutputRow<'_>) -> Result<()>,
) -> Result<()> {
    let window = batch_size * WINDOW_BATCHES;
    let total_batches: usize = inputs
        .chunks(window)
        .map(|w| w.len().div_ceil(batch_size))
        .sum();
    let pb = progress_bar(total_batches as u64, "batches");
    let h = encoder.config.hidden_size;
    for (w, chunk) in inputs.chunks(window).enumerate() {
        let base = w * window;
        // Longest first, ties in input order, so batches hold similar lengths.
        let mut order: Vec<usize> = (0..chunk.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(chunk[i].len()));
        let mut cls = vec![Vec::new(); chunk.len()];
        let mut mean = vec![Vec::new(); chunk.len()];
        for batch in order.chunks(batch_size) {
            let rows: Vec<(Vec<u32>, Vec<u32>)> = batch
                .iter()
                .map(|&i| (chunk[i].ids.clone(), chunk[i].type_ids.clone()))
                .collect();
            let tokens = Tokens::from_rows(&rows, pad_id);
            encoder.check_tokens(&tokens).map_err(|e| {
                anyhow!(
                    "a batch of inputs {} does not fit the model: {e}",
                    describe_batch(base, batch)
                )
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
            pb.inc(1);
        }
        for i in 0..chunk.len() {
            sink(OutputRow {
                cls: &cls[i],
                mean: &mean[i],
            })?;
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// `#3, #17, ...` (1-based input positions, blank lines not counted), for the rare error after tokenization.
fn describe_batch(base: usize, batch: &[usize]) -> String {
    batch
        .iter()
        .map(|&i| format!("#{}", base + i + 1))
        .collect::<Vec<_>>()
        .join(", ")
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
    fn input_forms() {
        let p = Path::new("x.jsonl");
        let line = |s: &str| JsonLine {
            line: 7,
            obj: serde_json::from_str(s).unwrap(),
        };
        let one = parse_input(p, line(r#"{"sentence": "a", "label": 3}"#)).unwrap();
        assert_eq!(
            (one.first.as_str(), one.second.as_deref(), one.line),
            ("a", None, 7)
        );
        let two = parse_input(p, line(r#"{"sentence1": "a", "sentence2": "b"}"#)).unwrap();
        assert_eq!(two.second.as_deref(), Some("b"));
        for bad in [
            r#"{"text": "a"}"#,
            r#"{"sentence": 1}"#,
            r#"{"sentence1": "a"}"#,
            r#"{"sentence": "a", "sentence1": "b"}"#,
        ] {
            let msg = parse_input(p, line(bad)).unwrap_err().to_string();
            assert!(msg.starts_with("x.jsonl:7: "), "{msg}");
        }
    }
}
