//! Flags and set-up shared by the subcommands: which model, how long the sequences, which device and how
//! many threads; loading the model with its tokenizer; the progress bar.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ernie_data::TextTokenizer;
use ernie_model::{HeadInit, HostParams};
use indicatif::{ProgressBar, ProgressStyle};

/// The model and how its inputs are cut.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory: config.json with model.safetensors or pytorch_model.bin, or PaddleNLP's
    /// model_state.pdparams with config.json / model_config.json; and tokenizer.json or vocab.txt
    /// [default: $ERNIE_FT_MODEL, else ../shared/models/e5-small-zh]
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,

    /// Maximum tokens per input, special tokens included; longer inputs (and pairs) are truncated
    /// longest-first. At most the model's max_position_embeddings
    /// [default: 128, or max_position_embeddings when smaller]
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_len: Option<usize>,
}

/// `--max-len` when not given.
pub const DEFAULT_MAX_LEN: usize = 128;

/// Where and how wide the computation runs.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Compute device
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,

    /// CPU threads [default: all cores]
    #[arg(long, value_name = "N", value_parser = positive)]
    pub threads: Option<usize>,

    /// Precision with --device cuda
    #[arg(long, value_enum, default_value_t = PrecisionArg::Bf16)]
    pub precision: PrecisionArg,

    /// GPU ordinal with --device cuda
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The CPU backend (f32, multi-threaded)
    Cpu,
    /// The CUDA backend (NVRTC kernels, cuBLASLt; needs an NVIDIA GPU and driver)
    Cuda,
}

/// Storage precision on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// bf16 activations and GEMM operands, fp32 master weights, optimizer state and accumulation
    Bf16,
    /// fp32 everywhere (parity with the CPU)
    F32,
}

/// Runs `$body` with `$b` bound to the backend `--device` selects (the body is compiled once per backend,
/// so it may call generic code).
#[macro_export]
macro_rules! with_backend {
    ($dev:expr, $b:ident => $body:expr) => {
        match $dev.device {
            $crate::common::Device::Cpu => {
                let $b = &$dev.init_cpu()?;
                $body
            }
            $crate::common::Device::Cuda => {
                let $b = &$dev.init_cuda()?;
                $body
            }
        }
    };
}

/// A value parser for counts that must be at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl DeviceArgs {
    /// The CPU backend; sizes the global thread pool. Call once, before any parallel work.
    pub fn init_cpu(&self) -> Result<ernie_tensor::Cpu<f32>> {
        if self.device != Device::Cpu {
            bail!("internal: init_cpu with --device {:?}", self.device);
        }
        self.init_threads()?;
        Ok(ernie_tensor::Cpu::<f32>::new())
    }

    /// The CUDA backend on GPU `--gpu` in `--precision`; a clear error (never a panic) without a GPU.
    pub fn init_cuda(&self) -> Result<ernie_cuda::CudaBackend> {
        self.init_threads()?;
        let precision = match self.precision {
            PrecisionArg::Bf16 => ernie_cuda::Precision::Bf16,
            PrecisionArg::F32 => ernie_cuda::Precision::F32,
        };
        let b = ernie_cuda::CudaBackend::with_precision(self.gpu, precision)
            .map_err(|e| anyhow::anyhow!("--device cuda: {e}; use --device cpu"))?;
        eprintln!(
            "CUDA device {}: {} (sm_{}{}), {:?}",
            self.gpu,
            b.device_name(),
            b.compute_capability().0,
            b.compute_capability().1,
            precision
        );
        Ok(b)
    }

    fn init_threads(&self) -> Result<()> {
        if let Some(n) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .with_context(|| format!("cannot start {n} threads"))?;
        }
        Ok(())
    }
}

/// A checkpoint with its tokenizer, loaded on the host.
pub struct LoadedModel {
    pub dir: PathBuf,
    pub host: HostParams,
    pub tokenizer: TextTokenizer,
    /// `--max-len`, checked against the model (or its default).
    pub max_len: usize,
}

impl LoadedModel {
    /// Resolves the model directory (flag, `$ERNIE_FT_MODEL`, `../shared/models/e5-small-zh`), loads config,
    /// weights and tokenizer, and checks `max_len` against the model's position table.
    ///
    /// `num_labels` is the head the caller needs (a checkpoint classifier of another size is an error);
    /// `None` means the head is unused (e.g. `encode`): any checkpoint loads, a classifier of another size
    /// being replaced by a fresh 2-label one.
    pub fn load(args: &ModelArgs, num_labels: Option<usize>) -> Result<Self> {
        let dir = ernie_data::resolve_model_dir(args.model.as_deref())
            .context("cannot find the model")?;
        let (num_labels, head) = match num_labels {
            Some(n) => (n, HeadInit::seed(0)),
            None => (
                2,
                HeadInit {
                    seed: 0,
                    replace_mismatched_classifier: true,
                },
            ),
        };
        let host = HostParams::load_dir(&dir, num_labels, head).context("cannot load the model")?;
        let tokenizer = TextTokenizer::from_dir(&dir).context("cannot load the tokenizer")?;
        let max_pos = host.config.max_position_embeddings;
        let max_len = match args.max_len {
            Some(n) if n > max_pos => bail!(
                "--max-len {n} exceeds the model's max_position_embeddings {max_pos} ({}); use --max-len {max_pos} or less",
                ernie_model::formats::ModelFiles::detect(&dir).map(|f| f.config).unwrap_or_else(|_| dir.join("config.json")).display()
            ),
            Some(n) => n,
            None => DEFAULT_MAX_LEN.min(max_pos),
        };
        Ok(Self {
            dir,
            host,
            tokenizer,
            max_len,
        })
    }

    /// `DIR (L layers, hidden H)`, for messages.
    pub fn describe(&self) -> String {
        let c = &self.host.config;
        format!(
            "{} ({} layers, hidden {})",
            self.dir.display(),
            c.num_hidden_layers,
            c.hidden_size
        )
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let template = format!(
        "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// SIGINT and SIGTERM set the returned flag to the signal's number: training finishes its update, writes a
/// training state and stops (exit status 128 + signal). A second SIGINT or SIGTERM exits at once.
pub fn stop_on_signals() -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;
    let which = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it runs before `seen` is set by this same signal: it exits on the second one.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&seen));
        let _ = signal_hook::flag::register(sig, Arc::clone(&seen));
        let _ = signal_hook::flag::register_usize(sig, Arc::clone(&which), sig as usize);
    }
    which
}
