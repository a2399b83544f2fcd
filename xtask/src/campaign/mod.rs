//! Experiment campaigns: `cargo xtask bench-iflytek` / `bench-afqmc` (and `bench-task` for any CLUE-style
//! task). A campaign is the set of cells (row x seed) of the strategy table under `results/<task>/cells/`;
//! each cell is one `ernie-ft train` run (or one FMA average + eval) with its recorded configuration, the
//! identity of the numerics that computed it, and its metrics. Rerunning the command reuses the finished
//! cells, resumes the interrupted ones from their last training-state checkpoint and runs the rest; the
//! table (Markdown, JSON, CSV, chart) is written from the cells at the end of every invocation.
//!
//! Modules: [`rows`] (the table's rows), [`options`] (the command line), [`setup`] (the files, the binary and
//! the campaign they make), [`invocation`] (what the cells share, their flags, command lines and
//! configurations), [`cells`] (cell directories and records), [`identity`] (host, commit, numerics
//! fingerprint), [`planner`] (reuse / resume / run, order, refusals), [`runner`] (child processes, jobs,
//! signals), [`stats`] (means, paired deltas, t intervals), [`report`] and [`chart`]. This file runs one
//! invocation through them ([`run_command`]).

pub mod cells;
pub mod chart;
pub mod identity;
pub mod invocation;
pub mod options;
pub mod planner;
pub mod report;
pub mod rows;
pub mod runner;
pub mod setup;
pub mod stats;

use anyhow::{bail, Context, Result};
use identity::Identity;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

pub use invocation::Campaign;
use options::parse;
use setup::{ernie_ft_bin, setup};

/// Returned (as the error) when a signal stopped the campaign: `main` exits 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by a signal; rerun the same command to continue where it stopped")
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
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

fn scan_cells(c: &Campaign) -> Result<BTreeMap<String, cells::OnDisk>> {
    c.specs.iter().map(|s| Ok((s.id.clone(), cells::scan(&c.cell_dir(&s.id))?))).collect()
}

/// Widen the campaign from the rows this invocation trains (`--rows`) to the rows its table reports: those
/// and every other row of which the campaign directory holds a finished cell. The table is the directory's,
/// so training a few rows must not drop the others' results from it.
fn widen_to_table_rows(c: &mut Campaign) {
    let chosen = std::mem::replace(&mut c.rows, rows::ROWS.iter().collect());
    c.build_specs();
    let with_cells: Vec<String> =
        c.specs.iter().filter(|s| c.cell_dir(&s.id).join(cells::METRICS).is_file()).map(|s| s.row.key()).collect();
    c.rows.retain(|r| chosen.iter().any(|x| x.key() == r.key()) || with_cells.contains(&r.key()));
    c.build_specs();
}

/// The training cells of this invocation whose models the unfinished FMA cells of the table's other rows
/// (every row of [`rows::ROWS`] that `--rows` left out) need.
fn models_for_other_rows(c: &mut Campaign) -> BTreeSet<String> {
    let chosen = std::mem::replace(&mut c.rows, rows::ROWS.iter().collect());
    c.build_specs();
    let needed: BTreeSet<String> = c
        .specs
        .iter()
        .filter(|s| s.is_fma() && !chosen.iter().any(|r| r.key() == s.row.key()))
        .filter(|s| !c.cell_dir(&s.id).join(cells::METRICS).is_file())
        .flat_map(|s| s.member_ids())
        .collect();
    c.rows = chosen;
    c.build_specs();
    needed.into_iter().filter(|id| c.spec_index.contains_key(id)).collect()
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
        widen_to_table_rows(&mut c);
        report::write(&c, None)?;
        return Ok(());
    }
    // A private copy of the binary, so that a rebuild during the campaign cannot change its numerics
    // under the fingerprint computed here.
    let built = ernie_ft_bin()?;
    let cache = identity::cache_dir(&root());
    c.bin = identity::private_copy(&built, &cache)?;
    let help = Command::new(&c.bin).args(["train", "--help"]).output().context("running ernie-ft train --help")?;
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
    c.models_for_other_rows = models_for_other_rows(&mut c);
    if !c.models_for_other_rows.is_empty() && !c.keep_checkpoints {
        eprintln!(
            "keeping the models of {} for the FMA rows not run now (--rows), which average them",
            c.models_for_other_rows.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let disk = scan_cells(&c)?;
    let plan = planner::plan(&c.specs, &disk, Some(&c.identity), c.opts.fresh)?;
    eprintln!(
        "plan: {} finished, {} to resume, {} to run, {} to close, {} model(s) to regenerate",
        // A cell whose model is to be regenerated is finished: its results stand.
        plan.count(planner::Action::Reuse) + plan.count(planner::Action::Regenerate),
        plan.count(planner::Action::Resume),
        plan.count(planner::Action::Run),
        plan.count(planner::Action::Finalize),
        plan.count(planner::Action::Regenerate)
    );
    let outcome = runner::run(&c, &plan, &lock_file)?;
    widen_to_table_rows(&mut c);
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
            msg += &format!("not run (their members did not finish): {}\n", outcome.blocked.join(", "));
        }
        bail!(
            "{} cell(s) did not finish; rerun the same command to retry them:\n{msg}",
            outcome.failed.len() + outcome.interrupted.len()
        );
    }
    Ok(())
}
