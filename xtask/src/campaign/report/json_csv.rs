//! table.json (the settings, every row's statistics, every cell, the notes) and table.csv (one line per
//! row): the table for programs.

use super::{RowStats, Table};
use serde_json::{json, Value};

/// table.json.
pub(super) fn table_json(t: &Table) -> Value {
    let Table { campaign: c, title, stats, settings, notes, cells } = t;
    let cell_json: Vec<Value> = c
        .specs
        .iter()
        .map(|spec| {
            let cd = cells.get(&spec.id);
            json!({
                "cell": spec.id, "row": spec.row.key(), "seed": spec.seed(),
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
                "host": cd.map(|c| c.machine().clone()),
                "commit": cd.map(|c| c.commit()),
                "fingerprint": cd.map(|c| c.record.identity.fingerprint.clone()),
            })
        })
        .collect();
    json!({"title": title, "settings": settings, "rows": stats, "cells": cell_json, "notes": notes})
}

/// table.csv.
pub(super) fn csv(stats: &[RowStats]) -> String {
    let mut csv = String::from("row,label,kind,n,planned,accuracy_mean,accuracy_std,best_during_training_mean,macro_f1_mean,delta_mean,delta_ci_lo,delta_ci_hi,delta_excludes_zero,fma_gain_mean,fma_gain_ci_lo,fma_gain_ci_hi,seconds_per_step,step_time_ratio,peak_memory_mib,memory_ratio,steps,published\n");
    let o = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.4}"));
    for r in stats {
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
            r.delta_vs_base.and_then(|i| i.excludes_zero).map_or(String::new(), |b| b.to_string()),
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
    csv
}
