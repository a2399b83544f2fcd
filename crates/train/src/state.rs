//! Training-state checkpoints: everything the rest of a run depends on, so that a resumed run ends with
//! the same weights, metrics and history, bit for bit, as one never interrupted.
//!
//! A state lives in `<run>/checkpoints/step-NNNNNNNN/`: `state.safetensors` (the f32 master parameters and
//! AdamW's two moments, under `param.`, `adam_m.`, `adam_v.` + the HF parameter name), `state.json` (step,
//! position in the epoch, the epoch's running sums, evaluation history, timings, the run configuration,
//! the model and data files' identities, the label list) and `manifest.json`, written last. The directory
//! is built under a temporary name and renamed into place.
//!
//! What needs no saving: the data order of epoch `e` is a function of (seed, e), dropout masks and adv
//! noise of update `s` of (seed, s), the schedule of the step; the step number restores all three.

use crate::config::TrainConfig;
use crate::files::{publish_dir, verify_manifest, DirWriter, FileIdentity};
use crate::trainer::EvalRecord;
use anyhow::{bail, Context, Result};
use ernie_data::LabelSet;
use ernie_model::ParamSpec;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CHECKPOINTS_DIR: &str = "checkpoints";
const STATE_FILE: &str = "state.json";
const TENSORS_FILE: &str = "state.safetensors";

/// The model and data files a run was started from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFiles {
    pub model: Vec<FileIdentity>,
    pub train: FileIdentity,
    pub dev: Option<FileIdentity>,
    pub labels: Option<FileIdentity>,
}

/// The training loop's position and running records.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer updates done.
    pub step: u64,
    /// Sums over the current epoch so far (the epoch's train loss and accuracy).
    pub epoch_loss_sum: f64,
    pub epoch_examples: usize,
    pub epoch_correct: usize,
    /// Mean train loss of the last finished epoch.
    pub last_epoch_loss: f64,
    pub history: Vec<EvalRecord>,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub samples: usize,
    /// Steps at which the run was resumed.
    pub resumed_at: Vec<u64>,
}

/// `state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateMeta {
    pub format: u32,
    pub progress: Progress,
    /// The epoch and the batch inside its shuffled order that the next update takes (for the record and a
    /// consistency check: both follow from `progress.step`).
    pub epoch: u64,
    pub batch_in_epoch: u64,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub optimizer_steps: u64,
    pub config: TrainConfig,
    pub files: RunFiles,
    pub labels: LabelSet,
    /// The backend and the host's SIMD class that computed it.
    pub backend: String,
    pub simd_class: String,
}

/// A loaded training state.
pub struct TrainingState {
    pub dir: PathBuf,
    pub meta: StateMeta,
    pub params: Vec<Vec<f32>>,
    pub adam_m: Vec<Vec<f32>>,
    pub adam_v: Vec<Vec<f32>>,
}

