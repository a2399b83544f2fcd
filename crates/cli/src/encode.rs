//! `ernie-ft encode`: sentence embeddings from the encoder's final hidden states.
//!
//! Input: JSON lines `{"sentence": ...}` or `{"sentence1": ..., "sentence2": ...}` (other keys ignored).
//! Output: one line per input, in input order, `{"cls": [...], "mean": [...]}`: the final hidden state of
//! the first token, and the mean of the final hidden states over the real (non-padding) tokens.
//!
//! This module reads the input lines and writes the output lines; loading the model, tokenizing, batching
//! (inputs sorted by length within windows) and pooling are [`ernie_train::embed`]'s.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;
use ernie_model::Encoder;
use ernie_tensor::Backend;
use ernie_train::embed::{self, Embedder};

use crate::common::{positive, progress_bar, DeviceArgs, ModelArgs};
use crate::io::{line_error, read_json_lines, str_field, AtomicOutput, JsonLine};

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

pub fn run(args: &EncodeArgs) -> Result<()> {
    crate::with_backend!(args.device, b => run_on(b, args))
}

fn run_on<B: Backend>(backend: &B, args: &EncodeArgs) -> Result<()> {
    let mut output = AtomicOutput::create(&args.output)?;
    let model = Embedder::load(args.model.model.as_deref(), args.model.max_len)?;
    let inputs = read_inputs(&args.input)?;
    let texts: Vec<(&str, Option<&str>)> = inputs.iter().map(|x| (x.first.as_str(), x.second.as_deref())).collect();
    let encoded = model.tokenize(&texts).map_err(|e| line_error(&args.input, inputs[e.index].line, e.message))?;

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
    let pb = progress_bar(embed::batch_count(encoded.len(), args.batch_size) as u64, "batches");
    embed::embed(
        backend,
        &encoder,
        &encoded,
        pad_id,
        args.batch_size,
        || pb.inc(1),
        |row| {
            let mut line = serde_json::to_vec(&row).map_err(|e| anyhow!("cannot serialise an output row: {e}"))?;
            line.push(b'\n');
            output.write_all(&line)
        },
    )?;
    pb.finish_and_clear();
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
    read_json_lines(path)?.into_iter().map(|l| parse_input(path, l)).collect()
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
            return Err(at("has both \"sentence\" and \"sentence1\"/\"sentence2\"; use one form".into()))
        }
        (None, Some(_), None) => return Err(at("has \"sentence1\" but no \"sentence2\"".into())),
        (None, None, Some(_)) => return Err(at("has \"sentence2\" but no \"sentence1\"".into())),
        (None, None, None) => {
            return Err(at("missing key \"sentence\" (or the pair \"sentence1\", \"sentence2\")".into()))
        }
    };
    Ok(Input { line: l.line, first: first.to_owned(), second: second.map(str::to_owned) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_forms() {
        let p = Path::new("x.jsonl");
        let line = |s: &str| JsonLine { line: 7, obj: serde_json::from_str(s).unwrap() };
        let one = parse_input(p, line(r#"{"sentence": "a", "label": 3}"#)).unwrap();
        assert_eq!((one.first.as_str(), one.second.as_deref(), one.line), ("a", None, 7));
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
