//! `ernie-ft eval`: a checkpoint's accuracy, macro-F1 and loss on a labelled file, printed as one JSON line
//! (and written with `--metrics-out`). Loading, reading and evaluating are [`ernie_train::inference`]'s.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use ernie_backend::Backend;
use ernie_train::inference::Finetuned;
use ernie_train::setup;

use crate::common::{progress_bar, CheckpointArgs};

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Labelled file [default: <data>/<task of the checkpoint>/dev.json]
    #[arg(long, value_name = "FILE")]
    pub dev: Option<PathBuf>,
    #[arg(long, default_value_t = 64, value_parser = crate::common::positive)]
    pub batch_size: usize,
    /// Use the first N examples
    #[arg(long, value_parser = crate::common::positive)]
    pub dev_limit: Option<usize>,
    /// Override the checkpoint's max length (3 to the model's max_position_embeddings)
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Also write the metrics as JSON here
    #[arg(long, value_name = "FILE")]
    pub metrics_out: Option<PathBuf>,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    crate::with_backend!(a.checkpoint.device, b => eval_on(b, a))
}

fn eval_on<B: Backend>(b: &B, a: &EvalArgs) -> Result<()> {
    let model = Finetuned::open(b, &a.checkpoint.model)?;
    if let Some(n) = a.max_len {
        model.check_max_len(n)?;
    }
    // The data folder of the task the checkpoint was trained for.
    let task = &model.checkpoint.meta.task.name;
    let file = setup::task_file(a.dev.as_deref(), a.checkpoint.task.data.as_deref(), task, &setup::DEV_FILES)?;
    let ds = model.labelled(&file, a.dev_limit, a.max_len)?;
    let pb = progress_bar(ds.len() as u64, "examples");
    let m = model.evaluate(b, &ds, a.batch_size.max(1), |n| pb.inc(n as u64));
    pb.finish_and_clear();
    let json = serde_json::json!({ "model": a.checkpoint.model, "file": file, "accuracy": m.accuracy, "macro_f1": m.macro_f1, "loss": m.loss, "examples": m.examples });
    println!("{json}");
    if let Some(p) = &a.metrics_out {
        ernie_model::write_atomic(p, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}
