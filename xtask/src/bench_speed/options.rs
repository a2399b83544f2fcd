//! `cargo xtask bench-speed`'s command line: the options, their defaults (the full matrix, or the tiny
//! shape with `--quick`) and their checks.

use super::{strategy_name, SHAPES, SIZES, STRATEGIES, TORCH_MODES};
use anyhow::{bail, Context, Result};
use ernie_strategies::Strategy;
use std::path::PathBuf;

pub struct Opts {
    pub device: String,
    pub quick: bool,
    pub dry_run: bool,
    pub report_only: bool,
    pub fresh: bool,
    pub shapes: Vec<String>,
    pub sizes: Vec<(usize, usize)>,
    pub strategies: Vec<Option<Strategy>>,
    pub torch_modes: Vec<String>,
    pub run_ernie: bool,
    pub run_torch: bool,
    pub ernie_bin: Option<PathBuf>,
    pub python: String,
    pub warmup: usize,
    pub steps: usize,
    pub peak_tflops: Option<f64>,
    pub timeout_s: u64,
    pub torch_budget_s: Option<f64>,
    pub out: PathBuf,
    pub torch_extra: Vec<String>,
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
            let (a, b) = s
                .trim()
                .to_ascii_lowercase()
                .split_once('x')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .with_context(|| format!("size {s}: SEQxBATCH"))?;
            Ok((a.parse().with_context(|| format!("size {s}"))?, b.parse().with_context(|| format!("size {s}"))?))
        })
        .collect()
}

pub fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        device: "cuda".into(),
        quick: false,
        dry_run: false,
        report_only: false,
        fresh: false,
        shapes: SHAPES.iter().map(|s| s.to_string()).collect(),
        sizes: SIZES.to_vec(),
        strategies: STRATEGIES.to_vec(),
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
    let mut strategies: Option<Vec<String>> = None;
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
            "--strategies" => strategies = Some(list(&val("--strategies")?)),
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
    if let Some(names) = strategies {
        o.strategies = names.iter().map(|s| parse_strategy(s)).collect::<Result<_>>()?;
    }
    if o.torch_modes.is_empty() {
        o.run_torch = false;
    }
    Ok(o)
}

/// A `--strategies` name: one of [`STRATEGIES`], spelled as [`strategy_name`] does.
fn parse_strategy(s: &str) -> Result<Option<Strategy>> {
    STRATEGIES
        .into_iter()
        .find(|k| strategy_name(*k) == s)
        .with_context(|| format!("--strategies: unknown strategy {s} ({})", STRATEGIES.map(strategy_name).join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_sizes("128x32, 512X8").unwrap(), vec![(128, 32), (512, 8)]);
        assert!(parse_sizes("128").is_err());
    }

    #[test]
    fn strategies_are_spelled_as_ernie_ft_spells_them() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse(&args(&["--device", "cpu", "--strategies", "base,rdrop"])).unwrap();
        assert_eq!(o.strategies, [None, Some(Strategy::Rdrop)]);
        assert_eq!(parse(&args(&[])).unwrap().strategies, STRATEGIES);
        let e = parse(&args(&["--strategies", "layer-decay"])).err().unwrap().to_string();
        assert_eq!(e, "--strategies: unknown strategy layer-decay (base, adv, rdrop)");
    }
}
