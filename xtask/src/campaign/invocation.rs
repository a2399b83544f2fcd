//! The [`Campaign`]: everything the cells of one invocation share, and what follows from it per cell: the
//! flags that decide a cell's numbers, the `ernie-ft` command lines (train, average, eval), and the cells
//! themselves with the configurations they are reused by.

use super::cells::{self, CellSpec, Kind};
use super::identity::{DeviceSpec, Identity};
use super::options::{row_lr, Opts};
use super::rows::Row;
use super::setup::Input;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Everything the cells of one invocation share.
pub struct Campaign {
    pub task: String,
    pub opts: Opts,
    pub out: PathBuf,
    pub seeds: Vec<u64>,
    pub rows: Vec<&'static Row>,
    pub specs: Vec<CellSpec>,
    pub spec_index: BTreeMap<String, usize>,
    pub device: DeviceSpec,
    /// Every cell's ernie-ft train flags that decide its numbers, before the per-cell ones.
    pub common: Vec<String>,
    pub model: PathBuf,
    /// blake3 over the model directory's config, weights and tokenizer files.
    pub model_blake3: String,
    pub train: Input,
    pub dev: Input,
    pub labels: Option<Input>,
    pub paths: Value,
    pub jobs: usize,
    pub threads_per_job: usize,
    pub gpus: Vec<usize>,
    pub keep_checkpoints: bool,
    /// Training cells of this invocation whose models unfinished FMA cells of rows it does not run
    /// (`--rows`) will average: kept like those its own FMA cells need, so that training a few rows now
    /// does not mean training them again for their FMA row later.
    pub models_for_other_rows: BTreeSet<String>,
    pub save_every: u64,
    // Set when the campaign trains (not for --report-only):
    pub bin: PathBuf,
    pub identity: Identity,
    pub resume_supported: bool,
    pub save_every_supported: bool,
}

impl Campaign {
    pub fn cells_dir(&self) -> PathBuf {
        self.out.join("cells")
    }

    pub fn cell_dir(&self, id: &str) -> PathBuf {
        cells::dir(&self.cells_dir(), id)
    }

    /// With CUDA: the GPU with the fewest running cells (`busy` lists theirs).
    pub fn pick_gpu(&self, busy: &[usize]) -> Option<usize> {
        (self.device.device == "cuda").then(|| {
            *self.gpus.iter().min_by_key(|g| busy.iter().filter(|b| b == g).count()).expect("--gpus is not empty")
        })
    }

    fn path_flags(&self) -> Vec<String> {
        let mut v = vec![
            "--model".into(),
            self.model.display().to_string(),
            "--train".into(),
            self.train.path.display().to_string(),
            "--dev".into(),
            self.dev.path.display().to_string(),
        ];
        if let Some(l) = &self.labels {
            v.extend(["--labels".into(), l.path.display().to_string()]);
        }
        v
    }

    /// The flags that decide a training cell's numbers (compared with the recorded ones).
    pub fn cell_flags(&self, row: &Row, seed: u64) -> Vec<String> {
        let mut v = self.common.clone();
        if let Some(lr) = self.opts.lr {
            v.extend(["--lr".into(), row_lr(lr, row).to_string()]);
        }
        v.extend(["--seed".into(), seed.to_string()]);
        if !row.strategies.is_empty() {
            v.extend(["--strategy".into(), row.strategy_arg()]);
        }
        v
    }

    pub fn train_args(&self, row: &Row, seed: u64, run: &Path, gpu: Option<usize>, keep_model: bool) -> Vec<String> {
        let mut v = vec!["train".to_string()];
        v.extend(self.cell_flags(row, seed));
        v.extend(self.path_flags());
        v.extend([
            "--output-dir".into(),
            run.display().to_string(),
            "--threads".into(),
            self.threads_per_job.to_string(),
        ]);
        if let Some(g) = gpu {
            v.extend(["--gpu".into(), g.to_string()]);
        }
        if self.resume_supported {
            v.extend(["--resume".into(), "auto".into()]);
        }
        if self.save_every_supported {
            v.extend(["--save-every".into(), self.save_every.to_string()]);
        }
        if !keep_model {
            v.push("--no-save".into());
        }
        v
    }

