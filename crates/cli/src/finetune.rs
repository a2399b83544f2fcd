//! `train`, `eval`, `predict` and `average`: fine-tuning on CLUE-style tasks and what comes after.

use crate::common::{progress_bar, DeviceArgs};
use crate::io::AtomicOutput;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ernie_data::{read_examples, Dataset, TaskSpec, TextTokenizer};
use ernie_model::{Encoder, HostParams};
use ernie_strategies::{adv, fma, AdvConfig, AdvObjective, RDropConfig, Recipe};
use ernie_tensor::{Backend, NoiseNorm};
use ernie_train::{checkpoint, eval, Resume, RunOptions, TaskDefaults, TrainConfig};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which task and where its files are.
#[derive(Args, Debug, Clone)]
pub struct TaskArgs {
    /// Task: a preset (iflytek, afqmc, tnews) or any name with --text-a-key/--text-b-key/--label-key
    #[arg(long, default_value = "iflytek")]
    pub task: String,
    /// Data directory holding <task>/train.json, dev.json, test.json, labels.json
    /// [default: $ERNIE_FT_DATA, else ../shared/data]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// JSON key of the (first) text [default: the preset's, else "sentence"]
    #[arg(long)]
    pub text_a_key: Option<String>,
    /// JSON key of the second text of a pair task [default: the preset's]
    #[arg(long)]
    pub text_b_key: Option<String>,
    /// JSON key of the label [default: the preset's, else "label"]
    #[arg(long)]
    pub label_key: Option<String>,
}

impl TaskArgs {
    pub fn spec(&self) -> TaskSpec {
        let mut s = TaskSpec::preset(&self.task)
            .unwrap_or_else(|| TaskSpec::custom(&self.task, "sentence", None, Some("label")));
        if let Some(k) = &self.text_a_key {
            s.text_a_key = k.clone();
        }
        if self.text_b_key.is_some() {
            s.text_b_key = self.text_b_key.clone();
        }
        if self.label_key.is_some() {
            s.label_key = self.label_key.clone();
        }
        s
    }

