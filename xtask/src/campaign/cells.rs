//! Cells: one row x seed of a campaign, in `<out>/cells/<id>/`.
//!
//! - `cell.json`: what the cell is (row, seed or FMA members), its configuration (the ernie-ft flags that
//!   decide the numbers, and the content of its inputs: line counts and blake3 of the data files and the
//!   model), the input paths and full argument lists it ran with, the identity that computed it (commit,
//!   numerics fingerprint, host), and one entry per invocation that worked on it.
//! - `metrics.json`: written when the cell is finished (the training run's metrics.json; for an FMA cell
//!   the averaged model's eval metrics with its members' accuracies). Its presence is what "finished" means.
//! - `train.log` / `fma.log`: the children's output (stdout and stderr), cut to a git-friendly size.
//! - `run/` (training: ernie-ft's output dir, model and training-state checkpoints) and `avg/` (FMA: the
//!   averaged model): never committed (.gitignore), deleted once no unfinished FMA cell needs them unless
//!   `--keep-checkpoints`.

use super::identity::{Host, Identity};
use super::rows::Row;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const RECORD: &str = "cell.json";
pub const METRICS: &str = "metrics.json";
pub const RUN_DIR: &str = "run";
pub const AVG_DIR: &str = "avg";
/// Logs longer than this are cut to their head and tail when a cell ends.
pub const LOG_LIMIT: u64 = 256 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One `ernie-ft train` run with this seed.
    Train { seed: u64 },
    /// `ernie-ft average` of the parent row's models of these seeds, then `ernie-ft eval`.
    Fma { members: Vec<u64> },
}

/// A cell the campaign wants, with the configuration it would run.
#[derive(Clone, Debug)]
pub struct CellSpec {
    pub id: String,
    pub row: &'static Row,
    pub kind: Kind,
    /// What must match for a recorded cell to be reused (compared as JSON).
    pub config: Value,
}

impl CellSpec {
    pub fn train_id(row: &Row, seed: u64) -> String {
        format!("{}-seed{seed}", row.key())
    }

    pub fn fma_id(row: &Row, members: &[u64]) -> String {
        format!("{}-seeds{}", row.key(), members.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("+"))
    }

    /// The training cells an FMA cell averages (none for a training cell).
    pub fn member_ids(&self) -> Vec<String> {
        match &self.kind {
            Kind::Train { .. } => vec![],
            Kind::Fma { members } => members.iter().map(|&s| Self::train_id(self.row.parent(), s)).collect(),
        }
    }

    pub fn seed(&self) -> Option<u64> {
        match self.kind {
            Kind::Train { seed } => Some(seed),
            Kind::Fma { .. } => None,
        }
    }

    /// Breadth-first order: every row of seed 1, then seed 2, ...; an FMA cell after its last member.
    pub fn order(&self) -> (u64, usize) {
        match &self.kind {
            Kind::Train { seed } => (*seed, self.row.index()),
            Kind::Fma { members } => (members.iter().copied().max().unwrap_or(0), self.row.index()),
        }
    }

    pub fn is_fma(&self) -> bool {
        matches!(self.kind, Kind::Fma { .. })
    }
}

/// One invocation's work on a cell.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    /// Unix seconds.
    pub started: u64,
    pub ended: Option<u64>,
    /// `finished`, `interrupted`, `failed (...)`, `regenerated weights`.
    pub outcome: Option<String>,
    pub commit: String,
    /// Also in `host`; kept because the records written before `host` name their machine by this alone.
    pub hostname: String,
    /// The commands run, each as its argument list.
    pub commands: Vec<Vec<String>>,
    /// The machine it ran on (absent in records written before it was recorded: then the cell's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
}

/// `cell.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CellRecord {
    pub format: u32,
    pub id: String,
    pub row: String,
    /// `train` or `fma`.
    pub kind: String,
    pub seed: Option<u64>,
    /// FMA: the training cells averaged.
    #[serde(default)]
    pub members: Vec<String>,
    pub config: Value,
    /// Paths of the inputs (not compared: a campaign may continue on another machine).
    pub paths: Value,
    /// The identity that started the cell; every later segment had the same fingerprint.
    pub identity: Identity,
    /// `running`, `finished`, `interrupted`, `failed`.
    pub status: String,
    /// Training: `final_weights_blake3` of the finished run.
    pub weights_blake3: Option<String>,
    #[serde(default)]
    pub segments: Vec<Segment>,
}

