//! Running the two benchmark programs: `ernie-ft bench` once per configuration under a deadline, the
//! PyTorch script once per mode; each measurement (or failure) is appended to `<out>/raw/*.jsonl`.

use super::options::Opts;
use super::{strategy_name, TORCH_SCRIPT};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root: the current directory when it holds the PyTorch script (a binary built elsewhere
/// and carried to the GPU machine), else the workspace this xtask was built from.
pub fn repo_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if cwd.join(TORCH_SCRIPT).is_file() {
        return cwd;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn ernie_ft_bin(o: &Opts) -> Result<PathBuf> {
    if let Some(b) = &o.ernie_bin {
        if !o.dry_run && !b.is_file() {
            bail!("{}: no such ernie-ft binary", b.display());
        }
        return Ok(b.clone());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let bin = target.join("release/ernie-ft");
    if o.dry_run {
        println!("cargo build --release --quiet --bin ernie-ft");
        return Ok(bin);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "ernie-ft"])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building ernie-ft failed");
    }
    Ok(bin)
}

fn shell_line(prog: &str, args: &[String]) -> String {
    let q = |s: &str| {
        if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c)) {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    std::iter::once(q(prog)).chain(args.iter().map(|a| q(a))).collect::<Vec<_>>().join(" ")
}

/// The last line of `text` that parses as a JSON object.
fn last_json(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v.is_object()))
}

/// Runs a command with a deadline; returns (success, stdout, stderr tail).
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<(bool, String, String)> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (t_out.join().unwrap_or_default(), t_err.join().unwrap_or_default());
    let tail: String =
        stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    match status {
        Some(st) => Ok((st.success(), stdout, tail)),
        None => Ok((false, stdout, format!("killed after {} s\n{tail}", timeout.as_secs()))),
    }
}

fn append_jsonl(path: &Path, v: &Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    writeln!(f, "{v}")?;
    Ok(())
}

pub fn run_ernie(o: &Opts, bin: &Path, raw: &Path) -> Result<()> {
    for shape in &o.shapes {
        for &(seq, batch) in &o.sizes {
            for &s in &o.strategies {
                let strategy = strategy_name(s);
                let mut a: Vec<String> = [
                    "bench",
                    "--shape",
                    shape,
                    "--batch",
                    &batch.to_string(),
                    "--seq",
                    &seq.to_string(),
                    "--strategy",
                    strategy,
                    "--mode",
                    "train",
                    "--device",
                    &o.device,
                    "--warmup",
                    &o.warmup.to_string(),
                    "--steps",
                    &o.steps.to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if let Some(p) = o.peak_tflops {
                    a.extend(["--peak-tflops".into(), p.to_string()]);
                }
                println!("$ {}", shell_line(&bin.display().to_string(), &a));
                if o.dry_run {
                    continue;
                }
                let (ok, stdout, tail) =
                    run_with_timeout(Command::new(bin).args(&a), Duration::from_secs(o.timeout_s))?;
                let rec = match (ok, last_json(&stdout)) {
                    (true, Some(v)) => v,
                    _ => {
                        eprintln!("  failed: {tail}");
                        json!({"engine": "ernie-ft", "shape": shape, "seq": seq, "batch": batch, "strategy": strategy, "mode": "train", "device_kind": o.device, "error": tail})
                    }
                };
                if rec.get("error").is_none() {
                    println!(
                        "  {:.1} samples/s, {:.4} s/step, peak {:.0} MiB",
                        rec["samples_per_s"].as_f64().unwrap_or(f64::NAN),
                        rec["median_step_s"].as_f64().unwrap_or(f64::NAN),
                        rec["peak_memory_bytes"].as_f64().unwrap_or(f64::NAN) / 1048576.0
                    );
                }
                append_jsonl(&raw.join("ernie-ft.jsonl"), &rec)?;
            }
        }
    }
    Ok(())
}

pub fn run_torch(o: &Opts, root: &Path, raw: &Path) -> Result<()> {
    let script = root.join(TORCH_SCRIPT);
    for mode in &o.torch_modes {
        let jsonl = raw.join(format!("torch-{mode}.jsonl"));
        let sizes: Vec<String> = o.sizes.iter().map(|(s, b)| format!("{s}x{b}")).collect();
        let mut a: Vec<String> = vec![
            script.display().to_string(),
            "--device".into(),
            o.device.clone(),
            "--shapes".into(),
            o.shapes.join(","),
            "--sizes".into(),
            sizes.join(","),
            "--strategies".into(),
            o.strategies.iter().map(|&s| strategy_name(s)).collect::<Vec<_>>().join(","),
            "--modes".into(),
            mode.clone(),
            "--warmup".into(),
            o.warmup.to_string(),
            "--steps".into(),
            o.steps.to_string(),
            "--jsonl".into(),
            jsonl.display().to_string(),
        ];
        if let Some(p) = o.peak_tflops {
            a.extend(["--peak-tflops".into(), p.to_string()]);
        }
        if let Some(b) = o.torch_budget_s {
            a.extend(["--budget-s".into(), b.to_string()]);
        }
        a.extend(o.torch_extra.iter().cloned());
        println!("$ {}", shell_line(&o.python, &a));
        if o.dry_run {
            continue;
        }
        // The script prints one JSON line per configuration (and appends it to the raw file itself).
        let mut child = Command::new(&o.python)
            .args(&a)
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", o.python))?;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line?;
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v.get("error").is_some() => {
                    println!("  {} {} {}x{} {}: {}", mode, v["shape"], v["seq"], v["batch"], v["strategy"], v["error"])
                }
                Ok(v) => println!(
                    "  {} {} {}x{} {}: {:.1} samples/s, {:.4} s/step, peak {:.0} MiB",
                    mode,
                    v["shape"].as_str().unwrap_or("?"),
                    v["seq"],
                    v["batch"],
                    v["strategy"].as_str().unwrap_or("?"),
                    v["samples_per_s"].as_f64().unwrap_or(f64::NAN),
                    v["median_step_s"].as_f64().unwrap_or(f64::NAN),
                    v["peak_memory_bytes"].as_f64().unwrap_or(f64::NAN) / 1048576.0
                ),
                Err(_) => println!("{line}"),
            }
        }
        let st = child.wait()?;
        if !st.success() {
            eprintln!("note: {} exited with {st} (failed configurations are recorded with an error)", TORCH_SCRIPT);
        }
    }
    Ok(())
}