    /// `file` if given, else `<data>/<task>/<name>` (the first of `names` that exists).
    pub fn file(&self, file: &Option<PathBuf>, names: &[&str]) -> Result<PathBuf> {
        if let Some(f) = file {
            return Ok(f.clone());
        }
        let data = ernie_data::resolve_data_dir(self.data.as_deref())
            .context("cannot find the data (give the file, or --data DIR)")?;
        let dir = data.join(self.task.to_ascii_lowercase());
        for n in names {
            if dir.join(n).is_file() {
                if *n == "train.partial.json" {
                    eprintln!(
                        "note: {} not found; using {} (see the data README)",
                        dir.join("train.json").display(),
                        dir.join(n).display()
                    );
                }
                return Ok(dir.join(n));
            }
        }
        bail!("none of {} found in {}", names.join(", "), dir.display())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    Adv,
    Rdrop,
    LayerDecay,
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
    #[arg(long, value_enum, value_delimiter = ',')]
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

pub fn recipe(a: &TrainArgs) -> Result<(Recipe, Option<f64>)> {
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
    let recipe = Recipe {
        rdrop: on(Strategy::Rdrop).then_some(RDropConfig {
            alpha: a.rdrop_alpha,
        }),
        adv: on(Strategy::Adv).then_some(AdvConfig {
            epsilon: a.adv_epsilon,
            alpha: a.adv_alpha,
            init_sigma: a.adv_init_sigma,
            norm,
            objective,
        }),
    };
    Ok((
        recipe,
        on(Strategy::LayerDecay).then_some(a.layer_decay_rate),
    ))
}

pub fn run_train(a: &TrainArgs) -> Result<()> {
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
    let (recipe, layer_decay) = recipe(a)?;
    let model_dir =
        ernie_data::resolve_model_dir(a.model.model.as_deref()).context("cannot find the model")?;
    let train_file = a
        .task
        .file(&a.train, &["train.json", "train.partial.json"])?;
    // With --holdout, evaluation is on the held-out part of TRAIN: dev is neither resolved nor read.
    let dev_file = match a.holdout {
        Some(_) => {
            if let Some(d) = &a.dev {
                eprintln!("note: --dev {} is not used with --holdout (evaluation is on the held-out part of the training file)", d.display());
            }
            None
        }
        None => Some(a.task.file(&a.dev, &["dev.json"])?),
    };
    // The label list is resolved by the trainer (`ernie_data::resolve_labels`), one rule for every task.
    let labels_file = a.labels.clone();
    // Resuming a run without --output-dir continues in that run's directory.
    let resumed_run = a
        .resume
        .as_deref()
        .filter(|p| *p != Path::new("auto"))
        .map(|p| {
            if ernie_train::state::is_state_dir(p) {
                ernie_train::state::run_dir_of(p).unwrap_or_else(|| p.to_path_buf())
            } else {
                p.to_path_buf()
            }
        });
    let output_dir = a.output_dir.clone().or(resumed_run).unwrap_or_else(|| {
        let names: Vec<String> = a
            .strategy
            .iter()
            .map(|s| format!("{s:?}").to_lowercase())
            .collect();
        PathBuf::from("output").join(format!(
            "{}-{}-seed{}",
            spec.name,
            if names.is_empty() {
                "base".into()
            } else {
                names.join("+")
            },
            a.seed
        ))
    });
    let cfg = TrainConfig {
        task: spec.clone(),
        train_file,
        dev_file,
        labels_file,
        model_dir,
        output_dir,
        lr: d.resolve_lr(a.lr, layer_decay.is_some()),
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
        layer_decay,
        eval_every: a.eval_every,
        max_steps: a.max_steps,
        train_limit: a.train_limit,
        dev_limit: a.dev_limit,
        holdout: a.holdout,
        save: !a.no_save,
        save_every: a.save_every,
        save_total_limit: a.save_total_limit,
    };
    let resume = match a.resume.as_deref() {
        None => Resume::No,
        Some(p) if p == Path::new("auto") => Resume::Auto,
        Some(p) => Resume::From(p.to_path_buf()),
    };
    let opts = RunOptions {
        resume,
        overwrite: a.overwrite,
        stop: Some(crate::common::stop_on_signals()),
    };
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
    eprintln!(
        "written: {}",
        ernie_train::trainer::describe_output(&cfg.output_dir)
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint written by `ernie-ft train` or `ernie-ft average`
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
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

/// A checkpoint on the device with its tokenizer, and the task it was trained for.
fn open<B: Backend>(
    b: &B,
    dir: &Path,
) -> Result<(Encoder<B>, TextTokenizer, checkpoint::Checkpoint)> {
    let ck = checkpoint::load(dir)?;
    let tok = TextTokenizer::from_dir(dir)?;
    Ok((Encoder::from_host(b, &ck.params), tok, ck))
}

pub fn run_eval(a: &EvalArgs) -> Result<()> {
    crate::with_backend!(a.device, b => eval_on(b, a))
}

fn eval_on<B: Backend>(b: &B, a: &EvalArgs) -> Result<()> {
    let (enc, tok, ck) = open(b, &a.model)?;
    if let Some(n) = a.max_len {
        let max_pos = ck.params.config.max_position_embeddings;
        if n < 3 {
            bail!("--max-len {n}: the maximum length must be at least 3 ([CLS], one text token, [SEP])");
        }
        if n > max_pos {
            bail!(
                "--max-len {n} exceeds the model's max_position_embeddings {max_pos} ({}); use --max-len {max_pos} or less",
                a.model.join("config.json").display()
            );
        }
    }
    let task = TaskArgs {
        task: ck.meta.task.name.clone(),
        ..a.task.clone()
    };
    let file = task.file(&a.dev, &["dev.json"])?;
    let mut ex = read_examples(&file, &ck.meta.task, true)?;
    if let Some(n) = a.dev_limit {
        ex.truncate(n);
    }
    let ds = Dataset::build(
        &ex,
        &tok,
        a.max_len.unwrap_or(ck.meta.max_len),
        &ck.meta.labels,
    )?;
    let pb = progress_bar(ds.len() as u64, "examples");
    let m = eval::evaluate(b, &enc, &ds, a.batch_size.max(1), tok.pad_id(), |n| {
        pb.inc(n as u64)
    });
    pb.finish_and_clear();
    let json = serde_json::json!({ "model": a.model, "file": file, "accuracy": m.accuracy, "macro_f1": m.macro_f1, "loss": m.loss, "examples": m.examples });
    println!("{json}");
    if let Some(p) = &a.metrics_out {
        ernie_model::write_atomic(p, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A checkpoint written by `ernie-ft train` or `ernie-ft average`
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
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

pub fn run_predict(a: &PredictArgs) -> Result<()> {
    crate::with_backend!(a.device, b => predict_on(b, a))
}

fn predict_on<B: Backend>(b: &B, a: &PredictArgs) -> Result<()> {
    let (enc, tok, ck) = open(b, &a.model)?;
    let task = TaskArgs {
        task: ck.meta.task.name.clone(),
        ..a.task.clone()
    };
    let file = task.file(&a.test, &["test.json"])?;
    let mut spec = ck.meta.task.clone();
    spec.label_key = None; // labels, if present, are not read
    let ex = read_examples(&file, &spec, false)?;
    // The ids exactly as written, by line: an int stays an int and a string stays a string (even "0042").
    let raw_ids: std::collections::HashMap<usize, serde_json::Value> =
        crate::io::read_json_lines(&file)?
            .into_iter()
            .filter_map(|l| l.obj.get(&spec.id_key).cloned().map(|v| (l.line, v)))
            .collect();
    let ds = Dataset::build(&ex, &tok, ck.meta.max_len, &ck.meta.labels)?;
    let pb = progress_bar(ds.len() as u64, "examples");
    let (pred, _, logits) =
        eval::predict_with_logits(b, &enc, &ds, a.batch_size.max(1), tok.pad_id(), |n| {
            pb.inc(n as u64)
        });
    pb.finish_and_clear();
    let mut out = AtomicOutput::create(&a.output)?;
    for (i, (item, p)) in ds.items().iter().zip(&pred).enumerate() {
        let id: serde_json::Value = match &item.id {
            Some(s) => raw_ids
                .get(&item.line)
                .cloned()
                .unwrap_or_else(|| s.clone().into()),
            None => i.into(),
        };
        let label = ck.meta.labels.name(*p).unwrap_or_default();
        let mut row = serde_json::json!({ "id": id, "label": label });
        if a.logits {
            row["logits"] = logits[i].iter().map(|&x| f64::from(x)).collect();
        }
        writeln!(out.writer(), "{row}")?;
    }
    out.commit()?;
    eprintln!(
        "{} predictions written to {}",
        pred.len(),
        a.output.display()
    );
    Ok(())
}

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

pub fn run_average(a: &AverageArgs) -> Result<()> {
    crate::with_backend!(a.device, b => average_on(b, a))
}

fn average_on<B: Backend>(b: &B, a: &AverageArgs) -> Result<()> {
    let inputs: Vec<&Path> = a.checkpoints.iter().map(PathBuf::as_path).collect();
    checkpoint::check_average_out(&a.out, &inputs)?;
    let cks: Vec<checkpoint::Checkpoint> = a
        .checkpoints
        .iter()
        .map(|d| checkpoint::load(d))
        .collect::<Result<_>>()?;
    checkpoint::check_averageable(&cks)?;
    let named: Vec<(String, &HostParams)> = cks
        .iter()
        .map(|c| (c.dir.display().to_string(), &c.params))
        .collect();
    if a.greedy && !a.weights.is_empty() {
        bail!("--weights and --greedy exclude each other (the soup weights its members uniformly)");
    }
    let (avg, note) = if a.greedy {
        let holdout = a.holdout.as_ref().context(
            "--greedy needs --holdout FILE (a held-out part of the training data, never dev)",
        )?;
        let tok = TextTokenizer::from_dir(&cks[0].dir)?;
        let ex = read_examples(holdout, &cks[0].meta.task, true)?;
        let ds = Dataset::build(&ex, &tok, cks[0].meta.max_len, &cks[0].meta.labels)?;
        let score = |h: &HostParams| {
            eval::evaluate(b, &Encoder::from_host(b, h), &ds, 64, tok.pad_id(), |_| {}).accuracy
        };
        let scores: Vec<f64> = cks.iter().map(|c| score(&c.params)).collect();
        let (kept, soup, best) = fma::greedy_soup(&named, &scores, score)?;
        (
            soup,
            format!(
                "greedy soup of {:?} (held-out accuracy {best:.4})",
                kept.iter().map(|&k| &named[k].0).collect::<Vec<_>>()
            ),
        )
    } else {
        let w = (!a.weights.is_empty()).then_some(&a.weights[..]);
        if let Some(w) = w {
            if w.len() != cks.len() {
                bail!(
                    "--weights has {} values for {} checkpoints",
                    w.len(),
                    cks.len()
                );
            }
            if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
                bail!(
                    "--weights {w:?}: the weights must be finite, not negative, and not all zero"
                );
            }
        }
        (
            fma::average(&named, w)?,
            format!("average of {} checkpoints", cks.len()),
        )
    };
    let mut meta = cks[0].meta.clone();
    meta.report = serde_json::json!({ "fma": note, "members": a.checkpoints });
    checkpoint::save(&a.out, &avg, &meta, &cks[0].dir)?;
    eprintln!("{note} written to {}", a.out.display());
    Ok(())
}
