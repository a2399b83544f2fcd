//! What a table says about how it was computed: the settings of table.json and table.md (machine, device,
//! commit, numerics fingerprints, model and data, flags), the hosts of the cells, and the notes that explain
//! the columns.

use super::CellData;
use crate::campaign::cells::Segment;
use crate::campaign::identity::{self, Identity};
use crate::campaign::options::row_lr;
use crate::campaign::rows;
use crate::campaign::{root, Campaign};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A JSON array of strings (one of the settings' lists) joined by `, `.
pub(super) fn list(v: &Value) -> String {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

pub(super) fn hosts_of(cells: &BTreeMap<String, CellData>) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in cells.values() {
        m.entry(c.machine().describe()).or_default().push(c.spec.id.clone());
    }
    m
}

/// The `--threads` values the finished cells trained with, over all their segments' `train` commands (the
/// invocation that writes a table, `--report-only` above all, may differ from the ones that trained its
/// cells, and the step times come from these).
pub(super) fn threads_of_cells(cells: &BTreeMap<String, CellData>) -> Vec<String> {
    let segments = cells.values().flat_map(|c| &c.record.segments);
    segments.flat_map(train_threads).cloned().collect::<BTreeSet<_>>().into_iter().collect()
}

/// The `--threads` of a segment's `train` commands (one per training it ran).
pub(super) fn train_threads(segment: &Segment) -> impl Iterator<Item = &String> {
    let train_commands = segment.commands.iter().filter(|cmd| cmd.first().is_some_and(|c| c == "train"));
    train_commands.filter_map(|cmd| flag_value(cmd, "--threads"))
}

/// The word after `flag` in a command line's words, if the flag is there.
pub(super) fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a String> {
    args.iter().position(|f| f == flag).and_then(|i| args.get(i + 1))
}

/// How the rows' learning rates were set, in words (the table's settings).
pub(super) fn learning_rate(c: &Campaign) -> String {
    if let Some(lr) = c.opts.lr {
        let layer_decay = rows::by_key("layer-decay").expect("the layer-decay row exists");
        return format!("{lr:e} for every row, {:e} for the rows with layer decay (`--lr`)", row_lr(lr, layer_decay));
    }
    match flag_value(&c.common, "--lr") {
        Some(lr) => format!("{lr} for every row (`-- --lr`)"),
        None => "ernie-ft's default for the task, doubled for the rows with layer decay".into(),
    }
}

/// Every commit that ran a part of the cells (see `CellData::commits`).
pub(super) fn commits_of(cells: &BTreeMap<String, CellData>) -> BTreeSet<String> {
    cells.values().flat_map(CellData::commits).collect()
}

pub(super) fn settings(c: &Campaign, current: Option<&Identity>, cells: &BTreeMap<String, CellData>) -> Value {
    let idents: Vec<&Identity> = cells.values().map(|c| &c.record.identity).collect();
    let set = |f: &dyn Fn(&Identity) -> String| {
        idents.iter().map(|i| f(i)).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>()
    };
    let (commit, dirty) = match current {
        Some(i) => (i.commit.clone(), i.dirty),
        None => identity::commit(&root()),
    };
    let host = current.map(|i| i.host.clone()).unwrap_or_else(|| c.identity.host.clone());
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
        "rows": c.rows.iter().map(|r| r.key()).collect::<Vec<_>>(),
        "machine": host,
        "device": c.device.name(),
        // A --report-only invocation trains nothing: its jobs and threads would describe no run.
        "jobs": if c.opts.report_only { Value::Null } else { json!(c.jobs) },
        "threads_per_job": if c.opts.report_only { Value::Null } else { json!(c.threads_per_job) },
        "gpus": if c.device.device == "cuda" { json!(c.gpus) } else { Value::Null },
        "learning_rate": learning_rate(c),
        "commit": commit,
        "dirty": dirty,
        "numerics": {
            "fingerprint_of_cells": set(&|i| format!("{} ({})", i.fingerprint, i.numerics_class())),
            "numerics_classes_of_cells": set(&|i| i.numerics_class()),
            "fingerprint_source": set(&|i| i.fingerprint_source.clone()),
            "fingerprint_of_this_build": current.map(|i| i.fingerprint.clone()),
            "commits_of_cells": commits_of(cells),
            "binaries_of_cells": set(&|i| i.binary.clone()),
        },
        "hosts_of_cells": hosts_of(cells),
        "threads_of_cells": threads_of_cells(cells),
        "model": {"path": c.model, "blake3": c.model_blake3},
        "data": data,
        "flags": {
            "campaign": c.opts.argv,
            "ernie_ft_train_common": c.common,
            "report_only": c.opts.report_only,
        },
    })
}

pub(super) fn notes(c: &Campaign) -> Vec<String> {
    let mut v = vec![
        "Accuracy: the FINAL model's dev accuracy (%), mean ± sample standard deviation over the finished seeds. \"Best during training\" is the best of the evaluations during training (each epoch's end), a separate figure that picks its epoch on dev.".to_string(),
        "Δ vs base: paired by seed (the same seed means the same data order, dropout stream and noise; every cell has head seed 0, so the same initial head): the mean of the per-seed differences in percentage points with its 95% Student t interval (n - 1 degrees of freedom). With n = 1 there is no interval. \"Excludes 0\": the interval lies on one side of 0, i.e. the difference is unlikely to be seed noise.".into(),
        "FMA rows average the final models of their parent row (the same strategies without FMA). With N >= 3 seeds there is one FMA cell per seed k, averaging the N - 1 models of the other seeds (leave-one-out: N averages); with 2 seeds one cell averages both (n = 1); with 1 seed there is none. \"Avg - members\" is each average's accuracy minus the mean accuracy of the models it averages: the gain that averaging adds. An FMA cell's Δ vs base is its accuracy minus the mean base accuracy over the same seeds. The leave-one-out averages share models (any two share N - 2), so they are not independent: the intervals of both their Δ vs base and their avg - members are the jackknife's, the t interval of the N values widened N - 1 times (their Δ vs base is then as uncertain as the parent row's: each average's Δ is about the mean of N - 1 seeds' Δs, whose spread is 1/(N - 1) of the seeds'). Its costs are the parent row's training costs (averaging adds one pass over the weights and one evaluation).".into(),
        "Costs: s/step is the mean training time per optimizer step (evaluation excluded); x base is each cell's s/step over the mean s/step of base's cells on the same machine with the same --threads, averaged over the row's cells (cells without such a base cell are left out: the ratio would compare the machines or the thread counts); peak memory is the largest peak of the row's cells (device memory on CUDA, resident host memory on the CPU). Cells run side by side (--jobs > 1) share the machine: compare times within one campaign only.".into(),
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
