//! `ernie-ft train`: its flags (`--strategy` and the strategies' settings included) turned into a
//! [`TrainConfig`] with the task's defaults ([`TaskDefaults`]), then [`ernie_train::train_with`] and a
//! summary on stderr. The task's files, the default output directory and where `--resume` continues come
//! from [`ernie_train::setup`].

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ernie_backend::NoiseNorm;
use ernie_strategies::{adv, AdvConfig, AdvObjective, RDropConfig, Recipe, Strategy};
use ernie_train::{setup, Resume, RunOptions, TaskDefaults, TrainConfig};

use crate::common::{DeviceArgs, TaskArgs};

/// `--strategy`: the training strategies, spelled and described as `ernie_strategies::Strategy` does.
fn training_strategy() -> impl clap::builder::TypedValueParser<Value = Strategy> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(Strategy::TRAINING.map(|s| PossibleValue::new(s.name()).help(s.describe())))
        .map(|s| s.parse::<Strategy>().expect("a possible value is a strategy name"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NormArg {
    L2,
    Max,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub model: crate::common::ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Training file [default: <data>/<task>/train.json, else train.partial.json]
    #[arg(long, value_name = "FILE")]
    pub train: Option<PathBuf>,
    /// Dev file evaluated after each epoch [default: <data>/<task>/dev.json]
    #[arg(long, value_name = "FILE")]
    pub dev: Option<PathBuf>,
    /// Label list (JSON lines, the label under the task's label key), for every task: this file, else
    /// labels.json beside the train file when it exists, else the train file's labels in order of first
    /// appearance. With a list, a training label not in it is an error (FILE:LINE)
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Where the checkpoint and metrics.json go [default: output/<task>-<strategies>-seed<seed>]
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Peak learning rate [default: the task's (IFLYTEK 5e-5, AFQMC 3e-5), doubled with layer decay]
    #[arg(long)]
    pub lr: Option<f64>,
    /// [default: the task's (IFLYTEK 32, AFQMC 16)]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// [default: 3]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Fraction of the steps with linear warmup [default: 0.1]
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Seed of data order, dropout and noise
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seed of the head initialisation (keep it equal across runs to be averaged)
    #[arg(long, default_value_t = 0)]
    pub head_seed: u64,
    /// Hidden dropout [default: the task's (IFLYTEK 0.0, AFQMC 0.1)]
    #[arg(long)]
    pub hidden_dropout: Option<f32>,
    /// Attention-probability dropout [default: the model config's]
    #[arg(long)]
    pub attention_dropout: Option<f32>,
    /// Strategies, comma separated
    #[arg(long, value_delimiter = ',', value_parser = training_strategy())]
    pub strategy: Vec<Strategy>,
    /// adv: noise size per example and layer
    #[arg(long, default_value_t = adv::DEFAULT_EPSILON)]
    pub adv_epsilon: f32,
    /// adv: weight of the adversarial term
    #[arg(long, default_value_t = adv::DEFAULT_ALPHA)]
    pub adv_alpha: f64,
    /// adv: std of the probe noise (N(0, 1e-5) read as variance: std 3.2e-3; much smaller puts the probe
    /// below f32 round-off)
    #[arg(long, default_value_t = adv::DEFAULT_INIT_SIGMA)]
    pub adv_init_sigma: f32,
    /// adv: norm of the noise per example and layer
    #[arg(long, value_enum, default_value_t = NormArg::L2)]
    pub adv_norm: NormArg,
    /// adv: symmetric KL to the clean predictions (kl) or CE of the adversarial ones (ce)
    #[arg(long, default_value = "kl")]
    pub adv_objective: String,
    /// R-Drop: weight of the symmetric KL
    #[arg(long, default_value_t = 1.0)]
    pub rdrop_alpha: f64,
    /// Layer decay rate
    #[arg(long, default_value_t = ernie_strategies::layer_decay::DEFAULT_DECAY_RATE)]
    pub layer_decay_rate: f64,
    /// Also evaluate every N steps
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Stop after N updates
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Use the first N training examples
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Use the first N dev examples
    #[arg(long)]
    pub dev_limit: Option<usize>,
    /// Train on all but a held-out fraction of the training file and evaluate on that part (for choosing
    /// hyper-parameters without touching dev)
    #[arg(long)]
    pub holdout: Option<f64>,
    /// Do not write the final checkpoint (metrics.json only; training states are still written unless
    /// --save-every 0)
    #[arg(long)]
    pub no_save: bool,
    /// Write a training-state checkpoint (weights, optimizer, position) every N updates into
    /// OUTPUT_DIR/checkpoints/, for --resume; 0: never [default: at the end of each epoch]
    #[arg(long, value_name = "N")]
    pub save_every: Option<u64>,
    /// Keep the newest K training-state checkpoints
    #[arg(long, value_name = "K", default_value_t = 2, value_parser = crate::common::positive)]
    pub save_total_limit: usize,
    /// Continue an interrupted run bit-identically: its output directory, one of its
    /// checkpoints/step-N directories, or `auto` (the newest in --output-dir; a new run when there is
    /// none). Give the same flags as the first time; --threads, --eval-every and the --save-* flags may change
    #[arg(long, value_name = "DIR|auto")]
    pub resume: Option<PathBuf>,
    /// Replace a previous run in --output-dir instead of refusing
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
}

pub fn recipe(a: &TrainArgs) -> Result<Recipe> {
    let on = |s| a.strategy.contains(&s);
    let objective = match a.adv_objective.as_str() {
        "kl" => AdvObjective::Kl,
        "ce" => AdvObjective::Ce,
        o => bail!("--adv-objective {o}: kl or ce"),
    };
    let norm = match a.adv_norm {
        NormArg::L2 => NoiseNorm::L2,
        NormArg::Max => NoiseNorm::Max,
    };
    Ok(Recipe {
        rdrop: on(Strategy::Rdrop).then_some(RDropConfig { alpha: a.rdrop_alpha }),
        adv: on(Strategy::Adv).then_some(AdvConfig {
            epsilon: a.adv_epsilon,
            alpha: a.adv_alpha,
            init_sigma: a.adv_init_sigma,
            norm,
            objective,
        }),
        layer_decay: on(Strategy::LayerDecay).then_some(a.layer_decay_rate),
    })
}

pub fn run(a: &TrainArgs) -> Result<()> {
    if a.batch_size == Some(0) {
        bail!("--batch-size must be at least 1");
    }
    if let Some(frac) = a.holdout {
        if !(frac > 0.0 && frac < 1.0) {
            bail!("--holdout {frac}: the held-out fraction must be between 0 and 1 (exclusive)");
        }
    }
    let spec = a.task.spec();
    let d = TaskDefaults::for_task(&spec.name);
    let recipe = recipe(a)?;
    let model_dir = ernie_data::resolve_model_dir(a.model.model.as_deref()).context("cannot find the model")?;
    // With --holdout, evaluation is on the held-out part of TRAIN: dev is neither resolved nor read.
    let files = setup::train_files(
        &a.task.task,
        a.task.data.as_deref(),
        a.train.as_deref(),
        a.dev.as_deref(),
        a.holdout.is_some(),
    )?;
    // The label list is resolved by the trainer (`ernie_data::resolve_labels`), one rule for every task.
    let labels_file = a.labels.clone();
    // Resuming a run without --output-dir continues in that run's directory.
    let resume = Resume::from_arg(a.resume.as_deref());
    let output_dir = a
        .output_dir
        .clone()
        .or_else(|| resume.run_dir())
        .unwrap_or_else(|| setup::default_output_dir(&spec.name, &recipe, a.seed));
    let cfg = TrainConfig {
        task: spec.clone(),
        train_file: files.train,
        dev_file: files.dev,
        labels_file,
        model_dir,
        output_dir,
        lr: d.resolve_lr(a.lr, recipe.layer_decay.is_some()),
        batch_size: a.batch_size.unwrap_or(d.batch_size),
        epochs: a.epochs.unwrap_or(d.epochs),
        max_len: a.model.max_len.unwrap_or(d.max_len),
        warmup_ratio: a.warmup_ratio.unwrap_or(d.warmup_ratio),
        weight_decay: a.weight_decay,
        max_grad_norm: a.max_grad_norm,
        seed: a.seed,
        head_seed: a.head_seed,
        hidden_dropout: a.hidden_dropout.unwrap_or(d.hidden_dropout),
        attention_dropout: a.attention_dropout,
        recipe,
        eval_every: a.eval_every,
        max_steps: a.max_steps,
        train_limit: a.train_limit,
        dev_limit: a.dev_limit,
        holdout: a.holdout,
        save: !a.no_save,
        save_every: a.save_every,
        save_total_limit: a.save_total_limit,
    };
    let opts = RunOptions { resume, overwrite: a.overwrite, stop: Some(crate::common::stop_on_signals()) };
    let report = crate::with_backend!(a.device, b => ernie_train::train_with(b, &cfg, &opts))?;
    if let Some(m) = report.final_dev {
        eprintln!(
            "final {} accuracy {:.4} macro-F1 {:.4}; best during training {:.4}; {:.3} s/step",
            if cfg.holdout.is_some() { "held-out" } else { "dev" },
            m.accuracy,
            m.macro_f1,
            report.best_dev.as_ref().map_or(f64::NAN, |b| b.dev.accuracy),
            report.seconds_per_step,
        );
    }
    eprintln!("written: {}", ernie_train::trainer::describe_output(&cfg.output_dir));
    Ok(())
}
