//! Flags and set-up shared by the subcommands: which task and where its files are, which model, how long the
//! sequences, which device and how many threads; the progress bar; stopping on signals.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ernie_data::TaskSpec;
use indicatif::{ProgressBar, ProgressStyle};

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

/// The checkpoint a command applies (`eval`, `predict`), its task's data, and the device.
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// A checkpoint written by `ernie-ft train` or `ernie-ft average`
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl TaskArgs {
    /// The task's spec ([`ernie_train::setup::task_spec`]).
    pub fn spec(&self) -> TaskSpec {
        ernie_train::setup::task_spec(
            &self.task,
            self.text_a_key.as_deref(),
            self.text_b_key.as_deref(),
            self.label_key.as_deref(),
        )
    }
}

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
    pub fn init_cpu(&self) -> Result<ernie_backend::Cpu<f32>> {
        if self.device != Device::Cpu {
            bail!("internal: init_cpu with --device {:?}", self.device);
        }
        self.init_threads()?;
        Ok(ernie_backend::Cpu::<f32>::new())
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

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})");
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
