//! Runs the planned cells: up to `--jobs` ernie-ft processes at once, FMA cells as soon as their members'
//! models exist, training cells in the plan's order (those with a checkpoint first, then breadth-first);
//! closes each cell as its process ends.
//!
//! Interruptions. Each child runs in its own process group and the campaign forwards SIGINT / SIGTERM to
//! every running child exactly once per signal it receives, continuing a stopped one (a Ctrl-C in the
//! terminal reaches the campaign alone), then stops launching, waits for the children to write their
//! training-state checkpoints and exit, writes the table from the cells that exist and exits 130. If the
//! campaign itself dies (SIGKILL, a crash), each child receives SIGTERM from the kernel (PR_SET_PDEATHSIG)
//! and checkpoints likewise.
//! The children inherit the campaign's lock on `<out>/cells/.lock`, so a rerun waits until the last child
//! of an earlier invocation has exited before it reads the cells.

use super::cells::{self, CellRecord, Kind, Segment, AVG_DIR, METRICS, RUN_DIR};
use super::planner::{Action, Plan};
use super::Campaign;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    LAST_SIGNAL.store(sig, Ordering::SeqCst);
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to atomics (async-signal-safe).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An exclusive lock on `path` (flock), held while the returned file lives and by the children that
/// inherit it. Waits, saying so, while another holder exists.
pub fn lock(path: &Path) -> Result<File> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!(
            "waiting for {}: another campaign on this directory, or the ernie-ft processes of an interrupted one still writing their checkpoints",
            path.display()
        );
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("{}: cannot lock: {}", path.display(), std::io::Error::last_os_error());
        }
    }
    Ok(f)
}

/// What happened to the cells of this invocation.
#[derive(Debug, Default)]
pub struct Outcome {
    pub finished: Vec<String>,
    pub interrupted: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// FMA cells that could not run (a member failed or was interrupted).
    pub blocked: Vec<String>,
    /// Stopped by SIGINT / SIGTERM.
    pub stopped: bool,
}

struct Running {
    id: String,
    child: Child,
    commands: Vec<Vec<String>>,
    step: usize,
    gpu: Option<usize>,
    log: PathBuf,
    regenerate: bool,
}

