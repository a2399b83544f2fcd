//! `ernie-ft average`: FMA of fine-tuned checkpoints (uniform, `--weights`, or `--greedy` on a `--holdout`
//! file) written as a new checkpoint. Loading, checking, averaging and saving are
//! [`ernie_train::average`]'s; this module checks that the flags go together.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ernie_backend::Backend;
use ernie_train::average::Members;

use crate::common::DeviceArgs;

#[derive(Args, Debug)]
pub struct AverageArgs {
    /// Output checkpoint directory
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Checkpoints to average (same model config, task, labels and max length; trained with the same
    /// --head-seed)
    #[arg(required = true, value_name = "CKPT")]
    pub checkpoints: Vec<PathBuf>,
    /// Weights of the checkpoints, comma separated [default: uniform]
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<f64>,
    /// Greedy soup: add checkpoints in order of their accuracy on --holdout, keep each only if the
    /// held-out accuracy does not drop
    #[arg(long)]
    pub greedy: bool,
    /// Held-out labelled file for --greedy (a part of TRAIN, never dev)
    #[arg(long, value_name = "FILE")]
    pub holdout: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(a: &AverageArgs) -> Result<()> {
    crate::with_backend!(a.device, b => average_on(b, a))
}

fn average_on<B: Backend>(b: &B, a: &AverageArgs) -> Result<()> {
    let members = Members::load(&a.out, &a.checkpoints)?;
    if a.greedy && !a.weights.is_empty() {
        bail!("--weights and --greedy exclude each other (the soup weights its members uniformly)");
    }
    let soup = if a.greedy {
        let holdout = a
            .holdout
            .as_ref()
            .context("--greedy needs --holdout FILE (a held-out part of the training data, never dev)")?;
        members.greedy_soup(b, holdout)?
    } else {
        members.average((!a.weights.is_empty()).then_some(&a.weights[..]))?
    };
    members.save(&a.out, &soup)?;
    eprintln!("{} written to {}", soup.note, a.out.display());
    Ok(())
}
