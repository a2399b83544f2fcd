#!/usr/bin/env bash
# The adv epsilon sweep of the IFLYTEK campaign (results/iflytek/adv-epsilon.md): adv on 90% of TRAIN, scored
# on the held-out 10% (never dev), seed 1, one run per epsilon (alpha 1), at the campaign's settings (lr 2e-4,
# 6 epochs; results/iflytek/lr-selection.md) so that it ranks epsilon where the table uses it. Resumable:
# rerun the same command and every run continues from its last training state.
#
#   scripts/adv-epsilon-sweep.sh [--jobs N] [EPSILON ...]   (default: 0.1 1 5)
#
# Runs go to results/iflytek/adv-epsilon/runs/eps<EPSILON>/ (ignored by git; the log beside each); the
# report, scripts/adv_epsilon_report.py, reads their metrics.json (or the newest training state of an
# unfinished run). ERNIE_FT_BIN selects a prebuilt binary. (scripts/adv_sweep.sh is the earlier sweep at a
# 32-update budget, too small to rank anything: docs/adv-sweep.md.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=1
if [[ "${1:-}" == "--jobs" ]]; then jobs="$2"; shift 2; fi
epsilons=("$@")
((${#epsilons[@]})) || epsilons=(0.1 1 5)
bin="${ERNIE_FT_BIN:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --quiet --bin ernie-ft
    bin=target/release/ernie-ft
fi
threads=$(($(nproc) / jobs))
((threads > 0)) || threads=1
root=results/iflytek/adv-epsilon/runs
mkdir -p "$root"
run_one() {
    local out="$root/eps$1"
    "$bin" train --task iflytek --lr 2e-4 --epochs 6 --seed 1 --holdout 0.1 --strategy adv --adv-epsilon "$1" \
        --adv-alpha 1 --no-save --save-every 50 --threads "$threads" --output-dir "$out" --resume auto >>"$out.log" 2>&1
}
running=0
for eps in "${epsilons[@]}"; do
    run_one "$eps" &
    running=$((running + 1))
    if ((running >= jobs)); then
        wait -n
        running=$((running - 1))
    fi
done
wait
echo "done: $(ls "$root"/*/metrics.json 2>/dev/null | wc -l) of ${#epsilons[@]} finished; report: python3 scripts/adv_epsilon_report.py"
