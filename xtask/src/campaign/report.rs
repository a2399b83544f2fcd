//! The table of a campaign, from its finished cells: per row the accuracy over seeds, the paired
//! difference to base with its 95% interval, the FMA gain over the members' mean, the costs and their
//! ratios to base; written as table.md, table.json, table.csv, chart.png and chart.svg.

use super::cells::{self, CellRecord, CellSpec, Kind, METRICS};
use super::chart::{self, ChartRow};
use super::identity::Identity;
use super::rows::{self, Row};
use super::stats::{self, Interval, Summary};
use super::Campaign;
use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A finished cell.
#[derive(Clone, Debug)]
pub struct CellData {
    pub spec: CellSpec,
    pub record: CellRecord,
    pub metrics: Value,
}

impl CellData {
    /// Dev accuracy (%) of the final model (training) or of the average (FMA).
    pub fn accuracy(&self) -> Option<f64> {
        match self.spec.kind {
            Kind::Train { .. } => self.metrics["final_dev"]["accuracy"].as_f64(),
            Kind::Fma { .. } => self.metrics["accuracy"].as_f64(),
        }
        .map(|a| a * 100.0)
    }

    pub fn macro_f1(&self) -> Option<f64> {
        match self.spec.kind {
            Kind::Train { .. } => self.metrics["final_dev"]["macro_f1"].as_f64(),
            Kind::Fma { .. } => self.metrics["macro_f1"].as_f64(),
        }
        .map(|a| a * 100.0)
    }

    pub fn best(&self) -> Option<f64> {
        self.metrics["best_dev"]["dev"]["accuracy"].as_f64().map(|a| a * 100.0)
    }

    pub fn seconds_per_step(&self) -> Option<f64> {
        self.metrics["seconds_per_step"].as_f64()
    }

    pub fn peak_bytes(&self) -> Option<f64> {
        self.metrics["peak_device_bytes"]
            .as_f64()
            .or_else(|| self.metrics["peak_host_bytes"].as_f64())
    }

    pub fn steps(&self) -> Option<f64> {
        self.metrics["steps"].as_f64()
    }

