//! `ernie-ft predict`: a checkpoint's predictions for a file, written in the CLUE submission format
//! (`{"id": ..., "label": "..."}` per line, in input order; `"logits"` too with `--logits`). The file is
//! streamed (one window of 64 batches in memory at a time) and the output written to a temporary file renamed
//! into place on success. Loading, reading and predicting are [`ernie_train::inference`]'s.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use ernie_backend::Backend;
use ernie_train::eval::Windows;
use ernie_train::inference::Finetuned;
use ernie_train::setup;

use crate::common::{progress_bar, CheckpointArgs};
use crate::io::AtomicOutput;

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Input file (labels not needed; `id` carried to the output) [default: <data>/<task>/test.json]
    #[arg(long, value_name = "FILE")]
    pub test: Option<PathBuf>,
    /// CLUE submission file: {"id": ..., "label": "..."} per line
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    #[arg(long, default_value_t = 64, value_parser = crate::common::positive)]
    pub batch_size: usize,
    /// Also write each example's logits ("logits": [...], in the checkpoint's label order)
    #[arg(long)]
    pub logits: bool,
}

pub fn run(a: &PredictArgs) -> Result<()> {
    crate::with_backend!(a.checkpoint.device, b => predict_on(b, a))
}

/// Streams the file: lines are read, tokenized and predicted window by window (see
/// [`Finetuned::predict_file`]), and each window's rows are written to the temporary output as it finishes;
/// the output appears under its name only once every line has been predicted, and an error at any line
/// leaves no output and no temporary file.
fn predict_on<B: Backend>(b: &B, a: &PredictArgs) -> Result<()> {
    let model = Finetuned::open(b, &a.checkpoint.model)?;
    // The data folder of the task the checkpoint was trained for.
    let task = &model.checkpoint.meta.task.name;
    let file = setup::task_file(a.test.as_deref(), a.checkpoint.task.data.as_deref(), task, &setup::TEST_FILES)?;
    let total = ernie_data::count_nonblank_lines(&file)?;
    let mut out = AtomicOutput::create(&a.output)?;
    let pb = progress_bar(total as u64, "lines");
    let written = model.predict_file(
        b,
        &file,
        Windows::new(a.batch_size),
        |n| pb.inc(n as u64),
        |p| {
            let mut line = p.to_json(a.logits).to_string().into_bytes();
            line.push(b'\n');
            out.write_all(&line)
        },
    )?;
    pb.finish_and_clear();
    out.commit()?;
    eprintln!("{written} predictions written to {}", a.output.display());
    Ok(())
}