/// What a cell directory holds.
#[derive(Clone, Debug, Default)]
pub struct OnDisk {
    pub record: Option<CellRecord>,
    /// `metrics.json` in the cell directory.
    pub finished: bool,
    /// `run/` holds a final model (model.safetensors + ernie_ft.json).
    pub weights: bool,
    /// `run/metrics.json`: the training run finished but the cell was not closed.
    pub run_finished: bool,
    /// `run/checkpoints/step-*`: a training-state checkpoint to resume from.
    pub checkpoint: bool,
    /// The updates the newest checkpoint leaves to train (its state.json: total_steps - progress.step);
    /// None without a checkpoint or where its state cannot be read.
    pub updates_left: Option<u64>,
}

pub fn dir(cells: &Path, id: &str) -> PathBuf {
    cells.join(id)
}

pub fn scan(cell_dir: &Path) -> Result<OnDisk> {
    let rec_path = cell_dir.join(RECORD);
    let record = if rec_path.is_file() {
        let text =
            std::fs::read_to_string(&rec_path).with_context(|| format!("{}: cannot read", rec_path.display()))?;
        Some(serde_json::from_str(&text).with_context(|| {
            format!("{}: malformed cell record (delete the cell directory to recompute it)", rec_path.display())
        })?)
    } else {
        None
    };
    let run = cell_dir.join(RUN_DIR);
    let checkpoint = has_checkpoint(&run);
    Ok(OnDisk {
        record,
        finished: cell_dir.join(METRICS).is_file(),
        weights: run.join("model.safetensors").is_file() && run.join("ernie_ft.json").is_file(),
        run_finished: run.join(METRICS).is_file(),
        checkpoint,
        updates_left: if checkpoint { updates_left(&run) } else { None },
    })
}

/// The updates left after the newest training state in `run/checkpoints` (the step-N with the largest N).
fn updates_left(run: &Path) -> Option<u64> {
    let newest = std::fs::read_dir(run.join("checkpoints"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse::<u64>().ok().map(|n| (n, e.path())))
        .max_by_key(|(n, _)| *n)?
        .1;
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest.join("state.json")).ok()?).ok()?;
    Some(state["total_steps"].as_u64()?.saturating_sub(state["progress"]["step"].as_u64()?))
}

/// Whether a run directory holds a training-state checkpoint (checkpoints/step-N) to resume from.
pub fn has_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints"))
        .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("step-")))
        .unwrap_or(false)
}

pub fn read_record(cell_dir: &Path) -> Result<CellRecord> {
    scan(cell_dir)?.record.with_context(|| format!("{}: no {RECORD}", cell_dir.display()))
}

pub fn write_record(cell_dir: &Path, rec: &CellRecord) -> Result<()> {
    std::fs::create_dir_all(cell_dir)?;
    super::write_atomic(&cell_dir.join(RECORD), serde_json::to_string_pretty(rec)?.as_bytes())
}

pub fn read_json(p: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: malformed JSON", p.display()))
}

/// Human-readable differences between a recorded configuration and the current one; empty when equal.
/// Flag lists are compared flag by flag (`--lr: recorded 3e-5, now 5e-5`), objects key by key.
pub fn diff(recorded: &Value, now: &Value) -> Vec<String> {
    let mut out = vec![];
    diff_into("", recorded, now, &mut out);
    out
}

