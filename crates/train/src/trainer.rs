//! The fine-tuning loop: data, model, optimizer and strategies put together.
//!
//! About 600 lines in one file on purpose: the loop's state (data position, schedule, RNG, evaluation,
//! training states and resume) is one piece that a reader follows top to bottom; the one update is
//! `step.rs`, setting a run up `setup.rs`, the state files `state.rs`.

use crate::checkpoint::{self, CheckpointMeta, METRICS_FILE};
use crate::config::TrainConfig;
use crate::eval::{evaluate, tokens_of};
use crate::files::{self, FileIdentity};
use crate::memory::peak_rss_bytes;
use crate::metrics::Metrics;
use crate::state::{self, Progress, RunFiles, StateMeta};
use crate::step::TrainStep;
use anyhow::{bail, Context, Result};
use ernie_backend::{simd_class, Backend};
use ernie_data::{read_examples, resolve_labels, split_holdout, Dataset, LabelSet, LabelSource, TextTokenizer};
use ernie_model::{write_atomic, Encoder, HeadInit, HostParams};
use ernie_optim::{AdamW, AdamWConfig, LinearSchedule};
use ernie_strategies::{layer_decay, Dropout, LabelledBatch, Strategy};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One evaluation during training.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: u64,
    pub epoch: f64,
    pub dev: Metrics,
}

/// The outcome of a run (also written to `metrics.json` in the output directory).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub task: String,
    pub strategies: Vec<Strategy>,
    /// The strategies' settings (layer decay's rate included).
    pub recipe: ernie_strategies::Recipe,
    pub seed: u64,
    pub head_seed: u64,
    pub lr: f64,
    pub device: String,
    /// The host's SIMD class (CPU results are bit-identical only within one class).
    #[serde(default)]
    pub simd_class: String,
    pub train_examples: usize,
    pub dev_examples: usize,
    pub steps: u64,
    /// The FINAL model's dev metrics (the reported figure).
    pub final_dev: Option<Metrics>,
    /// The best dev evaluation during training (a separate, labelled figure).
    pub best_dev: Option<EvalRecord>,
    pub history: Vec<EvalRecord>,
    pub train_loss_last_epoch: f64,
    pub train_seconds: f64,
    pub seconds_per_step: f64,
    pub samples_per_second: f64,
    pub eval_seconds: f64,
    /// Peak resident memory of the process (host) and of the device where tracked.
    pub peak_host_bytes: Option<u64>,
    pub peak_device_bytes: Option<u64>,
    /// blake3 of the final f32 parameters ([`weights_blake3`]): equal iff the final weights are.
    #[serde(default)]
    pub final_weights_blake3: String,
    /// Updates at which the run was resumed from a training state (empty for an uninterrupted run).
    #[serde(default)]
    pub resumed_at: Vec<u64>,
    /// The configuration and the identities of the model and data files.
    pub config: TrainConfig,
    pub files: RunFiles,
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}] {{msg}}"
        ))
        .unwrap(),
    );
    pb
}

/// Where a run starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Resume {
    /// A new run; an output directory that holds another run is an error unless `overwrite`.
    #[default]
    No,
    /// The newest valid training state in the output directory; a new run when there is none; nothing to
    /// do when the directory holds a finished run.
    Auto,
    /// A run directory (its newest valid state) or one training-state directory.
    From(PathBuf),
}

/// How a run is driven (not part of what it computes).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub resume: Resume,
    /// Replace a previous run in the output directory.
    pub overwrite: bool,
    /// Set to a signal number (SIGINT 2, SIGTERM 15) to stop after the current update: a training state is
    /// written and [`train_with`] returns [`Interrupted`].
    pub stop: Option<Arc<AtomicUsize>>,
}

/// A run stopped on request after writing a training state.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: usize,
    pub step: u64,
    pub checkpoint: PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped by signal {} after update {}; training state written to {}",
            self.signal,
            self.step,
            self.checkpoint.display()
        )
    }
}

impl std::error::Error for Interrupted {}

