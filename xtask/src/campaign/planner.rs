//! Which cells to reuse, finish, resume, run or regenerate, in which order; and the refusals: a cell whose
//! recorded configuration differs from this invocation's, or that other numerics computed.

use super::cells::{diff, CellSpec, OnDisk};
use super::identity::Identity;
use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Finished with a matching configuration and identity: nothing to do.
    Reuse,
    /// The training run finished (run/metrics.json) but the campaign stopped before closing the cell.
    Finalize,
    /// Started: continue from its last training-state checkpoint (from scratch where it has none).
    Resume,
    /// Not started.
    Run,
    /// Finished, but its model was deleted and an unfinished FMA cell needs it: train it again once that
    /// FMA cell waits for nothing else, keep the metrics. On the cell's numerics class the final weights
    /// must match the recorded hash; on another class they cannot (runner::check_regenerated).
    Regenerate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Delete the cell directory first (`--fresh` on a differing cell, or an unfinished cell of other
    /// numerics with nothing to resume).
    pub discard: bool,
    pub note: Option<String>,
}

#[derive(Debug)]
pub struct Plan {
    pub decisions: BTreeMap<String, Decision>,
    /// Every cell in the order to start them: first the cells that resume from a checkpoint, fewest
    /// updates left first (their finished updates are already paid for, and the table gains a cell
    /// soonest), then breadth-first (seed 1's rows, seed 2's, ...; an FMA cell after its last member).
    pub order: Vec<String>,
    /// Training cell -> the unfinished FMA cells that need its model.
    pub needed_by: BTreeMap<String, BTreeSet<String>>,
}

impl Plan {
    pub fn count(&self, a: Action) -> usize {
        self.decisions.values().filter(|d| d.action == a).count()
    }
}