fn test_hook(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

pub fn run(c: &Campaign, plan: &Plan, lock_file: &File) -> Result<Outcome> {
    let mut out = Outcome::default();
    let spec = |id: &str| &c.specs[c.spec_index[id]];
    let mut needed_by = plan.needed_by.clone();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut weights: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<String> = vec![];
    for id in &plan.order {
        let d = &plan.decisions[id];
        let dir = c.cell_dir(id);
        if d.discard {
            remove_dir(&dir)?;
            if let Some(n) = &d.note {
                eprintln!("{id}: {n}");
            }
        }
        match d.action {
            Action::Reuse => {
                done.insert(id.clone());
            }
            Action::Finalize => {
                close_train_cell(c, id, None)?;
                done.insert(id.clone());
                out.finished.push(id.clone());
            }
            Action::Regenerate => {
                done.insert(id.clone());
                pending.push(id.clone());
            }
            Action::Run | Action::Resume => pending.push(id.clone()),
        }
        if !spec(id).is_fma()
            && dir.join(RUN_DIR).join("model.safetensors").is_file()
            && dir.join(RUN_DIR).join("ernie_ft.json").is_file()
        {
            weights.insert(id.clone());
        }
    }
    // Models and averages nothing needs any more (left by an interrupted invocation).
    if !c.keep_checkpoints {
        for id in &done {
            if pending.contains(id) {
                continue;
            }
            if spec(id).is_fma() {
                remove_dir(&c.cell_dir(id).join(AVG_DIR))?;
            } else if !keeps_model(c, &needed_by, id) {
                remove_dir(&c.cell_dir(id).join(RUN_DIR))?;
                weights.remove(id);
            }
        }
    }
    install_signal_handlers();
    let mut forwarded = SIGNALS.load(Ordering::SeqCst);
    let mut running: Vec<Running> = vec![];
    let (kill_after, sigint_after) =
        (test_hook("XTASK_CAMPAIGN_TEST_KILL_AFTER"), test_hook("XTASK_CAMPAIGN_TEST_SIGINT_AFTER"));
    let mut closed_now = 0usize;
    let mut hook_due = false;
    loop {
        let n = SIGNALS.load(Ordering::SeqCst);
        if n > forwarded {
            let sig = LAST_SIGNAL.load(Ordering::SeqCst);
            if !out.stopped {
                eprintln!(
                    "\ncampaign: stopping on signal {sig}: {} running cell(s) write a checkpoint and stop; rerun the same command to continue",
                    running.len()
                );
            }
            for r in &running {
                // SAFETY: kill on a child's pid (it may have exited already: ESRCH is harmless). A stopped
                // child (SIGSTOP by a user or a test hook) acts on the signal only once continued.
                unsafe {
                    libc::kill(r.child.id() as libc::pid_t, sig);
                    libc::kill(r.child.id() as libc::pid_t, libc::SIGCONT);
                }
            }
            forwarded = n;
            out.stopped = true;
        }
        if !out.stopped {
            while running.len() < c.jobs {
                let ready = |id: &String| {
                    let s = spec(id);
                    if s.is_fma() {
                        s.member_ids()
                            .iter()
                            .all(|m| done.contains(m) && weights.contains(m) && !running.iter().any(|r| &r.id == m))
                    } else {
                        plan.decisions[id].action != Action::Regenerate
                            || regeneration_due(id, &needed_by, &done, |f| spec(f).member_ids())
                    }
                };
                // FMA cells first (they are short and free their members' models), then a model to train
                // again whose FMA cell can then run at once, then the plan's order.
                let has_model = |m: &str| weights.contains(m) || running.iter().any(|r| r.id == m);
                let completes_an_fma = |id: &String| {
                    plan.decisions[id].action == Action::Regenerate
                        && completes_an_fma(id, &needed_by, has_model, |f| spec(f).member_ids())
                };
                let pick = pending
                    .iter()
                    .position(|id| spec(id).is_fma() && ready(id))
                    .or_else(|| pending.iter().position(|id| !spec(id).is_fma() && ready(id) && completes_an_fma(id)))
                    .or_else(|| pending.iter().position(|id| !spec(id).is_fma() && ready(id)));
                let Some(i) = pick else { break };
                let id = pending.remove(i);
                let gpu = c.pick_gpu(&running.iter().filter_map(|r| r.gpu).collect::<Vec<_>>());
                let regenerate = plan.decisions[&id].action == Action::Regenerate;
                match start_cell(c, &id, gpu, regenerate, &needed_by, lock_file) {
                    Ok(r) => running.push(r),
                    Err(e) => {
                        eprintln!("{id}: cannot start: {e:#}");
                        out.failed.push((id.clone(), format!("{e:#}")));
                    }
                }
            }
            if hook_due {
                hook_due = false;
                let stopped = stop_a_child_mid_run(c, &mut running);
                let resume = || {
                    if let Some(pid) = stopped {
                        // SAFETY: SIGCONT to our own child.
                        unsafe { libc::kill(pid, libc::SIGCONT) };
                    }
                };
                if kill_after.is_some_and(|k| closed_now >= k) {
                    eprintln!("campaign: test hook: SIGKILL after {closed_now} cells");
                    // Continued an instant before the campaign dies: the kernel's SIGTERM finds it mid-run.
                    resume();
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                }
                if sigint_after.is_some_and(|k| closed_now >= k) {
                    eprintln!("campaign: test hook: SIGINT after {closed_now} cells");
                    // Forwarded to the stopped child first, then it is continued (as every child is).
                    unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
                    continue;
                }
                resume();
            }
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut i = 0;
        while i < running.len() {
            let Some(status) = running[i].child.try_wait()? else {
                i += 1;
                continue;
            };
            let r = &mut running[i];
            if status.success() && r.step + 1 < r.commands.len() && !out.stopped {
                r.step += 1;
                r.child = spawn(c, &r.commands[r.step], &r.log, lock_file)?;
                i += 1;
                continue;
            }
            let r = running.remove(i);
            use std::os::unix::process::ExitStatusExt;
            let interrupted = matches!(status.code(), Some(130) | Some(143))
                || matches!(status.signal(), Some(libc::SIGINT) | Some(libc::SIGTERM))
                || status.success() && r.step + 1 < r.commands.len();
            let mut regenerated = None;
            let result = if status.success() && !interrupted {
                if spec(&r.id).is_fma() {
                    close_fma_cell(c, &r.id)
                } else if r.regenerate {
                    check_regenerated(c, &r.id).map(|outcome| regenerated = Some(outcome))
                } else {
                    close_train_cell(c, &r.id, Some(&needed_by))
                }
            } else if interrupted {
                Err(anyhow::anyhow!("interrupted"))
            } else {
                Err(anyhow::anyhow!(
                    "{} ({status}); last lines of {}:\n{}",
                    r.commands[r.step].first().map_or("", |s| s.as_str()),
                    r.log.display(),
                    cells::log_tail(&r.log, 15)
                ))
            };
            let _ = cells::trim_log(&r.log);
            match result {
                Ok(()) => {
                    eprintln!("{}: {}", r.id, if r.regenerate { "model regenerated" } else { "finished" });
                    end_segment(c, &r.id, regenerated.as_deref().unwrap_or("finished"))?;
                    if (r.regenerate || !spec(&r.id).is_fma())
                        && c.cell_dir(&r.id).join(RUN_DIR).join("model.safetensors").is_file()
                    {
                        weights.insert(r.id.clone());
                    }
                    if !r.regenerate {
                        out.finished.push(r.id.clone());
                    }
                    done.insert(r.id.clone());
                    if spec(&r.id).is_fma() {
                        for m in spec(&r.id).member_ids() {
                            if let Some(set) = needed_by.get_mut(&m) {
                                set.remove(&r.id);
                                if set.is_empty() {
                                    needed_by.remove(&m);
                                    if !keeps_model(c, &needed_by, &m) {
                                        remove_dir(&c.cell_dir(&m).join(RUN_DIR))?;
                                        weights.remove(&m);
                                    }
                                }
                            }
                        }
                    }
                    closed_now += 1;
                    hook_due = kill_after.is_some() || sigint_after.is_some();
                }
                Err(e) if interrupted => {
                    let _ = e;
                    eprintln!("{}: interrupted (resumable)", r.id);
                    end_segment(c, &r.id, "interrupted")?;
                    if !r.regenerate {
                        set_status(c, &r.id, "interrupted")?;
                    }
                    out.interrupted.push(r.id.clone());
                }
                Err(e) if r.regenerate => {
                    // The cell itself stays finished: only the copy of its model for the FMA cells failed.
                    eprintln!("{}: regenerating its model FAILED: {e:#}", r.id);
                    end_segment(c, &r.id, &format!("regenerating the model failed: {e:#}"))?;
                    out.failed.push((r.id.clone(), format!("{e:#}")));
                }
                Err(e) => {
                    eprintln!("{}: FAILED: {e:#}", r.id);
                    end_segment(c, &r.id, &format!("failed ({status})"))?;
                    set_status(c, &r.id, "failed")?;
                    out.failed.push((r.id.clone(), format!("{e:#}")));
                }
            }
        }
    }
    if !out.stopped {
        out.blocked = pending.into_iter().filter(|id| !out.failed.iter().any(|(f, _)| f == id)).collect();
    }
    Ok(out)
}

/// Test hooks: wait (at most 20 s) for a running training cell that has written a training state with
/// updates still to go, and leave that child stopped (SIGSTOP) inside its training loop, so that the signal
/// a hook sends next lands in the middle of a run however loaded the machine is. Polling alone lost that
/// race now and then on a busy 2-core machine, where a small run can end between two polls. "Inside its
/// loop" holds when the run saves its last update too (the tests' `--save-every` divides its steps).
/// Returns the stopped child's pid; the caller continues it (SIGCONT).
fn stop_a_child_mid_run(c: &Campaign, running: &mut [Running]) -> Option<libc::pid_t> {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        let mut alive = false;
        for r in running.iter_mut() {
            if !matches!(r.child.try_wait(), Ok(None)) {
                continue;
            }
            alive = true;
            let dir = c.cell_dir(&r.id);
            let mid_run = || cells::scan(&dir).is_ok_and(|d| d.updates_left.is_some_and(|n| n > 0));
            if !mid_run() {
                continue;
            }
            let pid = r.child.id() as libc::pid_t;
            // SAFETY: signals to our own child, and a waitid that leaves its state to `Child` (WNOWAIT).
            unsafe {
                libc::kill(pid, libc::SIGSTOP);
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WSTOPPED | libc::WEXITED | libc::WNOWAIT);
            }
            // Checked again once it has stopped: it may have saved its last update, or exited (and been
            // reaped by this try_wait: no signal to its pid then), in the meantime.
            if !matches!(r.child.try_wait(), Ok(None)) {
                continue;
            }
            if mid_run() {
                return Some(pid);
            }
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        if !alive {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn remove_dir(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot delete", p.display())),
    }
}

/// Make a finished cell's run/ ready to train its deleted model again. Its training-state checkpoints are
/// kept: with the default settings `close_train_cell` deleted the original run's, so any there were written
/// by an interrupted regeneration, and with `--keep-checkpoints` they are the original run's own; either
/// way resuming from them gives the recorded weights (resume is bit-identical) for less work. Everything
/// else goes: the original run's metrics.json would make `--resume auto` report the finished run instead
/// of training. Unless it `resumes` (checkpoints there and `--resume` supported), the run starts again from
/// nothing.
fn prepare_regeneration(run: &Path, resumes: bool) -> Result<()> {
    if !resumes {
        return remove_dir(run);
    }
    for e in std::fs::read_dir(run).with_context(|| format!("{}: cannot list", run.display()))? {
        let e = e?;
        if e.file_name() == "checkpoints" {
            continue;
        }
        let p = e.path();
        if e.file_type()?.is_dir() {
            remove_dir(&p)?;
        } else {
            std::fs::remove_file(&p).with_context(|| format!("{}: cannot delete", p.display()))?;
        }
    }
    Ok(())
}

fn spawn(c: &Campaign, args: &[String], log: &Path, lock_file: &File) -> Result<Child> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("{}: cannot open", log.display()))?;
    writeln!(
        f,
        "=== {} {} commit {}: ernie-ft {}",
        now(),
        c.identity.host.hostname,
        c.identity.commit_short(),
        args.join(" ")
    )?;
    super::identity::mark_used(&c.bin);
    let mut cmd = Command::new(&c.bin);
    cmd.args(args).stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let lock_fd = lock_file.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != parent {
                    libc::_exit(143);
                }
            }
            let _ = parent;
            // Keep the campaign's lock while this child lives.
            let flags = libc::fcntl(lock_fd, libc::F_GETFD);
            libc::fcntl(lock_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("running {}", c.bin.display()))
}

