//! table.md: the strategy table (accuracy, paired Δ vs base with its interval, FMA gain, costs), the per-seed
//! differences behind it, its notes, the settings that produced it and one line per cell.

use super::settings::{hosts_of, learning_rate, list};
use super::{PairedDifference, RowStats, Table};
use crate::campaign::identity::Host;
use crate::campaign::rows;
use crate::campaign::stats::{Interval, Summary};

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
        Some(Summary { mean, std: Some(sd), .. }) => format!("{mean:.2} ± {sd:.2}"),
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
                if i.excludes_zero == Some(true) { "**yes**".into() } else { "no".into() },
            ],
            _ => [signed(i.mean), "none (n = 1)".into(), "-".into()],
        },
    }
}

/// The per-seed differences behind each row's Δ and FMA gain (none before a row has a finished cell).
pub(super) fn paired_differences(stats: &[RowStats]) -> String {
    let rows: Vec<&RowStats> = stats.iter().filter(|r| !r.paired.is_empty()).collect();
    if rows.is_empty() {
        return String::new();
    }
    let per_cell = |r: &RowStats, f: &dyn Fn(&PairedDifference) -> Option<f64>| {
        let v: Vec<String> = r.paired.iter().filter_map(|p| Some(format!("{} {}", p.of, signed(f(p)?)))).collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut md =
        "\nPer seed (FMA: per average), in points: the differences the Δ and its interval summarise.\n\n".to_string();
    md += "| row | Δ vs base | FMA: avg - members |\n|---|---|---|\n";
    for r in rows {
        md += &format!("| {} | {} | {} |\n", r.label, per_cell(r, &|p| p.vs_base), per_cell(r, &|p| p.vs_members));
    }
    md
}

/// The Markdown of the table, from the rows' statistics, the settings and notes of table.json, and the
/// finished cells.
pub(super) fn markdown(t: &Table) -> String {
    let Table { campaign: c, title, stats, settings, notes, cells } = t;
    let done = cells.len();
    let planned = c.specs.len();
    let mut md = format!("# {title}\n\n");
    if done < planned {
        md += &format!("**Incomplete: {done} of {planned} cells finished.**\n\n");
    }
    md += "| row | n | accuracy (final) | best during training | macro-F1 | Δ vs base | 95% CI of Δ | CI excludes 0 | FMA: avg - members (95% CI) | s/step | x base | peak MiB | x base | steps | published |\n";
    md += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in stats {
        let [d, ci, ex] = interval_cells(&r.delta_vs_base);
        let gain = match &r.fma_gain {
            None => "-".into(),
            Some(g) => match (g.lo, g.hi) {
                (Some(lo), Some(hi)) => format!("{} [{}, {}]", signed(g.mean), signed(lo), signed(hi)),
                _ => format!("{} (n = 1)", signed(g.mean)),
            },
        };
        let (d, ci, ex) = if r.row == rows::base().key() {
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
    md += &paired_differences(stats);
    md += "\nNotes:\n\n";
    for n in notes {
        md += &format!("- {n}\n");
    }
    md += "\n## Settings\n\n";
    let s = settings;
    let host = &s["machine"];
    md += &format!(
        "- Task `{}`, {} run, seeds {:?}, rows {}\n",
        c.task,
        s["mode"].as_str().unwrap_or(""),
        c.seeds,
        c.rows.iter().map(|r| r.key()).collect::<Vec<_>>().join(", ")
    );
    md += &format!(
        "- Machine of this invocation: {}\n",
        serde_json::from_value::<Host>(host.clone()).map(|h| h.describe()).unwrap_or_default()
    );
    md += &if c.opts.report_only {
        format!("- Device {}; this invocation trained nothing (`--report-only`)\n", c.device.name())
    } else {
        format!(
            "- Device {}, {} job(s) x {} thread(s){}\n",
            c.device.name(),
            c.jobs,
            c.threads_per_job,
            if c.device.device == "cuda" { format!(", GPUs {:?}", c.gpus) } else { String::new() }
        )
    };
    let threads = list(&s["threads_of_cells"]);
    if !threads.is_empty() {
        md += &format!("- Threads per training process of the cells (their commands' `--threads`): {threads}\n");
    }
    md += &format!("- Learning rate: {}\n", learning_rate(c));
    md += &format!(
        "- Commit {}{}\n",
        &s["commit"].as_str().unwrap_or("")[..s["commit"].as_str().unwrap_or("").len().min(10)],
        if s["dirty"].as_bool() == Some(true) { " (+ uncommitted changes)" } else { "" }
    );
    let n = &s["numerics"];
    let this_build = n["fingerprint_of_this_build"].as_str().map_or(String::new(), |f| format!("; this build: {f}"));
    md += &if cells.is_empty() {
        format!("- Numerics fingerprint of the cells: none finished yet{this_build}\n")
    } else {
        format!(
            "- Numerics fingerprint of the cells: {} (of {}; commits {}; ernie-ft binaries {}){this_build}\n",
            list(&n["fingerprint_of_cells"]),
            list(&n["fingerprint_source"]),
            list(&n["commits_of_cells"]),
            list(&n["binaries_of_cells"]),
        )
    };
    let classes = n["numerics_classes_of_cells"].as_array().map_or(0, |a| a.len());
    if classes > 1 {
        md += &format!(
            "- The cells come from {classes} numerics classes ({}): each class's cells share one fingerprint; across classes the campaign does not assume bit-identical numbers (SIMD widths differ), only agreement to f32 round-off\n",
            list(&n["numerics_classes_of_cells"])
        );
    }
    md += if cells.is_empty() { "- Hosts of the cells: none finished yet\n" } else { "- Hosts of the cells:\n" };
    for (h, ids) in hosts_of(cells) {
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
                    cd.machine().class(),
                    cd.commit()
                );
            }
            None => md += &format!("| {} | missing | | | | | | | |\n", spec.id),
        }
    }
    md
}
