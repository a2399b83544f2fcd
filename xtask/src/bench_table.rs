//! `cargo xtask bench-iflytek` / `bench-afqmc`: train every row of the strategy table over several seeds
//! with the `ernie-ft` binary, and write the table (accuracy mean +- std, seconds per step, peak memory,
//! steps) as Markdown, JSON and CSV plus an SVG chart under `results/<task>/`, with the seed's published
//! ERNIE 3.0 base numbers alongside.
//!
//! FMA rows average the checkpoints of their parent row (same strategies without FMA, one model per seed,
//! all sharing head seed 0). With three or more seeds each FMA figure is a leave-one-out average (n
//! averages of n-1 models), which gives a spread; with fewer, the average of all.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (row label, strategies trained, averaged?, published ERNIE 3.0 base IFLYTEK, AFQMC)
const ROWS: &[(&str, &str, bool, f64, f64)] = &[
    ("base", "", false, 61.14, 76.11),
    ("+fma", "", true, 61.52, 76.90),
    ("+adv", "adv", false, 61.83, 76.39),
    ("+rdrop", "rdrop", false, 61.37, 76.30),
    ("+layer_decay", "layer-decay", false, 61.56, 76.44),
    ("adv+layer_decay+fma", "adv,layer-decay", true, 63.29, 77.36),
    ("rdrop+layer_decay+fma", "rdrop,layer-decay", true, 62.37, 77.22),
];

struct Opts {
    task: String,
    device: String,
    seeds: Vec<u64>,
    quick: bool,
    rows: Option<Vec<String>>,
    out: PathBuf,
    extra: Vec<String>,
}

fn parse(task: &str, args: &[String]) -> Result<Opts> {
    let mut o = Opts { task: task.into(), device: "cpu".into(), seeds: vec![], quick: false, rows: None, out: PathBuf::from("results").join(task), extra: vec![] };
    let mut n_seeds = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--device" => o.device = val("--device")?,
            "--seeds" => n_seeds = Some(val("--seeds")?.parse::<u64>().context("--seeds N")?),
            "--quick" => o.quick = true,
            "--rows" => o.rows = Some(val("--rows")?.split(',').map(String::from).collect()),
            "--out" => o.out = PathBuf::from(val("--out")?),
            "--help" | "-h" => {
                println!(
                    "cargo xtask bench-{task} [--device cpu|cuda] [--seeds N (3)] [--quick] [--rows base,+adv,...] [--out DIR] [-- ernie-ft train flags]\n\
                     --quick: 256 train / 256 dev examples, 1 epoch, max-len 64, 2 seeds: a smoke run of every row in minutes on a CPU.\n\
                     Model and data: ernie-ft's --model / --data flags after `--`, else ERNIE_FT_MODEL / ERNIE_FT_DATA, else ../shared."
                );
                std::process::exit(0);
            }
            "--" => {
                o.extra = it.by_ref().cloned().collect();
            }
            other => bail!("unknown option {other} (see --help)"),
        }
    }
    let n = n_seeds.unwrap_or(if o.quick { 2 } else { 3 });
    o.seeds = (1..=n).collect();
    Ok(o)
}

/// `$ERNIE_FT_BIN` (a prebuilt binary, e.g. on a machine without a Rust toolchain), else a fresh release
/// build of this workspace's.
fn ernie_ft_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ERNIE_FT_BIN").map(PathBuf::from) {
        if !p.is_file() {
            bail!("ERNIE_FT_BIN={} is not a file", p.display());
        }
        return Ok(p);
    }
    let status = Command::new(env!("CARGO")).args(["build", "--release", "--quiet", "--bin", "ernie-ft"]).status()?;
    if !status.success() {
        bail!("building ernie-ft failed");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/ernie-ft"))
}

fn run(bin: &Path, args: &[String]) -> Result<()> {
    eprintln!("$ ernie-ft {}", args.join(" "));
    let status = Command::new(bin).args(args).status().with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("ernie-ft {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn read_json(p: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: malformed JSON", p.display()))
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, s)
}