/// The files of a model directory that define it (hashed into the run's identity): the config and weights
/// the model is read from (`config.json` + `model.safetensors` for a HF directory; `pytorch_model.bin`,
/// PaddleNLP's `model_state.pdparams` and `model_config.json` for the other formats), then the tokenizer.
fn model_files(dir: &Path) -> Vec<PathBuf> {
    let defining = match ernie_model::formats::ModelFiles::detect(dir) {
        Ok(f) => vec![f.config, f.weights],
        Err(_) => ["config.json", "model.safetensors"].iter().map(|f| dir.join(f)).collect(),
    };
    defining
        .into_iter()
        .chain(["tokenizer.json", "vocab.txt"].iter().map(|f| dir.join(f)))
        .filter(|p| p.is_file())
        .collect()
}

/// What of a previous run the output directory holds.
fn previous_run(dir: &Path) -> Vec<&'static str> {
    let mut v = vec![];
    for (f, what) in [
        (METRICS_FILE, METRICS_FILE),
        (checkpoint::META_FILE, "a checkpoint"),
        (state::CHECKPOINTS_DIR, "training states"),
    ] {
        if dir.join(f).exists() {
            v.push(what);
        }
    }
    v
}

/// Remove what a previous run wrote into `dir` (only ernie-ft's own files).
fn clear_previous_run(dir: &Path) -> Result<()> {
    for f in [METRICS_FILE, checkpoint::META_FILE, files::MANIFEST_FILE, "model.safetensors", "config.json"] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        }
    }
    let p = dir.join(state::CHECKPOINTS_DIR);
    if p.exists() {
        std::fs::remove_dir_all(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
    }
    Ok(())
}

/// Fine-tune on `b` as a new run. See [`train_with`].
pub fn train<B: Backend>(b: &B, cfg: &TrainConfig) -> Result<TrainReport> {
    train_with(b, cfg, &RunOptions::default())
}

/// The seed of the `--holdout` split: fixed, so that every run (any seed, any strategy) holds out the same
/// examples (scripts/gpu/finetune_torch.py `--holdout` holds out the same ones for PyTorch).
pub const HOLDOUT_SEED: u64 = 1234;