fn diff_into(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let sub = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                diff_into(&sub(k), x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if is_flag_list(x) && is_flag_list(y) => {
            let (fx, fy) = (flag_pairs(x), flag_pairs(y));
            let names: std::collections::BTreeSet<&String> = fx.iter().chain(fy.iter()).map(|(k, _)| k).collect();
            for n in names {
                let vx: Vec<&String> = fx.iter().filter(|(k, _)| k == n).map(|(_, v)| v).collect();
                let vy: Vec<&String> = fy.iter().filter(|(k, _)| k == n).map(|(_, v)| v).collect();
                if vx != vy {
                    let show = |v: &[&String]| {
                        if v.is_empty() {
                            "absent".to_string()
                        } else {
                            v.iter()
                                .map(|s| if s.is_empty() { "(set)".to_string() } else { s.to_string() })
                                .collect::<Vec<_>>()
                                .join(" ")
                        }
                    };
                    out.push(format!("{n}: recorded {}, now {}", show(&vx), show(&vy)));
                }
            }
        }
        _ => out.push(format!(
            "{}: recorded {}, now {}",
            if path.is_empty() { "configuration" } else { path },
            short(a),
            short(b)
        )),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}...", &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

fn is_flag_list(v: &[Value]) -> bool {
    v.first().and_then(|x| x.as_str()).is_some_and(|s| s.starts_with("--")) && v.iter().all(|x| x.is_string())
}

/// `["--a", "1", "--b", "--c", "2"]` -> [("--a", "1"), ("--b", ""), ("--c", "2")].
pub fn flag_pairs(v: &[Value]) -> Vec<(String, String)> {
    let s: Vec<&str> = v.iter().filter_map(|x| x.as_str()).collect();
    let mut out = vec![];
    let mut i = 0;
    while i < s.len() {
        let k = s[i].to_string();
        if i + 1 < s.len() && !s[i + 1].starts_with("--") {
            out.push((k, s[i + 1].to_string()));
            i += 2;
        } else {
            out.push((k, String::new()));
            i += 1;
        }
    }
    out
}

/// Cut a log to its first 64 KiB and last 160 KiB when it is over [`LOG_LIMIT`].
pub fn trim_log(p: &Path) -> Result<()> {
    let Ok(meta) = std::fs::metadata(p) else { return Ok(()) };
    if meta.len() <= LOG_LIMIT {
        return Ok(());
    }
    let bytes = std::fs::read(p)?;
    let (head, tail) = (64 * 1024, 160 * 1024);
    let mut out = bytes[..head].to_vec();
    out.extend_from_slice(format!("\n[... {} bytes cut by the campaign ...]\n", bytes.len() - head - tail).as_bytes());
    out.extend_from_slice(&bytes[bytes.len() - tail..]);
    super::write_atomic(p, &out)
}

/// The last `n` lines of a log, for error messages.
pub fn log_tail(p: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_names_flags_and_inputs() {
        let a = json!({"flags": ["--task", "afqmc", "--seed", "1", "--lr", "3e-5", "--no-x"], "inputs": {"train": {"lines": 10, "blake3": "aa"}}});
        let b = json!({"flags": ["--task", "afqmc", "--seed", "1", "--lr", "5e-5", "--epochs", "1"], "inputs": {"train": {"lines": 12, "blake3": "bb"}}});
        let d = diff(&a, &b);
        assert!(d.contains(&"--lr: recorded 3e-5, now 5e-5".to_string()), "{d:?}");
        assert!(d.contains(&"--epochs: recorded absent, now 1".to_string()), "{d:?}");
        assert!(d.contains(&"--no-x: recorded (set), now absent".to_string()), "{d:?}");
        assert!(d.contains(&"inputs.train.lines: recorded 10, now 12".to_string()), "{d:?}");
        assert!(d.contains(&"inputs.train.blake3: recorded \"aa\", now \"bb\"".to_string()), "{d:?}");
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn scan_reads_the_updates_the_newest_checkpoint_leaves() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = tmp.path().join(RUN_DIR).join("checkpoints");
        for (step, total) in [(100u64, 1116u64), (1000, 1116), (450, 1116)] {
            let d = ckpts.join(format!("step-{step:08}"));
            std::fs::create_dir_all(&d).unwrap();
            let state = json!({"total_steps": total, "progress": {"step": step}});
            std::fs::write(d.join("state.json"), state.to_string()).unwrap();
        }
        let d = scan(tmp.path()).unwrap();
        assert!(d.checkpoint);
        assert_eq!(d.updates_left, Some(116), "step-00001000 is the newest");
        std::fs::write(ckpts.join("step-00001000/state.json"), "{").unwrap();
        assert_eq!(scan(tmp.path()).unwrap().updates_left, None, "an unreadable state: unknown, not a guess");
        std::fs::remove_dir_all(&ckpts).unwrap();
        let d = scan(tmp.path()).unwrap();
        assert!(!d.checkpoint && d.updates_left.is_none());
    }

    #[test]
    fn ids_are_row_keys() {
        let fma = super::super::rows::by_key("adv+layer-decay+fma").unwrap();
        assert_eq!(CellSpec::train_id(fma.parent(), 2), "adv+layer-decay-seed2");
        assert_eq!(CellSpec::fma_id(fma, &[1, 3]), "adv+layer-decay+fma-seeds1+3");
        let c = CellSpec {
            id: CellSpec::fma_id(fma, &[1, 3]),
            row: fma,
            kind: Kind::Fma { members: vec![1, 3] },
            config: json!({}),
        };
        assert_eq!(c.member_ids(), ["adv+layer-decay-seed1", "adv+layer-decay-seed3"]);
        assert_eq!(c.order(), (3, fma.index()));
    }
}