fn start_cell(
    c: &Campaign,
    id: &str,
    gpu: Option<usize>,
    regenerate: bool,
    needed_by: &BTreeMap<String, BTreeSet<String>>,
    lock_file: &File,
) -> Result<Running> {
    let s = &c.specs[c.spec_index[id]];
    let dir = c.cell_dir(id);
    std::fs::create_dir_all(&dir)?;
    let disk = cells::scan(&dir)?;
    // prepare_regeneration keeps the checkpoints a resumable run would continue from.
    let resumes = disk.checkpoint && c.resume_supported;
    let commands = match &s.kind {
        Kind::Train { seed } => {
            let run = dir.join(RUN_DIR);
            if regenerate {
                prepare_regeneration(&run, resumes)?;
            }
            if !c.resume_supported && !disk.run_finished {
                // This ernie-ft cannot resume: an interrupted cell starts again.
                remove_dir(&run)?;
            }
            let keep_model = regenerate || keeps_model(c, needed_by, id);
            vec![c.train_args(s.row, *seed, &run, gpu, keep_model)]
        }
        Kind::Fma { .. } => {
            let avg = dir.join(AVG_DIR);
            let mut v = vec![];
            if !avg.join("ernie_ft.json").is_file() {
                remove_dir(&avg)?;
                v.push(c.average_args(s, &avg));
            }
            v.push(c.eval_args(&avg, &dir.join("eval.json"), gpu));
            v
        }
    };
    let log = dir.join(if s.is_fma() { "fma.log" } else { "train.log" });
    let mut rec = match disk.record {
        Some(r) => r,
        None => CellRecord {
            format: 1,
            id: id.to_string(),
            row: s.row.key(),
            kind: if s.is_fma() { "fma".into() } else { "train".into() },
            seed: s.seed(),
            members: s.member_ids(),
            config: s.config.clone(),
            paths: c.paths.clone(),
            identity: c.identity.clone(),
            status: "running".into(),
            weights_blake3: None,
            segments: vec![],
        },
    };
    // A cell whose model is regenerated stays finished: its metrics are recorded already.
    rec.status = if regenerate { "finished" } else { "running" }.into();
    rec.paths = c.paths.clone();
    for seg in rec.segments.iter_mut().filter(|s| s.outcome.is_none()) {
        seg.outcome = Some("not closed: the campaign was killed".into());
    }
    rec.segments.push(Segment {
        started: now(),
        ended: None,
        outcome: None,
        commit: c.identity.commit_short(),
        hostname: c.identity.host.hostname.clone(),
        commands: commands.clone(),
        host: Some(c.identity.host.clone()),
    });
    cells::write_record(&dir, &rec)?;
    let what = match (&s.kind, regenerate) {
        (_, true) if resumes => "regenerating its model (resuming)",
        (_, true) => "regenerating its model",
        (Kind::Fma { .. }, _) => "averaging and evaluating",
        (_, _) if resumes => "resuming",
        _ => "training",
    };
    eprintln!("{id}: {what}{} (log: {})", gpu.map_or(String::new(), |g| format!(" on GPU {g}")), log.display());
    let child = spawn(c, &commands[0], &log, lock_file)?;
    Ok(Running { id: id.to_string(), child, commands, step: 0, gpu, log, regenerate })
}

