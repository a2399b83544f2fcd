#!/usr/bin/env bash
# The base learning-rate selection for the IFLYTEK campaign (results/iflytek/lr-selection.md): the base
# strategy on 90% of TRAIN, scored on the held-out 10% (never dev), seed 1, the task's other defaults, one run
# per candidate lr. Resumable: rerun the same command and every run continues from its last training state.
#
#   scripts/lr-selection.sh [--jobs N] [LR[:EPOCHS] ...]   (default candidates: 2e-4 4e-4 1e-4 5e-5)
#
# A candidate is a learning rate, with the task's 3 epochs, or LR:EPOCHS for another number of epochs (the
# epochs are chosen the same way when the best lr's held-out accuracy is still rising at its last epoch).
# Runs go to results/iflytek/lr-selection/runs/lr<LR>/ (lr<LR>-ep<EPOCHS>/ for other epochs; ignored by
# git); their metrics.json files are what the report is built from. ERNIE_FT_BIN selects a prebuilt binary; extra flags: ERNIE_FT_FLAGS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=1
if [[ "${1:-}" == "--jobs" ]]; then jobs="$2"; shift 2; fi
lrs=("$@")
((${#lrs[@]})) || lrs=(2e-4 4e-4 1e-4 5e-5)
bin="${ERNIE_FT_BIN:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --quiet --bin ernie-ft
    bin=target/release/ernie-ft
fi
threads=$(( $(nproc) / jobs )); ((threads > 0)) || threads=1
root=results/iflytek/lr-selection/runs
mkdir -p "$root"
run_one() {
    local lr="${1%%:*}" epochs=() out="$root/lr${1%%:*}"
    if [[ "$1" == *:* ]]; then
        epochs=(--epochs "${1#*:}")
        out="$out-ep${1#*:}"
    fi
    # shellcheck disable=SC2086
    "$bin" train --task iflytek --lr "$lr" "${epochs[@]}" --seed 1 --holdout 0.1 --no-save --save-every 24 \
        --threads "$threads" --output-dir "$out" --resume auto ${ERNIE_FT_FLAGS:-} >>"$out.log" 2>&1
}
running=0
for lr in "${lrs[@]}"; do
    run_one "$lr" &
    running=$((running + 1))
    if ((running >= jobs)); then wait -n; running=$((running - 1)); fi
done
wait
echo "done: $(ls "$root"/*/metrics.json 2>/dev/null | wc -l) of ${#lrs[@]} finished"
