//! Resumption on the CUDA backend: a run continued from a training state written half-way ends with the
//! same final weights, bit for bit, as the run that went through, in f32 and in bf16 (the state holds the
//! f32 master weights and AdamW's moments; the bf16 working copies are derived from them each step). On a
//! GPU, and on the host emulation of the kernels.

mod common;

use common::on_backends;
use ernie_data::TaskSpec;
use ernie_strategies::Recipe;
use ernie_train::{train_with, Resume, RunOptions, TrainConfig};
use std::path::{Path, PathBuf};

/// The tiny model and 8 examples of the synthetic task.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    (ernie_testkit::model_in(dir), ernie_testkit::task_in(dir, "train.json", 8, 3))
}

fn config(dir: &Path, model: PathBuf, data: PathBuf, out: &str) -> TrainConfig {
    TrainConfig {
        task: TaskSpec::custom("synthetic", "sentence", None, Some("label")),
        train_file: data,
        // No evaluation: the emulation is slow, and the final weights' hash is the whole outcome.
        dev_file: None,
        labels_file: None,
        model_dir: model,
        output_dir: dir.join(out),
        lr: 3e-3,
        batch_size: 4,
        epochs: 2,
        max_len: 8,
        warmup_ratio: 0.1,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        seed: 5,
        head_seed: 0,
        hidden_dropout: 0.1,
        attention_dropout: None,
        // The strategies add nothing to what a state must hold (their randomness is a function of the seed
        // and the update); the emulation is slow, so the plain step with dropout.
        recipe: Recipe { layer_decay: Some(0.8), ..Recipe::default() },
        eval_every: None,
        max_steps: None,
        train_limit: None,
        dev_limit: None,
        holdout: None,
        save: false,
        save_every: Some(2),
        save_total_limit: 5,
    }
}

#[test]
fn resumed_run_is_bit_identical() {
    on_backends("resumed_run_is_bit_identical", |g| {
        for (b, p) in g.both() {
            let dir = tempfile::tempdir().unwrap();
            let (model, data) = setup(dir.path());
            let cfg = config(dir.path(), model.clone(), data.clone(), "whole");
            let whole = train_with(b, &cfg, &RunOptions::default()).unwrap();
            // Continue from the state after update 2 (of 4) in another directory.
            let state = cfg.output_dir.join("checkpoints/step-00000002");
            let mut cont = config(dir.path(), model, data, "continued");
            cont.save_every = Some(0);
            let resumed =
                train_with(b, &cont, &RunOptions { resume: Resume::From(state), ..RunOptions::default() }).unwrap();
            assert_eq!(whole.steps, 4);
            assert_eq!(resumed.resumed_at, vec![2]);
            assert_eq!(
                whole.final_weights_blake3, resumed.final_weights_blake3,
                "{p:?}: final weights differ after resuming"
            );
        }
    });
}
