//! The fine-tuning loop: data, model, optimizer and strategies put together.

use crate::checkpoint::{self, CheckpointMeta, METRICS_FILE};
use crate::config::TrainConfig;
use crate::eval::{evaluate, tokens_of};
use crate::memory::peak_rss_bytes;
use crate::metrics::Metrics;
use anyhow::{bail, Context, Result};
use ernie_data::{read_examples, Dataset, LabelSet, TextTokenizer};
use ernie_model::{write_atomic, Encoder, HeadInit, HostParams};
use ernie_optim::{AdamW, AdamWConfig, LinearSchedule};
use ernie_strategies::{compute_gradients, layer_decay, Dropout};
use ernie_tensor::{Backend, RngStream};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::Path;
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
    pub strategies: Vec<String>,
    /// The loss-changing strategies' settings and the layer-decay rate.
    pub recipe: ernie_strategies::Recipe,
    pub layer_decay: Option<f64>,
    pub seed: u64,
    pub head_seed: u64,
    pub lr: f64,
    pub device: String,
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
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}] {{msg}}")).unwrap());
    pb
}

/// The strategy names of a configuration, for reports.
pub fn strategy_names(cfg: &TrainConfig) -> Vec<String> {
    let mut v = vec![];
    if cfg.recipe.adv.is_some() {
        v.push("adv".into());
    }
    if cfg.recipe.rdrop.is_some() {
        v.push("rdrop".into());
    }
    if cfg.layer_decay.is_some() {
        v.push("layer-decay".into());
    }
    v
}

/// The label list: an explicit file, the task's labels file beside the train file, or the train file.
pub fn label_set(cfg: &TrainConfig, train: &[ernie_data::Example]) -> Result<LabelSet> {
    if let Some(f) = &cfg.labels_file {
        return Ok(LabelSet::from_file(f, cfg.task.label_key.as_deref().unwrap_or("label"))?);
    }
    if let Some(p) = cfg.train_file.parent().and_then(|d| cfg.task.labels_path(d)) {
        if p.is_file() {
            return Ok(LabelSet::from_file(&p, cfg.task.label_key.as_deref().unwrap_or("label"))?);
        }
    }
    Ok(LabelSet::from_examples(train)?)
}

