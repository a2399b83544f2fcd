//! Experiment campaigns: `cargo xtask bench-iflytek` / `bench-afqmc` (and `bench-task` for any CLUE-style
//! task). A campaign is the set of cells (row x seed) of the strategy table under `results/<task>/cells/`;
//! each cell is one `ernie-ft train` run (or one FMA average + eval) with its recorded configuration, the
//! identity of the numerics that computed it, and its metrics. Rerunning the command reuses the finished
//! cells, resumes the interrupted ones from their last training-state checkpoint and runs the rest; the
//! table (Markdown, JSON, CSV, chart) is written from the cells at the end of every invocation.
//!
//! Modules: [`rows`] (the table's rows), [`cells`] (cell directories and records), [`identity`] (host,
//! commit, numerics fingerprint), [`planner`] (reuse / resume / run, order, refusals), [`runner`] (child
//! processes, jobs, signals), [`stats`] (means, paired deltas, t intervals), [`report`] and [`chart`].

pub mod cells;
pub mod chart;
pub mod identity;
pub mod planner;
pub mod report;
pub mod rows;
pub mod runner;
pub mod stats;
pub mod tiny;

use anyhow::{bail, Context, Result};
use cells::{CellSpec, Kind};
use identity::{DeviceSpec, Identity};
use rows::Row;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Returned (as the error) when a signal stopped the campaign: `main` exits 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped by a signal; rerun the same command to continue where it stopped"
        )
    }
}

impl std::error::Error for Interrupted {}

/// Write `bytes` to `p` through a temporary file and a rename (readers never see half a file).
pub fn write_atomic(p: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = p.with_extension(format!("{}.tmp", p.extension().and_then(|e| e.to_str()).unwrap_or("")));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, p).with_context(|| format!("{}: cannot rename to {}", tmp.display(), p.display()))
}

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

pub const QUICK_FLAGS: [&str; 8] = [
    "--train-limit",
    "256",
    "--dev-limit",
    "256",
    "--epochs",
    "1",
    "--max-len",
    "64",
];

/// Flags the campaign sets itself (per cell or from its own options).
const CAMPAIGN_FLAGS: &[(&str, &str)] = &[
    ("--output-dir", "cells/<id>/run/"),
    ("--seed", "--seeds"),
    ("--head-seed", "0 for every cell (FMA averages need one head)"),
    ("--strategy", "--rows"),
    ("--device", "the campaign's --device"),
    ("--precision", "the campaign's --precision"),
    ("--gpu", "the campaign's --gpus"),
    ("--threads", "the campaign's --threads (divided between --jobs)"),
    ("--resume", "always auto"),
    ("--save-every", "the campaign's --save-every"),
    ("--save-total-limit", "ernie-ft's default"),
    ("--no-save", "set where no FMA cell needs the model"),
    ("--overwrite", "--fresh"),
];

/// Paths flags the campaign resolves itself and records by content.
const PATH_FLAGS: &[&str] = &["--model", "--data", "--train", "--dev", "--labels"];

