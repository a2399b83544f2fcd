#!/usr/bin/env bash
# The IFLYTEK strategy campaign of results/iflytek/ in the background, and beside it, until it has finished,
# the PyTorch/HF check of the base row (seed 1). Both resume from their saved state: run this again after any
# interruption (the end of a sitting, a reboot). The settings are the ones chosen on held-out TRAIN
# (results/iflytek/lr-selection.md): lr 2e-4 (layer-decay rows 4e-4), 6 epochs.
#
#   scripts/iflytek-campaign.sh [start]   start (or continue) both; returns at once
#   scripts/iflytek-campaign.sh start --jobs 1   once the check has finished: one cell at a time on every core
#   scripts/iflytek-campaign.sh stop      stop both cleanly (each saves its state, then exits)
#   scripts/iflytek-campaign.sh status    what runs, each unfinished cell's last update, the logs' last lines
#
# By default every cell trains on 1 thread with one other job beside it (the PyTorch check, else a second
# cell: --jobs 2), so that the cells' step times compare like with like; that gave about 25% more cells per
# hour than one cell on 2 threads on an AMD EPYC (Zen 5) virtual machine, and little or none on an Intel Xeon
# one, where each cell took about twice its time alone (results/iflytek/README.md): there, `start --jobs 1`.
# The thread count does not change the numbers (crates/cli/tests/threads.rs). Logs:
# target/iflytek-campaign/*.log. The PyTorch venv comes from scripts/torch-venv.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
logs=target/iflytek-campaign
check=results/iflytek/pytorch-check
campaign_pattern="xtask bench-iflytek"
check_pattern="finetune_torch.py --task iflytek .*--state-dir $check/runs/base"
mkdir -p "$logs"

running() { pgrep -f "$1" >/dev/null; }

case "${1:-start}" in
start)
    jobs_flag=""
    if [[ "${2:-}" == --jobs && "${3:-}" =~ ^[1-9][0-9]*$ ]]; then
        threads=$(($(nproc) / $3))
        jobs_flag="--jobs $3 --threads $((threads > 0 ? threads : 1))"
    elif [[ -n "${2:-}" ]]; then
        echo "usage: $0 start [--jobs N]" >&2
        exit 2
    fi
    check_done=$([[ -f "$check/base-seed1.json" ]] && echo 1 || echo 0)
    if ((!check_done)) && ! running "$check_pattern"; then
        python=$(scripts/torch-venv.sh)
        mkdir -p "$check/runs"
        OMP_NUM_THREADS=1 nohup nice -n 5 "$python" scripts/gpu/finetune_torch.py --task iflytek --device cpu \
            --threads 1 --seeds 1 --lr 2e-4 --epochs 6 --save-every 50 --state-dir "$check/runs/base" \
            --out "$check/base-seed1.json" >>"$check/base-seed1.log" 2>&1 &
        echo "PyTorch check of the base row: started (log $check/base-seed1.log)"
    fi
    if running "$campaign_pattern"; then
        echo "campaign: already running (log $logs/campaign.log)"
    else
        # With the check running, one cell at a time on the other core; else two cells, a core each.
        jobs=$( ((check_done)) && echo "${jobs_flag:---jobs 2}" || echo "--jobs 1 --threads 1")
        # shellcheck disable=SC2086
        nohup nice -n 5 cargo xtask bench-iflytek --lr 2e-4 $jobs -- --epochs 6 >>"$logs/campaign.log" 2>&1 &
        echo "campaign: started with $jobs (log $logs/campaign.log)"
    fi
    ;;
stop)
    # SIGINT: each finishes its current update, saves its state and exits (the campaign's cells likewise).
    pkill -INT -f "$check_pattern" || true
    pkill -INT -f "$campaign_pattern" || true
    while running "$check_pattern" || running "$campaign_pattern"; do sleep 2; done
    echo "stopped; rerun \`$0\` to continue"
    ;;
status)
    for p in "$campaign_pattern" "$check_pattern"; do
        running "$p" && echo "running: $p" || echo "not running: $p"
    done
    tail -n 3 "$logs/campaign.log" 2>/dev/null || true
    # A cell is finished once it has metrics.json; the others show the last update their log reached. A
    # finished cell whose model is being trained again for FMA (its log's last segment, opened by a `===`
    # line, has no final line yet) shows it too.
    for log in results/iflytek/cells/*/train.log; do
        [[ -f $log ]] || continue
        cell=$(dirname "$log")
        note=""
        if [[ -f $cell/metrics.json ]]; then
            awk '/^=== /{open=1} /^final dev accuracy/{open=0} END{exit !open}' "$log" || continue
            note=" (regenerating its model)"
        fi
        # The last update of the log's last segment: an earlier segment's may be from a run that was lost
        # with its machine's disk, and the new one restarted.
        last=$(awk '/^=== /{step=""} /^step [0-9]+\//{step=$0} END{print step}' "$log")
        echo "$(basename "$cell")$note: ${last:-no update logged yet in its current segment}"
    done
    if [[ -f "$check/base-seed1.json" ]]; then
        echo "PyTorch check of the base row: finished ($check/base-seed1.json)"
    else
        tail -n 2 "$check/base-seed1.log" 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: $0 [start [--jobs N]|stop|status]" >&2
    exit 2
    ;;
esac
