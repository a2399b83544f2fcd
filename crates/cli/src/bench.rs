//! `bench`: time training steps (or inference) on random weights of a named model shape, and print one JSON
//! line: median step time, samples/s, peak memory, model FLOPs per step, achieved TFLOP/s and MFU.
//!
//! A training step is what `ernie-ft train` runs per batch: `ernie_strategies::compute_gradients` with the
//! chosen strategy (dropout on), then `ernie_optim::AdamW::step` (weight decay 0.01 except biases and
//! LayerNorm, gradient clipping at 1.0). Inputs are random ids with an all-ones mask (no padding), so every
//! row has `--seq` real tokens. Each step is followed by a device synchronisation, then timed; the first
//! `--warmup` steps are reported apart and left out of the median.
//!
//! # Model FLOPs
//!
//! Only matrix products are counted (embedding lookups, LayerNorm, softmax, GELU, dropout and the optimizer
//! are not), for `R` rows of `S` tokens, `L` layers, hidden `H`, FFN `I`, `C` labels:
//!
//! * `lin(R) = 2*R*S*L*(4*H^2 + 2*H*I) + 2*R*(H^2 + H*C)`: the Q, K, V, attention-output and two FFN
//!   projections of every token, plus pooler and classifier on the first token of each row;
//! * `att(R) = 4*R*L*S^2*H`: `Q K^T` and `P V`;
//! * a forward is `lin + att`; a full backward twice that (input and weight gradients; the four attention
//!   products); a backward without weight gradients `lin + 2*att` (input gradients only; attention has no
//!   weights, so all four of its products remain).
//!
//! Per step, with batch `B`:
//!
//! | mode / strategy | passes | FLOPs |
//! |---|---|---|
//! | `infer` | 1 forward | `lin(B) + att(B)` |
//! | `train`, `base` | forward + backward | `3*(lin(B) + att(B))` = `6*P*tokens + 12*L*B*S^2*H` (+ head) |
//! | `train`, `rdrop` | forward + backward of the doubled batch | `3*(lin(2B) + att(2B))` |
//! | `train`, `adv` | 3 forwards, 1 probe backward without weight gradients, 2 full backwards | `8*lin(B) + 9*att(B)` |
//!
//! `P` here is the number of weights in the per-token matrix products (`L*(4*H^2 + 2*H*I)`). samples/s
//! counts the `B` examples of the batch (not `2B` under R-Drop). MFU = achieved FLOP/s / `--peak-tflops`.
//! `scripts/gpu/bench_speed_torch.py` counts with the same formula.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ernie_backend::{Backend, RngStream};
use ernie_model::{Encoder, HostParams, ModelConfig, Tokens};
use ernie_optim::AdamWConfig;
use ernie_strategies::{AdvConfig, Dropout, LabelledBatch, RDropConfig, Recipe, Strategy};
use ernie_train::TrainStep;
use rayon::prelude::*;
use serde_json::json;

use crate::common::{positive, Device, DeviceArgs, PrecisionArg};

/// A named model shape (random weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// multilingual-e5-small as pruned for ernie-ft: 12 layers, hidden 384, 12 heads, FFN 1536, vocab 21356
    #[value(name = "e5-small")]
    E5Small,
    /// ERNIE 3.0 base: 12 layers, hidden 768, 12 heads, FFN 3072, vocab 40000, task-type embeddings
    #[value(name = "ernie-base")]
    ErnieBase,
    /// A tiny model for tests: 2 layers, hidden 32, 4 heads, FFN 64, vocab 1000
    Tiny,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::E5Small => "e5-small",
            Shape::ErnieBase => "ernie-base",
            Shape::Tiny => "tiny",
        }
    }

    /// The model config of the shape (dropout probabilities are set per run, not here).
    pub fn config(self) -> ModelConfig {
        let json = match self {
            Shape::E5Small => {
                r#"{"model_type": "bert", "vocab_size": 21356, "hidden_size": 384, "num_hidden_layers": 12,
                "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2}"#
            }
            Shape::ErnieBase => {
                r#"{"model_type": "ernie", "vocab_size": 40000, "hidden_size": 768, "num_hidden_layers": 12,
                "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 4,
                "use_task_id": true, "task_type_vocab_size": 3}"#
            }
            Shape::Tiny => {
                r#"{"model_type": "bert", "vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 512, "type_vocab_size": 2}"#
            }
        };
        ModelConfig::from_json(json).expect("built-in shapes are valid")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchStrategy {
    /// Plain fine-tuning: one forward, one backward
    Base,
    /// Attention-score noise: 3 forwards, a probe backward without weight gradients, 2 full backwards
    Adv,
    /// R-Drop: forward and backward of the doubled batch
    Rdrop,
}