pub fn help(command: &str, custom: bool) -> String {
    let task = if custom {
        "NAME"
    } else {
        command.trim_start_matches("bench-")
    };
    let task_flag = if custom {
        " --task NAME --train FILE --dev FILE"
    } else {
        ""
    };
    format!(
        "cargo xtask {command}{task_flag} [options] [-- ernie-ft train flags]

Train every row of the strategy table over several seeds, as a campaign of cells that survives
interruptions, and write the table (Markdown, JSON, CSV) and chart (PNG, SVG) to results/{task}/.

Rows (--rows, by key; base is always included, an FMA row brings its parent):
  {}

Campaign:
  A cell is one row x seed: one `ernie-ft train` run (an FMA cell: one `ernie-ft average` + `eval`), kept in
  <out>/cells/<row>-seed<k>/ with cell.json (configuration, inputs, identity), metrics.json and the run log.
  Rerunning the command reuses every finished cell whose recorded configuration matches, resumes an
  interrupted cell from its last training-state checkpoint, and runs the rest; a cell recorded with another
  configuration is an error naming the difference (unless --fresh). Cells run breadth-first by seed (every
  row of seed 1, then seed 2, ...), so a stopped campaign has complete tables for its first seeds. Ctrl-C
  (or SIGTERM) stops it cleanly: running cells write a checkpoint; a killed campaign's children do the same.
  Model weights and checkpoints (cells/*/run/, cells/*/avg/) are never committed and are deleted when no
  longer needed unless --keep-checkpoints.
  Numerics identity: each cell records the commit, its host (CPU model, avx512f, GPU) and a fingerprint of
  the numerics (final weights of five 3-step runs on the tiny test model, one per strategy, on this device);
  a table is only built from cells of one fingerprint (commits may differ), and cells of another are named
  with what to rerun.

Options:
  --seeds N             seeds 1..N (default 3; 2 with --quick)
  --rows KEY,KEY        rows to train (default all)
  --quick               smoke run: 256 train / 256 dev examples, 1 epoch, max length 64, 2 seeds; written
                        to results/{task}-quick/ (a few minutes on a CPU)
  --out DIR             campaign directory (default results/{task}, results/{task}-quick with --quick)
  --jobs N              cells at once (default 1); on the CPU the threads are divided between them, on CUDA
                        the processes share the GPU(s)
  --threads N           CPU threads in all (default: every core), divided between --jobs
  --device cpu|cuda     (default cpu)
  --precision bf16|f32  with --device cuda (default: ernie-ft's, bf16)
  --gpus 0,1            with --device cuda: GPUs to spread the jobs over (default 0)
  --lr X                the base learning rate of every row, doubled for the rows with layer decay (the
                        seed's advice: lower layers move more slowly); default: ernie-ft's (the task's,
                        doubled under layer decay). Not with `-- --lr`
  --save-every N        training-state checkpoint every N steps (default 50; 8 with --quick)
  --report-only         write the table from the cells that exist (rows missing seeds marked n = 2/3);
                        trains nothing
  --fresh               discard and recompute the cells whose configuration or numerics differ
  --keep-checkpoints    keep models and training-state checkpoints of finished cells
  --model DIR           model (default $ERNIE_FT_MODEL, else ../shared/models/e5-small-zh)
  --data DIR            data directory (default $ERNIE_FT_DATA, else ../shared/data): <DIR>/<task>/...
  --train FILE, --dev FILE, --labels FILE   the task's files (default from --data)
  -- FLAGS              more `ernie-ft train` flags for every cell (e.g. -- --epochs 2 --lr 4e-5); part
                        of each cell's configuration

The ernie-ft binary: $ERNIE_FT_BIN, else a release build of this workspace's.
Exit status: 0 done; 130 stopped by a signal (rerun to continue); 1 a cell failed or a refusal.",
        rows::ROWS.iter().map(|r| r.key).collect::<Vec<_>>().join(", ")
    )
}

#[derive(Clone, Debug, Default)]
pub struct Opts {
    pub task: String,
    pub custom: bool,
    pub n_seeds: Option<u64>,
    /// Base learning rate; rows with layer decay get twice it.
    pub lr: Option<f64>,
    pub rows: Option<Vec<String>>,
    pub quick: bool,
    pub out: Option<PathBuf>,
    pub jobs: usize,
    pub threads: Option<usize>,
    pub device: String,
    pub precision: Option<String>,
    pub gpus: Vec<usize>,
    pub save_every: Option<u64>,
    pub report_only: bool,
    pub fresh: bool,
    pub keep_checkpoints: bool,
    pub model: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub train: Option<PathBuf>,
    pub dev: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub extra: Vec<String>,
    pub argv: Vec<String>,
}

/// The learning rate of `row` under `--lr base`: doubled where the row has layer decay.
pub fn row_lr(base: f64, row: &Row) -> f64 {
    if row.strategies.split(',').any(|s| s == "layer-decay") {
        2.0 * base
    } else {
        base
    }
}

pub fn parse(command: &str, task: Option<&str>, args: &[String]) -> Result<Option<Opts>> {
    let mut o = Opts {
        task: task.unwrap_or_default().to_string(),
        custom: task.is_none(),
        jobs: 1,
        device: "cpu".into(),
        gpus: vec![0],
        argv: args.to_vec(),
        ..Default::default()
    };
    let mut it = args.iter();
    let mut extra: Vec<String> = vec![];
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = || -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .with_context(|| format!("{flag} needs a value"))
        };
        let num = |v: String, what: &str| -> Result<u64> {
            v.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("{what} wants a positive integer, not {v}"))
        };
        match flag.as_str() {
            "--help" | "-h" => {
                println!("{}", help(command, task.is_none()));
                return Ok(None);
            }
            "--task" if task.is_none() => o.task = val()?,
            "--seeds" => o.n_seeds = Some(num(val()?, "--seeds")?),
            "--rows" => o.rows = Some(val()?.split(',').map(String::from).collect()),
            "--quick" => o.quick = true,
            "--out" => o.out = Some(PathBuf::from(val()?)),
            "--jobs" => o.jobs = num(val()?, "--jobs")? as usize,
            "--threads" => o.threads = Some(num(val()?, "--threads")? as usize),
            "--device" => o.device = val()?,
            "--precision" => o.precision = Some(val()?),
            "--gpus" => {
                o.gpus = val()?
                    .split(',')
                    .map(|g| {
                        g.trim()
                            .parse::<usize>()
                            .with_context(|| format!("--gpus: `{g}` is not a GPU ordinal"))
                    })
                    .collect::<Result<_>>()?
            }
            "--save-every" => o.save_every = Some(val()?.parse().context("--save-every N")?),
            "--lr" => {
                let v = val()?;
                o.lr = Some(v.parse::<f64>().ok().filter(|x| x.is_finite() && *x > 0.0).with_context(|| format!("--lr wants a positive number, not {v}"))?);
            }
            "--report-only" => o.report_only = true,
            "--fresh" => o.fresh = true,
            "--keep-checkpoints" => o.keep_checkpoints = true,
            "--model" => o.model = Some(PathBuf::from(val()?)),
            "--data" => o.data = Some(PathBuf::from(val()?)),
            "--train" => o.train = Some(PathBuf::from(val()?)),
            "--dev" => o.dev = Some(PathBuf::from(val()?)),
            "--labels" => o.labels = Some(PathBuf::from(val()?)),
            "--" => extra = it.by_ref().cloned().collect(),
            other => bail!("unknown option {other} (see --help; ernie-ft train flags go after `--`)"),
        }
    }
    // ernie-ft flags after `--`: the path flags are taken over, the campaign's own refused.
    let mut i = 0;
    while i < extra.len() {
        let (flag, inline) = match extra[i].split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (extra[i].clone(), None),
        };
        if let Some((_, instead)) = CAMPAIGN_FLAGS.iter().find(|(f, _)| *f == flag) {
            bail!("{flag} after `--` is set by the campaign ({instead})");
        }
        if PATH_FLAGS.contains(&flag.as_str()) {
            let v = match inline {
                Some(v) => {
                    extra.remove(i);
                    v
                }
                None => {
                    if i + 1 >= extra.len() {
                        bail!("{flag} needs a value");
                    }
                    extra.remove(i);
                    extra.remove(i)
                }
            };
            let p = Some(PathBuf::from(v));
            match flag.as_str() {
                "--model" => o.model = p,
                "--data" => o.data = p,
                "--train" => o.train = p,
                "--dev" => o.dev = p,
                _ => o.labels = p,
            }
            continue;
        }
        i += 1;
    }
    if o.lr.is_some() && extra.iter().any(|f| f == "--lr" || f.starts_with("--lr=")) {
        bail!("--lr and `-- --lr` both given: --lr sets every row's (doubled with layer decay)");
    }
    o.extra = extra;
    if o.task.is_empty() {
        bail!("--task NAME is required (see --help)");
    }
    if !matches!(o.device.as_str(), "cpu" | "cuda") {
        bail!("--device {}: cpu or cuda", o.device);
    }
    if let Some(p) = &o.precision {
        if !matches!(p.as_str(), "bf16" | "f32") {
            bail!("--precision {p}: bf16 or f32");
        }
    }
    if o.gpus.is_empty() {
        bail!("--gpus needs at least one ordinal");
    }
    Ok(Some(o))
}