/// Test hook for the kill-anywhere tests: `ERNIE_FT_TEST_KILL=step:N` kills the process with SIGKILL right
/// after update N, `save:N` in the middle of writing the training state of update N, `final` in the middle
/// of writing the final checkpoint. Nothing else reads it.
pub fn kill_point(point: &str) {
    if std::env::var("ERNIE_FT_TEST_KILL").is_ok_and(|v| v == point) {
        eprintln!("ERNIE_FT_TEST_KILL: killing the process at {point}");
        // SAFETY: signalling our own process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

/// Write the state of `meta.progress.step` under `run_dir/checkpoints/`, keep the newest `keep`, and return
/// the directory written.
pub fn save(
    run_dir: &Path,
    specs: &[ParamSpec],
    params: &[Vec<f32>],
    m: &[Vec<f32>],
    v: &[Vec<f32>],
    meta: &StateMeta,
    keep: usize,
) -> Result<PathBuf> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    std::fs::create_dir_all(&root).with_context(|| format!("{}: cannot create", root.display()))?;
    let step = meta.progress.step;
    let dest = root.join(step_dir_name(step));
    let tmp = root.join(format!(".tmp-{}-{}", step_dir_name(step), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    let mut w = DirWriter::begin(&tmp)?;
    let mut views = Vec::with_capacity(3 * specs.len());
    for (prefix, values) in [("param", params), ("adam_m", m), ("adam_v", v)] {
        for (s, x) in specs.iter().zip(values) {
            let view = TensorView::new(Dtype::F32, s.shape.clone(), bytemuck::cast_slice(x)).context("tensor shape")?;
            views.push((format!("{prefix}.{}", s.name), view));
        }
    }
    let bytes = safetensors::serialize(views, None).context("serialising the training state")?;
    w.write(TENSORS_FILE, &bytes)?;
    kill_point(&format!("save:{step}"));
    w.write(STATE_FILE, serde_json::to_string_pretty(meta)?.as_bytes())?;
    w.commit()?;
    publish_dir(&tmp, &dest)?;
    prune(&root, keep.max(1), step)?;
    Ok(dest)
}

/// The published training states under `root`, oldest first.
fn published(root: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| step_of(&e.file_name().to_string_lossy()).map(|s| (s, e.path())))
        .collect();
    v.sort();
    v
}

/// Delete all but the newest `keep` states (never `just_written`).
fn prune(root: &Path, keep: usize, just_written: u64) -> Result<()> {
    let all = published(root);
    let excess = all.len().saturating_sub(keep);
    for (step, dir) in all.into_iter().take(excess) {
        if step != just_written {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("{}: cannot remove an old checkpoint", dir.display()))?;
        }
    }
    Ok(())
}

/// Whether `dir` is a training-state directory (rather than a run directory).
pub fn is_state_dir(dir: &Path) -> bool {
    dir.join(STATE_FILE).is_file() || dir.file_name().is_some_and(|n| step_of(&n.to_string_lossy()).is_some())
}

/// The run directory a training state belongs to.
pub fn run_dir_of(state_dir: &Path) -> Option<PathBuf> {
    state_dir
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == CHECKPOINTS_DIR))
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
}

/// The newest training state of a run that passes its manifest check; damaged ones are reported on stderr
/// and skipped.
pub fn latest(run_dir: &Path) -> Option<PathBuf> {
    for (_, dir) in published(&run_dir.join(CHECKPOINTS_DIR)).into_iter().rev() {
        match verify_manifest(&dir) {
            Ok(_) => return Some(dir),
            Err(e) => eprintln!("warning: skipping {}: {e:#}", dir.display()),
        }
    }
    None
}

/// Load a training state written by [`save`], checking its manifest and every tensor against `specs`.
pub fn load(dir: &Path, specs: &[ParamSpec]) -> Result<TrainingState> {
    verify_manifest(dir)?;
    let meta_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&meta_path).with_context(|| format!("{}: cannot read", meta_path.display()))?;
    let meta: StateMeta =
        serde_json::from_str(&text).with_context(|| format!("{}: malformed training state", meta_path.display()))?;
    if meta.format != 1 {
        bail!("{}: training-state format {} is not supported (1)", meta_path.display(), meta.format);
    }
    let path = dir.join(TENSORS_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
    let read = |prefix: &str| -> Result<Vec<Vec<f32>>> {
        specs
            .iter()
            .map(|s| {
                let name = format!("{prefix}.{}", s.name);
                let t =
                    st.tensor(&name).map_err(|_| anyhow::anyhow!("{}: tensor {name} is missing", path.display()))?;
                if t.dtype() != Dtype::F32 || t.shape() != s.shape.as_slice() {
                    bail!(
                        "{}: tensor {name} is {:?} {:?}, expected F32 {:?}",
                        path.display(),
                        t.dtype(),
                        t.shape(),
                        s.shape
                    );
                }
                Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            })
            .collect()
    };
    Ok(TrainingState {
        dir: dir.to_path_buf(),
        params: read("param")?,
        adam_m: read("adam_m")?,
        adam_v: read("adam_v")?,
        meta,
    })
}