    pub fn average_args(&self, spec: &CellSpec, avg: &Path) -> Vec<String> {
        let mut v = vec!["average".to_string(), "--out".into(), avg.display().to_string()];
        v.extend(spec.member_ids().iter().map(|m| self.cell_dir(m).join(cells::RUN_DIR).display().to_string()));
        v.extend(["--threads".into(), self.threads_per_job.to_string()]);
        v
    }

    /// The flags of `ernie-ft eval` that decide an FMA cell's numbers.
    fn eval_flags(&self) -> Vec<String> {
        let mut v = self.device.flags();
        let all: Vec<Value> = self.common.iter().map(|s| json!(s)).collect();
        for (k, val) in cells::flag_pairs(&all) {
            if k == "--dev-limit" {
                v.extend([k, val]);
            }
        }
        v
    }

    pub fn eval_args(&self, avg: &Path, metrics_out: &Path, gpu: Option<usize>) -> Vec<String> {
        let mut v = vec![
            "eval".to_string(),
            "--model".into(),
            avg.display().to_string(),
            "--dev".into(),
            self.dev.path.display().to_string(),
        ];
        v.extend(["--metrics-out".into(), metrics_out.display().to_string()]);
        v.extend(self.eval_flags());
        v.extend(["--threads".into(), self.threads_per_job.to_string()]);
        if let Some(g) = gpu {
            v.extend(["--gpu".into(), g.to_string()]);
        }
        v
    }

    fn inputs(&self) -> Value {
        json!({
            "model": {"blake3": self.model_blake3},
            "train": self.train.identity(),
            "dev": self.dev.identity(),
            "labels": self.labels.as_ref().map(|l| l.identity()),
        })
    }

    /// The cells of the chosen rows and seeds with their configurations. FMA rows: with 3 or more seeds one
    /// cell per seed k, averaging the parent row's models of every seed but k (leave-one-out); with 2 seeds
    /// one cell averaging both; with 1 none.
    pub(super) fn build_specs(&mut self) {
        let mut specs = vec![];
        let train_config = |c: &Campaign, row: &Row, seed: u64| json!({"kind": "train", "task": c.task, "row": row.key(), "seed": seed, "flags": c.cell_flags(row, seed), "inputs": c.inputs()});
        for row in &self.rows {
            if !row.fma {
                for &s in &self.seeds {
                    specs.push(CellSpec {
                        id: CellSpec::train_id(row, s),
                        row,
                        kind: Kind::Train { seed: s },
                        config: train_config(self, row, s),
                    });
                }
                continue;
            }
            let sets: Vec<Vec<u64>> = match self.seeds.len() {
                0 | 1 => vec![],
                2 => vec![self.seeds.clone()],
                _ => self.seeds.iter().map(|&k| self.seeds.iter().copied().filter(|&s| s != k).collect()).collect(),
            };
            for members in sets {
                let parent = row.parent();
                let member_configs: Vec<Value> = members.iter().map(|&s| train_config(self, parent, s)).collect();
                let config = json!({
                    "kind": "fma", "task": self.task, "row": row.key(),
                    "members": members.iter().map(|&s| CellSpec::train_id(parent, s)).collect::<Vec<_>>(),
                    "members_config_blake3": blake3::hash(serde_json::to_string(&member_configs).unwrap_or_default().as_bytes()).to_hex().to_string(),
                    "eval_flags": self.eval_flags(),
                    "inputs": {"dev": self.dev.identity()},
                });
                specs.push(CellSpec { id: CellSpec::fma_id(row, &members), row, kind: Kind::Fma { members }, config });
            }
        }
        self.spec_index = specs.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
        self.specs = specs;
    }
}
