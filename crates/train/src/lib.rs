//! ernie-train: fine-tuning, evaluation, prediction and checkpoints for CLUE-style classification and pair
//! tasks, on any [`ernie_backend::Backend`]; and what the `ernie-ft` subcommands do with them: a run set up
//! from a task name ([`setup`]), a checkpoint evaluated or predicting on a file ([`inference`]), FMA
//! averaging of checkpoints ([`average`]), sentence embeddings ([`embed`]).

pub mod average;
pub mod checkpoint;
pub mod config;
pub mod embed;
pub mod eval;
pub mod files;
pub mod inference;
pub mod memory;
pub mod metrics;
pub mod setup;
pub mod state;
pub mod step;
pub mod trainer;
pub mod validate;

pub use checkpoint::{Checkpoint, CheckpointMeta};
pub use config::{TaskDefaults, TrainConfig};
pub use metrics::Metrics;
pub use step::{NonFiniteLoss, TrainStep};
pub use trainer::{train, train_with, EvalRecord, Interrupted, Resume, RunOptions, TrainReport};
pub use validate::validate;
