//! The campaign's command line: its options ([`Opts`], `--help`), and the `ernie-ft train` flags after `--`
//! (the path flags taken over, the flags the campaign sets itself refused); and what `--lr` means per row.

use super::rows::Row;
use anyhow::{bail, Context, Result};
use ernie_strategies::Strategy;
use std::path::PathBuf;

pub const QUICK_FLAGS: [&str; 8] = ["--train-limit", "256", "--dev-limit", "256", "--epochs", "1", "--max-len", "64"];

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
    let task = if custom { "NAME" } else { command.trim_start_matches("bench-") };
    let task_flag = if custom { " --task NAME --train FILE --dev FILE" } else { "" };
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
  fingerprints are compared within a numerics class (device; AVX-512 or not; GPU model): a table holds one
  fingerprint per class (commits may differ), cells of this class with another are named with what to
  rerun, and an unfinished cell of another class is restarted here, never resumed.

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
        super::rows::ROWS.iter().map(Row::key).collect::<Vec<_>>().join(", ")
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
    if row.has(Strategy::LayerDecay) {
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
            inline.clone().or_else(|| it.next().cloned()).with_context(|| format!("{flag} needs a value"))
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
                    .map(|g| g.trim().parse::<usize>().with_context(|| format!("--gpus: `{g}` is not a GPU ordinal")))
                    .collect::<Result<_>>()?
            }
            "--save-every" => o.save_every = Some(val()?.parse().context("--save-every N")?),
            "--lr" => {
                let v = val()?;
                o.lr = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x > 0.0)
                        .with_context(|| format!("--lr wants a positive number, not {v}"))?,
                );
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

#[cfg(test)]
mod tests {
    use super::super::identity::DeviceSpec;
    use super::super::rows;
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_and_pass_through_flags() {
        let o = parse(
            "bench-afqmc",
            Some("afqmc"),
            &args(&["--jobs", "2", "--seeds=4", "--quick", "--", "--model", "/m", "--lr", "1e-5", "--data=/d"]),
        )
        .unwrap()
        .unwrap();
        assert_eq!((o.jobs, o.n_seeds, o.quick), (2, Some(4), true));
        assert_eq!(o.model, Some(PathBuf::from("/m")));
        assert_eq!(o.data, Some(PathBuf::from("/d")));
        assert_eq!(o.extra, ["--lr", "1e-5"]);
        let err = parse("bench-afqmc", Some("afqmc"), &args(&["--", "--seed", "3"])).unwrap_err().to_string();
        assert!(err.contains("--seed after `--` is set by the campaign"), "{err}");
        assert!(parse("bench-afqmc", Some("afqmc"), &args(&["--jobs", "0"])).is_err());
        assert!(parse("bench-afqmc", Some("afqmc"), &args(&["--device", "tpu"])).is_err());
        assert!(parse("bench-task", None, &args(&[])).is_err(), "bench-task needs --task");
        let o =
            parse("bench-afqmc", Some("afqmc"), &args(&["--device", "cuda", "--gpus", "0,1", "--precision", "f32"]))
                .unwrap()
                .unwrap();
        assert_eq!(o.gpus, [0, 1]);
        assert_eq!(
            DeviceSpec { device: o.device, precision: o.precision }.flags(),
            ["--device", "cuda", "--precision", "f32"]
        );
    }

    #[test]
    fn lr_is_doubled_for_layer_decay_rows_only() {
        let by = |k: &str| rows::ROWS.iter().find(|r| r.key() == k).unwrap();
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