pub fn run_task(task: &str, args: &[String]) -> Result<()> {
    let o = parse(task, args)?;
    let bin = ernie_ft_bin()?;
    let runs = o.out.join("runs");
    std::fs::create_dir_all(&runs)?;
    let rows: Vec<_> = ROWS.iter().filter(|r| o.rows.as_ref().is_none_or(|want| want.iter().any(|w| w == r.0))).collect();
    if rows.is_empty() {
        bail!("no row selected; rows are {}", ROWS.iter().map(|r| r.0).collect::<Vec<_>>().join(", "));
    }
    let mut common: Vec<String> = vec!["--task".into(), task.into(), "--device".into(), o.device.clone(), "--head-seed".into(), "0".into()];
    if o.quick {
        common.extend(["--train-limit", "256", "--dev-limit", "256", "--epochs", "1", "--max-len", "64"].map(String::from));
    }
    common.extend(o.extra.iter().cloned());
    // Train each distinct strategy set once per seed.
    let mut trained: BTreeMap<String, Vec<(PathBuf, Value)>> = BTreeMap::new();
    for (_, strategies, _, _, _) in &rows {
        if trained.contains_key(*strategies) {
            continue;
        }
        let mut v = vec![];
        for &seed in &o.seeds {
            let name = if strategies.is_empty() { "base".to_string() } else { strategies.replace(',', "+") };
            let dir = runs.join(format!("{name}-seed{seed}"));
            let mut a: Vec<String> = vec!["train".into()];
            a.extend(common.iter().cloned());
            a.extend(["--output-dir".into(), dir.display().to_string(), "--seed".into(), seed.to_string()]);
            if !strategies.is_empty() {
                a.extend(["--strategy".into(), strategies.to_string()]);
            }
            run(&bin, &a)?;
            v.push((dir.clone(), read_json(&dir.join("metrics.json"))?));
        }
        trained.insert(strategies.to_string(), v);
    }
    let mut table = vec![];
    for (label, strategies, fma, pub_ifly, pub_afqmc) in &rows {
        let members = &trained[*strategies];
        let (accs, secs, mem, steps): (Vec<f64>, f64, f64, f64) = if *fma {
            let n = members.len();
            let groups: Vec<Vec<usize>> = if n >= 3 { (0..n).map(|k| (0..n).filter(|&i| i != k).collect()).collect() } else { vec![(0..n).collect()] };
            let mut accs = vec![];
            for (g, idx) in groups.iter().enumerate() {
                let avg_dir = runs.join(format!("{}-fma{g}", label.trim_start_matches('+').replace('+', "_")));
                let mut a: Vec<String> = vec!["average".into(), "--out".into(), avg_dir.display().to_string()];
                a.extend(idx.iter().map(|&i| members[i].0.display().to_string()));
                run(&bin, &a)?;
                let metrics = avg_dir.join("eval.json");
                let mut e: Vec<String> = vec!["eval".into(), "--model".into(), avg_dir.display().to_string(), "--metrics-out".into(), metrics.display().to_string(), "--device".into(), o.device.clone()];
                e.extend(eval_flags(&common));
                run(&bin, &e)?;
                accs.push(read_json(&metrics)?["accuracy"].as_f64().unwrap_or(f64::NAN) * 100.0);
            }
            let (s, m, st) = costs(members);
            (accs, s, m, st)
        } else {
            let accs = members.iter().map(|(_, m)| m["final_dev"]["accuracy"].as_f64().unwrap_or(f64::NAN) * 100.0).collect();
            let (s, m, st) = costs(members);
            (accs, s, m, st)
        };
        let (mean, std) = mean_std(&accs);
        let best: Vec<f64> = members.iter().filter_map(|(_, m)| m["best_dev"]["dev"]["accuracy"].as_f64()).map(|x| x * 100.0).collect();
        table.push(json!({
            "row": label, "strategies": strategies, "fma": fma, "accuracy_mean": mean, "accuracy_std": std, "accuracies": accs,
            "best_during_training_mean": if *fma { Value::Null } else { json!(mean_std(&best).0) },
            "seconds_per_step": secs, "peak_memory_bytes": mem, "steps": steps,
            "published_ernie3_base": if task == "iflytek" { pub_ifly } else { pub_afqmc },
        }));
    }
    write_outputs(&o, &table, &trained)?;
    Ok(())
}

/// Flags of the training command that `eval` needs too (data location, limits, max length).
fn eval_flags(common: &[String]) -> Vec<String> {
    let mut out = vec![];
    let mut it = common.iter();
    while let Some(a) = it.next() {
        if matches!(a.as_str(), "--data" | "--dev" | "--dev-limit" | "--max-len" | "--task" | "--threads") {
            out.push(a.clone());
            if let Some(v) = it.next() {
                out.push(v.clone());
            }
        }
    }
    out
}

fn costs(members: &[(PathBuf, Value)]) -> (f64, f64, f64) {
    let f = |k: &str| members.iter().map(|(_, m)| m[k].as_f64().unwrap_or(f64::NAN)).sum::<f64>() / members.len() as f64;
    let mem = members
        .iter()
        .map(|(_, m)| m["peak_device_bytes"].as_f64().or(m["peak_host_bytes"].as_f64()).unwrap_or(f64::NAN))
        .fold(0.0, f64::max);
    (f("seconds_per_step"), mem, f("steps"))
}