/// A file input of the cells: its path, line count and blake3.
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub lines: usize,
    pub blake3: String,
}

impl Input {
    pub fn read(p: &Path) -> Result<Input> {
        let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
        Ok(Input {
            path: p.to_path_buf(),
            lines: bytes.iter().filter(|&&b| b == b'\n').count(),
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        })
    }

    fn identity(&self) -> Value {
        json!({"lines": self.lines, "blake3": self.blake3})
    }
}

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
            *self
                .gpus
                .iter()
                .min_by_key(|g| busy.iter().filter(|b| b == g).count())
                .expect("--gpus is not empty")
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
            v.extend(["--strategy".into(), row.strategies.into()]);
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
        v.extend(
            spec.member_ids()
                .iter()
                .map(|m| self.cell_dir(m).join(cells::RUN_DIR).display().to_string()),
        );
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
    fn build_specs(&mut self) {
        let mut specs = vec![];
        let train_config = |c: &Campaign, row: &Row, seed: u64| json!({"kind": "train", "task": c.task, "row": row.key, "seed": seed, "flags": c.cell_flags(row, seed), "inputs": c.inputs()});
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
                _ => self
                    .seeds
                    .iter()
                    .map(|&k| self.seeds.iter().copied().filter(|&s| s != k).collect())
                    .collect(),
            };
            for members in sets {
                let parent = row.parent();
                let member_configs: Vec<Value> = members.iter().map(|&s| train_config(self, parent, s)).collect();
                let config = json!({
                    "kind": "fma", "task": self.task, "row": row.key,
                    "members": members.iter().map(|&s| CellSpec::train_id(parent, s)).collect::<Vec<_>>(),
                    "members_config_blake3": blake3::hash(serde_json::to_string(&member_configs).unwrap_or_default().as_bytes()).to_hex().to_string(),
                    "eval_flags": self.eval_flags(),
                    "inputs": {"dev": self.dev.identity()},
                });
                specs.push(CellSpec {
                    id: CellSpec::fma_id(row, &members),
                    row,
                    kind: Kind::Fma { members },
                    config,
                });
            }
        }
        self.spec_index = specs.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
        self.specs = specs;
    }
}

