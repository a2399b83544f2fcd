#!/usr/bin/env bash
# The sweep behind adv's default epsilon and alpha: IFLYTEK, trained on the first N examples of 90% of the
# TRAIN file and scored on the other 10% (never dev), two epochs at max length 64, one seed per cell (a
# small CPU budget: see docs/adv-sweep.md for how to read it). Writes results/adv-sweep/sweep.{json,md}.
# (AFQMC was tried first: at this budget every run predicts the majority class, so it cannot rank settings.)
# Usage: scripts/adv_sweep.sh [N=512] [EPSILONS="0.1 1 5"] [ALPHAS="1"]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-512}
eps_list=${2:-"0.1 1 5"}
alpha_list=${3:-"1"}
out=results/adv-sweep
mkdir -p "$out"
cargo build -q --release --bin ernie-ft
common=(train --task iflytek --holdout 0.1 --train-limit "$n" --epochs 2 --max-len 64 --seed 1 --no-save)
run() { # name, extra flags...
  local name=$1; shift
  [ -f "$out/$name/metrics.json" ] || target/release/ernie-ft "${common[@]}" --output-dir "$out/$name" "$@"
}
run base
for e in $eps_list; do for a in $alpha_list; do run "adv-eps$e-alpha$a" --strategy adv --adv-epsilon "$e" --adv-alpha "$a"; done; done
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = []
for d in sorted(os.listdir(out)):
    p = os.path.join(out, d, "metrics.json")
    if os.path.isfile(p):
        m = json.load(open(p))
        rows.append((d, m["final_dev"]["accuracy"], m["final_dev"]["macro_f1"], m["seconds_per_step"], m["train_examples"], m["dev_examples"], m["device"]))
json.dump([dict(run=r[0], heldout_accuracy=r[1], heldout_macro_f1=r[2], seconds_per_step=r[3], train_examples=r[4], heldout_examples=r[5], device=r[6]) for r in rows], open(os.path.join(out, "sweep.json"), "w"), indent=1)
with open(os.path.join(out, "sweep.md"), "w") as f:
    f.write("| run | held-out accuracy | held-out macro-F1 | s/step | train / held-out examples |\n|---|---|---|---|---|\n")
    for r in rows:
        f.write(f"| {r[0]} | {r[1]*100:.2f} | {r[2]*100:.2f} | {r[3]:.2f} | {r[4]} / {r[5]} |\n")
print(open(os.path.join(out, "sweep.md")).read())
PY
