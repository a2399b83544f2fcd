//! `cargo xtask bench-speed`: the GPU speed table. Runs `ernie-ft bench` and the PyTorch side
//! (`scripts/gpu/bench_speed_torch.py`, eager and `torch.compile`) over the matrix
//! {e5-small, ernie-base} x {seq 128 x batch 32, 128 x 64, 512 x 8} x {base, adv, rdrop}, and writes
//! `results/speed/speed.md` and `speed.json`: samples/s, ernie-ft/eager and ernie-ft/compile ratios, MFU,
//! peak memory, the adv/base and rdrop/base step-time and peak-memory ratios, and the targets checked.
//!
//! Every measurement is also appended to `<out>/raw/*.jsonl` (one JSON line each, as the two benchmark
//! programs print them); the tables are built from the latest record of each configuration there, so a
//! matrix split over several runs (several device calls) is put together with `--report-only`.
//! `--dry-run` prints the commands; `--device cpu --quick` runs the plumbing on the tiny shape.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHAPES: &[&str] = &["e5-small", "ernie-base"];
const SIZES: &[(usize, usize)] = &[(128, 32), (128, 64), (512, 8)];
const STRATEGIES: &[&str] = &["base", "adv", "rdrop"];
const TORCH_MODES: &[&str] = &["eager", "compile"];
const TORCH_SCRIPT: &str = "scripts/gpu/bench_speed_torch.py";

/// The targets (see docs/gpu-runbook.md). Speed-up and MFU targets are read on the ernie-base shape (the
/// "base shape"), seq 128, base strategy; the strategy-overhead targets on every shape and size.
const TARGET_SHAPE: &str = "ernie-base";
const MIN_VS_EAGER: f64 = 1.5;
const MIN_VS_COMPILE: f64 = 1.2;
const MIN_MFU: f64 = 0.45;
const MAX_ADV_TIME: f64 = 2.2;
const MAX_RDROP_TIME: f64 = 2.0;
const MAX_ADV_MEM: f64 = 1.8;
const MAX_RDROP_MEM: f64 = 1.6;

struct Opts {
    device: String,
    quick: bool,
    dry_run: bool,
    report_only: bool,
    fresh: bool,
    shapes: Vec<String>,
    sizes: Vec<(usize, usize)>,
    strategies: Vec<String>,
    torch_modes: Vec<String>,
    run_ernie: bool,
    run_torch: bool,
    ernie_bin: Option<PathBuf>,
    python: String,
    warmup: usize,
    steps: usize,
    peak_tflops: Option<f64>,
    timeout_s: u64,
    torch_budget_s: Option<f64>,
    out: PathBuf,
    torch_extra: Vec<String>,
}