/// `$ERNIE_FT_BIN` (a prebuilt binary, e.g. on a machine without a Rust toolchain), else a fresh release
/// build of this workspace's.
pub fn ernie_ft_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ERNIE_FT_BIN").map(PathBuf::from) {
        if !p.is_file() {
            bail!("ERNIE_FT_BIN={} is not a file", p.display());
        }
        return Ok(p);
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "ernie-ft"])
        .current_dir(root())
        .status()?;
    if !status.success() {
        bail!("building ernie-ft failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(target.join("release/ernie-ft"))
}

fn model_blake3(dir: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    let mut any = false;
    // Every file ernie-ft may read from a model directory (see ernie_model::formats); those present are
    // hashed, so a safetensors-only directory hashes as it always did.
    for f in [
        "config.json",
        "model_config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "model_state.pdparams",
        "tokenizer.json",
        "vocab.txt",
    ] {
        let p = dir.join(f);
        if p.is_file() {
            h.update(f.as_bytes());
            h.update(identity::hash_file(&p)?.as_bytes());
            any = true;
        }
    }
    if !any {
        bail!(
            "{}: no config.json, model_config.json or weights file: not a model directory",
            dir.display()
        );
    }
    Ok(h.finalize().to_hex().to_string())
}

fn setup(o: Opts) -> Result<Campaign> {
    let task = o.task.to_ascii_lowercase();
    let seeds: Vec<u64> = (1..=o.n_seeds.unwrap_or(if o.quick { 2 } else { 3 })).collect();
    let rows = rows::select(o.rows.as_deref())?;
    let out = o.out.clone().unwrap_or_else(|| {
        root()
            .join("results")
            .join(if o.quick { format!("{task}-quick") } else { task.clone() })
    });
    // The files, resolved as ernie-ft resolves them, then passed explicitly to every cell.
    let model = ernie_data::resolve_model_dir(o.model.as_deref())
        .context("cannot find the model (--model DIR or $ERNIE_FT_MODEL)")?;
    let need_data = o.train.is_none() || o.dev.is_none();
    let data_dir = if need_data {
        Some(
            ernie_data::resolve_data_dir(o.data.as_deref())
                .context("cannot find the data (--data DIR, $ERNIE_FT_DATA, or --train/--dev FILE)")?
                .join(&task),
        )
    } else {
        None
    };
    let pick = |given: &Option<PathBuf>, names: &[&str]| -> Result<PathBuf> {
        if let Some(p) = given {
            return Ok(p.clone());
        }
        let d = data_dir.as_ref().expect("resolved above");
        names
            .iter()
            .map(|n| d.join(n))
            .find(|p| p.is_file())
            .with_context(|| format!("none of {} in {}", names.join(", "), d.display()))
    };
    let train = Input::read(&pick(&o.train, &["train.json", "train.partial.json"])?)?;
    let dev = Input::read(&pick(&o.dev, &["dev.json"])?)?;
    let labels = match &o.labels {
        Some(p) => Some(Input::read(p)?),
        // As ernie-ft resolves them: the task's labels file (labels.json) beside the train file, if any.
        None => {
            let name = ernie_data::TaskSpec::preset(&task)
                .and_then(|s| s.labels_file)
                .unwrap_or_else(|| "labels.json".into());
            train
                .path
                .parent()
                .map(|d| d.join(name))
                .filter(|p| p.is_file())
                .map(|p| Input::read(&p))
                .transpose()?
        }
    };
    let model_blake3 = model_blake3(&model)?;
    let device = DeviceSpec {
        device: o.device.clone(),
        precision: o.precision.clone(),
    };
    let mut common: Vec<String> = vec!["--task".into(), task.clone(), "--head-seed".into(), "0".into()];
    common.extend(device.flags());
    if o.quick {
        common.extend(QUICK_FLAGS.map(String::from));
    }
    common.extend(o.extra.iter().cloned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = o.jobs.max(1);
    let paths = json!({
        "model": model, "train": train.path, "dev": dev.path, "labels": labels.as_ref().map(|l| &l.path),
    });
    let mut c = Campaign {
        task,
        out,
        seeds,
        rows,
        specs: vec![],
        spec_index: BTreeMap::new(),
        device,
        common,
        model,
        model_blake3,
        train,
        dev,
        labels,
        paths,
        jobs,
        threads_per_job: (o.threads.unwrap_or(cores) / jobs).max(1),
        gpus: o.gpus.clone(),
        keep_checkpoints: o.keep_checkpoints,
        save_every: o.save_every.unwrap_or(if o.quick { 8 } else { 50 }),
        bin: PathBuf::new(),
        identity: Identity {
            commit: String::new(),
            dirty: false,
            fingerprint: String::new(),
            fingerprint_source: String::new(),
            device: String::new(),
            host: identity::Host::detect(false),
            binary: String::new(),
        },
        resume_supported: false,
        save_every_supported: false,
        opts: o,
    };
    c.build_specs();
    Ok(c)
}

fn scan_cells(c: &Campaign) -> Result<BTreeMap<String, cells::OnDisk>> {
    c.specs
        .iter()
        .map(|s| Ok((s.id.clone(), cells::scan(&c.cell_dir(&s.id))?)))
        .collect()
}

/// `cargo xtask bench-<task>` (task given) or `bench-task` (task from --task).
pub fn run_command(command: &str, task: Option<&str>, args: &[String]) -> Result<()> {
    let Some(o) = parse(command, task, args)? else {
        return Ok(());
    };
    let mut c = setup(o)?;
    if c.opts.report_only {
        let disk = scan_cells(&c)?;
        planner::plan(&c.specs, &disk, None, false)?;
        report::write(&c, None)?;
        return Ok(());
    }
    // A private copy of the binary, so that a rebuild during the campaign cannot change its numerics
    // under the fingerprint computed here.
    let built = ernie_ft_bin()?;
    let cache = identity::cache_dir(&root());
    std::fs::create_dir_all(&cache)?;
    c.bin = cache.join(format!("ernie-ft-{}", &identity::hash_file(&built)?[..16]));
    if !c.bin.is_file() {
        let tmp = c.bin.with_extension("tmp");
        std::fs::copy(&built, &tmp).with_context(|| format!("copying {} to {}", built.display(), tmp.display()))?;
        std::fs::rename(&tmp, &c.bin)?;
        // Keep the three newest copies.
        let mut copies: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&cache)?
            .flatten()
            .filter(|e| {
                e.file_name().to_string_lossy().starts_with("ernie-ft-")
                    && !e.file_name().to_string_lossy().ends_with(".tmp")
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        copies.sort();
        for (_, p) in copies.iter().rev().skip(3) {
            let _ = std::fs::remove_file(p);
        }
    }
    let help = Command::new(&c.bin)
        .args(["train", "--help"])
        .output()
        .context("running ernie-ft train --help")?;
    let help = String::from_utf8_lossy(&help.stdout);
    c.resume_supported = help.contains("--resume");
    c.save_every_supported = help.contains("--save-every");
    if !c.resume_supported {
        eprintln!("note: this ernie-ft has no --resume: an interrupted cell starts again from its beginning");
    }
    let cuda = c.device.device == "cuda";
    let host = identity::Host::detect(cuda);
    let (commit, dirty) = identity::commit(&root());
    let fp = identity::fingerprint(&c.bin, &c.device, cuda.then_some(c.gpus[0]), &host, &cache)?;
    c.identity = Identity {
        commit,
        dirty,
        fingerprint: fp.value.clone(),
        fingerprint_source: fp.source.clone(),
        device: c.device.name(),
        host,
        binary: fp.binary.clone(),
    };
    eprintln!(
        "campaign {}: {} cells ({} rows x {} seeds); numerics fingerprint {} (commit {}, {}); {} job(s) x {} thread(s)",
        c.out.display(),
        c.specs.len(),
        c.rows.len(),
        c.seeds.len(),
        fp.value,
        c.identity.commit_short(),
        c.identity.host.class(),
        c.jobs,
        c.threads_per_job
    );
    let lock_file = runner::lock(&c.cells_dir().join(".lock"))?;
    let disk = scan_cells(&c)?;
    let plan = planner::plan(&c.specs, &disk, Some(&c.identity), c.opts.fresh)?;
    eprintln!(
        "plan: {} finished, {} to resume, {} to run, {} to close, {} model(s) to regenerate",
        plan.count(planner::Action::Reuse),
        plan.count(planner::Action::Resume),
        plan.count(planner::Action::Run),
        plan.count(planner::Action::Finalize),
        plan.count(planner::Action::Regenerate)
    );
    let outcome = runner::run(&c, &plan, &lock_file)?;
    report::write(&c, Some(&c.identity))?;
    if outcome.stopped {
        eprintln!(
            "stopped: {} cell(s) finished in this invocation, {} interrupted",
            outcome.finished.len(),
            outcome.interrupted.len()
        );
        return Err(Interrupted.into());
    }
    if !outcome.failed.is_empty() || !outcome.interrupted.is_empty() {
        let mut msg = String::new();
        for (id, e) in &outcome.failed {
            msg += &format!("{id}: {e}\n");
        }
        for id in &outcome.interrupted {
            msg += &format!("{id}: interrupted from outside (resumable)\n");
        }
        if !outcome.blocked.is_empty() {
            msg += &format!(
                "not run (their members did not finish): {}\n",
                outcome.blocked.join(", ")
            );
        }
        bail!(
            "{} cell(s) did not finish; rerun the same command to retry them:\n{msg}",
            outcome.failed.len() + outcome.interrupted.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_and_pass_through_flags() {
        let o = parse(
            "bench-afqmc",
            Some("afqmc"),
            &args(&[
                "--jobs",
                "2",
                "--seeds=4",
                "--quick",
                "--",
                "--model",
                "/m",
                "--lr",
                "1e-5",
                "--data=/d",
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!((o.jobs, o.n_seeds, o.quick), (2, Some(4), true));
        assert_eq!(o.model, Some(PathBuf::from("/m")));
        assert_eq!(o.data, Some(PathBuf::from("/d")));
        assert_eq!(o.extra, ["--lr", "1e-5"]);
        let err = parse("bench-afqmc", Some("afqmc"), &args(&["--", "--seed", "3"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--seed after `--` is set by the campaign"), "{err}");
        assert!(parse("bench-afqmc", Some("afqmc"), &args(&["--jobs", "0"])).is_err());
        assert!(parse("bench-afqmc", Some("afqmc"), &args(&["--device", "tpu"])).is_err());
        assert!(
            parse("bench-task", None, &args(&[])).is_err(),
            "bench-task needs --task"
        );
        let o = parse(
            "bench-afqmc",
            Some("afqmc"),
            &args(&["--device", "cuda", "--gpus", "0,1", "--precision", "f32"]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.gpus, [0, 1]);
        assert_eq!(
            DeviceSpec {
                device: o.device,
                precision: o.precision
            }
            .flags(),
            ["--device", "cuda", "--precision", "f32"]
        );
    }

    #[test]
    fn lr_is_doubled_for_layer_decay_rows_only() {
        let by = |k: &str| rows::ROWS.iter().find(|r| r.key == k).unwrap();
        assert_eq!(row_lr(2e-4, by("base")), 2e-4);
        assert_eq!(row_lr(2e-4, by("adv")), 2e-4);
        assert_eq!(row_lr(2e-4, by("layer-decay")), 4e-4);
        assert_eq!(row_lr(2e-4, by("adv+layer-decay+fma")), 4e-4);
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse("bench-iflytek", Some("iflytek"), &args(&["--lr", "2e-4"])).unwrap().unwrap();
        assert_eq!(o.lr, Some(2e-4));
        assert!(parse("bench-iflytek", Some("iflytek"), &args(&["--lr", "0"])).is_err());
        assert!(parse("bench-iflytek", Some("iflytek"), &args(&["--lr", "2e-4", "--", "--lr", "1e-4"])).is_err());
    }
}