impl BenchStrategy {
    pub fn name(self) -> &'static str {
        match self {
            BenchStrategy::Base => "base",
            BenchStrategy::Adv => Strategy::Adv.name(),
            BenchStrategy::Rdrop => Strategy::Rdrop.name(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Forward + backward + AdamW
    Train,
    /// Evaluation forward only (no dropout)
    Infer,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model shape (random weights)
    #[arg(long, value_enum, default_value_t = Shape::E5Small)]
    pub shape: Shape,
    /// Examples per step
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch: usize,
    /// Tokens per example (all real: no padding)
    #[arg(long, default_value_t = 128, value_parser = positive)]
    pub seq: usize,
    #[arg(long, value_enum, default_value_t = BenchStrategy::Base)]
    pub strategy: BenchStrategy,
    #[arg(long, value_enum, default_value_t = BenchMode::Train)]
    pub mode: BenchMode,
    /// Untimed steps first (reported apart)
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps (the median is reported)
    #[arg(long, default_value_t = 10, value_parser = positive)]
    pub steps: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Classifier labels
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub labels: usize,
    /// Peak dense TFLOP/s of the device for MFU [default: 989 (H100/H200 bf16 dense) with --device cuda, else no MFU]
    #[arg(long, value_name = "TFLOPS")]
    pub peak_tflops: Option<f64>,
    /// Hidden dropout of the training forwards
    #[arg(long, default_value_t = 0.1)]
    pub hidden_dropout: f32,
    /// Attention-probability dropout of the training forwards
    #[arg(long, default_value_t = 0.1)]
    pub attention_dropout: f32,
    /// Seed of the weights, inputs and dropout
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Peak bf16 dense TFLOP/s of an H100 SXM (and H200): the `--peak-tflops` default with `--device cuda`.
pub const H100_BF16_DENSE_TFLOPS: f64 = 989.0;

/// Model FLOPs of one step (see the module docs for the formula).
pub fn step_flops(
    cfg: &ModelConfig,
    labels: usize,
    batch: usize,
    seq: usize,
    strategy: BenchStrategy,
    mode: BenchMode,
) -> f64 {
    let (l, h, i, c) =
        (cfg.num_hidden_layers as f64, cfg.hidden_size as f64, cfg.intermediate_size as f64, labels as f64);
    let s = seq as f64;
    let lin = |rows: f64| 2.0 * rows * s * l * (4.0 * h * h + 2.0 * h * i) + 2.0 * rows * (h * h + h * c);
    let att = |rows: f64| 4.0 * rows * l * s * s * h;
    let b = batch as f64;
    match (mode, strategy) {
        (BenchMode::Infer, _) => lin(b) + att(b),
        (BenchMode::Train, BenchStrategy::Base) => 3.0 * (lin(b) + att(b)),
        (BenchMode::Train, BenchStrategy::Rdrop) => 3.0 * (lin(2.0 * b) + att(2.0 * b)),
        (BenchMode::Train, BenchStrategy::Adv) => 8.0 * lin(b) + 9.0 * att(b),
    }
}

/// The formula in words, for the JSON output.
pub const FLOPS_FORMULA: &str = "matmuls only; lin(R)=2*R*S*L*(4H^2+2HI)+2*R*(H^2+HC), att(R)=4*R*L*S^2*H; \
infer: lin(B)+att(B); base: 3(lin(B)+att(B)); rdrop: 3(lin(2B)+att(2B)); adv: 8 lin(B)+9 att(B) \
(3 forwards, probe backward without weight grads = lin+2att, 2 full backwards)";

/// Random weights of `config`, drawn in parallel with the distribution of [`HostParams::random`]
/// (which draws them one at a time: seconds for a base-size model).
fn random_params(config: ModelConfig, num_labels: usize, seed: u64) -> HostParams {
    let (specs, _) = ernie_model::params::param_specs(&config, num_labels);
    let values = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let rng = RngStream::new(seed, 0x5EED_0000 + i as u64);
            let (scale, offset) = if s.name.contains("LayerNorm.weight") {
                (0.1, 1.0)
            } else if s.shape.len() == 1 {
                (0.1, 0.0)
            } else if s.name.contains("embeddings") {
                (1.0, 0.0)
            } else {
                (1.0 / (s.shape[1] as f32).sqrt(), 0.0)
            };
            (0..s.numel()).into_par_iter().map(|j| offset + scale * rng.normal(j as u64)).collect()
        })
        .collect();
    HostParams { config, num_labels, specs, values, initialised: vec![] }
}

/// What one benchmark measured (printed as JSON by [`run`]).
pub struct Measured {
    pub device: String,
    pub precision: &'static str,
    pub parameters: usize,
    pub setup_s: f64,
    pub warmup_s: Vec<f64>,
    pub step_s: Vec<f64>,
    pub peak_device_bytes: usize,
    pub forwards: usize,
    pub backwards: usize,
    pub last_loss: Option<f64>,
}

/// Runs the benchmark on backend `b`. `sync` waits for all work queued on the device (a no-op on the CPU);
/// it is called after every step, before the clock is read.
pub fn measure<B: Backend>(b: &B, a: &BenchArgs, precision: &'static str, sync: &dyn Fn()) -> Result<Measured> {
    let t0 = Instant::now();
    let mut config = a.shape.config();
    config.hidden_dropout_prob = a.hidden_dropout;
    config.attention_probs_dropout_prob = a.attention_dropout;
    if a.seq > config.max_position_embeddings {
        bail!(
            "--seq {} exceeds the {} shape's max_position_embeddings {}",
            a.seq,
            a.shape.name(),
            config.max_position_embeddings
        );
    }
    let host = random_params(config.clone(), a.labels, a.seed);
    let mut enc = Encoder::from_host(b, &host);
    let parameters = enc.num_parameters();
    drop(host);
    let (batch, seq) = (a.batch, a.seq);
    let r = RngStream::new(a.seed, 0xB3AC_0001);
    let n = batch * seq;
    let tokens = Tokens {
        batch,
        seq,
        ids: (0..n).map(|i| r.word(i as u64) % config.vocab_size as u32).collect(),
        type_ids: vec![0; n],
        task_ids: vec![],
        mask: vec![1; n],
    };
    enc.check_tokens(&tokens).map_err(anyhow::Error::msg)?;
    let labels: Vec<u32> = (0..batch).map(|i| r.word((1u64 << 40) | i as u64) % a.labels as u32).collect();
    let recipe = match a.strategy {
        BenchStrategy::Base => Recipe::default(),
        BenchStrategy::Adv => Recipe { adv: Some(AdvConfig::default()), ..Recipe::default() },
        BenchStrategy::Rdrop => Recipe { rdrop: Some(RDropConfig::default()), ..Recipe::default() },
    };
    let dropout = Dropout { hidden: a.hidden_dropout, attention: a.attention_dropout };
    let train = a.mode == BenchMode::Train;
    let mut stepper = if train {
        let optim = AdamWConfig { weight_decay: 0.01, max_grad_norm: Some(1.0), ..AdamWConfig::default() };
        Some(TrainStep::new(b, &enc, recipe, dropout, optim, a.seed))
    } else {
        None
    };
    sync();
    let setup_s = t0.elapsed().as_secs_f64();

    let (mut forwards, mut backwards, mut last_loss) = (1, 0, None);
    let mut step = |k: u64| -> Result<()> {
        match &mut stepper {
            Some(stepper) => {
                let batch = LabelledBatch { tokens: &tokens, labels: &labels };
                let rep = stepper.run(b, &mut enc, batch, k, 2e-5)?;
                (forwards, backwards, last_loss) = (rep.forwards, rep.backwards, Some(rep.loss));
            }
            None => {
                std::hint::black_box(enc.infer(b, &tokens).logits);
            }
        }
        sync();
        Ok(())
    };
    let mut timed = |k: u64| -> Result<f64> {
        let t = Instant::now();
        step(k)?;
        Ok(t.elapsed().as_secs_f64())
    };
    let warmup_s = (0..a.warmup as u64).map(&mut timed).collect::<Result<Vec<_>>>()?;
    let step_s = (a.warmup as u64..(a.warmup + a.steps) as u64).map(&mut timed).collect::<Result<Vec<_>>>()?;
    Ok(Measured {
        device: b.name(),
        precision,
        parameters,
        setup_s,
        warmup_s,
        step_s,
        peak_device_bytes: b.peak_bytes(),
        forwards,
        backwards: if train { backwards } else { 0 },
        last_loss,
    })
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// The JSON line of a measurement.
pub fn report(a: &BenchArgs, m: &Measured) -> serde_json::Value {
    let cfg = a.shape.config();
    let med = median(&m.step_s);
    let flops = step_flops(&cfg, a.labels, a.batch, a.seq, a.strategy, a.mode);
    let achieved = flops / med / 1e12;
    let peak_tflops = a.peak_tflops.or((a.device.device == Device::Cuda).then_some(H100_BF16_DENSE_TFLOPS));
    let (peak_bytes, source) = if m.peak_device_bytes > 0 {
        (Some(m.peak_device_bytes as u64), "device")
    } else {
        (ernie_train::memory::peak_rss_bytes(), "host_rss")
    };
    json!({
        "engine": "ernie-ft",
        "version": env!("CARGO_PKG_VERSION"),
        "device": m.device,
        "device_kind": match a.device.device { Device::Cpu => "cpu", Device::Cuda => "cuda" },
        "precision": m.precision,
        "threads": (a.device.device == Device::Cpu).then(rayon::current_num_threads),
        "shape": a.shape.name(),
        "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
        "heads": cfg.num_attention_heads,
        "ffn": cfg.intermediate_size,
        "vocab": cfg.vocab_size,
        "labels": a.labels,
        "parameters": m.parameters,
        "batch": a.batch,
        "seq": a.seq,
        "strategy": a.strategy.name(),
        "mode": match a.mode { BenchMode::Train => "train", BenchMode::Infer => "infer" },
        "forwards": m.forwards,
        "backwards": m.backwards,
        "warmup": a.warmup,
        "steps": a.steps,
        "setup_s": m.setup_s,
        "warmup_s": m.warmup_s,
        "step_s": m.step_s,
        "median_step_s": med,
        "min_step_s": m.step_s.iter().copied().fold(f64::INFINITY, f64::min),
        "samples_per_s": a.batch as f64 / med,
        "tokens_per_s": (a.batch * a.seq) as f64 / med,
        "peak_memory_bytes": peak_bytes,
        "peak_memory_source": source,
        "flops_per_step": flops,
        "flops_formula": FLOPS_FORMULA,
        "achieved_tflops": achieved,
        "peak_tflops": peak_tflops,
        "mfu": peak_tflops.map(|p| achieved / p),
        "last_loss": m.last_loss,
    })
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let m = match a.device.device {
        // The CPU backend computes in f32 whatever --precision says (that flag is for --device cuda).
        Device::Cpu => {
            let b = a.device.init_cpu()?;
            measure(&b, a, "f32", &|| {})?
        }
        // The CUDA backend (--gpu, --precision): synchronised after every step, so the step times are device
        // times; the peak memory is its allocator's high-water mark (Backend::peak_bytes).
        Device::Cuda => {
            let b = a.device.init_cuda()?;
            let precision = match a.device.precision {
                PrecisionArg::Bf16 => "bf16",
                PrecisionArg::F32 => "f32",
            };
            measure(&b, a, precision, &|| b.synchronize())?
        }
    };
    println!("{}", serde_json::to_string(&report(a, &m)).context("serialising the report")?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_match_the_6_n_t_rule_and_the_strategy_multiples() {
        let cfg = Shape::ErnieBase.config();
        let (b, s) = (32usize, 128usize);
        let base = step_flops(&cfg, 2, b, s, BenchStrategy::Base, BenchMode::Train);
        // 6 * (matmul weights) * tokens + 12 * L * B * S^2 * H, plus the head on B rows.
        let p = 12.0 * (4.0 * 768.0f64.powi(2) + 2.0 * 768.0 * 3072.0);
        let tokens = (b * s) as f64;
        let head = 6.0 * b as f64 * (768.0 * 768.0 + 768.0 * 2.0);
        let want = 6.0 * p * tokens + 12.0 * 12.0 * b as f64 * (s * s) as f64 * 768.0 + head;
        assert!((base - want).abs() / want < 1e-12, "{base} vs {want}");
        let infer = step_flops(&cfg, 2, b, s, BenchStrategy::Base, BenchMode::Infer);
        assert!((base / infer - 3.0).abs() < 1e-12);
        let rdrop = step_flops(&cfg, 2, b, s, BenchStrategy::Rdrop, BenchMode::Train);
        assert!((rdrop / base - 2.0).abs() < 1e-12);
        let adv = step_flops(&cfg, 2, b, s, BenchStrategy::Adv, BenchMode::Train);
        // Between 8/3 (no attention) and 9/3 (attention only) of the base step.
        assert!(adv / base > 8.0 / 3.0 && adv / base < 3.0, "{}", adv / base);
    }

    #[test]
    fn shapes_have_the_documented_sizes() {
        let e5 = Shape::E5Small.config();
        assert_eq!(
            (e5.num_hidden_layers, e5.hidden_size, e5.num_attention_heads, e5.intermediate_size, e5.vocab_size),
            (12, 384, 12, 1536, 21356)
        );
        let eb = Shape::ErnieBase.config();
        assert_eq!(
            (eb.hidden_size, eb.intermediate_size, eb.vocab_size, eb.type_vocab_size, eb.max_position_embeddings),
            (768, 3072, 40000, 4, 512)
        );
        assert!(eb.use_task_id && eb.task_type_vocab_size == 3);
        assert_eq!(eb.model_type, ernie_model::ModelType::Ernie);
    }

    #[test]
    fn parallel_random_weights_equal_host_params_random() {
        let cfg = Shape::Tiny.config();
        let a = random_params(cfg.clone(), 3, 7);
        let b = HostParams::random(cfg, 3, 7);
        assert_eq!(a.specs, b.specs);
        assert_eq!(a.values, b.values);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
