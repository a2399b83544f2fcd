//! `ernie-ft encode`: sentence embeddings from the encoder's final hidden states.
//!
//! Input: JSON lines `{"sentence": ...}` or `{"sentence1": ..., "sentence2": ...}` (other keys ignored).
//! Output: one line per input, in input order, `{"cls": [...], "mean": [...]}`: the final hidden state of
//! the first token, and the mean of the final hidden states over the real (non-padding) tokens.
//!
//! The input is streamed: memory holds one window of lines (64 batches) at a time, whatever the file's
//! length, and the output is written to a temporary file renamed into place on success. This module reads
//! the input lines and writes the output lines; loading the model, tokenizing, batching (inputs sorted by
//! length within windows) and pooling are [`ernie_train::embed`]'s.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;
use ernie_backend::Backend;
use ernie_train::embed::Embedder;
use ernie_train::eval::Windows;

use crate::common::{positive, progress_bar, DeviceArgs, ModelArgs};
use crate::io::{json_lines, line_error, str_field, AtomicOutput, JsonLine};

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

/// Streams the input: lines are read, tokenized and encoded window by window (see
/// [`Embedder::embed`]), and each window's rows are written to the temporary output as it finishes; the
/// output appears under its name only once every line has been written, and an error at any line leaves no
/// output and no temporary file.
fn run_on<B: Backend>(backend: &B, args: &EncodeArgs) -> Result<()> {
    let mut output = AtomicOutput::create(&args.output)?;
    let model = Embedder::load(args.model.model.as_deref(), args.model.max_len)?;
    let total = ernie_data::count_nonblank_lines(&args.input)?;
    let path = args.input.as_path();
    let inputs = json_lines(path)?.map(|l| parse_input(path, l?));

    let pb = progress_bar(total as u64, "lines");
    let mut started = false;
    let start = Instant::now();
    let mut written = 0usize;
    model.embed(
        backend,
        Windows::new(args.batch_size),
        inputs,
        |x: &Input| model.encode_one(&x.first, x.second.as_deref()).map_err(|e| line_error(path, x.line, e)),
        |n| {
            if !started {
                // Printed once the first window has been read and tokenized, so that an error in it is all a
                // failed run prints.
                started = true;
                pb.suspend(|| {
                    eprintln!(
                        "encoding {total} inputs with {} on {}, max-len {}, batch size {}",
                        model.describe(),
                        backend.name(),
                        model.max_len,
                        args.batch_size
                    )
                });
            }
            pb.inc(n as u64)
        },
        |_, row| {
            let mut line = serde_json::to_vec(&row).map_err(|e| anyhow!("cannot serialise an output row: {e}"))?;
            line.push(b'\n');
            written += 1;
            output.write_all(&line)
        },
    )?;
    pb.finish_and_clear();
    output.commit()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "encoded {written} examples in {secs:.2} s ({:.1} examples/s) -> {}",
        written as f64 / secs.max(1e-9),
        args.output.display()
    );
    Ok(())
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