/// Plan `specs` against what `disk` holds. `current`: this build's identity (None for `--report-only`,
/// which only checks that the finished cells agree among themselves).
pub fn plan(
    specs: &[CellSpec],
    disk: &BTreeMap<String, OnDisk>,
    current: Option<&Identity>,
    fresh: bool,
) -> Result<Plan> {
    let empty = OnDisk::default();
    let mut decisions = BTreeMap::new();
    let mut config_errors: Vec<(String, Vec<String>)> = vec![];
    let mut identity_errors: Vec<(String, Identity)> = vec![];
    for spec in specs {
        let d = disk.get(&spec.id).unwrap_or(&empty);
        let mut discard = false;
        let mut note = None;
        match &d.record {
            Some(rec) => {
                let diffs = diff(&rec.config, &spec.config);
                let same_class = current.is_none_or(|c| c.numerics_class() == rec.identity.numerics_class());
                let other_numerics = current.is_some_and(|c| same_class && c.fingerprint != rec.identity.fingerprint);
                let holds_results = d.finished || d.run_finished || d.checkpoint;
                if !diffs.is_empty() {
                    if fresh {
                        discard = true;
                        note = Some(format!("--fresh: configuration differed ({})", diffs.join("; ")));
                    } else {
                        config_errors.push((spec.id.clone(), diffs));
                    }
                } else if other_numerics && holds_results {
                    if fresh {
                        discard = true;
                        note = Some(format!(
                            "--fresh: computed by other numerics (fingerprint {})",
                            rec.identity.fingerprint
                        ));
                    } else {
                        identity_errors.push((spec.id.clone(), rec.identity.clone()));
                    }
                } else if other_numerics {
                    discard = true;
                    note = Some("started by other numerics, nothing to resume: restarted".into());
                } else if !same_class && !d.finished && !d.run_finished {
                    // Resuming it here would mix two hosts' numerics in one run.
                    discard = true;
                    note = Some(format!(
                        "started on another numerics class ({}), unfinished: restarted here",
                        rec.identity.numerics_class()
                    ));
                }
            }
            None if d.finished || d.run_finished => {
                if fresh {
                    discard = true;
                } else {
                    config_errors.push((spec.id.clone(), vec!["no cell.json: cannot tell how it was computed".into()]));
                }
            }
            None => {}
        }
        let action = if discard || d.record.is_none() && !d.run_finished {
            Action::Run
        } else if d.finished {
            Action::Reuse
        } else if d.run_finished && !spec.is_fma() {
            Action::Finalize
        } else {
            Action::Resume
        };
        decisions.insert(spec.id.clone(), Decision { action, discard, note });
    }
    if !config_errors.is_empty() {
        let mut msg = format!(
            "{} cell(s) were recorded with another configuration than this invocation's:\n",
            config_errors.len()
        );
        for (id, diffs) in &config_errors {
            msg += &format!("  {id}: {}\n", diffs.join("; "));
        }
        msg += &format!(
            "Run with the flags they were recorded with; or add --fresh to the command (only these cells are discarded and recomputed; their rows alone: --fresh{}); or delete their directories under cells/.",
            rows_hint(specs, config_errors.iter().map(|(id, _)| id))
        );
        bail!(msg);
    }
    if let Some(cur) = current {
        if !identity_errors.is_empty() {
            bail!(identity_message(specs, &identity_errors, Some(cur)));
        }
    } else {
        // Report only: the finished cells must agree among themselves.
        let finished: Vec<(String, Identity)> = specs
            .iter()
            .filter_map(|s| {
                disk.get(&s.id)
                    .filter(|d| d.finished)
                    .and_then(|d| d.record.clone())
                    .map(|r| (s.id.clone(), r.identity))
            })
            .collect();
        if let Some(mixed) = mixed_class(&finished) {
            bail!(identity_message(specs, &mixed, None));
        }
    }
    // FMA cells still to compute, and the models they need.
    let mut needed_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for spec in specs.iter().filter(|s| s.is_fma()) {
        if decisions[&spec.id].action != Action::Reuse {
            for m in spec.member_ids() {
                needed_by.entry(m).or_default().insert(spec.id.clone());
            }
        }
    }
    for (member, fmas) in &needed_by {
        let (Some(dec), d) = (decisions.get_mut(member), disk.get(member).unwrap_or(&empty)) else {
            continue;
        };
        if dec.action == Action::Reuse && !d.weights {
            dec.action = Action::Regenerate;
            let class = d.record.as_ref().map(|r| r.identity.numerics_class());
            let elsewhere = current.zip(class).filter(|(c, class)| c.numerics_class() != *class);
            dec.note = Some(format!(
                "its model was deleted and {} need(s) it{}",
                fmas.iter().cloned().collect::<Vec<_>>().join(", "),
                elsewhere.map_or(String::new(), |(_, class)| format!(
                    " (computed on {class}: retrained here, it will have other weights within the seed spread, and the FMA cells record that model's accuracy)"
                ))
            ));
        }
    }
    // A checkpointed cell whose state cannot be read sorts after the others that resume.
    let resume_rank = |s: &CellSpec| {
        let d = &decisions[&s.id];
        let on_disk = disk.get(&s.id).filter(|o| o.checkpoint && d.action == Action::Resume && !d.discard);
        on_disk.map(|o| o.updates_left.unwrap_or(u64::MAX - 1)).unwrap_or(u64::MAX)
    };
    let mut order: Vec<&CellSpec> = specs.iter().collect();
    order.sort_by_key(|s| (resume_rank(s), s.order(), s.is_fma()));
    Ok(Plan { decisions, order: order.into_iter().map(|s| s.id.clone()).collect(), needed_by })
}

/// The cells of the first numerics class whose cells disagree on the fingerprint, if any (one table holds
/// one fingerprint per class).
pub fn mixed_class(cells: &[(String, Identity)]) -> Option<Vec<(String, Identity)>> {
    let mut by_class: BTreeMap<String, Vec<(String, Identity)>> = BTreeMap::new();
    for c in cells {
        by_class.entry(c.1.numerics_class()).or_default().push(c.clone());
    }
    by_class.into_values().find(|g| g.iter().map(|(_, i)| &i.fingerprint).collect::<BTreeSet<_>>().len() > 1)
}