fn update_record(c: &Campaign, id: &str, f: impl FnOnce(&mut CellRecord)) -> Result<()> {
    let dir = c.cell_dir(id);
    let mut rec = cells::read_record(&dir)?;
    f(&mut rec);
    cells::write_record(&dir, &rec)
}

fn end_segment(c: &Campaign, id: &str, outcome: &str) -> Result<()> {
    update_record(c, id, |r| {
        if let Some(s) = r.segments.last_mut() {
            s.ended = Some(now());
            s.outcome = Some(outcome.to_string());
        }
    })
}

fn set_status(c: &Campaign, id: &str, status: &str) -> Result<()> {
    update_record(c, id, |r| r.status = status.to_string())
}

/// Whether a training cell's model stays: `--keep-checkpoints`, or an unfinished FMA cell needs it (of
/// this invocation: `needed_by`; of a row it does not run: `Campaign::models_for_other_rows`).
fn keeps_model(c: &Campaign, needed_by: &BTreeMap<String, BTreeSet<String>>, id: &str) -> bool {
    c.keep_checkpoints || needed_by.contains_key(id) || c.models_for_other_rows.contains(id)
}

/// Copy run/metrics.json into the cell (the mark of a finished cell) and delete what is not needed.
fn close_train_cell(c: &Campaign, id: &str, needed_by: Option<&BTreeMap<String, BTreeSet<String>>>) -> Result<()> {
    let dir = c.cell_dir(id);
    let run = dir.join(RUN_DIR);
    let bytes = std::fs::read(run.join(METRICS)).with_context(|| format!("{id}: the run wrote no metrics.json"))?;
    let m: Value = serde_json::from_slice(&bytes).with_context(|| format!("{id}: malformed metrics.json"))?;
    if m["final_dev"].is_null() {
        bail!("{id}: metrics.json has no final_dev (was there a dev file?)");
    }
    update_record(c, id, |r| {
        r.status = "finished".into();
        r.weights_blake3 = m["final_weights_blake3"].as_str().map(String::from);
    })?;
    super::write_atomic(&dir.join(METRICS), &bytes)?;
    if !c.keep_checkpoints {
        remove_dir(&run.join("checkpoints"))?;
        if needed_by.is_some_and(|n| !keeps_model(c, n, id)) {
            remove_dir(&run)?;
        }
    }
    Ok(())
}

