//! The table of a campaign, from its finished cells: per row the accuracy over seeds, the paired
//! difference to base with its 95% interval, the FMA gain over the members' mean, the costs and their
//! ratios to base; written as table.md, table.json, table.csv, chart.png and chart.svg.
//!
//! This module computes the statistics ([`compute`]) and writes the files ([`write`]); `settings` holds
//! what the table says about how it was computed (settings, hosts, notes), `markdown` renders table.md,
//! `json_csv` table.json and table.csv, and [`super::chart`] draws the chart.

mod json_csv;
mod markdown;
mod settings;

use super::cells::{self, CellRecord, CellSpec, Kind, METRICS};
use super::chart::{self, ChartRow};
use super::identity::{Host, Identity};
use super::planner;
use super::rows::{self, Row};
use super::stats::{self, Interval, Summary};
use super::Campaign;
use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::Value;
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
        self.metrics["peak_device_bytes"].as_f64().or_else(|| self.metrics["peak_host_bytes"].as_f64())
    }

    pub fn steps(&self) -> Option<f64> {
        self.metrics["steps"].as_f64()
    }

    /// The segment in which its training (or its average) finished.
    fn finishing_segment(&self) -> Option<&cells::Segment> {
        self.record.segments.iter().find(|s| s.outcome.as_deref() == Some("finished"))
    }

    /// The machine its training finished on, whose speed its step time measures: the host of the segment
    /// that finished it where recorded, else the host it started on.
    pub fn machine(&self) -> &Host {
        self.finishing_segment().and_then(|s| s.host.as_ref()).unwrap_or(&self.record.identity.host)
    }

    /// The commit its training (or its average) finished under, as `machine` names the host; the identity's
    /// (first segment's) commit where no segment is recorded as finished.
    pub fn commit(&self) -> String {
        self.finishing_segment().map_or_else(|| self.record.identity.commit_short(), |s| s.commit.clone())
    }

    /// Every commit that ran a part of it: the one it started under and each segment's (a cell resumed
    /// across sittings may span several commits, all with its numerics fingerprint).
    pub fn commits(&self) -> BTreeSet<String> {
        let segments = self.record.segments.iter().map(|s| s.commit.clone());
        std::iter::once(self.record.identity.commit_short()).chain(segments).collect()
    }

    /// What its step time depends on besides the strategy: the machine that finished it and the
    /// `--threads` of its training command there.
    fn timing_conditions(&self) -> String {
        let threads = self.finishing_segment().and_then(|s| settings::train_threads(s).next());
        format!("{}, {} thread(s)", self.machine().describe(), threads.map_or("?", |t| t.as_str()))
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
    /// Paired difference to base (percentage points), with its 95% interval (Student t; the jackknife's for
    /// leave-one-out FMA averages).
    pub delta_vs_base: Option<Interval>,
    /// FMA: average minus the mean of its members (percentage points).
    pub fma_gain: Option<Interval>,
    /// The differences behind `delta_vs_base` and `fma_gain`, one per seed (per average for FMA), in
    /// seed order: what the interval summarises, for a reader to see which seeds gain.
    pub paired: Vec<PairedDifference>,
    pub seconds_per_step: Option<f64>,
    pub step_time_ratio: Option<f64>,
    pub peak_memory_bytes: Option<f64>,
    pub memory_ratio: Option<f64>,
    pub steps: Option<f64>,
    pub published: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PairedDifference {
    /// `seed 2`, or for an FMA cell the seeds it averages: `seeds 1+3`.
    pub of: String,
    /// Percentage points against base with the same seed (FMA: base's mean over the averaged seeds).
    pub vs_base: Option<f64>,
    /// FMA: the average's accuracy minus its members' mean (percentage points).
    pub vs_members: Option<f64>,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The step-time ratio of the cells `cs` to base's cells `base`: each cell's s/step over the mean s/step of
/// base's cells on the same machine with the same thread count, averaged over the cells. A cell without
/// such base cells is left out: the ratio would measure the machines or the threads, not the strategy.
fn step_time_ratio(cs: &[&CellData], base: &[&CellData]) -> Option<f64> {
    let ratios: Vec<f64> = cs
        .iter()
        .filter_map(|c| {
            let conditions = c.timing_conditions();
            let alike = base.iter().filter(|b| b.timing_conditions() == conditions);
            let base_times: Vec<f64> = alike.filter_map(|b| b.seconds_per_step()).collect();
            Some(c.seconds_per_step()? / mean(&base_times)?)
        })
        .collect();
    mean(&ratios)
}

/// The number of seeds N where `specs` (one row's planned cells) are FMA cells that each average N - 1 of
/// N seeds' models (leave-one-out, N >= 3): their estimates share models, and their intervals are the
/// jackknife's ([`stats::jackknife_interval`]). None for training rows and for one average of every seed.
fn leave_one_out_seeds<'a>(specs: impl Iterator<Item = &'a CellSpec>) -> Option<usize> {
    let mut sizes = BTreeSet::new();
    let mut seeds = BTreeSet::new();
    for s in specs {
        let Kind::Fma { members } = &s.kind else { return None };
        sizes.insert(members.len());
        seeds.extend(members.iter().copied());
    }
    match sizes.into_iter().collect::<Vec<_>>()[..] {
        [m] if m >= 2 && seeds.len() == m + 1 => Some(seeds.len()),
        _ => None,
    }
}

/// The statistics of every row of `rows`, from the finished `cells` (by id) of `specs`.
pub fn compute(
    task: &str,
    rows: &[&'static Row],
    specs: &[CellSpec],
    cells: &BTreeMap<String, CellData>,
) -> Vec<RowStats> {
    let by_row = |row: &Row| -> Vec<&CellData> {
        specs.iter().filter(|s| s.row == row).filter_map(|s| cells.get(&s.id)).collect()
    };
    let seed_map = |row: &Row, f: &dyn Fn(&CellData) -> Option<f64>| -> BTreeMap<u64, f64> {
        by_row(row).into_iter().filter_map(|c| Some((c.spec.seed()?, f(c)?))).collect()
    };
    let base_acc = seed_map(rows::base(), &|c| c.accuracy());
    let base_cells = by_row(rows::base());
    // An FMA row's costs are its parent's: averaging adds one pass over the weights and one evaluation.
    let costs = |row: &Row| {
        let cs = by_row(row.parent());
        let sps: Vec<f64> = cs.iter().filter_map(|c| c.seconds_per_step()).collect();
        let peak =
            cs.iter().filter_map(|c| c.peak_bytes()).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let steps: Vec<f64> = cs.iter().filter_map(|c| c.steps()).collect();
        let ratio =
            if row.parent() == rows::base() { mean(&sps).map(|_| 1.0) } else { step_time_ratio(&cs, &base_cells) };
        (mean(&sps), ratio, peak, mean(&steps))
    };
    let (_, _, base_peak, _) = costs(rows::base());
    rows.iter()
        .map(|row| {
            let cs = by_row(row);
            let planned = specs.iter().filter(|s| s.row == *row).count();
            let accs: Vec<f64> = cs.iter().filter_map(|c| c.accuracy()).collect();
            let paired: Vec<PairedDifference> = if row.fma {
                let mut by_members: Vec<(&Vec<u64>, &CellData)> = cs
                    .iter()
                    .filter_map(|c| match &c.spec.kind {
                        Kind::Fma { members } => Some((members, *c)),
                        Kind::Train { .. } => None,
                    })
                    .collect();
                by_members.sort_by_key(|(members, _)| *members);
                by_members
                    .into_iter()
                    .map(|(members, c)| {
                        let base: Option<Vec<f64>> = members.iter().map(|s| base_acc.get(s).copied()).collect();
                        let seeds: Vec<String> = members.iter().map(u64::to_string).collect();
                        PairedDifference {
                            of: format!("seeds {}", seeds.join("+")),
                            vs_base: c.accuracy().zip(base.as_deref().and_then(mean)).map(|(a, b)| a - b),
                            vs_members: c.accuracy().zip(c.members_mean()).map(|(a, m)| a - m),
                        }
                    })
                    .collect()
            } else if *row == rows::base() {
                vec![]
            } else {
                let d = stats::paired(&seed_map(row, &|c| c.accuracy()), &base_acc);
                d.into_iter()
                    .map(|(seed, d)| PairedDifference {
                        of: format!("seed {seed}"),
                        vs_base: Some(d),
                        vs_members: None,
                    })
                    .collect()
            };
            let loo_seeds = leave_one_out_seeds(specs.iter().filter(|s| s.row == *row));
            let interval_of = |f: &dyn Fn(&PairedDifference) -> Option<f64>| {
                let v: Vec<f64> = paired.iter().filter_map(f).collect();
                match loo_seeds {
                    Some(seeds) => stats::jackknife_interval(&v, seeds, stats::LEVEL),
                    None => stats::interval(&v, stats::LEVEL),
                }
            };
            let (delta, gain) = (interval_of(&|p| p.vs_base), interval_of(&|p| p.vs_members));
            let (sps, step_time_ratio, peak, steps) = costs(row);
            RowStats {
                row: row.key(),
                label: row.label(),
                kind: if row.fma { "fma".into() } else { "train".into() },
                strategies: row.strategy_arg(),
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
                paired,
                seconds_per_step: sps,
                step_time_ratio,
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
        out.insert(s.id.clone(), CellData { spec: s.clone(), record, metrics });
    }
    let idents: Vec<(String, Identity)> =
        out.values().map(|c| (c.spec.id.clone(), c.record.identity.clone())).collect();
    if let Some(mixed) = planner::mixed_class(&idents) {
        let mut msg = format!(
            "refusing to build one table from cells of different numerics identities on one numerics class ({}):\n",
            mixed[0].1.numerics_class()
        );
        let prints: BTreeSet<&str> = mixed.iter().map(|(_, i)| i.fingerprint.as_str()).collect();
        for fp in &prints {
            let ids: Vec<&str> =
                mixed.iter().filter(|(_, i)| i.fingerprint == *fp).map(|(id, _)| id.as_str()).collect();
            msg += &format!("  fingerprint {fp}: {}\n", ids.join(", "));
        }
        msg += "rerun the cells of the other fingerprints with --fresh --rows ..., or delete them";
        bail!(msg);
    }
    Ok(out)
}

/// Everything the table's files are written from.
pub(super) struct Table<'a> {
    campaign: &'a Campaign,
    title: String,
    stats: Vec<RowStats>,
    settings: Value,
    notes: Vec<String>,
    cells: BTreeMap<String, CellData>,
}

pub fn write(c: &Campaign, current: Option<&Identity>) -> Result<()> {
    let cells = load_cells(c)?;
    let stats = compute(&c.task, &c.rows, &c.specs, &cells);
    let settings = settings::settings(c, current, &cells);
    let notes = settings::notes(c);
    let title =
        format!("{} strategy table{}", c.task.to_uppercase(), if c.opts.quick { " (QUICK smoke run)" } else { "" });
    let done = cells.len();
    let planned = c.specs.len();
    let table = Table { campaign: c, title, stats, settings, notes, cells };
    let md = markdown::markdown(&table);
    let table_json = json_csv::table_json(&table);
    let csv = json_csv::csv(&table.stats);

    std::fs::create_dir_all(&c.out)?;
    super::write_atomic(&c.out.join("table.md"), md.as_bytes())?;
    super::write_atomic(&c.out.join("table.json"), serde_json::to_string_pretty(&table_json)?.as_bytes())?;
    super::write_atomic(&c.out.join("table.csv"), csv.as_bytes())?;
    let chart_rows: Vec<ChartRow> = table
        .stats
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
        settings::list(&table.settings["numerics"]["fingerprint_of_cells"])
    );
    chart::write(&c.out, &table.title, &subtitle, &chart_rows)?;
    println!("{md}");
    eprintln!("written: {}/table.{{md,json,csv}}, chart.{{png,svg}} ({done} of {planned} cells)", c.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::identity::Host;
    use super::*;
    use serde_json::json;

    fn cell(row: &'static Row, kind: Kind, metrics: Value) -> CellData {
        let id = match &kind {
            Kind::Train { seed } => CellSpec::train_id(row, *seed),
            Kind::Fma { members } => CellSpec::fma_id(row, members),
        };
        let spec = CellSpec { id: id.clone(), row, kind, config: json!({}) };
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
                cpu_id: String::new(),
            },
            binary: "b".into(),
        };
        let record = CellRecord {
            format: 1,
            id,
            row: row.key(),
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
        let (base, adv, fma) =
            (rows::by_key("base").unwrap(), rows::by_key("adv").unwrap(), rows::by_key("fma").unwrap());
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
        let specs: Vec<CellSpec> =
            cells.iter().map(|c| c.spec.clone()).chain([train(adv, 3, 0.0, 0.0, 0).spec]).collect();
        let by_id: BTreeMap<String, CellData> = cells.into_iter().map(|c| (c.spec.id.clone(), c)).collect();
        let stats = compute("afqmc", &[base, fma, adv], &specs, &by_id);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;

        let b = &stats[0];
        assert_eq!((b.n, b.planned), (2, 2));
        let acc = b.accuracy.unwrap();
        assert!(close(acc.mean, 71.0) && close(acc.std.unwrap(), 2f64.sqrt()));
        assert!(close(b.best_during_training.unwrap().mean, 72.0));
        assert!(b.delta_vs_base.is_none() && b.fma_gain.is_none());
        assert_eq!((b.step_time_ratio, b.memory_ratio, b.published), (Some(1.0), Some(1.0), Some(76.11)));

        // adv: n = 2 of 3 planned; deltas [1, 2]: mean 1.5, sd 0.70711, half width 12.7062 * 0.70711 / 1.41421 = 6.35310.
        let a = &stats[2];
        assert_eq!((a.n, a.planned), (2, 3));
        let d = a.delta_vs_base.unwrap();
        assert!(close(d.mean, 1.5) && (d.half_width.unwrap() - 6.353102).abs() < 1e-5, "{d:?}");
        assert_eq!(d.excludes_zero, Some(false));
        assert!(close(a.seconds_per_step.unwrap(), 2.2) && close(a.step_time_ratio.unwrap(), 2.0));
        assert!(close(a.memory_ratio.unwrap(), 150.0 / 120.0));
        // ... and the per-seed differences behind it, in seed order.
        let per_seed: Vec<(&str, f64)> = a.paired.iter().map(|p| (p.of.as_str(), p.vs_base.unwrap())).collect();
        assert_eq!(per_seed, [("seed 1", 1.0), ("seed 2", 2.0)]);
        assert!(a.paired.iter().all(|p| p.vs_members.is_none()) && b.paired.is_empty());

        // fma (n = 1): gain 2 and delta to base 73 - mean(70, 72) = 2, neither with an interval; the costs are base's.
        let f = &stats[1];
        assert_eq!(f.n, 1);
        let (g, d) = (f.fma_gain.unwrap(), f.delta_vs_base.unwrap());
        assert!(close(g.mean, 2.0) && g.half_width.is_none() && close(d.mean, 2.0) && d.lo.is_none());
        assert!(f.best_during_training.is_none());
        assert_eq!(f.paired.len(), 1);
        assert_eq!(f.paired[0].of, "seeds 1+2");
        assert!(close(f.paired[0].vs_base.unwrap(), 2.0) && close(f.paired[0].vs_members.unwrap(), 2.0));
        let md = markdown::paired_differences(&stats);
        assert!(md.contains("| +adv | seed 1 +1.00, seed 2 +2.00 | - |"), "{md}");
        assert!(md.contains("| +fma | seeds 1+2 +2.00 | seeds 1+2 +2.00 |"), "{md}");
        assert_eq!(f.step_time_ratio, Some(1.0));
    }

    #[test]
    fn step_time_ratios_compare_cells_on_one_host() {
        let (base, adv, rdrop) =
            (rows::by_key("base").unwrap(), rows::by_key("adv").unwrap(), rows::by_key("rdrop").unwrap());
        let on = |mut c: CellData, avx512f: bool, cores: usize| {
            (c.record.identity.host.avx512f, c.record.identity.host.cores) = (avx512f, cores);
            c
        };
        let cells: Vec<CellData> = vec![
            on(train(base, 1, 50.0, 14.4, 100), false, 2),
            on(train(base, 2, 50.0, 7.0, 100), true, 2),
            on(train(base, 3, 50.0, 8.0, 100), true, 2),
            // Seed 1 on the other host than its base cell: against base seeds 2 and 3 (mean 7.5) on its own.
            on(train(rdrop, 1, 50.0, 15.0, 100), true, 2),
            on(train(rdrop, 2, 50.0, 14.0, 100), true, 2),
            // No base cell on a 4-core host: no ratio.
            on(train(adv, 1, 50.0, 9.0, 100), true, 4),
        ];
        let specs: Vec<CellSpec> = cells.iter().map(|c| c.spec.clone()).collect();
        let by_id: BTreeMap<String, CellData> = cells.into_iter().map(|c| (c.spec.id.clone(), c)).collect();
        let stats = compute("iflytek", &[base, adv, rdrop], &specs, &by_id);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert_eq!(stats[0].step_time_ratio, Some(1.0));
        assert_eq!((stats[1].seconds_per_step, stats[1].step_time_ratio), (Some(9.0), None));
        let r = &stats[2];
        assert!(close(r.seconds_per_step.unwrap(), 14.5), "{r:?}");
        assert!(close(r.step_time_ratio.unwrap(), (15.0 / 7.5 + 14.0 / 7.5) / 2.0), "{r:?}");
    }

    #[test]
    fn step_times_are_compared_on_the_machine_and_thread_count_that_finished_the_cell() {
        // Two virtual machines with the same model name ("AMD EPYC") and SIMD class, told apart by the
        // processor generation their cells' finishing segments record; base seed 1 has no such record (an
        // older cell) and counts as its first host. Layer decay seed 3 trained on 2 threads, where no base
        // cell did: it has no ratio.
        let (base, ld) = (rows::by_key("base").unwrap(), rows::by_key("layer-decay").unwrap());
        let older = train(base, 1, 0.0, 0.0, 0).record.identity.host;
        let newer = Host { cpu_id: "AuthenticAMD family 26 model 2".into(), ..older.clone() };
        let segment = |outcome: &str, host: &Host, threads: &str| cells::Segment {
            started: 0,
            ended: Some(1),
            outcome: Some(outcome.into()),
            commit: format!("{outcome}-commit"),
            hostname: "h".into(),
            commands: vec![["train", "--seed", "1", "--threads", threads].map(String::from).to_vec()],
            host: Some(host.clone()),
        };
        let finished_on_newer = |mut c: CellData, threads: &str| {
            c.record.segments = vec![segment("interrupted", &older, "1"), segment("finished", &newer, threads)];
            c
        };
        let cells: Vec<CellData> = vec![
            train(base, 1, 50.0, 6.9, 100),
            finished_on_newer(train(base, 2, 50.0, 4.6, 100), "1"),
            finished_on_newer(train(ld, 2, 50.0, 4.6, 100), "1"),
            finished_on_newer(train(ld, 3, 50.0, 2.5, 100), "2"),
        ];
        let specs: Vec<CellSpec> = cells.iter().map(|c| c.spec.clone()).collect();
        let by_id: BTreeMap<String, CellData> = cells.into_iter().map(|c| (c.spec.id.clone(), c)).collect();
        let stats = compute("iflytek", &[base, ld], &specs, &by_id);
        assert_eq!(stats[1].step_time_ratio, Some(1.0), "{:?}", stats[1]);
        let machines = settings::hosts_of(&by_id);
        assert_eq!(machines.len(), 2, "{machines:?}");
        assert!(machines.keys().any(|m| m.contains("family 26 model 2")), "{machines:?}");
        // The cells' own host and commit (the Cells table, table.json) are those that finished them, not
        // the first segment's; a cell without segments names its identity's.
        assert_eq!(by_id["layer-decay-seed3"].machine(), &newer);
        assert_eq!(by_id["layer-decay-seed3"].commit(), "finished-commit");
        assert_eq!(by_id["base-seed1"].machine(), &older);
        assert_eq!(by_id["base-seed1"].commit(), by_id["base-seed1"].record.identity.commit_short());
        // The settings name every commit that ran a segment, the finishing ones included.
        let commits = settings::commits_of(&by_id);
        for c in ["interrupted-commit", "finished-commit"] {
            assert!(commits.contains(c), "{c} not in {commits:?}");
        }
        assert_eq!(by_id["layer-decay-seed3"].commits().len(), 3);
    }

    #[test]
    fn leave_one_out_averages_get_the_jackknife_interval() {
        // Base 50 on every seed and adv with layer decay 51, 52, 56 (per seed +1, +2, +6); each average of
        // two of its models gains 0.5 over their mean, so its Δ vs base is the mean of two seeds' Δs + 0.5.
        let (base, adv, fma) = (
            rows::by_key("base").unwrap(),
            rows::by_key("adv+layer-decay").unwrap(),
            rows::by_key("adv+layer-decay+fma").unwrap(),
        );
        let acc = |s: u64| [51.0, 52.0, 56.0][s as usize - 1];
        let mut cells: Vec<CellData> = vec![];
        for s in 1..=3u64 {
            cells.push(train(base, s, 50.0, 1.0, 100));
            cells.push(train(adv, s, acc(s), 1.0, 100));
        }
        for k in 1..=3u64 {
            let members: Vec<u64> = (1..=3).filter(|&s| s != k).collect();
            let mean = members.iter().map(|&s| acc(s)).sum::<f64>() / 2.0;
            cells.push(cell(
                fma,
                Kind::Fma { members },
                json!({"accuracy": (mean + 0.5) / 100.0, "macro_f1": 0.5, "members_mean_accuracy": mean / 100.0}),
            ));
        }
        let specs: Vec<CellSpec> = cells.iter().map(|c| c.spec.clone()).collect();
        assert_eq!(leave_one_out_seeds(specs.iter().filter(|s| s.row == fma)), Some(3));
        assert_eq!(leave_one_out_seeds(specs.iter().filter(|s| s.row == adv)), None);
        let one_average = [cell(fma, Kind::Fma { members: vec![1, 2] }, json!({})).spec];
        assert_eq!(leave_one_out_seeds(one_average.iter()), None);
        let by_id: BTreeMap<String, CellData> = cells.into_iter().map(|c| (c.spec.id.clone(), c)).collect();
        let stats = compute("iflytek", &[base, adv, fma], &specs, &by_id);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let (ad, fd, fg) =
            (stats[1].delta_vs_base.unwrap(), stats[2].delta_vs_base.unwrap(), stats[2].fma_gain.unwrap());
        assert_eq!((ad.method, fd.method, fg.method), ("t", "jackknife", "jackknife"));
        // Every average gains exactly 0.5: no spread, the point.
        assert!(close(fg.mean, 0.5) && close(fg.half_width.unwrap(), 0.0), "{fg:?}");
        // The Δs are the leave-one-out means of +1, +2, +6 plus 0.5: the jackknife's interval is the
        // parent row's shifted by 0.5 (the t interval of the three Δs would be half as wide).
        assert!(close(fd.mean, ad.mean + 0.5), "{fd:?}");
        assert!(close(fd.half_width.unwrap(), ad.half_width.unwrap()), "{fd:?} vs {ad:?}");
        assert!(close(fd.lo.unwrap(), ad.lo.unwrap() + 0.5) && fd.excludes_zero == ad.excludes_zero);
    }
}