/// ` --rows a,b` for the rows of these cells (FMA cells name their row; the parent comes along).
fn rows_hint<'a>(specs: &[CellSpec], ids: impl Iterator<Item = &'a String>) -> String {
    let ids: BTreeSet<&String> = ids.collect();
    let mut rows: Vec<String> = vec![];
    for s in specs.iter().filter(|s| ids.contains(&s.id)) {
        let key = s.row.key();
        if !rows.contains(&key) {
            rows.push(key);
        }
    }
    format!(" --rows {}", rows.join(","))
}

fn identity_message(specs: &[CellSpec], cells: &[(String, Identity)], current: Option<&Identity>) -> String {
    let mut groups: BTreeMap<&str, Vec<&(String, Identity)>> = BTreeMap::new();
    for c in cells {
        groups.entry(c.1.fingerprint.as_str()).or_default().push(c);
    }
    let describe = |g: &[&(String, Identity)]| {
        let commits: BTreeSet<String> = g.iter().map(|(_, i)| i.commit_short()).collect();
        let hosts: BTreeSet<String> = g.iter().map(|(_, i)| format!("{} on {}", i.host.class(), i.device)).collect();
        format!(
            "commit {}; {}",
            commits.into_iter().collect::<Vec<_>>().join(", "),
            hosts.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    let mut msg = String::from(
        "the cells of one table must share one numerics identity (fingerprint) per numerics class, and these differ:\n",
    );
    if let Some(cur) = current {
        msg += &format!(
            "  this build: fingerprint {} (commit {}; {} on {})\n",
            cur.fingerprint,
            cur.commit_short(),
            cur.host.class(),
            cur.device
        );
    }
    for (fp, g) in &groups {
        msg += &format!(
            "  fingerprint {fp} ({}): {}\n",
            describe(g),
            g.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    match current {
        Some(cur) => {
            msg += &format!(
                "Rerun them with this build: add --fresh to the command (only these cells are discarded and recomputed; their rows alone: --fresh{}); or continue the campaign where they were computed (a host of their class, a build with their numerics); or delete them. (This build computes fingerprint {}.)",
                rows_hint(specs, cells.iter().map(|(id, _)| id)),
                cur.fingerprint
            );
        }
        None => {
            // Suggest recomputing the smaller groups.
            let largest = groups.iter().max_by_key(|(_, g)| g.len()).map(|(fp, _)| *fp).unwrap_or_default();
            let others: Vec<&String> =
                groups.iter().filter(|(fp, _)| **fp != largest).flat_map(|(_, g)| g.iter().map(|(id, _)| id)).collect();
            msg += &format!(
                "Recompute the cells of the other fingerprints with a build of fingerprint {largest} on its host class (run the campaign with --fresh{}), or delete them.",
                rows_hint(specs, others.into_iter())
            );
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::super::cells::{CellRecord, Kind};
    use super::super::identity::Host;
    use super::super::rows::{by_key, Row};
    use super::*;
    use serde_json::json;

    fn ident(fp: &str, commit: &str) -> Identity {
        Identity {
            commit: commit.into(),
            dirty: false,
            fingerprint: fp.into(),
            fingerprint_source: "final_weights_blake3".into(),
            device: "cpu".into(),
            host: Host {
                hostname: "h".into(),
                cpu_model: "AMD EPYC".into(),
                avx512f: true,
                cores: 2,
                gpus: vec![],
                cpu_id: String::new(),
            },
            binary: "b".into(),
        }
    }

    fn train(row: &'static Row, seed: u64) -> CellSpec {
        CellSpec {
            id: CellSpec::train_id(row, seed),
            row,
            kind: Kind::Train { seed },
            config: json!({"flags": ["--seed", seed.to_string(), "--lr", "3e-5"]}),
        }
    }

    fn fma(row: &'static Row, members: &[u64]) -> CellSpec {
        CellSpec {
            id: CellSpec::fma_id(row, members),
            row,
            kind: Kind::Fma { members: members.to_vec() },
            config: json!({"members": members}),
        }
    }

    /// base, +fma, +adv over seeds 1..=n (FMA cells leave one seed out with n >= 3).
    fn specs(n: u64) -> Vec<CellSpec> {
        let (b, f, a) = (by_key("base").unwrap(), by_key("fma").unwrap(), by_key("adv").unwrap());
        let mut v = vec![];
        for s in 1..=n {
            v.push(train(b, s));
            v.push(train(a, s));
        }
        if n >= 3 {
            for k in 1..=n {
                v.push(fma(f, &(1..=n).filter(|&s| s != k).collect::<Vec<_>>()));
            }
        } else if n == 2 {
            v.push(fma(f, &[1, 2]));
        }
        v
    }

    fn record(spec: &CellSpec, id: &Identity, status: &str) -> CellRecord {
        CellRecord {
            format: 1,
            id: spec.id.clone(),
            row: spec.row.key(),
            kind: if spec.is_fma() { "fma".into() } else { "train".into() },
            seed: spec.seed(),
            members: spec.member_ids(),
            config: spec.config.clone(),
            paths: json!({}),
            identity: id.clone(),
            status: status.into(),
            weights_blake3: None,
            segments: vec![],
        }
    }

    fn finished(spec: &CellSpec, id: &Identity) -> OnDisk {
        OnDisk { record: Some(record(spec, id, "finished")), finished: true, ..Default::default() }
    }

    #[test]
    fn fresh_campaign_runs_everything_breadth_first() {
        let s = specs(3);
        let p = plan(&s, &BTreeMap::new(), Some(&ident("f1", "c1")), false).unwrap();
        assert!(p.decisions.values().all(|d| d.action == Action::Run && !d.discard));
        // Seed by seed, rows in table order; each FMA cell right after the seed that completes its members.
        assert_eq!(
            p.order,
            [
                "base-seed1",
                "adv-seed1",
                "base-seed2",
                "fma-seeds1+2",
                "adv-seed2",
                "base-seed3",
                "fma-seeds2+3",
                "fma-seeds1+3",
                "adv-seed3"
            ]
        );
        assert_eq!(p.needed_by["base-seed1"], BTreeSet::from(["fma-seeds1+2".to_string(), "fma-seeds1+3".to_string()]));
        assert!(!p.needed_by.contains_key("adv-seed1"));
    }

    #[test]
    fn reuses_finished_resumes_started_finalizes_run_finished() {
        let s = specs(2);
        let cur = ident("f1", "c2");
        let old_commit = ident("f1", "c1"); // another commit, same numerics: fine
        let mut disk = BTreeMap::new();
        disk.insert("base-seed1".to_string(), OnDisk { weights: true, ..finished(&s[0], &old_commit) });
        disk.insert(
            "adv-seed1".to_string(),
            OnDisk { record: Some(record(&s[1], &cur, "interrupted")), checkpoint: true, ..Default::default() },
        );
        disk.insert(
            "base-seed2".to_string(),
            OnDisk {
                record: Some(record(&s[2], &cur, "running")),
                run_finished: true,
                weights: true,
                ..Default::default()
            },
        );
        let p = plan(&s, &disk, Some(&cur), false).unwrap();
        let a = |id: &str| p.decisions[id].action;
        assert_eq!(a("base-seed1"), Action::Reuse);
        assert_eq!(a("adv-seed1"), Action::Resume);
        assert_eq!(a("base-seed2"), Action::Finalize);
        assert_eq!(a("adv-seed2"), Action::Run);
        assert_eq!(a("fma-seeds1+2"), Action::Run);
        assert_eq!(p.count(Action::Run), 2);
    }

    #[test]
    fn cells_with_a_checkpoint_come_first_nearest_to_done_first_then_breadth_first() {
        let s = specs(3);
        let cur = ident("f", "c");
        let mut disk = BTreeMap::new();
        disk.insert("base-seed1".to_string(), finished(&s[0], &cur)); // model deleted: regenerated for FMA
        let started = |spec: &CellSpec, updates_left: Option<u64>| OnDisk {
            record: Some(record(spec, &cur, "interrupted")),
            checkpoint: true,
            updates_left,
            ..Default::default()
        };
        disk.insert("adv-seed3".to_string(), started(&s[5], Some(400)));
        disk.insert("base-seed3".to_string(), started(&s[4], None)); // state unreadable: after the others
        disk.insert("adv-seed1".to_string(), started(&s[1], Some(900)));
        // Started, but its checkpoint was lost with its machine: restarts in its breadth-first place.
        disk.insert(
            "adv-seed2".to_string(),
            OnDisk { record: Some(record(&s[3], &cur, "interrupted")), ..Default::default() },
        );
        let p = plan(&s, &disk, Some(&cur), false).unwrap();
        assert_eq!(p.decisions["base-seed1"].action, Action::Regenerate);
        assert_eq!(p.decisions["adv-seed2"].action, Action::Resume);
        assert_eq!(p.decisions["adv-seed3"].action, Action::Resume);
        assert_eq!(p.order[..3], ["adv-seed3", "adv-seed1", "base-seed3"]);
        assert_eq!(p.order[3..5], ["base-seed1", "base-seed2"]);
        assert_eq!(p.order.len(), s.len());
    }

    #[test]
    fn a_differing_configuration_is_an_error_naming_it_unless_fresh() {
        let s = specs(2);
        let cur = ident("f1", "c1");
        let mut changed = s[1].clone();
        changed.config = json!({"flags": ["--seed", "1", "--lr", "5e-5"]});
        let mut disk = BTreeMap::new();
        disk.insert("base-seed1".to_string(), OnDisk { weights: true, ..finished(&s[0], &cur) });
        disk.insert("adv-seed1".to_string(), finished(&changed, &cur));
        let err = plan(&s, &disk, Some(&cur), false).unwrap_err().to_string();
        assert!(err.contains("adv-seed1: --lr: recorded 5e-5, now 3e-5"), "{err}");
        assert!(err.contains("--fresh --rows adv"), "{err}");
        assert!(!err.contains("base-seed1"), "{err}");
        let p = plan(&s, &disk, Some(&cur), true).unwrap();
        assert_eq!(
            p.decisions["adv-seed1"],
            Decision { action: Action::Run, discard: true, note: p.decisions["adv-seed1"].note.clone() }
        );
        assert_eq!(p.decisions["base-seed1"].action, Action::Reuse);
    }

    #[test]
    fn refuses_cells_of_other_numerics_and_names_them() {
        let s = specs(2);
        let cur = ident("new", "c2");
        let old = ident("old", "c1");
        let mut disk = BTreeMap::new();
        disk.insert("base-seed1".to_string(), finished(&s[0], &old));
        disk.insert("adv-seed1".to_string(), finished(&s[1], &cur));
        // An interrupted cell of the old numerics with a checkpoint would mix numerics if resumed.
        disk.insert(
            "base-seed2".to_string(),
            OnDisk { record: Some(record(&s[2], &old, "interrupted")), checkpoint: true, ..Default::default() },
        );
        // One with nothing to resume is restarted silently.
        disk.insert(
            "adv-seed2".to_string(),
            OnDisk { record: Some(record(&s[3], &old, "interrupted")), ..Default::default() },
        );
        let err = plan(&s, &disk, Some(&cur), false).unwrap_err().to_string();
        assert!(
            err.contains("fingerprint old (commit c1; AMD EPYC (avx512f) on cpu): base-seed1, base-seed2"),
            "{err}"
        );
        assert!(err.contains("this build: fingerprint new"), "{err}");
        assert!(err.contains("--fresh --rows base"), "{err}");
        assert!(!err.contains("adv-seed"), "{err}");
        let p = plan(&s, &disk, Some(&cur), true).unwrap();
        for id in ["base-seed1", "base-seed2", "adv-seed2"] {
            assert!(p.decisions[id].discard && p.decisions[id].action == Action::Run, "{id}");
        }
        assert_eq!(p.decisions["adv-seed1"].action, Action::Reuse);
    }

    /// `ident` on a host without AVX-512: another numerics class.
    fn ident_avx2(fp: &str, commit: &str) -> Identity {
        let mut i = ident(fp, commit);
        i.host.avx512f = false;
        i
    }

    #[test]
    fn cells_of_another_numerics_class_are_kept_or_restarted_never_resumed() {
        let s = specs(2);
        let cur = ident("new", "c2");
        let other = ident_avx2("avx2", "c1");
        assert_ne!(cur.numerics_class(), other.numerics_class());
        let mut disk = BTreeMap::new();
        disk.insert("base-seed1".to_string(), OnDisk { weights: true, ..finished(&s[0], &other) });
        disk.insert(
            "adv-seed1".to_string(),
            OnDisk { record: Some(record(&s[1], &other, "interrupted")), checkpoint: true, ..Default::default() },
        );
        let p = plan(&s, &disk, Some(&cur), false).unwrap();
        assert_eq!(p.decisions["base-seed1"].action, Action::Reuse, "a finished cell of another class is kept");
        let adv = &p.decisions["adv-seed1"];
        assert!(adv.discard && adv.action == Action::Run, "{adv:?}");
        assert!(adv.note.as_deref().is_some_and(|n| n.contains("no avx512f")), "{adv:?}");
        // Within a class the fingerprints must still agree.
        disk.insert("base-seed2".to_string(), finished(&s[2], &ident("old", "c0")));
        let err = plan(&s, &disk, Some(&cur), false).unwrap_err().to_string();
        assert!(err.contains("base-seed2") && !err.contains("base-seed1"), "{err}");
    }

    #[test]
    fn report_only_refuses_a_mixed_table() {
        let s = specs(2);
        let mut disk = BTreeMap::new();
        disk.insert("base-seed1".to_string(), finished(&s[0], &ident("a", "c1")));
        disk.insert("adv-seed1".to_string(), finished(&s[1], &ident("a", "c2")));
        assert!(plan(&s, &disk, None, false).is_ok(), "commits may differ when the numerics agree");
        disk.insert("adv-seed2".to_string(), finished(&s[3], &ident_avx2("z", "c4")));
        assert!(plan(&s, &disk, None, false).is_ok(), "one fingerprint per numerics class");
        disk.insert("base-seed2".to_string(), finished(&s[2], &ident("b", "c3")));
        let err = plan(&s, &disk, None, false).unwrap_err().to_string();
        assert!(err.contains("fingerprint a") && err.contains("fingerprint b"), "{err}");
        assert!(err.contains("base-seed2") && err.contains("--fresh --rows base"), "{err}");
    }

    #[test]
    fn regenerates_a_deleted_model_an_unfinished_fma_cell_needs() {
        let s = specs(2);
        let cur = ident("f", "c");
        let mut disk = BTreeMap::new();
        disk.insert("base-seed1".to_string(), finished(&s[0], &cur)); // model deleted
        disk.insert("base-seed2".to_string(), OnDisk { weights: true, ..finished(&s[2], &cur) });
        let p = plan(&s, &disk, Some(&cur), false).unwrap();
        assert_eq!(p.decisions["base-seed1"].action, Action::Regenerate);
        assert_eq!(p.decisions["base-seed2"].action, Action::Reuse);
        // Once the FMA cell is finished nothing needs the models.
        disk.insert("fma-seeds1+2".to_string(), finished(&s[4], &cur));
        let p = plan(&s, &disk, Some(&cur), false).unwrap();
        assert_eq!(p.decisions["base-seed1"].action, Action::Reuse);
        assert!(p.needed_by.is_empty());
    }
}
