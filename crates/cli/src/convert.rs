//! `ernie-ft convert`: a model directory in any format ernie-ft reads (HF safetensors, PyTorch
//! `pytorch_model.bin`, PaddleNLP `model_state.pdparams` with `config.json` or `model_config.json`)
//! written once as a HF transformers directory. The conversion is
//! [`ernie_model::formats::convert::convert_dir`]; this module is its command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The source model directory (model.safetensors, pytorch_model.bin or model_state.pdparams, with
    /// its config and vocab.txt / tokenizer.json)
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,

    /// The HF directory to write (model.safetensors, config.json, tokenizer files); created, and it must
    /// not already hold a model
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(a: &ConvertArgs) -> Result<()> {
    let r = ernie_model::formats::convert::convert_dir(&a.from, &a.out)
        .with_context(|| format!("cannot convert {}", a.from.display()))?;
    let c = r.source.read_config().ok();
    eprintln!(
        "read {} ({}) with {}{}",
        r.source.weights.display(),
        r.source.format.describe(),
        r.source.config.display(),
        c.map(|c| format!(
            ": {} layers, hidden {}, layer_norm_eps {:e}, use_task_id {}",
            c.num_hidden_layers, c.hidden_size, c.layer_norm_eps, c.use_task_id
        ))
        .unwrap_or_default()
    );
    let head = match r.num_labels {
        Some(n) => format!("with its {n}-label classifier"),
        None => "no classifier".into(),
    };
    eprintln!("wrote {} ({} tensors, {head}): {}", a.out.display(), r.tensors, r.files.join(", "));
    Ok(())
}
