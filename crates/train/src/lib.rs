//! ernie-train: fine-tuning, evaluation, prediction and checkpoints for CLUE-style classification and pair
//! tasks, on any [`ernie_tensor::Backend`].

pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod files;
pub mod memory;
pub mod metrics;
pub mod state;
pub mod trainer;
pub mod validate;

pub use checkpoint::{Checkpoint, CheckpointMeta};
pub use config::{TaskDefaults, TrainConfig};
pub use metrics::Metrics;
pub use trainer::{train, train_with, EvalRecord, Interrupted, Resume, RunOptions, TrainReport};
pub use validate::validate;