/// Fine-tune on `b`. Writes `metrics.json` (and the checkpoint when `cfg.save`) into `cfg.output_dir`.
pub fn train<B: Backend>(b: &B, cfg: &TrainConfig) -> Result<TrainReport> {
    if cfg.batch_size == 0 || cfg.epochs == 0 && cfg.max_steps.is_none() {
        bail!("batch size and epochs must be positive");
    }
    std::fs::create_dir_all(&cfg.output_dir).with_context(|| format!("{}: cannot create the output directory", cfg.output_dir.display()))?;
    let tokenizer = TextTokenizer::from_dir(&cfg.model_dir)?;
    let mut train_ex = read_examples(&cfg.train_file, &cfg.task, true)?;
    let labels = label_set(cfg, &train_ex)?;
    if let Some(n) = cfg.train_limit {
        train_ex.truncate(n);
    }
    let train_ds = Dataset::build(&train_ex, &tokenizer, cfg.max_len, &labels)?;
    let dev_ds = match &cfg.dev_file {
        Some(f) => {
            let mut ex = read_examples(f, &cfg.task, true)?;
            if let Some(n) = cfg.dev_limit {
                ex.truncate(n);
            }
            Some(Dataset::build(&ex, &tokenizer, cfg.max_len, &labels)?)
        }
        None => None,
    };
    let host = HostParams::load_dir(&cfg.model_dir, labels.len(), HeadInit { seed: cfg.head_seed, replace_mismatched_classifier: true })?;
    if cfg.max_len > host.config.max_position_embeddings {
        bail!("--max-len {} exceeds the model's max_position_embeddings {}", cfg.max_len, host.config.max_position_embeddings);
    }
    if !host.initialised.is_empty() {
        eprintln!("initialised from head seed {}: {}", cfg.head_seed, host.initialised.join(", "));
    }
    let mut enc = Encoder::from_host(b, &host);
    let n_layers = host.config.num_hidden_layers;
    let sizes: Vec<usize> = enc.specs.iter().map(|s| s.numel()).collect();
    let decay = enc.specs.iter().map(|s| s.weight_decay()).collect();
    let opt_cfg = AdamWConfig { lr: cfg.lr, weight_decay: cfg.weight_decay, max_grad_norm: Some(cfg.max_grad_norm), ..AdamWConfig::default() };
    let mut opt = AdamW::new(b, opt_cfg, &sizes, decay);
    if let Some(rate) = cfg.layer_decay {
        opt.lr_mult = layer_decay::multipliers(&enc.specs, n_layers, rate);
        eprint!("{}", layer_decay::table(n_layers, rate));
    }
    let steps_per_epoch = train_ds.len().div_ceil(cfg.batch_size) as u64;
    let total_steps = cfg.max_steps.unwrap_or(steps_per_epoch * cfg.epochs as u64);
    let schedule = LinearSchedule::with_ratio(total_steps, cfg.warmup_ratio);
    let dropout = Dropout { hidden: cfg.hidden_dropout, attention: cfg.attention_dropout.unwrap_or(host.config.attention_probs_dropout_prob) };
    let pad = tokenizer.pad_id();
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
        strategy_names(cfg).join(", "),
        enc.num_parameters(),
        b.name()
    );

    let mut grads = enc.zero_grads(b);
    let mut history = Vec::new();
    let (mut step, mut train_secs, mut eval_secs, mut samples) = (0u64, 0.0f64, 0.0f64, 0usize);
    let mut last_epoch_loss = 0.0;
    let run_eval = |enc: &Encoder<B>, step: u64, epoch: f64, eval_secs: &mut f64, history: &mut Vec<EvalRecord>| {
        if let Some(dev) = &dev_ds {
            let t = Instant::now();
            let pb = progress(dev.len() as u64, "eval ");
            let m = evaluate(b, enc, dev, 64, pad, |n| pb.inc(n as u64));
            pb.finish_and_clear();
            *eval_secs += t.elapsed().as_secs_f64();
            eprintln!("step {step} epoch {epoch:.2}: dev accuracy {:.4} macro-F1 {:.4} loss {:.4}", m.accuracy, m.macro_f1, m.loss);
            history.push(EvalRecord { step, epoch, dev: m });
        }
    };
    let epochs = if cfg.max_steps.is_some() { usize::MAX } else { cfg.epochs };
    'outer: for epoch in 0..epochs {
        let order = train_ds.batches(cfg.batch_size, Some(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)));
        let pb = progress(order.len() as u64, &format!("epoch {}", epoch + 1));
        let (mut loss_sum, mut n, mut correct) = (0.0, 0usize, 0usize);
        for idx in order {
            if step >= total_steps {
                pb.finish_and_clear();
                break 'outer;
            }
            let t = Instant::now();
            let batch = train_ds.collate(&idx, pad);
            let tokens = tokens_of(&batch);
            let y = batch.labels.as_ref().expect("training data is labelled");
            grads.zero(b);
            let rep = compute_gradients(b, &enc, &mut grads, &tokens, y, &cfg.recipe, dropout, RngStream::new(cfg.seed, step));
            if !rep.loss.is_finite() {
                bail!("the loss became {} at step {step}: lower the learning rate", rep.loss);
            }
            let lr = cfg.lr * schedule.factor(step);
            opt.step(b, &mut enc.params, &grads.bufs, lr);
            step += 1;
            train_secs += t.elapsed().as_secs_f64();
            samples += batch.batch;
            loss_sum += rep.loss * batch.batch as f64;
            n += batch.batch;
            correct += rep.correct;
            pb.inc(1);
            pb.set_message(format!("loss {:.4} acc {:.3} lr {:.2e} {:.1} ex/s", loss_sum / n as f64, correct as f64 / n as f64, lr, samples as f64 / train_secs));
            if let Some(every) = cfg.eval_every {
                if step % every == 0 && step % steps_per_epoch != 0 {
                    run_eval(&enc, step, step as f64 / steps_per_epoch as f64, &mut eval_secs, &mut history);
                }
            }
        }
        pb.finish_and_clear();
        last_epoch_loss = loss_sum / n.max(1) as f64;
        eprintln!("epoch {}: train loss {:.4} accuracy {:.4} ({:.1} examples/s)", epoch + 1, last_epoch_loss, correct as f64 / n.max(1) as f64, samples as f64 / train_secs.max(1e-9));
        run_eval(&enc, step, step as f64 / steps_per_epoch as f64, &mut eval_secs, &mut history);
    }
    if history.last().is_none_or(|h| h.step != step) {
        run_eval(&enc, step, step as f64 / steps_per_epoch as f64, &mut eval_secs, &mut history);
    }
    let best = history.iter().max_by(|a, b| a.dev.accuracy.total_cmp(&b.dev.accuracy)).cloned();
    let report = TrainReport {
        task: cfg.task.name.clone(),
        strategies: strategy_names(cfg),
        recipe: cfg.recipe,
        layer_decay: cfg.layer_decay,
        seed: cfg.seed,
        head_seed: cfg.head_seed,
        lr: cfg.lr,
        device: b.name(),
        train_examples: train_ds.len(),
        dev_examples: dev_ds.as_ref().map_or(0, |d| d.len()),
        steps: step,
        final_dev: history.last().map(|h| h.dev),
        best_dev: best,
        history,
        train_loss_last_epoch: last_epoch_loss,
        train_seconds: train_secs,
        seconds_per_step: train_secs / step.max(1) as f64,
        samples_per_second: samples as f64 / train_secs.max(1e-9),
        eval_seconds: eval_secs,
        peak_host_bytes: peak_rss_bytes(),
        peak_device_bytes: Some(b.peak_bytes() as u64).filter(|&x| x > 0),
    };
    if cfg.save {
        let meta = CheckpointMeta {
            format: 1,
            task: cfg.task.clone(),
            labels: labels.clone(),
            max_len: cfg.max_len,
            base_model: cfg.model_dir.display().to_string(),
            train_config: serde_json::to_value(cfg)?,
            steps: step,
            epochs_done: step as f64 / steps_per_epoch as f64,
            report: serde_json::to_value(&report)?,
        };
        checkpoint::save(&cfg.output_dir, &enc.to_host(b), &meta, &cfg.model_dir)?;
    }
    write_atomic(&cfg.output_dir.join(METRICS_FILE), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}

/// Where a checkpoint's files go (for messages).
pub fn describe_output(dir: &Path) -> String {
    format!("{} (model.safetensors, config.json, tokenizer, {}, {METRICS_FILE})", dir.display(), checkpoint::META_FILE)
}