    /// FMA: the members' mean accuracy (%).
    pub fn members_mean(&self) -> Option<f64> {
        self.metrics["members_mean_accuracy"].as_f64().map(|a| a * 100.0)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RowStats {
    pub row: String,
    pub label: String,
    /// `train` or `fma`.
    pub kind: String,
    pub strategies: String,
    pub planned: usize,
    pub n: usize,
    /// The finished cells, in order.
    pub cells: Vec<String>,
    /// Final-model dev accuracy (%), per cell in `cells` order.
    pub accuracies: Vec<f64>,
    pub accuracy: Option<Summary>,
    pub best_during_training: Option<Summary>,
    pub macro_f1: Option<Summary>,
    /// Paired difference to base (percentage points), with its 95% t interval.
    pub delta_vs_base: Option<Interval>,
    /// FMA: average minus the mean of its members (percentage points).
    pub fma_gain: Option<Interval>,
    pub seconds_per_step: Option<f64>,
    pub step_time_ratio: Option<f64>,
    pub peak_memory_bytes: Option<f64>,
    pub memory_ratio: Option<f64>,
    pub steps: Option<f64>,
    pub published: Option<f64>,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The statistics of every row of `rows`, from the finished `cells` (by id) of `specs`.
pub fn compute(
    task: &str,
    rows: &[&'static Row],
    specs: &[CellSpec],
    cells: &BTreeMap<String, CellData>,
) -> Vec<RowStats> {
    let by_row = |row: &Row| -> Vec<&CellData> {
        specs
            .iter()
            .filter(|s| s.row.key == row.key)
            .filter_map(|s| cells.get(&s.id))
            .collect()
    };
    let seed_map = |row: &Row, f: &dyn Fn(&CellData) -> Option<f64>| -> BTreeMap<u64, f64> {
        by_row(row)
            .into_iter()
            .filter_map(|c| Some((c.spec.seed()?, f(c)?)))
            .collect()
    };
    let base_acc = seed_map(rows::base(), &|c| c.accuracy());
    let costs = |row: &Row| {
        let cs = by_row(row.parent());
        let sps: Vec<f64> = cs.iter().filter_map(|c| c.seconds_per_step()).collect();
        let peak = cs
            .iter()
            .filter_map(|c| c.peak_bytes())
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let steps: Vec<f64> = cs.iter().filter_map(|c| c.steps()).collect();
        (mean(&sps), peak, mean(&steps))
    };
    let (base_sps, base_peak, _) = costs(rows::base());
    rows.iter()
        .map(|row| {
            let cs = by_row(row);
            let planned = specs.iter().filter(|s| s.row.key == row.key).count();
            let accs: Vec<f64> = cs.iter().filter_map(|c| c.accuracy()).collect();
            let (delta, gain) = if row.fma {
                let deltas: Vec<f64> = cs
                    .iter()
                    .filter_map(|c| {
                        let Kind::Fma { members } = &c.spec.kind else {
                            return None;
                        };
                        let base: Vec<f64> = members
                            .iter()
                            .map(|s| base_acc.get(s).copied())
                            .collect::<Option<_>>()?;
                        Some(c.accuracy()? - mean(&base)?)
                    })
                    .collect();
                let gains: Vec<f64> = cs
                    .iter()
                    .filter_map(|c| Some(c.accuracy()? - c.members_mean()?))
                    .collect();
                (
                    stats::interval(&deltas, stats::LEVEL),
                    stats::interval(&gains, stats::LEVEL),
                )
            } else if row.key == rows::base().key {
                (None, None)
            } else {
                let d: Vec<f64> = stats::paired(&seed_map(row, &|c| c.accuracy()), &base_acc)
                    .into_iter()
                    .map(|(_, d)| d)
                    .collect();
                (stats::interval(&d, stats::LEVEL), None)
            };
            let (sps, peak, steps) = costs(row);
            RowStats {
                row: row.key.into(),
                label: row.label.into(),
                kind: if row.fma { "fma".into() } else { "train".into() },
                strategies: row.strategies.into(),
                planned,
                n: cs.len(),
                cells: cs.iter().map(|c| c.spec.id.clone()).collect(),
                accuracies: accs.clone(),
                accuracy: stats::summary(&accs),
                best_during_training: if row.fma {
                    None
                } else {
                    stats::summary(&cs.iter().filter_map(|c| c.best()).collect::<Vec<_>>())
                },
                macro_f1: stats::summary(&cs.iter().filter_map(|c| c.macro_f1()).collect::<Vec<_>>()),
                delta_vs_base: delta,
                fma_gain: gain,
                seconds_per_step: sps,
                step_time_ratio: sps.zip(base_sps).map(|(a, b)| a / b),
                peak_memory_bytes: peak,
                memory_ratio: peak.zip(base_peak).map(|(a, b)| a / b),
                steps,
                published: row.published_for(task),
            }
        })
        .collect()
}

/// The finished cells of the campaign, refusing a mix of numerics identities.
pub fn load_cells(c: &Campaign) -> Result<BTreeMap<String, CellData>> {
    let mut out = BTreeMap::new();
    for s in &c.specs {
        let dir = c.cell_dir(&s.id);
        if !dir.join(METRICS).is_file() {
            continue;
        }
        let record = cells::read_record(&dir)?;
        let metrics = cells::read_json(&dir.join(METRICS))?;
        out.insert(
            s.id.clone(),
            CellData {
                spec: s.clone(),
                record,
                metrics,
            },
        );
    }
    let prints: BTreeSet<&str> = out.values().map(|c| c.record.identity.fingerprint.as_str()).collect();
    if prints.len() > 1 {
        let mut msg = String::from("refusing to build one table from cells of different numerics identities:\n");
        for fp in &prints {
            let ids: Vec<&str> = out
                .values()
                .filter(|c| c.record.identity.fingerprint == *fp)
                .map(|c| c.spec.id.as_str())
                .collect();
            msg += &format!("  fingerprint {fp}: {}\n", ids.join(", "));
        }
        msg += "rerun the cells of the other fingerprints with --fresh --rows ..., or delete them";
        bail!(msg);
    }
    Ok(out)
}

fn f2(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.2}"))
}

fn signed(x: f64) -> String {
    format!("{x:+.2}")
}

fn mib(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:.0}", x / 1048576.0))
}

fn ratio(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.2}x"))
}

fn mean_std(s: &Option<Summary>) -> String {
    match s {
        None => "-".into(),
        Some(Summary {
            mean, std: Some(sd), ..
        }) => format!("{mean:.2} ± {sd:.2}"),
        Some(Summary { mean, std: None, .. }) => format!("{mean:.2}"),
    }
}

fn interval_cells(i: &Option<Interval>) -> [String; 3] {
    match i {
        None => ["-".into(), "-".into(), "-".into()],
        Some(i) => match (i.lo, i.hi) {
            (Some(lo), Some(hi)) => [
                signed(i.mean),
                format!("[{}, {}]", signed(lo), signed(hi)),
                if i.excludes_zero == Some(true) {
                    "**yes**".into()
                } else {
                    "no".into()
                },
            ],
            _ => [signed(i.mean), "none (n = 1)".into(), "-".into()],
        },
    }
}

fn hosts_of(cells: &BTreeMap<String, CellData>) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in cells.values() {
        m.entry(c.record.identity.host.describe())
            .or_default()
            .push(c.spec.id.clone());
    }
    m
}