const HELP: &str = "cargo xtask bench-speed [options] [-- extra flags for bench_speed_torch.py]

  --device cuda|cpu        where both sides run [cuda]
  --quick                  the tiny shape only (sizes 32x4,128x8), 1 warm-up + 3 steps, PyTorch eager only
                           unless --torch-modes is given: proves the plumbing on a CPU in a minute or two
  --dry-run                print the commands, run nothing
  --report-only            run nothing; rebuild the tables from <out>/raw/*.jsonl
  --fresh                  delete <out>/raw/ first (otherwise new records are appended; the latest wins)
  --shapes A,B             [e5-small,ernie-base]
  --sizes SEQxBATCH,...    [128x32,128x64,512x8]
  --strategies A,B,C       [base,adv,rdrop]
  --torch-modes A,B        PyTorch modes [eager,compile]; `none` for no PyTorch run
  --no-ernie / --no-torch  run one side only
  --ernie-ft PATH          the ernie-ft binary [$ERNIE_FT_BIN, else built with cargo build --release]
  --python PATH            [$ERNIE_FT_PYTHON, else python3]
  --warmup N --steps N     per configuration [3, 10]
  --peak-tflops X          for MFU [989 (H100/H200 bf16 dense) on cuda]
  --timeout S              seconds per ernie-ft configuration before it is killed [300]
  --torch-budget S         PyTorch: skip the configurations left after S seconds per mode (recorded as skipped)
  --out DIR                [results/speed]";

fn list(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn parse_sizes(v: &str) -> Result<Vec<(usize, usize)>> {
    v.split(',')
        .map(|s| {
            let (a, b) = s.trim().to_ascii_lowercase().split_once('x').map(|(a, b)| (a.to_string(), b.to_string())).with_context(|| format!("size {s}: SEQxBATCH"))?;
            Ok((a.parse().with_context(|| format!("size {s}"))?, b.parse().with_context(|| format!("size {s}"))?))
        })
        .collect()
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        device: "cuda".into(),
        quick: false,
        dry_run: false,
        report_only: false,
        fresh: false,
        shapes: SHAPES.iter().map(|s| s.to_string()).collect(),
        sizes: SIZES.to_vec(),
        strategies: STRATEGIES.iter().map(|s| s.to_string()).collect(),
        torch_modes: TORCH_MODES.iter().map(|s| s.to_string()).collect(),
        run_ernie: true,
        run_torch: true,
        ernie_bin: std::env::var_os("ERNIE_FT_BIN").map(PathBuf::from),
        python: std::env::var("ERNIE_FT_PYTHON").unwrap_or_else(|_| "python3".into()),
        warmup: 3,
        steps: 10,
        peak_tflops: None,
        timeout_s: 300,
        torch_budget_s: None,
        out: PathBuf::from("results/speed"),
        torch_extra: vec![],
    };
    let (mut shapes, mut sizes, mut modes, mut warmup, mut steps) = (None, None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--device" => o.device = val("--device")?,
            "--quick" => o.quick = true,
            "--dry-run" => o.dry_run = true,
            "--report-only" => o.report_only = true,
            "--fresh" => o.fresh = true,
            "--shapes" => shapes = Some(list(&val("--shapes")?)),
            "--sizes" => sizes = Some(parse_sizes(&val("--sizes")?)?),
            "--strategies" => o.strategies = list(&val("--strategies")?),
            "--torch-modes" => modes = Some(list(&val("--torch-modes")?)),
            "--no-ernie" => o.run_ernie = false,
            "--no-torch" => o.run_torch = false,
            "--ernie-ft" => o.ernie_bin = Some(PathBuf::from(val("--ernie-ft")?)),
            "--python" => o.python = val("--python")?,
            "--warmup" => warmup = Some(val("--warmup")?.parse().context("--warmup N")?),
            "--steps" => steps = Some(val("--steps")?.parse().context("--steps N")?),
            "--peak-tflops" => o.peak_tflops = Some(val("--peak-tflops")?.parse().context("--peak-tflops X")?),
            "--timeout" => o.timeout_s = val("--timeout")?.parse().context("--timeout S")?,
            "--torch-budget" => o.torch_budget_s = Some(val("--torch-budget")?.parse().context("--torch-budget S")?),
            "--out" => o.out = PathBuf::from(val("--out")?),
            "--help" | "-h" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            "--" => o.torch_extra = it.by_ref().cloned().collect(),
            other => bail!("unknown option {other} (see --help)"),
        }
    }
    if !matches!(o.device.as_str(), "cuda" | "cpu") {
        bail!("--device {}: cuda or cpu", o.device);
    }
    if o.quick {
        o.shapes = vec!["tiny".into()];
        o.sizes = vec![(32, 4), (128, 8)];
        o.torch_modes = vec!["eager".into()];
        o.warmup = 1;
        o.steps = 3;
    }
    if let Some(s) = shapes {
        o.shapes = s;
    }
    if let Some(s) = sizes {
        o.sizes = s;
    }
    if let Some(m) = modes {
        o.torch_modes = m.into_iter().filter(|m| m != "none").collect();
    }
    if let Some(w) = warmup {
        o.warmup = w;
    }
    if let Some(s) = steps {
        o.steps = s;
    }
    for m in &o.torch_modes {
        if !TORCH_MODES.contains(&m.as_str()) {
            bail!("--torch-modes: unknown mode {m} (eager, compile)");
        }
    }
    for s in &o.strategies {
        if !STRATEGIES.contains(&s.as_str()) {
            bail!("--strategies: unknown strategy {s} (base, adv, rdrop)");
        }
    }
    if o.torch_modes.is_empty() {
        o.run_torch = false;
    }
    Ok(o)
}

/// The repository root: the current directory when it holds the PyTorch script (a binary built elsewhere
/// and carried to the GPU machine), else the workspace this xtask was built from.
fn repo_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if cwd.join(TORCH_SCRIPT).is_file() {
        return cwd;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ernie_ft_bin(o: &Opts) -> Result<PathBuf> {
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
    let status = Command::new(cargo).args(["build", "--release", "--quiet", "--bin", "ernie-ft"]).current_dir(&root).status().context("running cargo build")?;
    if !status.success() {
        bail!("building ernie-ft failed");
    }
    Ok(bin)
}

fn shell_line(prog: &str, args: &[String]) -> String {
    let q = |s: &str| if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c)) { s.to_string() } else { format!("'{}'", s.replace('\'', "'\\''")) };
    std::iter::once(q(prog)).chain(args.iter().map(|a| q(a))).collect::<Vec<_>>().join(" ")
}

/// The last line of `text` that parses as a JSON object.
fn last_json(text: &str) -> Option<Value> {
    text.lines().rev().filter(|l| l.trim_start().starts_with('{')).find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v.is_object()))
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
    let tail: String = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    match status {
        Some(st) => Ok((st.success(), stdout, tail)),
        None => Ok((false, stdout, format!("killed after {} s\n{tail}", timeout.as_secs()))),
    }
}

fn append_jsonl(path: &Path, v: &Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    writeln!(f, "{v}")?;
    Ok(())
}

fn run_ernie(o: &Opts, bin: &Path, raw: &Path) -> Result<()> {
    for shape in &o.shapes {
        for &(seq, batch) in &o.sizes {
            for strategy in &o.strategies {
                let mut a: Vec<String> = ["bench", "--shape", shape, "--batch", &batch.to_string(), "--seq", &seq.to_string(), "--strategy", strategy, "--mode", "train", "--device", &o.device, "--warmup", &o.warmup.to_string(), "--steps", &o.steps.to_string()]
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
                let (ok, stdout, tail) = run_with_timeout(Command::new(bin).args(&a), Duration::from_secs(o.timeout_s))?;
                let rec = match (ok, last_json(&stdout)) {
                    (true, Some(v)) => v,
                    _ => {
                        eprintln!("  failed: {tail}");
                        json!({"engine": "ernie-ft", "shape": shape, "seq": seq, "batch": batch, "strategy": strategy, "mode": "train", "device_kind": o.device, "error": tail})
                    }
                };
                if rec.get("error").is_none() {
                    println!("  {:.1} samples/s, {:.4} s/step, peak {:.0} MiB", rec["samples_per_s"].as_f64().unwrap_or(f64::NAN), rec["median_step_s"].as_f64().unwrap_or(f64::NAN), rec["peak_memory_bytes"].as_f64().unwrap_or(f64::NAN) / 1048576.0);
                }
                append_jsonl(&raw.join("ernie-ft.jsonl"), &rec)?;
            }
        }
    }
    Ok(())
}

fn run_torch(o: &Opts, root: &Path, raw: &Path) -> Result<()> {
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
            o.strategies.join(","),
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
        let mut child = Command::new(&o.python).args(&a).env("PYTHONUNBUFFERED", "1").stdout(Stdio::piped()).spawn().with_context(|| format!("running {}", o.python))?;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line?;
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v.get("error").is_some() => println!("  {} {} {}x{} {}: {}", mode, v["shape"], v["seq"], v["batch"], v["strategy"], v["error"]),
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

/// (engine column, shape, seq, batch, strategy)
type Key = (String, String, u64, u64, String);

fn key_of(v: &Value) -> Option<Key> {
    let engine = match v["engine"].as_str()? {
        "ernie-ft" => "ernie-ft".to_string(),
        "pytorch" => format!("torch-{}", v["torch_mode"].as_str()?),
        _ => return None,
    };
    Some((engine, v["shape"].as_str()?.to_string(), v["seq"].as_u64()?, v["batch"].as_u64()?, v["strategy"].as_str()?.to_string()))
}

/// The latest record of each configuration in `<raw>/*.jsonl`, training mode on `device` only.
fn load_records(raw: &Path, device: &str) -> Result<BTreeMap<Key, Value>> {
    let mut recs = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(raw) else { return Ok(recs) };
    let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "jsonl")).collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).with_context(|| format!("{}: cannot read", f.display()))?;
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
            if v["device_kind"].as_str() != Some(device) || v["mode"].as_str().is_some_and(|m| m != "train") {
                continue;
            }
            if let Some(k) = key_of(&v) {
                recs.insert(k, v);
            }
        }
    }
    Ok(recs)
}

fn num(recs: &BTreeMap<Key, Value>, engine: &str, shape: &str, (seq, batch): (usize, usize), strategy: &str, field: &str) -> Option<f64> {
    let v = recs.get(&(engine.to_string(), shape.to_string(), seq as u64, batch as u64, strategy.to_string()))?;
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return None;
    }
    v[field].as_f64()
}

fn fmt(x: Option<f64>, digits: usize) -> String {
    x.filter(|v| v.is_finite()).map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn pct(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite()).map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

fn mib(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite()).map_or("-".to_string(), |v| format!("{:.0}", v / 1048576.0))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// `1.23x (ok)` / `1.23x (MISSED)` against an upper (`max`) or lower bound.
fn judged(x: Option<f64>, bound: f64, upper: bool) -> (String, Value) {
    match x {
        None => ("-".into(), Value::Null),
        Some(v) => {
            let ok = if upper { v <= bound } else { v >= bound };
            (format!("{v:.2}x {}", if ok { "ok" } else { "MISSED" }), json!(ok))
        }
    }
}

fn device_line(o: &Opts) -> String {
    if o.device != "cuda" {
        return String::new();
    }
    Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
}

fn report(o: &Opts, recs: &BTreeMap<Key, Value>) -> Result<()> {
    let first = |engine: &str| recs.iter().find(|(k, v)| k.0.starts_with(engine) && v.get("error").is_none()).map(|(_, v)| v.clone());
    let ernie_dev = first("ernie-ft").map(|v| v["device"].clone()).unwrap_or(Value::Null);
    let torch_any = first("torch-");
    let commit = Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let settings = json!({
        "device": o.device, "ernie_ft_device": ernie_dev, "nvidia_smi": device_line(o),
        "torch_device": torch_any.as_ref().map(|v| v["device"].clone()), "torch": torch_any.as_ref().map(|v| v["torch"].clone()),
        "transformers": torch_any.as_ref().map(|v| v["transformers"].clone()),
        "ernie_ft_precision": first("ernie-ft").map(|v| v["precision"].clone()), "torch_precision": torch_any.as_ref().map(|v| v["precision"].clone()),
        "warmup": o.warmup, "steps": o.steps, "quick": o.quick, "commit": commit,
        "peak_tflops": first("ernie-ft").map(|v| v["peak_tflops"].clone()),
    });
    let has = |engine: &str| recs.keys().any(|k| k.0 == engine);
    let (eager, compile) = (has("torch-eager"), has("torch-compile"));
    let mut md = format!(
        "# Speed: ernie-ft vs PyTorch{}\n\nSettings: `{settings}`\n\n",
        if o.quick { " (QUICK plumbing run, tiny shape: not a measurement)" } else { "" }
    );
    md += "Training steps on random weights (forward + backward + AdamW with clipping; dropout 0.1; no padding), \
median of the timed steps, each synchronised. samples/s counts the B examples of a batch (R-Drop runs 2B rows). \
MFU = model FLOPs per step / step time / peak TFLOP/s, the FLOPs counted as in crates/cli/src/bench.rs (matrix \
products only; adv = 3 forwards + a probe backward without weight gradients + 2 full backwards). Peak memory: \
ernie-ft's device high-water mark (host RSS on the CPU), PyTorch's torch.cuda.max_memory_allocated.\n\n";

    // Throughput.
    md += "## Throughput (samples/s)\n\n| shape | seq x batch | strategy | ernie-ft | PyTorch eager | PyTorch compile | ernie-ft / eager | ernie-ft / compile | MFU ernie-ft | MFU eager | MFU compile |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
    let mut rows = vec![];
    for shape in &o.shapes {
        for &size in &o.sizes {
            for strategy in &o.strategies {
                let g = |e: &str, f: &str| num(recs, e, shape, size, strategy, f);
                let (se, st, sc) = (g("ernie-ft", "samples_per_s"), g("torch-eager", "samples_per_s"), g("torch-compile", "samples_per_s"));
                let (re, rc) = (ratio(se, st), ratio(se, sc));
                md += &format!(
                    "| {shape} | {}x{} | {strategy} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    size.0,
                    size.1,
                    fmt(se, 1),
                    if eager { fmt(st, 1) } else { "n/r".into() },
                    if compile { fmt(sc, 1) } else { "n/r".into() },
                    re.map_or("-".into(), |r| format!("{r:.2}x")),
                    rc.map_or("-".into(), |r| format!("{r:.2}x")),
                    pct(g("ernie-ft", "mfu")),
                    pct(g("torch-eager", "mfu")),
                    pct(g("torch-compile", "mfu")),
                );
                rows.push(json!({
                    "shape": shape, "seq": size.0, "batch": size.1, "strategy": strategy,
                    "samples_per_s": {"ernie_ft": se, "torch_eager": st, "torch_compile": sc},
                    "median_step_s": {"ernie_ft": g("ernie-ft", "median_step_s"), "torch_eager": g("torch-eager", "median_step_s"), "torch_compile": g("torch-compile", "median_step_s")},
                    "ratio_vs_eager": re, "ratio_vs_compile": rc,
                    "mfu": {"ernie_ft": g("ernie-ft", "mfu"), "torch_eager": g("torch-eager", "mfu"), "torch_compile": g("torch-compile", "mfu")},
                    "peak_memory_bytes": {"ernie_ft": g("ernie-ft", "peak_memory_bytes"), "torch_eager": g("torch-eager", "peak_memory_bytes"), "torch_compile": g("torch-compile", "peak_memory_bytes")},
                    "flops_per_step": g("ernie-ft", "flops_per_step").or(g("torch-eager", "flops_per_step")),
                }));
            }
        }
    }
    md += "\nn/r: not run. -: missing or failed (see the raw records).\n\n";

    // Memory.
    md += "## Peak memory (MiB)\n\n| shape | seq x batch | strategy | ernie-ft | PyTorch eager | PyTorch compile |\n|---|---|---|---|---|---|\n";
    for shape in &o.shapes {
        for &size in &o.sizes {
            for strategy in &o.strategies {
                let g = |e: &str| num(recs, e, shape, size, strategy, "peak_memory_bytes");
                md += &format!("| {shape} | {}x{} | {strategy} | {} | {} | {} |\n", size.0, size.1, mib(g("ernie-ft")), mib(g("torch-eager")), mib(g("torch-compile")));
            }
        }
    }

    // Strategy overhead.
    md += &format!(
        "\n## Strategy overhead (ernie-ft; PyTorch eager in brackets)\n\nTargets: adv <= {MAX_ADV_TIME}x and rdrop <= {MAX_RDROP_TIME}x the base step time; adv <= {MAX_ADV_MEM}x and rdrop <= {MAX_RDROP_MEM}x the base peak memory.\n\n| shape | seq x batch | adv/base time | rdrop/base time | adv/base memory | rdrop/base memory |\n|---|---|---|---|---|---|\n"
    );
    let mut overhead = vec![];
    let mut worst: BTreeMap<&str, (f64, String)> = BTreeMap::new();
    for shape in &o.shapes {
        for &size in &o.sizes {
            let r = |e: &str, s: &str, f: &str| ratio(num(recs, e, shape, size, s, f), num(recs, e, shape, size, "base", f));
            let cells = [
                ("adv_time", r("ernie-ft", "adv", "median_step_s"), r("torch-eager", "adv", "median_step_s"), MAX_ADV_TIME),
                ("rdrop_time", r("ernie-ft", "rdrop", "median_step_s"), r("torch-eager", "rdrop", "median_step_s"), MAX_RDROP_TIME),
                ("adv_memory", r("ernie-ft", "adv", "peak_memory_bytes"), r("torch-eager", "adv", "peak_memory_bytes"), MAX_ADV_MEM),
                ("rdrop_memory", r("ernie-ft", "rdrop", "peak_memory_bytes"), r("torch-eager", "rdrop", "peak_memory_bytes"), MAX_RDROP_MEM),
            ];
            let mut line = format!("| {shape} | {}x{} |", size.0, size.1);
            let mut o_json = json!({"shape": shape, "seq": size.0, "batch": size.1});
            for (name, ours, theirs, bound) in cells {
                let (txt, ok) = judged(ours, bound, true);
                line += &format!(" {txt} [{}] |", theirs.map_or("-".into(), |t| format!("{t:.2}x")));
                o_json[name] = json!({"ernie_ft": ours, "torch_eager": theirs, "bound": bound, "ok": ok});
                if let Some(v) = ours {
                    let e = worst.entry(name).or_insert((f64::NEG_INFINITY, String::new()));
                    if v > e.0 {
                        *e = (v, format!("{shape} {}x{}", size.0, size.1));
                    }
                }
            }
            md += &(line + "\n");
            overhead.push(o_json);
        }
    }

    // Targets.
    let tshape = if o.quick { "tiny" } else { TARGET_SHAPE };
    md += &format!("\n## Targets\n\nSpeed-up and MFU targets on the {tshape} shape, seq 128, base strategy.\n\n| target | where | value | met |\n|---|---|---|---|\n");
    let mut targets = vec![];
    let mut push = |md: &mut String, what: String, place: String, v: Option<f64>, bound: f64, upper: bool, unit: &str| {
        let ok = v.map(|v| if upper { v <= bound } else { v >= bound });
        let value = v.map_or("-".to_string(), |v| if unit == "%" { format!("{:.1}%", 100.0 * v) } else { format!("{v:.2}x") });
        *md += &format!("| {what} | {place} | {value} | {} |\n", ok.map_or("n/a", |k| if k { "yes" } else { "NO" }));
        targets.push(json!({"target": what, "where": place, "value": v, "bound": bound, "met": ok}));
    };
    let seq128: Vec<(usize, usize)> = o.sizes.iter().copied().filter(|s| s.0 == 128).collect();
    for &size in &seq128 {
        let se = num(recs, "ernie-ft", tshape, size, "base", "samples_per_s");
        let place = format!("{tshape} {}x{} base", size.0, size.1);
        push(&mut md, format!(">= {MIN_VS_EAGER}x PyTorch eager"), place.clone(), ratio(se, num(recs, "torch-eager", tshape, size, "base", "samples_per_s")), MIN_VS_EAGER, false, "x");
        push(&mut md, format!(">= {MIN_VS_COMPILE}x PyTorch compile"), place, ratio(se, num(recs, "torch-compile", tshape, size, "base", "samples_per_s")), MIN_VS_COMPILE, false, "x");
    }
    let mfu_size = seq128.iter().copied().max_by_key(|s| s.1).unwrap_or((128, 64));
    push(&mut md, format!("MFU >= {:.0}%", MIN_MFU * 100.0), format!("{tshape} {}x{} base", mfu_size.0, mfu_size.1), num(recs, "ernie-ft", tshape, mfu_size, "base", "mfu"), MIN_MFU, false, "%");
    for (name, what, bound) in [
        ("adv_time", format!("adv step time <= {MAX_ADV_TIME}x base"), MAX_ADV_TIME),
        ("rdrop_time", format!("rdrop step time <= {MAX_RDROP_TIME}x base"), MAX_RDROP_TIME),
        ("adv_memory", format!("adv peak memory <= {MAX_ADV_MEM}x base"), MAX_ADV_MEM),
        ("rdrop_memory", format!("rdrop peak memory <= {MAX_RDROP_MEM}x base"), MAX_RDROP_MEM),
    ] {
        let (v, place) = worst.get(name).map_or((None, "-".to_string()), |(v, p)| (Some(*v), format!("worst: {p}")));
        push(&mut md, what, place, v, bound, true, "x");
    }
    if o.device == "cpu" {
        md += "\nThe targets are for the GPU; on the CPU they are computed only to exercise the report.\n";
    }

    std::fs::create_dir_all(&o.out)?;
    let records: Vec<&Value> = recs.values().collect();
    std::fs::write(o.out.join("speed.md"), &md)?;
    std::fs::write(o.out.join("speed.json"), serde_json::to_string_pretty(&json!({"settings": settings, "rows": rows, "overhead": overhead, "targets": targets, "records": records}))?)?;
    println!("{md}\nwritten: {}/speed.{{md,json}} (raw records in {}/raw/)", o.out.display(), o.out.display());
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let raw = o.out.join("raw");
    if !o.report_only {
        let root = repo_root();
        if o.fresh && !o.dry_run && raw.is_dir() {
            std::fs::remove_dir_all(&raw).with_context(|| format!("{}: cannot remove", raw.display()))?;
        }
        if !o.dry_run {
            std::fs::create_dir_all(&raw).with_context(|| format!("{}: cannot create", raw.display()))?;
        }
        if o.run_ernie {
            let bin = ernie_ft_bin(&o)?;
            run_ernie(&o, &bin, &raw)?;
        }
        if o.run_torch {
            run_torch(&o, &root, &raw)?;
        }
        if o.dry_run {
            return Ok(());
        }
    }
    let recs = load_records(&raw, &o.device)?;
    if recs.is_empty() {
        bail!("no {} records in {}", o.device, raw.display());
    }
    report(&o, &recs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(engine: &str, mode: Option<&str>, strategy: &str, t: f64, mem: f64) -> Value {
        json!({"engine": engine, "torch_mode": mode, "shape": "tiny", "seq": 32, "batch": 4, "strategy": strategy, "mode": "train",
               "device_kind": "cpu", "samples_per_s": 4.0 / t, "median_step_s": t, "peak_memory_bytes": mem, "mfu": 0.5})
    }

    #[test]
    fn tables_from_raw_records() {
        let dir = std::env::temp_dir().join(format!("bench-speed-test-{}", std::process::id()));
        let raw = dir.join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        let lines = [
            rec("ernie-ft", None, "base", 1.0, 100.0),
            rec("ernie-ft", None, "adv", 3.0, 150.0),
            rec("ernie-ft", None, "rdrop", 1.5, 200.0),
            rec("pytorch", Some("eager"), "base", 2.0, 100.0),
            // A later record of the same configuration replaces the earlier one.
            rec("pytorch", Some("eager"), "base", 1.6, 100.0),
        ];
        std::fs::write(raw.join("a.jsonl"), lines.iter().map(|v| v.to_string() + "\n").collect::<String>()).unwrap();
        let args: Vec<String> = ["--device", "cpu", "--quick", "--sizes", "32x4", "--report-only", "--out", dir.to_str().unwrap()].iter().map(|s| s.to_string()).collect();
        run(&args).unwrap();
        let out: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("speed.json")).unwrap()).unwrap();
        let base = out["rows"].as_array().unwrap().iter().find(|r| r["strategy"] == "base").unwrap();
        assert!((base["ratio_vs_eager"].as_f64().unwrap() - 1.6).abs() < 1e-9);
        let o = &out["overhead"][0];
        assert_eq!(o["adv_time"]["ok"], json!(false)); // 3.0x > 2.2x
        assert_eq!(o["rdrop_time"]["ok"], json!(true));
        assert_eq!(o["rdrop_memory"]["ok"], json!(false)); // 2.0x > 1.6x
        assert!(std::fs::read_to_string(dir.join("speed.md")).unwrap().contains("| tiny | 32x4 | base |"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_sizes("128x32, 512X8").unwrap(), vec![(128, 32), (512, 8)]);
        assert!(parse_sizes("128").is_err());
    }
}