/// Whether to train `id` again for its deleted model now: only once an FMA cell that needs it waits for
/// nothing else (its other members finished), so that a model is not retrained hours before it is used,
/// while its partners still train, and possibly lost again meanwhile. `done` holds the finished cells
/// (those being regenerated included); `members` gives an FMA cell's members.
fn regeneration_due<M: Fn(&str) -> Vec<String>>(
    id: &str,
    needed_by: &BTreeMap<String, BTreeSet<String>>,
    done: &BTreeSet<String>,
    members: M,
) -> bool {
    needed_by.get(id).is_some_and(|fmas| fmas.iter().any(|f| members(f).iter().all(|m| m == id || done.contains(m))))
}

/// Whether training `id`'s model (again) lets one of the FMA cells that need it run as soon as it is done:
/// every other member's model is on disk or training (`has_model`). Among the models to train again, these
/// go first, so that each FMA cell's two models are trained back to back: models are not committed, a new
/// machine starts without them, and a pair trained back to back is what a short stay on one machine can
/// finish, where the plan's order (seed by seed) would train one model of every row before the partners.
fn completes_an_fma<H: Fn(&str) -> bool, M: Fn(&str) -> Vec<String>>(
    id: &str,
    needed_by: &BTreeMap<String, BTreeSet<String>>,
    has_model: H,
    members: M,
) -> bool {
    needed_by.get(id).is_some_and(|fmas| fmas.iter().any(|f| members(f).iter().all(|m| m == id || has_model(m))))
}