fn settings(c: &Campaign, current: Option<&Identity>, cells: &BTreeMap<String, CellData>) -> Value {
    let idents: Vec<&Identity> = cells.values().map(|c| &c.record.identity).collect();
    let set = |f: &dyn Fn(&Identity) -> String| {
        idents
            .iter()
            .map(|i| f(i))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    };
    let (commit, dirty) = match current {
        Some(i) => (i.commit.clone(), i.dirty),
        None => super::identity::commit(&super::root()),
    };
    let host = current
        .map(|i| i.host.clone())
        .unwrap_or_else(|| c.identity.host.clone());
    let mut data =
        vec![json!({"role": "train", "path": c.train.path, "lines": c.train.lines, "blake3": c.train.blake3})];
    data.push(json!({"role": "dev", "path": c.dev.path, "lines": c.dev.lines, "blake3": c.dev.blake3}));
    if let Some(l) = &c.labels {
        data.push(json!({"role": "labels", "path": l.path, "lines": l.lines, "blake3": l.blake3}));
    }
    json!({
        "task": c.task,
        "mode": if c.opts.quick { "quick" } else { "full" },
        "seeds": c.seeds,
        "rows": c.rows.iter().map(|r| r.key).collect::<Vec<_>>(),
        "machine": host,
        "device": c.device.name(),
        "jobs": c.jobs,
        "threads_per_job": c.threads_per_job,
        "gpus": if c.device.device == "cuda" { json!(c.gpus) } else { Value::Null },
        "commit": commit,
        "dirty": dirty,
        "numerics": {
            "fingerprint_of_cells": set(&|i| i.fingerprint.clone()),
            "fingerprint_source": set(&|i| i.fingerprint_source.clone()),
            "fingerprint_of_this_build": current.map(|i| i.fingerprint.clone()),
            "commits_of_cells": set(&|i| i.commit_short()),
            "binaries_of_cells": set(&|i| i.binary.clone()),
        },
        "hosts_of_cells": hosts_of(cells),
        "model": {"path": c.model, "blake3": c.model_blake3},
        "data": data,
        "flags": {
            "campaign": c.opts.argv,
            "ernie_ft_train_common": c.common,
            "report_only": c.opts.report_only,
        },
    })
}

