//! Training configuration and the task defaults (PaddleNLP's best ERNIE 3.0 settings for CLUE).

use ernie_data::TaskSpec;
use ernie_strategies::Recipe;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Per-task defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDefaults {
    pub lr: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub max_len: usize,
    pub warmup_ratio: f64,
    pub hidden_dropout: f32,
}

impl TaskDefaults {
    /// IFLYTEK and AFQMC as in PaddleNLP's CLUE scripts; other tasks get AFQMC-like settings.
    pub fn for_task(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "iflytek" => TaskDefaults { lr: 5e-5, batch_size: 32, epochs: 3, max_len: 128, warmup_ratio: 0.1, hidden_dropout: 0.0 },
            "afqmc" => TaskDefaults { lr: 3e-5, batch_size: 16, epochs: 3, max_len: 128, warmup_ratio: 0.1, hidden_dropout: 0.1 },
            _ => TaskDefaults { lr: 3e-5, batch_size: 32, epochs: 3, max_len: 128, warmup_ratio: 0.1, hidden_dropout: 0.1 },
        }
    }

    /// The learning rate: the user's if given, else the task's, doubled under layer decay (the seed's
    /// advice: 5e-5 -> 1e-4 when lower layers move more slowly).
    pub fn resolve_lr(&self, user_lr: Option<f64>, layer_decay: bool) -> f64 {
        user_lr.unwrap_or(if layer_decay { 2.0 * self.lr } else { self.lr })
    }
}

/// Everything a training run needs, after defaults are applied.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub task: TaskSpec,
    pub train_file: PathBuf,
    pub dev_file: Option<PathBuf>,
    /// Label list file (JSON lines); else the task's labels file beside the train file, else the train
    /// file's labels in order of first appearance.
    pub labels_file: Option<PathBuf>,
    pub model_dir: PathBuf,
    pub output_dir: PathBuf,
    pub lr: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub max_len: usize,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Data order, dropout masks, adv noise.
    pub seed: u64,
    /// Initialisation of head parameters the checkpoint lacks; runs to be averaged share it.
    pub head_seed: u64,
    pub hidden_dropout: f32,
    /// None: the model config's value (0.1 for BERT/ERNIE), as PaddleNLP keeps it.
    pub attention_dropout: Option<f32>,
    pub recipe: Recipe,
    /// Layer-wise lr decay rate, when on.
    pub layer_decay: Option<f64>,
    /// Also evaluate every N steps (besides each epoch's end).
    pub eval_every: Option<u64>,
    /// Stop after this many updates (the schedule is laid out over them).
    pub max_steps: Option<u64>,
    /// Use only the first N training examples / dev examples (quick runs).
    pub train_limit: Option<usize>,
    pub dev_limit: Option<usize>,
    /// Write the final checkpoint to `output_dir`.
    pub save: bool,
}