/// A regenerated model must be the one the cell recorded (same final weights) where the cell was computed
/// on this numerics class. A cell from another class (AVX-512 or not, another GPU) cannot be reproduced
/// bit for bit here: the same configuration trains a model with other last bits, hence other weights,
/// within the seed spread. That model is what the FMA cells then average, and they record its own
/// accuracy as the member's (close_fma_cell); the cell keeps its recorded metrics. Returns the outcome
/// for the cell's segment.
fn check_regenerated(c: &Campaign, id: &str) -> Result<String> {
    let dir = c.cell_dir(id);
    let rec = cells::read_record(&dir)?;
    let m = cells::read_json(&dir.join(RUN_DIR).join(METRICS))?;
    let (here, there) = (c.identity.numerics_class(), rec.identity.numerics_class());
    let mut outcome = "regenerated the model".to_string();
    if let (Some(was), Some(now)) = (rec.weights_blake3.as_deref(), m["final_weights_blake3"].as_str()) {
        if was != now && here == there {
            remove_dir(&dir.join(RUN_DIR))?;
            bail!("{id}: the regenerated model differs from the recorded one (final_weights_blake3 {now} vs {was}): the numerics changed; rerun the campaign with --fresh --rows {}", rec.row);
        }
        if was != now {
            outcome = format!(
                "regenerated the model on {here}, not the one recorded on {there}: final_weights_blake3 {now}, dev accuracy {} (recorded {}); the FMA cells record this model's accuracy",
                m["final_dev"]["accuracy"], rec_accuracy(&dir)
            );
        }
    }
    if !c.keep_checkpoints {
        remove_dir(&dir.join(RUN_DIR).join("checkpoints"))?;
    }
    Ok(outcome)
}