fn notes(c: &Campaign) -> Vec<String> {
    let mut v = vec![
        "Accuracy: the FINAL model's dev accuracy (%), mean ± sample standard deviation over the finished seeds. \"Best during training\" is the best of the evaluations during training (each epoch's end), a separate figure that picks its epoch on dev.".to_string(),
        "Δ vs base: paired by seed (the same seed means the same data order, dropout stream and noise; every cell has head seed 0, so the same initial head): the mean of the per-seed differences in percentage points with its 95% Student t interval (n - 1 degrees of freedom). With n = 1 there is no interval. \"Excludes 0\": the interval lies on one side of 0, i.e. the difference is unlikely to be seed noise.".into(),
        "FMA rows average the final models of their parent row (the same strategies without FMA). With N >= 3 seeds there is one FMA cell per seed k, averaging the N - 1 models of the other seeds (leave-one-out: N averages); with 2 seeds one cell averages both (n = 1); with 1 seed there is none. \"Avg - members\" is each average's accuracy minus the mean accuracy of the models it averages: the gain that averaging adds. An FMA cell's Δ vs base is its accuracy minus the mean base accuracy over the same seeds. Its costs are the parent row's training costs (averaging adds one pass over the weights and one evaluation).".into(),
        "Costs: s/step is the mean training time per optimizer step (evaluation excluded), x base its ratio to base's; peak memory is the largest peak of the row's cells (device memory on CUDA, resident host memory on the CPU). Cells run side by side (--jobs > 1) share the machine: compare times within one campaign only.".into(),
        "n = k/N: k of the row's N planned cells are finished; the rest are missing (rerun the campaign to complete them).".into(),
    ];
    if matches!(c.task.as_str(), "iflytek" | "afqmc") {
        v.push("Published: the seed's ERNIE 3.0 base dev accuracy (a different, larger model trained on the full data), for reference only.".into());
    }
    if c.opts.quick {
        v.push("QUICK smoke run (256 train / 256 dev examples, 1 epoch, max length 64): it checks the plumbing; the accuracies say nothing about the strategies.".into());
    }
    v
}

