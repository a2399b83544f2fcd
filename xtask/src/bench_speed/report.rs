//! The speed tables from the raw records (the latest of each configuration): throughput and MFU against
//! PyTorch eager and compile, peak memory, the strategies' overhead over base, and the targets checked;
//! written as `speed.md` and `speed.json`.

use super::options::Opts;
use super::strategy_name;
use anyhow::{Context, Result};
use ernie_strategies::Strategy;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The base strategy's spelling (no strategy) in the records.
const BASE: &str = strategy_name(None);

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

/// (engine column, shape, seq, batch, strategy)
type Key = (String, String, u64, u64, String);

fn key_of(v: &Value) -> Option<Key> {
    let engine = match v["engine"].as_str()? {
        "ernie-ft" => "ernie-ft".to_string(),
        "pytorch" => format!("torch-{}", v["torch_mode"].as_str()?),
        _ => return None,
    };
    Some((
        engine,
        v["shape"].as_str()?.to_string(),
        v["seq"].as_u64()?,
        v["batch"].as_u64()?,
        v["strategy"].as_str()?.to_string(),
    ))
}

/// The latest record of each configuration in `<raw>/*.jsonl`, training mode on `device` only.
pub fn load_records(raw: &Path, device: &str) -> Result<BTreeMap<Key, Value>> {
    let mut recs = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(raw) else { return Ok(recs) };
    let mut files: Vec<PathBuf> =
        dir.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "jsonl")).collect();
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

fn num(
    recs: &BTreeMap<Key, Value>,
    engine: &str,
    shape: &str,
    (seq, batch): (usize, usize),
    strategy: &str,
    field: &str,
) -> Option<f64> {
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

pub fn report(o: &Opts, recs: &BTreeMap<Key, Value>) -> Result<()> {
    let first = |engine: &str| {
        recs.iter().find(|(k, v)| k.0.starts_with(engine) && v.get("error").is_none()).map(|(_, v)| v.clone())
    };
    let ernie_dev = first("ernie-ft").map(|v| v["device"].clone()).unwrap_or(Value::Null);
    let torch_any = first("torch-");
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
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
            for &st in &o.strategies {
                let strategy = strategy_name(st);
                let g = |e: &str, f: &str| num(recs, e, shape, size, strategy, f);
                let (se, st, sc) = (
                    g("ernie-ft", "samples_per_s"),
                    g("torch-eager", "samples_per_s"),
                    g("torch-compile", "samples_per_s"),
                );
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
            for &st in &o.strategies {
                let strategy = strategy_name(st);
                let g = |e: &str| num(recs, e, shape, size, strategy, "peak_memory_bytes");
                md += &format!(
                    "| {shape} | {}x{} | {strategy} | {} | {} | {} |\n",
                    size.0,
                    size.1,
                    mib(g("ernie-ft")),
                    mib(g("torch-eager")),
                    mib(g("torch-compile"))
                );
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
            let r = |e: &str, s: Strategy, f: &str| {
                ratio(num(recs, e, shape, size, s.name(), f), num(recs, e, shape, size, BASE, f))
            };
            let ours_and_torch = |s: Strategy, f: &str| (r("ernie-ft", s, f), r("torch-eager", s, f));
            let cells = [
                ("adv_time", ours_and_torch(Strategy::Adv, "median_step_s"), MAX_ADV_TIME),
                ("rdrop_time", ours_and_torch(Strategy::Rdrop, "median_step_s"), MAX_RDROP_TIME),
                ("adv_memory", ours_and_torch(Strategy::Adv, "peak_memory_bytes"), MAX_ADV_MEM),
                ("rdrop_memory", ours_and_torch(Strategy::Rdrop, "peak_memory_bytes"), MAX_RDROP_MEM),
            ];
            let mut line = format!("| {shape} | {}x{} |", size.0, size.1);
            let mut o_json = json!({"shape": shape, "seq": size.0, "batch": size.1});
            for (name, (ours, theirs), bound) in cells {
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
    let mut push =
        |md: &mut String, what: String, place: String, v: Option<f64>, bound: f64, upper: bool, unit: &str| {
            let ok = v.map(|v| if upper { v <= bound } else { v >= bound });
            let value =
                v.map_or(
                    "-".to_string(),
                    |v| if unit == "%" { format!("{:.1}%", 100.0 * v) } else { format!("{v:.2}x") },
                );
            *md +=
                &format!("| {what} | {place} | {value} | {} |\n", ok.map_or("n/a", |k| if k { "yes" } else { "NO" }));
            targets.push(json!({"target": what, "where": place, "value": v, "bound": bound, "met": ok}));
        };
    let seq128: Vec<(usize, usize)> = o.sizes.iter().copied().filter(|s| s.0 == 128).collect();
    for &size in &seq128 {
        let se = num(recs, "ernie-ft", tshape, size, BASE, "samples_per_s");
        let place = format!("{tshape} {}x{} base", size.0, size.1);
        push(
            &mut md,
            format!(">= {MIN_VS_EAGER}x PyTorch eager"),
            place.clone(),
            ratio(se, num(recs, "torch-eager", tshape, size, BASE, "samples_per_s")),
            MIN_VS_EAGER,
            false,
            "x",
        );
        push(
            &mut md,
            format!(">= {MIN_VS_COMPILE}x PyTorch compile"),
            place,
            ratio(se, num(recs, "torch-compile", tshape, size, BASE, "samples_per_s")),
            MIN_VS_COMPILE,
            false,
            "x",
        );
    }
    let mfu_size = seq128.iter().copied().max_by_key(|s| s.1).unwrap_or((128, 64));
    push(
        &mut md,
        format!("MFU >= {:.0}%", MIN_MFU * 100.0),
        format!("{tshape} {}x{} base", mfu_size.0, mfu_size.1),
        num(recs, "ernie-ft", tshape, mfu_size, BASE, "mfu"),
        MIN_MFU,
        false,
        "%",
    );
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
    std::fs::write(
        o.out.join("speed.json"),
        serde_json::to_string_pretty(
            &json!({"settings": settings, "rows": rows, "overhead": overhead, "targets": targets, "records": records}),
        )?,
    )?;
    println!("{md}\nwritten: {}/speed.{{md,json}} (raw records in {}/raw/)", o.out.display(), o.out.display());
    Ok(())
}
