#!/usr/bin/env python3
"""Write results/iflytek/lr-selection.md from the runs of scripts/lr-selection.sh.

Every candidate learning rate is one `ernie-ft train --holdout 0.1` run (base strategy, seed 1, the task's
other defaults): trained on 90% of TRAIN and scored on the held-out 10% after each epoch, never on dev.
Finished runs are read from their metrics.json; unfinished ones from their newest training state
(checkpoints/step-N/state.json), and are marked as such. The choice rule is stated in the report:
the highest held-out accuracy of the final model among finished runs; if the best run's held-out accuracy
still rose by more than 2 points over its last epoch, the number of epochs is flagged for selection too.

    python3 scripts/lr_selection_report.py [RUNS_DIR] [OUT.md]
"""
import json
import pathlib
import sys

RISE = 0.02  # "still rising steeply": more than 2 accuracy points over the last epoch


def load(run: pathlib.Path):
    metrics = run / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        return dict(finished=True, steps=m["steps"], history=m["history"], lr=m["lr"], epochs=m["config"]["epochs"],
                    recipe=m["config"]["recipe"], seed=m["config"]["seed"], holdout=m["config"]["holdout"],
                    sps=m.get("seconds_per_step"), host=m.get("simd_class", ""), device=m.get("device", ""),
                    train_loss=m.get("train_loss_last_epoch"), total=m["steps"])
    states = sorted((run / "checkpoints").glob("step-*/state.json"))
    if not states:
        return None
    s = json.loads(states[-1].read_text())
    p = s["progress"]
    return dict(finished=False, steps=p["step"], history=p["history"], lr=s["config"]["lr"], epochs=s["config"]["epochs"],
                recipe=s["config"]["recipe"], seed=s["config"]["seed"], holdout=s["config"]["holdout"],
                sps=p["train_seconds"] / max(p["step"], 1), host=s.get("simd_class", ""), device=s.get("backend", ""),
                train_loss=p.get("last_epoch_loss"), total=s["total_steps"])


def cells(r):
    """A run's columns from `status` on: status, held-out accuracy / macro-F1 / loss per epoch, last-epoch
    train loss, s/step, host."""
    h = r["history"]
    acc = " / ".join(f"{e['dev']['accuracy'] * 100:.2f}" for e in h) or "-"
    f1 = " / ".join(f"{e['dev']['macro_f1'] * 100:.2f}" for e in h) or "-"
    loss = " / ".join(f"{e['dev']['loss']:.3f}" for e in h) or "-"
    status = "finished" if r["finished"] else f"in progress: update {r['steps']} of {r['total']}"
    tl = f"{r['train_loss']:.3f}" if r["train_loss"] else "-"
    sps = f"{r['sps']:.2f}" if r["sps"] else "-"
    return [status, acc, f1, loss, tl, sps, r["host"]]


CELLS_HEADER = "status | held-out accuracy per epoch | macro-F1 per epoch | loss per epoch | last-epoch train loss | s/step | host"


def load_runs(runs: pathlib.Path):
    """Every run under `runs` that has finished or saved a training state."""
    return [r for r in (load(d) for d in sorted(p for p in runs.iterdir() if p.is_dir())) if r]


def main():
    runs = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "results/iflytek/lr-selection/runs")
    out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "results/iflytek/lr-selection.md")
    rows = load_runs(runs)
    rows.sort(key=lambda r: (r["epochs"], r["lr"]))
    md = ["# IFLYTEK: choosing the base learning rate on held-out TRAIN", ""]
    md += [
        "Model e5-small-zh (../shared/models), `train.partial.json` (5,951 lines) split 90/10 by `--holdout 0.1`",
        "(5,356 train / 595 held out, fixed split), base strategy, seed 1, batch 32, 3 epochs unless the row says",
        "otherwise, max length 128,",
        "warmup 0.1, hidden dropout 0, head seed 0, CPU f32. Dev is not used. Produced by",
        "`scripts/lr-selection.sh`, this file by `scripts/lr_selection_report.py`.",
        "",
        "Rule: the lr whose final model has the highest held-out accuracy among finished runs; if that run's",
        f"held-out accuracy still rose by more than {RISE * 100:.0f} points over its last epoch, the number of epochs",
        "is chosen the same way too (runs of that lr with more epochs; each run has its own linear schedule).",
        "",
        f"| lr | epochs | {CELLS_HEADER} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(f"| {r['lr']:g} | {r['epochs']} | {' | '.join(cells(r))} |")
    done = [r for r in rows if r["finished"] and r["history"]]
    md.append("")
    if len(done) < len(rows) or not rows:
        md.append(f"Not all candidates have finished ({len(done)} of {len(rows)}): no choice yet.")
    if done:
        best = max(done, key=lambda r: r["history"][-1]["dev"]["accuracy"])
        h = best["history"]
        rise = h[-1]["dev"]["accuracy"] - h[-2]["dev"]["accuracy"] if len(h) > 1 else 0.0
        settled = len(done) == len(rows) and rise <= RISE
        md.append(f"{'Chosen' if settled else 'Best finished so far'}: lr {best['lr']:g}, {best['epochs']} epochs, held-out accuracy {h[-1]['dev']['accuracy'] * 100:.2f} "
                  f"(macro-F1 {h[-1]['dev']['macro_f1'] * 100:.2f}); last-epoch rise {rise * 100:+.2f} points"
                  + (" — still rising steeply: choose the epochs too." if rise > RISE else "."))
    finish(md, runs, out)


def finish(md, runs: pathlib.Path, out: pathlib.Path):
    """Close a report: the s/step footnote, then RUNS/../notes.md (the reasoning, written by hand), into OUT."""
    md.append("")
    md.append("s/step: wall-clock seconds per update on the machine that ran it, with other work beside it; not a"
              " speed figure.")
    notes = runs.parent / "notes.md"
    if notes.is_file():
        md += ["", notes.read_text().rstrip()]
    out.write_text("\n".join(md) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