pub fn write(c: &Campaign, current: Option<&Identity>) -> Result<()> {
    let cells = load_cells(c)?;
    let stats = compute(&c.task, &c.rows, &c.specs, &cells);
    let settings = settings(c, current, &cells);
    let notes = notes(c);
    let title = format!(
        "{} strategy table{}",
        c.task.to_uppercase(),
        if c.opts.quick { " (QUICK smoke run)" } else { "" }
    );
    let done = cells.len();
    let planned = c.specs.len();

    // Markdown.
    let mut md = format!("# {title}\n\n");
    if done < planned {
        md += &format!("**Incomplete: {done} of {planned} cells finished.**\n\n");
    }
    md += "| row | n | accuracy (final) | best during training | macro-F1 | Δ vs base | 95% CI of Δ | CI excludes 0 | FMA: avg - members (95% CI) | s/step | x base | peak MiB | x base | steps | published |\n";
    md += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in &stats {
        let [d, ci, ex] = interval_cells(&r.delta_vs_base);
        let gain = match &r.fma_gain {
            None => "-".into(),
            Some(g) => match (g.lo, g.hi) {
                (Some(lo), Some(hi)) => format!("{} [{}, {}]", signed(g.mean), signed(lo), signed(hi)),
                _ => format!("{} (n = 1)", signed(g.mean)),
            },
        };
        let (d, ci, ex) = if r.row == rows::base().key {
            ("(reference)".to_string(), "-".to_string(), "-".to_string())
        } else {
            (d, ci, ex)
        };
        md += &format!(
            "| {} | {}/{} | {} | {} | {} | {d} | {ci} | {ex} | {gain} | {} | {} | {} | {} | {} | {} |\n",
            r.label,
            r.n,
            r.planned,
            mean_std(&r.accuracy),
            mean_std(&r.best_during_training),
            mean_std(&r.macro_f1),
            r.seconds_per_step.map_or("-".into(), |x| format!("{x:.3}")),
            ratio(r.step_time_ratio),
            mib(r.peak_memory_bytes),
            ratio(r.memory_ratio),
            r.steps.map_or("-".into(), |x| format!("{x:.0}")),
            f2(r.published),
        );
    }
    md += "\nNotes:\n\n";
    for n in &notes {
        md += &format!("- {n}\n");
    }
    md += "\n## Settings\n\n";
    let s = &settings;
    let host = &s["machine"];
    md += &format!(
        "- Task `{}`, {} run, seeds {:?}, rows {}\n",
        c.task,
        s["mode"].as_str().unwrap_or(""),
        c.seeds,
        c.rows.iter().map(|r| r.key).collect::<Vec<_>>().join(", ")
    );
    md += &format!(
        "- Machine of this invocation: {}\n",
        serde_json::from_value::<super::identity::Host>(host.clone())
            .map(|h| h.describe())
            .unwrap_or_default()
    );
    md += &format!(
        "- Device {}, {} job(s) x {} thread(s){}\n",
        c.device.name(),
        c.jobs,
        c.threads_per_job,
        if c.device.device == "cuda" {
            format!(", GPUs {:?}", c.gpus)
        } else {
            String::new()
        }
    );
    md += &format!(
        "- Commit {}{}\n",
        &s["commit"].as_str().unwrap_or("")[..s["commit"].as_str().unwrap_or("").len().min(10)],
        if s["dirty"].as_bool() == Some(true) {
            " (+ uncommitted changes)"
        } else {
            ""
        }
    );
    let n = &s["numerics"];
    let list = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    md += &format!(
        "- Numerics fingerprint of the cells: {} (of {}; commits {}; ernie-ft binaries {}){}\n",
        list(&n["fingerprint_of_cells"]),
        list(&n["fingerprint_source"]),
        list(&n["commits_of_cells"]),
        list(&n["binaries_of_cells"]),
        n["fingerprint_of_this_build"]
            .as_str()
            .map_or(String::new(), |f| format!("; this build: {f}"))
    );
    md += "- Hosts of the cells:\n";
    for (h, ids) in hosts_of(&cells) {
        md += &format!("  - {h}: {}\n", ids.join(", "));
    }
    md += &format!("- Model `{}` (blake3 {})\n", c.model.display(), &c.model_blake3[..16]);
    for d in s["data"].as_array().into_iter().flatten() {
        md += &format!(
            "- {} `{}`: {} lines (blake3 {})\n",
            d["role"].as_str().unwrap_or(""),
            d["path"].as_str().unwrap_or(""),
            d["lines"],
            &d["blake3"].as_str().unwrap_or("")[..16]
        );
    }
    let cmd = format!(
        "cargo xtask {} {}",
        if matches!(c.task.as_str(), "iflytek" | "afqmc") && !c.opts.custom {
            format!("bench-{}", c.task)
        } else {
            "bench-task".into()
        },
        c.opts.argv.join(" ")
    );
    md += &format!("- Command: `{}`\n", cmd.trim());
    md += &format!(
        "- ernie-ft train flags of every cell (besides --seed, --strategy, paths and run control): `{}`\n",
        c.common.join(" ")
    );

    md += "\n## Cells\n\n| cell | accuracy | macro-F1 | best during training | s/step | peak MiB | steps | host | commit |\n|---|---|---|---|---|---|---|---|---|\n";
    for spec in &c.specs {
        match cells.get(&spec.id) {
            Some(cd) => {
                md += &format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    spec.id,
                    f2(cd.accuracy()),
                    f2(cd.macro_f1()),
                    f2(cd.best()),
                    cd.seconds_per_step().map_or("-".into(), |x| format!("{x:.3}")),
                    mib(cd.peak_bytes()),
                    cd.steps().map_or("-".into(), |x| format!("{x:.0}")),
                    cd.record.identity.host.class(),
                    cd.record.identity.commit_short()
                );
            }
            None => md += &format!("| {} | missing | | | | | | | |\n", spec.id),
        }
    }

    // JSON.
    let cell_json: Vec<Value> = c
        .specs
        .iter()
        .map(|spec| {
            let cd = cells.get(&spec.id);
            json!({
                "cell": spec.id, "row": spec.row.key, "seed": spec.seed(),
                "members": spec.member_ids(),
                "finished": cd.is_some(),
                "accuracy": cd.and_then(|c| c.accuracy()),
                "macro_f1": cd.and_then(|c| c.macro_f1()),
                "best_during_training": cd.and_then(|c| c.best()),
                "members_mean_accuracy": cd.and_then(|c| c.members_mean()),
                "seconds_per_step": cd.and_then(|c| c.seconds_per_step()),
                "peak_memory_bytes": cd.and_then(|c| c.peak_bytes()),
                "steps": cd.and_then(|c| c.steps()),
                "final_weights_blake3": cd.and_then(|c| c.metrics["final_weights_blake3"].as_str().map(String::from)),
                "host": cd.map(|c| c.record.identity.host.clone()),
                "commit": cd.map(|c| c.record.identity.commit_short()),
                "fingerprint": cd.map(|c| c.record.identity.fingerprint.clone()),
            })
        })
        .collect();
    let table_json = json!({"title": title, "settings": settings, "rows": stats, "cells": cell_json, "notes": notes});

    // CSV.
    let mut csv = String::from("row,label,kind,n,planned,accuracy_mean,accuracy_std,best_during_training_mean,macro_f1_mean,delta_mean,delta_ci_lo,delta_ci_hi,delta_excludes_zero,fma_gain_mean,fma_gain_ci_lo,fma_gain_ci_hi,seconds_per_step,step_time_ratio,peak_memory_mib,memory_ratio,steps,published\n");
    let o = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.4}"));
    for r in &stats {
        csv += &[
            r.row.clone(),
            r.label.clone(),
            r.kind.clone(),
            r.n.to_string(),
            r.planned.to_string(),
            o(r.accuracy.map(|s| s.mean)),
            o(r.accuracy.and_then(|s| s.std)),
            o(r.best_during_training.map(|s| s.mean)),
            o(r.macro_f1.map(|s| s.mean)),
            o(r.delta_vs_base.map(|i| i.mean)),
            o(r.delta_vs_base.and_then(|i| i.lo)),
            o(r.delta_vs_base.and_then(|i| i.hi)),
            r.delta_vs_base
                .and_then(|i| i.excludes_zero)
                .map_or(String::new(), |b| b.to_string()),
            o(r.fma_gain.map(|i| i.mean)),
            o(r.fma_gain.and_then(|i| i.lo)),
            o(r.fma_gain.and_then(|i| i.hi)),
            o(r.seconds_per_step),
            o(r.step_time_ratio),
            o(r.peak_memory_bytes.map(|b| b / 1048576.0)),
            o(r.memory_ratio),
            o(r.steps),
            o(r.published),
        ]
        .join(",");
        csv.push('\n');
    }

    std::fs::create_dir_all(&c.out)?;
    super::write_atomic(&c.out.join("table.md"), md.as_bytes())?;
    super::write_atomic(
        &c.out.join("table.json"),
        serde_json::to_string_pretty(&table_json)?.as_bytes(),
    )?;
    super::write_atomic(&c.out.join("table.csv"), csv.as_bytes())?;
    let chart_rows: Vec<ChartRow> = stats
        .iter()
        .map(|r| ChartRow {
            label: rows::by_key(&r.row).map_or(r.label.clone(), |row| row.short.to_string()),
            accuracy: r.accuracy.map(|s| (s.mean, s.std)),
            published: r.published,
            delta: r.delta_vs_base.map(|i| (i.mean, i.lo.zip(i.hi))),
        })
        .collect();
    let subtitle = format!(
        "{} of {} cells, {}, fingerprint {}",
        done,
        planned,
        c.device.name(),
        list(&n["fingerprint_of_cells"])
    );
    chart::write(&c.out, &title, &subtitle, &chart_rows)?;
    println!("{md}");
    eprintln!(
        "written: {}/table.{{md,json,csv}}, chart.{{png,svg}} ({done} of {planned} cells)",
        c.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::identity::Host;
    use super::*;

    fn cell(row: &'static Row, kind: Kind, metrics: Value) -> CellData {
        let id = match &kind {
            Kind::Train { seed } => CellSpec::train_id(row, *seed),
            Kind::Fma { members } => CellSpec::fma_id(row, members),
        };
        let spec = CellSpec {
            id: id.clone(),
            row,
            kind,
            config: json!({}),
        };
        let identity = Identity {
            commit: "c".into(),
            dirty: false,
            fingerprint: "f".into(),
            fingerprint_source: "s".into(),
            device: "cpu".into(),
            host: Host {
                hostname: "h".into(),
                cpu_model: "cpu".into(),
                avx512f: false,
                cores: 2,
                gpus: vec![],
            },
            binary: "b".into(),
        };
        let record = CellRecord {
            format: 1,
            id,
            row: row.key.into(),
            kind: "train".into(),
            seed: spec.seed(),
            members: spec.member_ids(),
            config: json!({}),
            paths: json!({}),
            identity,
            status: "finished".into(),
            weights_blake3: None,
            segments: vec![],
        };
        CellData { spec, record, metrics }
    }

    fn train(row: &'static Row, seed: u64, acc: f64, sps: f64, peak: u64) -> CellData {
        cell(
            row,
            Kind::Train { seed },
            json!({"final_dev": {"accuracy": acc / 100.0, "macro_f1": 0.5}, "best_dev": {"dev": {"accuracy": (acc + 1.0) / 100.0}}, "seconds_per_step": sps, "peak_host_bytes": peak, "steps": 10}),
        )
    }

    #[test]
    fn rows_by_hand() {
        let (base, adv, fma) = (
            rows::by_key("base").unwrap(),
            rows::by_key("adv").unwrap(),
            rows::by_key("fma").unwrap(),
        );
        let cells: Vec<CellData> = vec![
            train(base, 1, 70.0, 1.0, 100),
            train(base, 2, 72.0, 1.2, 120),
            train(adv, 1, 71.0, 2.0, 150),
            train(adv, 2, 74.0, 2.4, 140),
            // The average of base seeds 1 and 2: 73% against their mean 71%.
            cell(
                fma,
                Kind::Fma { members: vec![1, 2] },
                json!({"accuracy": 0.73, "macro_f1": 0.6, "members_mean_accuracy": 0.71}),
            ),
        ];
        let specs: Vec<CellSpec> = cells
            .iter()
            .map(|c| c.spec.clone())
            .chain([train(adv, 3, 0.0, 0.0, 0).spec])
            .collect();
        let by_id: BTreeMap<String, CellData> = cells.into_iter().map(|c| (c.spec.id.clone(), c)).collect();
        let stats = compute("afqmc", &[base, fma, adv], &specs, &by_id);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;

        let b = &stats[0];
        assert_eq!((b.n, b.planned), (2, 2));
        let acc = b.accuracy.unwrap();
        assert!(close(acc.mean, 71.0) && close(acc.std.unwrap(), 2f64.sqrt()));
        assert!(close(b.best_during_training.unwrap().mean, 72.0));
        assert!(b.delta_vs_base.is_none() && b.fma_gain.is_none());
        assert_eq!(
            (b.step_time_ratio, b.memory_ratio, b.published),
            (Some(1.0), Some(1.0), Some(76.11))
        );

        // adv: n = 2 of 3 planned; deltas [1, 2]: mean 1.5, sd 0.70711, half width 12.7062 * 0.70711 / 1.41421 = 6.35310.
        let a = &stats[2];
        assert_eq!((a.n, a.planned), (2, 3));
        let d = a.delta_vs_base.unwrap();
        assert!(
            close(d.mean, 1.5) && (d.half_width.unwrap() - 6.353102).abs() < 1e-5,
            "{d:?}"
        );
        assert_eq!(d.excludes_zero, Some(false));
        assert!(close(a.seconds_per_step.unwrap(), 2.2) && close(a.step_time_ratio.unwrap(), 2.0));
        assert!(close(a.memory_ratio.unwrap(), 150.0 / 120.0));

        // fma (n = 1): gain 2 and delta to base 73 - mean(70, 72) = 2, neither with an interval; the costs are base's.
        let f = &stats[1];
        assert_eq!(f.n, 1);
        let (g, d) = (f.fma_gain.unwrap(), f.delta_vs_base.unwrap());
        assert!(close(g.mean, 2.0) && g.half_width.is_none() && close(d.mean, 2.0) && d.lo.is_none());
        assert!(f.best_during_training.is_none());
        assert_eq!(f.step_time_ratio, Some(1.0));
    }
}
