//! `ernie-ft predict`: a checkpoint's predictions for a file, written in the CLUE submission format
//! (`{"id": ..., "label": "..."}` per line, in input order; `"logits"` too with `--logits`). Loading, reading
//! and predicting are [`ernie_train::inference`]'s.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use ernie_tensor::Backend;
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

fn predict_on<B: Backend>(b: &B, a: &PredictArgs) -> Result<()> {
    let model = Finetuned::open(b, &a.checkpoint.model)?;
    // The data folder of the task the checkpoint was trained for.
    let task = &model.checkpoint.meta.task.name;
    let file = setup::task_file(a.test.as_deref(), a.checkpoint.task.data.as_deref(), task, &setup::TEST_FILES)?;
    let input = model.unlabelled(&file)?;
    let pb = progress_bar(input.len() as u64, "examples");
    let predictions = model.predict(b, &input, a.batch_size.max(1), |n| pb.inc(n as u64));
    pb.finish_and_clear();
    let mut out = AtomicOutput::create(&a.output)?;
    for p in &predictions {
        writeln!(out.writer(), "{}", p.to_json(a.logits))?;
    }
    out.commit()?;
    eprintln!("{} predictions written to {}", predictions.len(), a.output.display());
    Ok(())
}