fn write_outputs(o: &Opts, table: &[Value], trained: &BTreeMap<String, Vec<(PathBuf, Value)>>) -> Result<()> {
    let any = trained.values().next().and_then(|v| v.first()).map(|(_, m)| m.clone()).unwrap_or_default();
    let commit = Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let machine = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())).unwrap_or_default();
    let settings = json!({
        "task": o.task, "device": any["device"], "machine_cpu": machine, "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "seeds": o.seeds, "quick": o.quick, "extra_flags": o.extra, "commit": commit,
        "train_examples": any["train_examples"], "dev_examples": any["dev_examples"], "lr_base": any["lr"],
    });
    let title = format!("{} strategy table ({}{})", o.task.to_uppercase(), if o.quick { "QUICK smoke run, " } else { "" }, any["device"].as_str().unwrap_or("?"));
    let mut md = format!("# {title}\n\nSettings: `{}`\n\n", settings);
    md += "Accuracy is the FINAL model's dev accuracy (%), mean +- std over seeds; the best dev accuracy seen during training is a separate column. Published: the seed's ERNIE 3.0 base numbers (a different, larger model trained on the full data), for reference only.\n\n";
    md += "| row | accuracy (mean +- std) | n | best during training | s/step | peak memory (MiB) | steps | published ERNIE 3.0 base |\n|---|---|---|---|---|---|---|---|\n";
    let mut csv = String::from("row,accuracy_mean,accuracy_std,n,best_during_training_mean,seconds_per_step,peak_memory_mib,steps,published\n");
    for r in table {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let n = r["accuracies"].as_array().map_or(0, |a| a.len());
        let best = r["best_during_training_mean"].as_f64().map_or("-".to_string(), |b| format!("{b:.2}"));
        let mem = f("peak_memory_bytes") / 1048576.0;
        let cells = [
            r["row"].as_str().unwrap_or("").to_string(),
            format!("{:.2}", f("accuracy_mean")),
            format!("{:.2}", f("accuracy_std")),
            n.to_string(),
            best,
            format!("{:.3}", f("seconds_per_step")),
            format!("{mem:.0}"),
            format!("{}", f("steps")),
            format!("{:.2}", f("published_ernie3_base")),
        ];
        md += &format!("| {} | {} +- {} | {} |\n", cells[0], cells[1], cells[2], cells[3..].join(" | "));
        csv += &format!("{}\n", cells.join(","));
    }
    std::fs::create_dir_all(&o.out)?;
    std::fs::write(o.out.join("table.md"), &md)?;
    std::fs::write(o.out.join("table.csv"), csv)?;
    std::fs::write(o.out.join("table.json"), serde_json::to_string_pretty(&json!({"settings": settings, "rows": table}))?)?;
    std::fs::write(o.out.join("chart.svg"), chart(&title, table))?;
    println!("{md}\nwritten: {}/table.{{md,json,csv}}, chart.svg", o.out.display());
    Ok(())
}

/// A bar chart of mean accuracy with +-std error bars, the published figure as a tick.
fn chart(title: &str, table: &[Value]) -> String {
    let (w, h, left, bottom, top) = (760.0, 420.0, 60.0, 120.0, 40.0);
    let vals: Vec<(f64, f64, f64)> = table
        .iter()
        .map(|r| (r["accuracy_mean"].as_f64().unwrap_or(0.0), r["accuracy_std"].as_f64().unwrap_or(0.0), r["published_ernie3_base"].as_f64().unwrap_or(0.0)))
        .collect();
    let hi = vals.iter().map(|v| (v.0 + v.1).max(v.2)).fold(0.0, f64::max);
    let lo = vals.iter().map(|v| (v.0 - v.1).min(v.2)).fold(f64::INFINITY, f64::min);
    let (ymin, ymax) = ((lo - 2.0).max(0.0).floor(), (hi + 1.0).ceil());
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v - ymin) / (ymax - ymin).max(1e-9));
    let bw = (w - left - 20.0) / vals.len() as f64;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n", w / 2.0, title);
    for k in 0..=4 {
        let v = ymin + (ymax - ymin) * k as f64 / 4.0;
        s += &format!("<line x1=\"{left}\" x2=\"{}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\n", w - 20.0, left - 6.0, y(v) + 4.0, y0 = y(v));
    }
    for (i, (r, (m, sd, p))) in table.iter().zip(&vals).enumerate() {
        let x = left + bw * i as f64 + bw * 0.2;
        let bwi = bw * 0.6;
        s += &format!("<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bwi:.1}\" height=\"{:.1}\" fill=\"#4a7ebb\"/>\n", y(*m), (y(ymin) - y(*m)).max(0.0));
        let cx = x + bwi / 2.0;
        s += &format!("<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n", y(m + sd), y(m - sd));
        s += &format!("<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#d9534f\" stroke-width=\"3\"/>\n", x, x + bwi, py = y(*p));
        s += &format!("<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"end\" transform=\"rotate(-35 {cx:.1} {:.1})\">{}</text>\n", h - bottom + 16.0, h - bottom + 16.0, r["row"].as_str().unwrap_or(""));
        s += &format!("<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{m:.2}</text>\n", y(m + sd) - 4.0);
    }
    s += &format!("<text x=\"{left}\" y=\"{}\" font-size=\"11\">bars: ernie-ft mean accuracy (%) +- std; red ticks: published ERNIE 3.0 base</text>\n</svg>\n", h - 8.0);
    s
}
