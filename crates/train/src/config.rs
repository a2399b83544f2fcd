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
            "iflytek" => TaskDefaults {
                lr: 5e-5,
                batch_size: 32,
                epochs: 3,
                max_len: 128,
                warmup_ratio: 0.1,
                hidden_dropout: 0.0,
            },
            "afqmc" => TaskDefaults {
                lr: 3e-5,
                batch_size: 16,
                epochs: 3,
                max_len: 128,
                warmup_ratio: 0.1,
                hidden_dropout: 0.1,
            },
            _ => TaskDefaults {
                lr: 3e-5,
                batch_size: 32,
                epochs: 3,
                max_len: 128,
                warmup_ratio: 0.1,
                hidden_dropout: 0.1,
            },
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
    /// Label list file (JSON lines); else `labels.json` beside the train file (any task), else the train
    /// file's labels in order of first appearance (`ernie_data::resolve_labels`).
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
    /// The strategies and their settings (layer decay's rate included).
    pub recipe: Recipe,
    /// Also evaluate every N steps (besides each epoch's end).
    pub eval_every: Option<u64>,
    /// Stop after this many updates (the schedule is laid out over them).
    pub max_steps: Option<u64>,
    /// Use only the first N training examples / dev examples (quick runs).
    pub train_limit: Option<usize>,
    pub dev_limit: Option<usize>,
    /// Train on all but this fraction of the training file and evaluate on the held-out part instead of
    /// `dev_file` (choosing hyper-parameters without touching dev). The split is fixed (seed 1234).
    #[serde(default)]
    pub holdout: Option<f64>,
    /// Write the final checkpoint to `output_dir`.
    pub save: bool,
    /// Write a training-state checkpoint every N updates (None: at each epoch's end; Some(0): never).
    #[serde(default)]
    pub save_every: Option<u64>,
    /// Keep the newest K training-state checkpoints.
    #[serde(default = "default_save_total_limit")]
    pub save_total_limit: usize,
}

fn default_save_total_limit() -> usize {
    2
}

impl TrainConfig {
    /// Fields that may differ between a run and its resumption without changing any number it computes
    /// (where files go, how often it evaluates or saves). The files' paths may differ too: they are compared
    /// by contents instead.
    pub const RESUMABLE_CHANGES: &'static [&'static str] = &[
        "output_dir",
        "eval_every",
        "save",
        "save_every",
        "save_total_limit",
        "train_file",
        "dev_file",
        "labels_file",
        "model_dir",
    ];

    /// The first field (as a dotted path) whose value differs between `self` and `recorded`, among those a
    /// resumption must keep, with both values.
    pub fn resume_mismatch(&self, recorded: &TrainConfig) -> Option<(String, String, String)> {
        let (mut a, mut b) = (serde_json::to_value(self).ok()?, serde_json::to_value(recorded).ok()?);
        for k in Self::RESUMABLE_CHANGES {
            a.as_object_mut()?.remove(*k);
            b.as_object_mut()?.remove(*k);
        }
        first_difference("", &a, &b)
    }
}

/// The command-line flag that sets a configuration field (for messages).
pub fn flag_of(field: &str) -> String {
    let f = match field {
        "recipe.adv" => return "--strategy adv".into(),
        "recipe.rdrop" => return "--strategy rdrop".into(),
        "recipe.layer_decay" => return "--strategy layer-decay / --layer-decay-rate".into(),
        "task" => return "--task".into(),
        f if f.starts_with("recipe.") => f.trim_start_matches("recipe.").replace('.', "-"),
        f if f.starts_with("task.") => f.trim_start_matches("task.").to_string(),
        f => f.to_string(),
    };
    format!("--{}", f.replace('_', "-"))
}

fn first_difference(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                first_difference(&p, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null))
            })
        }
        _ if a == b => None,
        _ => Some((path.to_string(), a.to_string(), b.to_string())),
    }
}