/// Fine-tune on `b`. Writes training states under `cfg.output_dir/checkpoints/` as configured, the final
/// checkpoint when `cfg.save`, and `metrics.json` last. Nothing is created before the data and model have
/// been read and checked.
pub fn train_with<B: Backend>(b: &B, cfg: &TrainConfig, opts: &RunOptions) -> Result<TrainReport> {
    crate::validate(cfg)?;
    let tokenizer = TextTokenizer::from_dir(&cfg.model_dir)?;
    let all_train = read_examples(&cfg.train_file, &cfg.task, true)?;
    let (labels, label_source) = resolve_labels(cfg.labels_file.as_deref(), &cfg.train_file, &cfg.task, &all_train)?;
    let (mut train_ex, dev_ex) = match cfg.holdout {
        Some(frac) => {
            let n = all_train.len();
            let (tr, ho) = split_holdout(all_train, frac, HOLDOUT_SEED);
            if tr.is_empty() || ho.is_empty() {
                bail!("--holdout {frac} of the {n} examples of {} leaves {} to train on and {} held out: both must be at least 1", cfg.train_file.display(), tr.len(), ho.len());
            }
            eprintln!(
                "holdout: {} train / {} held-out examples of the training file (dev untouched)",
                tr.len(),
                ho.len()
            );
            (tr, Some(ho))
        }
        None => {
            let dev = match &cfg.dev_file {
                Some(f) => Some(read_examples(f, &cfg.task, true)?),
                None => None,
            };
            (all_train, dev)
        }
    };
    if let Some(n) = cfg.train_limit {
        train_ex.truncate(n);
    }
    let train_ds = Dataset::build(&train_ex, &tokenizer, cfg.max_len, &labels)?;
    let dev_ds = match dev_ex {
        Some(mut ex) => {
            if let Some(n) = cfg.dev_limit {
                ex.truncate(n);
            }
            Some(Dataset::build(&ex, &tokenizer, cfg.max_len, &labels)?)
        }
        None => None,
    };
    let host = HostParams::load_dir(
        &cfg.model_dir,
        labels.len(),
        HeadInit { seed: cfg.head_seed, replace_mismatched_classifier: true },
    )?;
    if cfg.max_len > host.config.max_position_embeddings {
        bail!(
            "--max-len {} exceeds the model's max_position_embeddings {}",
            cfg.max_len,
            host.config.max_position_embeddings
        );
    }
    let label_file = match &label_source {
        LabelSource::Explicit(p) | LabelSource::BesideTrain(p) => Some(FileIdentity::of(p)?),
        LabelSource::TrainFile(_) => None,
    };
    let run_files = RunFiles {
        model: model_files(&cfg.model_dir).iter().map(|p| FileIdentity::of(p)).collect::<Result<_>>()?,
        train: FileIdentity::of(&cfg.train_file)?,
        dev: match (&cfg.dev_file, cfg.holdout) {
            (Some(f), None) => Some(FileIdentity::of(f)?),
            _ => None,
        },
        labels: label_file,
    };

    // Where the run starts: a previous run in the output directory is resumed, replaced, or an error.
    let out = &cfg.output_dir;
    let resume_dir = match &opts.resume {
        Resume::No => {
            let prev = previous_run(out);
            if !prev.is_empty() {
                if !opts.overwrite {
                    bail!("{}: already holds a run ({}); continue it with --resume {} (or --resume auto), or replace it with --overwrite", out.display(), prev.join(", "), out.display());
                }
                clear_previous_run(out)?;
            }
            None
        }
        Resume::Auto if out.join(METRICS_FILE).is_file() => return finished_report(out, cfg, &run_files),
        Resume::Auto => match state::latest(out) {
            Some(d) => Some(d),
            None => {
                if !previous_run(out).is_empty() {
                    clear_previous_run(out)?;
                }
                eprintln!("--resume auto: no training state in {}; starting a new run", out.display());
                None
            }
        },
        Resume::From(d) => {
            if state::is_state_dir(d) {
                Some(d.clone())
            } else if d.join(METRICS_FILE).is_file() {
                return finished_report(d, cfg, &run_files);
            } else {
                match state::latest(d) {
                    Some(s) => Some(s),
                    None => bail!(
                        "--resume {}: no training state found (expected {}/step-N/ with a valid manifest)",
                        d.display(),
                        d.join(state::CHECKPOINTS_DIR).display()
                    ),
                }
            }
        }
    };
    let removed = files::remove_stale_temporaries(out);
    let removed = [removed, files::remove_stale_temporaries(&out.join(state::CHECKPOINTS_DIR))].concat();
    if !removed.is_empty() {
        eprintln!("removed {} temporary file(s) of an interrupted save in {}", removed.len(), out.display());
    }

    if !host.initialised.is_empty() && resume_dir.is_none() {
        eprintln!("initialised from head seed {}: {}", cfg.head_seed, host.initialised.join(", "));
    }
    eprintln!("labels: {} ({})", labels.len(), label_source);
    let mut enc = Encoder::from_host(b, &host);
    let n_layers = host.config.num_hidden_layers;
    let dropout = Dropout {
        hidden: cfg.hidden_dropout,
        attention: cfg.attention_dropout.unwrap_or(host.config.attention_probs_dropout_prob),
    };
    let optim = AdamWConfig {
        weight_decay: cfg.weight_decay,
        max_grad_norm: Some(cfg.max_grad_norm),
        ..AdamWConfig::default()
    };
    let mut stepper = TrainStep::new(b, &enc, cfg.recipe, dropout, optim, cfg.seed);
    if let Some(rate) = cfg.recipe.layer_decay {
        eprint!("{}", layer_decay::table(n_layers, rate));
    }
    let steps_per_epoch = train_ds.len().div_ceil(cfg.batch_size) as u64;
    let total_steps = cfg.max_steps.unwrap_or(steps_per_epoch * cfg.epochs as u64);
    let schedule = LinearSchedule::with_ratio(total_steps, cfg.warmup_ratio);
    let pad = tokenizer.pad_id();

    let mut p = Progress::default();
    if let Some(dir) = &resume_dir {
        let st = state::load(dir, &enc.specs)?;
        check_resumable(cfg, &run_files, &labels, &st.meta, dir)?;
        if st.meta.simd_class != simd_class() && b.name().starts_with("cpu") {
            eprintln!("warning: {} was computed on a {} host and this one is {}: the resumed run is not bit-identical to an uninterrupted one on either", dir.display(), st.meta.simd_class, simd_class());
        }
        enc.params = st.params.iter().map(|v| b.upload(v)).collect();
        stepper.opt.m = st.adam_m.iter().map(|v| b.upload(v)).collect();
        stepper.opt.v = st.adam_v.iter().map(|v| b.upload(v)).collect();
        stepper.opt.steps_done = st.meta.optimizer_steps;
        p = st.meta.progress;
        p.resumed_at.push(p.step);
        eprintln!("resuming from {} (update {} of {})", dir.display(), p.step, total_steps);
    }
    eprintln!(
        "{}: {} train / {} dev examples, {} labels, {} steps ({} per epoch), lr {:e}, batch {}, strategies [{}], {} parameters on {}",
        cfg.task.name,
        train_ds.len(),
        dev_ds.as_ref().map_or(0, |d| d.len()),
        labels.len(),
        total_steps,
        steps_per_epoch,
        cfg.lr,
        cfg.batch_size,
        cfg.recipe.strategies().iter().map(|s| s.name()).collect::<Vec<_>>().join(", "),
        enc.num_parameters(),
        b.name()
    );

    let run_eval = |enc: &Encoder<B>, p: &mut Progress| {
        if let Some(dev) = &dev_ds {
            let t = Instant::now();
            let pb = progress(dev.len() as u64, "eval ");
            let m = evaluate(b, enc, dev, 64, pad, |n| pb.inc(n as u64));
            pb.finish_and_clear();
            p.eval_seconds += t.elapsed().as_secs_f64();
            let epoch = p.step as f64 / steps_per_epoch as f64;
            eprintln!(
                "step {} epoch {epoch:.2}: dev accuracy {:.4} macro-F1 {:.4} loss {:.4}",
                p.step, m.accuracy, m.macro_f1, m.loss
            );
            p.history.push(EvalRecord { step: p.step, epoch, dev: m });
        }
    };
    let save_state = |enc: &Encoder<B>, opt: &AdamW<B>, p: &Progress| -> Result<PathBuf> {
        let meta = StateMeta {
            format: 1,
            progress: p.clone(),
            epoch: p.step / steps_per_epoch,
            batch_in_epoch: p.step % steps_per_epoch,
            steps_per_epoch,
            total_steps,
            optimizer_steps: opt.steps_done,
            config: cfg.clone(),
            files: run_files.clone(),
            labels: labels.clone(),
            backend: b.name(),
            simd_class: simd_class().into(),
        };
        let down = |bufs: &[B::Buf]| bufs.iter().map(|x| b.download(x)).collect::<Vec<_>>();
        state::save(out, &enc.specs, &down(&enc.params), &down(&opt.m), &down(&opt.v), &meta, cfg.save_total_limit)
    };
    // Without a terminal the bar is hidden: log a line every tenth of an epoch instead.
    let log_every = if std::io::stderr().is_terminal() { u64::MAX } else { steps_per_epoch.div_ceil(10).max(1) };
    let stop_signal = || opts.stop.as_ref().map_or(0, |s| s.load(Ordering::SeqCst));
    let mut order: Option<(u64, Vec<Vec<usize>>)> = None;
    let mut pb = ProgressBar::hidden();
    let mut last_saved = None;
    // The rate shown while training: this epoch's steps run by this process (the cumulative one in the
    // metrics also counts earlier, resumed segments and whatever slowed them).
    let mut rate_window = (0usize, 0.0f64);
    while p.step < total_steps {
        let epoch = p.step / steps_per_epoch;
        let pos = (p.step % steps_per_epoch) as usize;
        if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            order = Some((
                epoch,
                train_ds.batches(cfg.batch_size, Some(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch))),
            ));
            pb = progress(steps_per_epoch, &format!("epoch {}", epoch + 1));
            pb.set_position(pos as u64);
        }
        if pos == 0 {
            (p.epoch_loss_sum, p.epoch_examples, p.epoch_correct) = (0.0, 0, 0);
            rate_window = (0, 0.0);
        }
        let idx = &order.as_ref().expect("set above").1[pos];
        let step = p.step;
        let t = Instant::now();
        let batch = train_ds.collate(idx, pad);
        let tokens = tokens_of(&batch);
        let y = batch.labels.as_ref().expect("training data is labelled");
        let lr = cfg.lr * schedule.factor(step);
        let rep = stepper.run(b, &mut enc, LabelledBatch { tokens: &tokens, labels: y }, step, lr)?;
        p.step += 1;
        let seconds = t.elapsed().as_secs_f64();
        p.train_seconds += seconds;
        p.samples += batch.batch;
        rate_window = (rate_window.0 + batch.batch, rate_window.1 + seconds);
        p.epoch_loss_sum += rep.loss * batch.batch as f64;
        p.epoch_examples += batch.batch;
        p.epoch_correct += rep.correct;
        state::kill_point(&format!("step:{}", p.step));
        pb.inc(1);
        let line = format!(
            "loss {:.4} acc {:.3} lr {:.2e} {:.1} ex/s",
            p.epoch_loss_sum / p.epoch_examples as f64,
            p.epoch_correct as f64 / p.epoch_examples as f64,
            lr,
            rate_window.0 as f64 / rate_window.1.max(1e-9)
        );
        if p.step % log_every == 0 {
            eprintln!("step {}/{} epoch {}: {line}", p.step, total_steps, epoch + 1);
        }
        pb.set_message(line);
        let epoch_end = p.step % steps_per_epoch == 0;
        if let Some(every) = cfg.eval_every {
            if p.step % every == 0 && !epoch_end {
                run_eval(&enc, &mut p);
            }
        }
        if epoch_end {
            pb.finish_and_clear();
            p.last_epoch_loss = p.epoch_loss_sum / p.epoch_examples.max(1) as f64;
            eprintln!(
                "epoch {}: train loss {:.4} accuracy {:.4} ({:.1} examples/s)",
                epoch + 1,
                p.last_epoch_loss,
                p.epoch_correct as f64 / p.epoch_examples.max(1) as f64,
                rate_window.0 as f64 / rate_window.1.max(1e-9)
            );
            run_eval(&enc, &mut p);
        }
        let due = match cfg.save_every {
            None => epoch_end,
            Some(0) => false,
            Some(n) => p.step % n == 0,
        };
        if due {
            last_saved = Some((p.step, save_state(&enc, &stepper.opt, &p)?));
        }
        let signal = stop_signal();
        if signal != 0 {
            pb.finish_and_clear();
            let checkpoint = match &last_saved {
                Some((s, d)) if *s == p.step => d.clone(),
                _ => save_state(&enc, &stepper.opt, &p)?,
            };
            return Err(Interrupted { signal, step: p.step, checkpoint }.into());
        }
    }
    pb.finish_and_clear();
    if p.history.last().is_none_or(|h| h.step != p.step) {
        run_eval(&enc, &mut p);
    }
    let final_params = enc.to_host(b);
    let best = p.history.iter().max_by(|a, b| a.dev.accuracy.total_cmp(&b.dev.accuracy)).cloned();
    let report = TrainReport {
        task: cfg.task.name.clone(),
        strategies: cfg.recipe.strategies(),
        recipe: cfg.recipe,
        seed: cfg.seed,
        head_seed: cfg.head_seed,
        lr: cfg.lr,
        device: b.name(),
        simd_class: simd_class().into(),
        train_examples: train_ds.len(),
        dev_examples: dev_ds.as_ref().map_or(0, |d| d.len()),
        steps: p.step,
        final_dev: p.history.last().map(|h| h.dev),
        best_dev: best,
        history: p.history.clone(),
        train_loss_last_epoch: p.last_epoch_loss,
        train_seconds: p.train_seconds,
        seconds_per_step: p.train_seconds / p.step.max(1) as f64,
        samples_per_second: p.samples as f64 / p.train_seconds.max(1e-9),
        eval_seconds: p.eval_seconds,
        peak_host_bytes: peak_rss_bytes(),
        peak_device_bytes: Some(b.peak_bytes() as u64).filter(|&x| x > 0),
        final_weights_blake3: weights_blake3(&final_params.values),
        resumed_at: p.resumed_at.clone(),
        config: cfg.clone(),
        files: run_files.clone(),
    };
    if cfg.save {
        let meta = CheckpointMeta {
            format: 1,
            task: cfg.task.clone(),
            labels: labels.clone(),
            max_len: cfg.max_len,
            base_model: cfg.model_dir.display().to_string(),
            train_config: serde_json::to_value(cfg)?,
            steps: p.step,
            epochs_done: p.step as f64 / steps_per_epoch as f64,
            report: serde_json::to_value(&report)?,
        };
        checkpoint::save(out, &final_params, &meta, &cfg.model_dir)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the output directory", out.display()))?;
    write_atomic(&out.join(METRICS_FILE), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}

/// blake3 of the f32 parameters in order (little-endian bits): equal iff the weights are bit-identical.
pub fn weights_blake3(values: &[Vec<f32>]) -> String {
    let mut h = blake3::Hasher::new();
    for v in values {
        h.update(bytemuck::cast_slice(v));
    }
    h.finalize().to_hex().to_string()
}

/// Refuse to resume when what the state was computed from differs from this run, naming what differs.
fn check_resumable(cfg: &TrainConfig, files: &RunFiles, labels: &LabelSet, st: &StateMeta, dir: &Path) -> Result<()> {
    if let Some((field, now, then)) = cfg.resume_mismatch(&st.config) {
        bail!(
            "--resume {}: this run's {} is {now} but the checkpoint was trained with {then} (field `{field}`); rerun with the original flags, or start afresh with --overwrite",
            dir.display(),
            crate::config::flag_of(&field)
        );
    }
    let same = |what: &str, now: Option<&FileIdentity>, then: Option<&FileIdentity>| -> Result<()> {
        match (now, then) {
            (Some(a), Some(b)) if a.same_content(b) => Ok(()),
            (None, None) => Ok(()),
            (a, b) => bail!(
                "--resume {}: the {what} differs from the one the run started from ({} vs recorded {})",
                dir.display(),
                a.map_or("none".into(), |f| format!(
                    "{}, {} bytes, blake3 {}",
                    f.path.display(),
                    f.size,
                    &f.blake3[..16]
                )),
                b.map_or("none".into(), |f| format!(
                    "{}, {} bytes, blake3 {}",
                    f.path.display(),
                    f.size,
                    &f.blake3[..16]
                ))
            ),
        }
    };
    same("training file", Some(&files.train), Some(&st.files.train))?;
    same("dev file", files.dev.as_ref(), st.files.dev.as_ref())?;
    same("label file", files.labels.as_ref(), st.files.labels.as_ref())?;
    let names = |v: &[FileIdentity]| {
        v.iter().map(|f| f.path.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect::<Vec<_>>()
    };
    if names(&files.model) != names(&st.files.model) {
        bail!(
            "--resume {}: the model directory's files differ ({:?} vs recorded {:?})",
            dir.display(),
            names(&files.model),
            names(&st.files.model)
        );
    }
    for (a, b) in files.model.iter().zip(&st.files.model) {
        same(&format!("model file {}", a.path.file_name().unwrap_or_default().to_string_lossy()), Some(a), Some(b))?;
    }
    if labels.labels() != st.labels.labels() {
        bail!("--resume {}: the label list differs from the one the run started with", dir.display());
    }
    Ok(())
}

/// A finished run found where a resumption was asked for: its report, if it is the same run.
fn finished_report(dir: &Path, cfg: &TrainConfig, files: &RunFiles) -> Result<TrainReport> {
    let path = dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let report: TrainReport = serde_json::from_str(&text)
        .with_context(|| format!("{}: not the metrics of a finished ernie-ft run", path.display()))?;
    if let Some((field, now, then)) = cfg.resume_mismatch(&report.config) {
        bail!("{}: holds a finished run trained with {} = {then}, not {now} (field `{field}`); use another --output-dir, or --overwrite", dir.display(), crate::config::flag_of(&field));
    }
    if !files.train.same_content(&report.files.train) {
        bail!(
            "{}: holds a finished run trained on another training file; use another --output-dir, or --overwrite",
            dir.display()
        );
    }
    eprintln!("{}: the run is already finished ({} updates); nothing to do", dir.display(), report.steps);
    Ok(report)
}

/// What a run directory holds (for the final message): only files that exist.
pub fn describe_output(dir: &Path) -> String {
    let mut what: Vec<String> = [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        checkpoint::META_FILE,
        files::MANIFEST_FILE,
        METRICS_FILE,
    ]
    .iter()
    .filter(|f| dir.join(f).is_file())
    .map(|f| f.to_string())
    .collect();
    let states = std::fs::read_dir(dir.join(state::CHECKPOINTS_DIR))
        .map(|r| r.flatten().filter(|e| !files::is_temporary(&e.file_name().to_string_lossy())).count())
        .unwrap_or(0);
    if states > 0 {
        what.push(format!(
            "{}/ ({states} training state{})",
            state::CHECKPOINTS_DIR,
            if states == 1 { "" } else { "s" }
        ));
    }
    format!("{} ({})", dir.display(), what.join(", "))
}
