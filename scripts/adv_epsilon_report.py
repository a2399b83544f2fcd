#!/usr/bin/env python3
"""Write results/iflytek/adv-epsilon.md from the runs of scripts/adv-epsilon-sweep.sh.

Every epsilon is one `ernie-ft train --holdout 0.1 --strategy adv` run at the campaign's settings (lr 2e-4,
6 epochs, seed 1): trained on 90% of TRAIN and scored on the held-out 10% after each epoch, never on dev.
Runs are read as in scripts/lr_selection_report.py (finished: metrics.json; unfinished: newest training
state, marked as such). The base reference at the same settings is the lr selection's 2e-4 / 6-epoch run,
read from results/iflytek/lr-selection.md. Rule, stated in the report: the default (epsilon 1) changes only
if another epsilon's final held-out accuracy beats it by more than two standard errors of the difference
of two accuracies on the held-out examples; one seed on ~600 examples can detect nothing finer.

    python3 scripts/adv_epsilon_report.py [RUNS_DIR] [OUT.md]
"""
import math
import pathlib
import sys

from lr_selection_report import CELLS_HEADER, cells, finish, load_runs

DEFAULT_EPSILON = 1.0
LR_SELECTION = pathlib.Path("results/iflytek/lr-selection.md")


def base_reference():
    """The lr selection's base run at the campaign settings (lr 2e-4, 6 epochs): its table row's columns."""
    if not LR_SELECTION.is_file():
        return None
    for line in LR_SELECTION.read_text().splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) >= 9 and cols[0] == "0.0002" and cols[1] == "6" and cols[2] == "finished":
            return cols[2:]
    return None


def final(r):
    return r["history"][-1]["dev"]["accuracy"]


def main():
    runs = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "results/iflytek/adv-epsilon/runs")
    out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "results/iflytek/adv-epsilon.md")
    rows = load_runs(runs) if runs.is_dir() else []
    for r in rows:
        adv = (r["recipe"] or {}).get("adv")
        if not adv or r["lr"] != 2e-4 or r["epochs"] != 6 or r["seed"] != 1 or not r["holdout"]:
            sys.exit(f"{runs}: a run that is not adv at lr 2e-4, 6 epochs, seed 1 on held-out TRAIN: {r}")
        r["epsilon"] = adv["epsilon"]
    rows.sort(key=lambda r: r["epsilon"])
    md = ["# IFLYTEK: adv's epsilon on held-out TRAIN", ""]
    md += [
        "Model e5-small-zh (../shared/models), `train.partial.json` (5,951 lines) split 90/10 by `--holdout 0.1`",
        "(5,356 train / 595 held out, the lr selection's split), `--strategy adv`, alpha 1, objective kl, L2 noise",
        "norm, seed 1, lr 2e-4, 6 epochs, batch 32, max length 128, warmup 0.1, hidden dropout 0, head seed 0,",
        "CPU f32: the campaign's settings. Dev is not used. Produced by `scripts/adv-epsilon-sweep.sh`, this file",
        "by `scripts/adv_epsilon_report.py`.",
        "",
        f"Rule: the default (epsilon {DEFAULT_EPSILON:g}) changes only if another epsilon's final held-out accuracy",
        "beats it by more than two standard errors of the difference of two accuracies on the held-out examples",
        "(binomial, unpaired: conservative). One seed on 595 examples cannot rank finer differences.",
        "",
        f"| epsilon | {CELLS_HEADER} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = base_reference()
    if base:
        md.append(f"| base (lr-selection.md) | {' | '.join(base)} |")
    for r in rows:
        md.append(f"| {r['epsilon']:g} | {' | '.join(cells(r))} |")
    md.append("")
    done = [r for r in rows if r["finished"] and r["history"]]
    default = next((r for r in done if r["epsilon"] == DEFAULT_EPSILON), None)
    if len(done) < len(rows) or not rows:
        md.append(f"Not all runs have finished ({len(done)} of {len(rows)}): no choice yet.")
    elif default is None:
        md.append(f"No finished run of the default epsilon {DEFAULT_EPSILON:g}: no choice.")
    else:
        n = default["history"][-1]["dev"].get("examples") or 595
        best = max(done, key=final)
        p1, p2 = final(default), final(best)
        se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
        gain = p2 - p1
        verdict = (
            f"epsilon {best['epsilon']:g} beats the default by {gain * 100:+.2f} points, more than two standard"
            f" errors ({2 * se * 100:.2f}): change the default to {best['epsilon']:g}."
            if best is not default and gain > 2 * se
            else f"no epsilon beats the default {DEFAULT_EPSILON:g} by more than two standard errors"
            f" ({2 * se * 100:.2f} points; best: epsilon {best['epsilon']:g}, {p2 * 100:.2f} against"
            f" {p1 * 100:.2f}): the default stays."
        )
        md.append(f"Result: {verdict}")
    finish(md, runs, out)


if __name__ == "__main__":
    main()