fn rec_accuracy(dir: &Path) -> Value {
    cells::read_json(&dir.join(METRICS)).map_or(Value::Null, |m| m["final_dev"]["accuracy"].clone())
}

/// The averaged model's eval metrics with its members' accuracies -> metrics.json.
fn close_fma_cell(c: &Campaign, id: &str) -> Result<()> {
    let s = &c.specs[c.spec_index[id]];
    let dir = c.cell_dir(id);
    let eval = cells::read_json(&dir.join("eval.json"))?;
    let mut members = vec![];
    for m in s.member_ids() {
        // The metrics of the model averaged: its run's, which are the cell's unless it was regenerated on
        // another numerics class (check_regenerated).
        let mdir = c.cell_dir(&m);
        let run_metrics = mdir.join(RUN_DIR).join(METRICS);
        let mm = cells::read_json(&if run_metrics.is_file() { run_metrics } else { mdir.join(METRICS) })?;
        let mut entry = json!({
            "cell": m,
            "accuracy": mm["final_dev"]["accuracy"],
            "macro_f1": mm["final_dev"]["macro_f1"],
            "final_weights_blake3": mm["final_weights_blake3"],
        });
        let rec = cells::read_record(&mdir)?;
        if rec.weights_blake3.is_some() && rec.weights_blake3.as_deref() != mm["final_weights_blake3"].as_str() {
            entry["retrained"] = json!(format!(
                "on {}: the cell's model (computed on {}, dev accuracy {}) was deleted; this is its retrained copy",
                c.identity.numerics_class(),
                rec.identity.numerics_class(),
                rec_accuracy(&mdir)
            ));
        }
        members.push(entry);
    }
    let accs: Vec<f64> = members.iter().filter_map(|m| m["accuracy"].as_f64()).collect();
    let mean = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
    let metrics = json!({
        "kind": "fma",
        "accuracy": eval["accuracy"],
        "macro_f1": eval["macro_f1"],
        "loss": eval["loss"],
        "examples": eval["examples"],
        "members": members,
        "members_mean_accuracy": mean,
        "gain_over_members_mean": eval["accuracy"].as_f64().map(|a| a - mean),
    });
    update_record(c, id, |r| r.status = "finished".into())?;
    super::write_atomic(&dir.join(METRICS), serde_json::to_string_pretty(&metrics)?.as_bytes())?;
    let _ = std::fs::remove_file(dir.join("eval.json"));
    if !c.keep_checkpoints {
        remove_dir(&dir.join(AVG_DIR))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_model_is_regenerated_only_once_an_fma_cell_waits_for_nothing_else() {
        let members = |f: &str| match f {
            "fma-seeds1+2" => vec!["base-seed1".to_string(), "base-seed2".to_string()],
            "fma-seeds1+3" => vec!["base-seed1".to_string(), "base-seed3".to_string()],
            _ => unreachable!("{f}"),
        };
        let needed_by: BTreeMap<String, BTreeSet<String>> =
            [("base-seed1".to_string(), ["fma-seeds1+2".to_string(), "fma-seeds1+3".to_string()].into())].into();
        let done = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        // base-seed1 is being regenerated (counted done); seeds 2 and 3 still train.
        assert!(!regeneration_due("base-seed1", &needed_by, &done(&["base-seed1"]), members));
        assert!(regeneration_due("base-seed1", &needed_by, &done(&["base-seed1", "base-seed3"]), members));
        assert!(regeneration_due("base-seed1", &needed_by, &done(&["base-seed1", "base-seed2"]), members));
        // Nothing needs it.
        assert!(!regeneration_due("base-seed2", &needed_by, &done(&["base-seed1", "base-seed2"]), members));
    }

    #[test]
    fn a_model_whose_partner_is_on_disk_or_training_is_trained_again_first() {
        let members = |f: &str| {
            let (row, seeds) = f.rsplit_once("+fma-seeds").unwrap();
            seeds.split('+').map(|s| format!("{row}-seed{s}")).collect::<Vec<_>>()
        };
        let mut needed_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // The FMA cell of adv+ld seeds 1+3 is finished; four others still need their models.
        for f in ["adv+ld+fma-seeds1+2", "adv+ld+fma-seeds2+3", "rd+ld+fma-seeds1+2", "rd+ld+fma-seeds1+3"] {
            for m in members(f) {
                needed_by.entry(m).or_default().insert(f.to_string());
            }
        }
        let on = |ids: &'static [&'static str]| move |m: &str| ids.contains(&m);
        // adv+ld seed 1's model is on disk: seed 2 completes 1+2; rd+ld seed 1 and adv+ld seed 3 complete nothing.
        assert!(completes_an_fma("adv+ld-seed2", &needed_by, on(&["adv+ld-seed1"]), members));
        assert!(!completes_an_fma("rd+ld-seed1", &needed_by, on(&["adv+ld-seed1"]), members));
        assert!(!completes_an_fma("adv+ld-seed3", &needed_by, on(&["adv+ld-seed1"]), members));
        // Seed 1 of adv+ld is not needed by 2+3, seed 3 is: with seed 2 on disk, seed 3 goes before rd+ld.
        assert!(completes_an_fma("adv+ld-seed3", &needed_by, on(&["adv+ld-seed2"]), members));
        assert!(!completes_an_fma("adv+ld-seed1", &needed_by, on(&["adv+ld-seed3"]), members));
        // A cell that nothing needs completes nothing.
        assert!(!completes_an_fma("base-seed1", &needed_by, on(&["base-seed2"]), members));
    }

    fn tree(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walk(dir).iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect();
        v.sort();
        v
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn an_interrupted_regeneration_keeps_its_checkpoints_and_drops_the_finished_runs_files() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join(RUN_DIR);
        let files = [
            "checkpoints/step-00000100/manifest.json",
            "checkpoints/step-00000108/manifest.json",
            "metrics.json",
            "config.json",
            "tokenizer.json",
            "sub/x",
        ];
        let populate = || {
            for f in files {
                std::fs::create_dir_all(run.join(f).parent().unwrap()).unwrap();
                std::fs::write(run.join(f), f).unwrap();
            }
        };
        populate();
        // Without --resume support nothing can be continued: the run starts again.
        prepare_regeneration(&run, false).unwrap();
        assert!(!run.exists());
        populate();
        assert!(cells::has_checkpoint(&run));
        prepare_regeneration(&run, true).unwrap();
        assert_eq!(
            tree(&run),
            ["checkpoints/step-00000100/manifest.json", "checkpoints/step-00000108/manifest.json"],
            "the training state stays, the finished run's metrics.json (which would stop --resume auto) goes"
        );
        // A run left without checkpoints (a model deleted after its run closed) starts from nothing.
        std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
        std::fs::write(run.join(METRICS), "{}").unwrap();
        assert!(!cells::has_checkpoint(&run));
        prepare_regeneration(&run, false).unwrap();
        assert!(!run.exists());
        // Nothing there at all is fine too.
        prepare_regeneration(&run, false).unwrap();
    }
}
