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
//!
//! Modules: `options` (the command line), `running` (the two benchmark programs, each configuration under a
//! deadline, the raw records), `report` (the tables from the raw records, and the targets checked).

mod options;
mod report;
mod running;

use anyhow::{bail, Context, Result};
use ernie_strategies::Strategy;

const SHAPES: &[&str] = &["e5-small", "ernie-base"];
const SIZES: &[(usize, usize)] = &[(128, 32), (128, 64), (512, 8)];
/// The strategies timed: none (base) and the two that change a training step's cost.
const STRATEGIES: [Option<Strategy>; 3] = [None, Some(Strategy::Adv), Some(Strategy::Rdrop)];
const TORCH_MODES: &[&str] = &["eager", "compile"];
const TORCH_SCRIPT: &str = "scripts/gpu/bench_speed_torch.py";

/// A strategy as the commands and records spell it: [`Strategy::name`], `base` for none.
const fn strategy_name(s: Option<Strategy>) -> &'static str {
    match s {
        None => "base",
        Some(s) => s.name(),
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let o = options::parse(args)?;
    let raw = o.out.join("raw");
    if !o.report_only {
        let root = running::repo_root();
        if o.fresh && !o.dry_run && raw.is_dir() {
            std::fs::remove_dir_all(&raw).with_context(|| format!("{}: cannot remove", raw.display()))?;
        }
        if !o.dry_run {
            std::fs::create_dir_all(&raw).with_context(|| format!("{}: cannot create", raw.display()))?;
        }
        if o.run_ernie {
            let bin = running::ernie_ft_bin(&o)?;
            running::run_ernie(&o, &bin, &raw)?;
        }
        if o.run_torch {
            running::run_torch(&o, &root, &raw)?;
        }
        if o.dry_run {
            return Ok(());
        }
    }
    let recs = report::load_records(&raw, &o.device)?;
    if recs.is_empty() {
        bail!("no {} records in {}", o.device, raw.display());
    }
    report::report(&o, &recs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn rec(engine: &str, mode: Option<&str>, strategy: &str, t: f64, mem: f64) -> Value {
        json!({"engine": engine, "torch_mode": mode, "shape": "tiny", "seq": 32, "batch": 4, "strategy": strategy, "mode": "train",
               "device_kind": "cpu", "samples_per_s": 4.0 / t, "median_step_s": t, "peak_memory_bytes": mem, "mfu": 0.5})
    }

    #[test]
    fn tables_from_raw_records() {
        let dir = ernie_testkit::ScratchDir::new("bench-speed");
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
        let args: Vec<String> =
            ["--device", "cpu", "--quick", "--sizes", "32x4", "--report-only", "--out", dir.to_str().unwrap()]
                .iter()
                .map(|s| s.to_string())
                .collect();
        run(&args).unwrap();
        let out: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("speed.json")).unwrap()).unwrap();
        let base = out["rows"].as_array().unwrap().iter().find(|r| r["strategy"] == "base").unwrap();
        assert!((base["ratio_vs_eager"].as_f64().unwrap() - 1.6).abs() < 1e-9);
        let o = &out["overhead"][0];
        assert_eq!(o["adv_time"]["ok"], json!(false)); // 3.0x > 2.2x
        assert_eq!(o["rdrop_time"]["ok"], json!(true));
        assert_eq!(o["rdrop_memory"]["ok"], json!(false)); // 2.0x > 1.6x
        assert!(std::fs::read_to_string(dir.join("speed.md")).unwrap().contains("| tiny | 32x4 | base |"));
    }
}
