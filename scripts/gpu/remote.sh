#!/usr/bin/env bash
# What runs ON the remote GPU machine (docs/gpu-runbook.md). It needs no Rust toolchain: everything was built
# and staged beforehand (scripts/gpu/stage-bins.sh, scripts/gpu/stage-carry.sh). $RESULTS is the directory
# whose files come back (a few files, two folders deep at most), so the run works in /tmp/gpu-work/<name>/
# and, after every step, leaves in $RESULTS: <name>.log, machine.txt and <name>.tar.gz (everything so far):
# a command cut off by its time limit still returns what it finished. Unpack here with
# `tar xzf <name>.tar.gz -C results/gpu-<date>/`.
#
#   RESULTS=DIR bash scripts/gpu/remote.sh PHASE[:SECONDS][,PHASE[:SECONDS]...]
#   RESULTS=DIR bash scripts/gpu/remote.sh tests-speed|iflytek [SECONDS]     (the two-command form)
#
# Phases, run in the order given, each within its seconds (what a phase leaves unused goes to the next):
# tests    the ernie-cuda tests with the host emulation off, each under a 25 s limit, then `xtask kernels`;
#          if one fails the run stops there (nothing long runs on a broken backend).
# iflytek  the IFLYTEK strategy campaign on the GPU (5 seeds, $JOBS jobs sharing the GPU), cells and tables
#          in iflytek-cuda/ of the tarball, repacked as they finish; then the base row in f32 for seed 1 in
#          what is left. The settings are the CPU table's (results/iflytek/README.md: lr 2e-4, layer-decay
#          rows 4e-4, 6 epochs) unless IFLYTEK_FLAGS gives others (campaign flags, then `--` and train flags).
# speed    the speed table: ernie-ft on every shape, PyTorch eager, then torch.compile where it matters.
# The binaries are .gpubin/NAME or .gpubin/NAME.xz (tests: .gpubin/tests/*); model and data come from
# .carry/env.sh where a phase needs them.
set -uo pipefail
spec=${1:?usage: remote.sh PHASE[:SECONDS][,PHASE[:SECONDS]...] | tests-speed|iflytek [SECONDS]}
case $spec in
tests-speed) name=$spec; spec="tests:60,speed:$((${2:-300} - 60))" ;;
iflytek) name=$spec; spec="iflytek:${2:-420}" ;;
*) name=window ;;
esac
: "${RESULTS:?set RESULTS to the directory that comes back}"
mkdir -p "$RESULTS"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
W=/tmp/gpu-work/$name
mkdir -p "$W"
start=$SECONDS
# Model weights and training states stay behind (an e5 checkpoint is 130 MB; the files back are small).
pack() { tar czf "$RESULTS/.$name.tar.gz" --exclude='*.safetensors' --exclude=checkpoints -C "$W" . && mv "$RESULTS/.$name.tar.gz" "$RESULTS/$name.tar.gz"; }
log() {
    echo "[$((SECONDS - start))s] $*" | tee -a "$RESULTS/$name.log"
    pack
}
# Test executables find tests/fixtures through the build checkout's path: link it to this copy.
if [[ -f .gpubin/built-at ]]; then
    built=$(cat .gpubin/built-at)
    [[ "$PWD" == "$built" ]] || { mkdir -p "$(dirname "$built")"; ln -sfn "$PWD" "$built"; }
fi
# Binaries staged compressed are unpacked once into /tmp/gpubin.
B=/tmp/gpubin
mkdir -p "$B/tests"
for f in .gpubin/* .gpubin/tests/*; do
    [[ -f $f ]] || continue
    case $f in *.txt | */built-at | */commit) continue ;; esac
    dest=$B/${f#.gpubin/}
    if [[ $f == *.xz ]]; then xz -dc "$f" > "${dest%.xz}" && dest=${dest%.xz}; else cp "$f" "$dest"; fi
    chmod +x "$dest"
done
export PATH=$B:$PATH PYTHONUNBUFFERED=1 RUST_BACKTRACE=1 ERNIE_FT_BIN=$B/ernie-ft
if [[ -f .carry/env.sh ]]; then
    # shellcheck disable=SC1091
    source .carry/env.sh
fi
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    grep -m1 'model name' /proc/cpuinfo
    cat .gpubin/commit 2>/dev/null || git rev-parse HEAD 2>/dev/null
} > "$RESULTS/machine.txt" 2>&1
log "run $spec, $(head -1 "$RESULTS/machine.txt")"

phase_tests() {
    export ERNIE_FT_SKIP_EMULATION=1 ERNIE_FT_CUDA_POISON=1
    local failed=0 t
    for t in "$B"/tests/*; do
        if timeout 25 "$t" > "$W/test-$(basename "$t").log" 2>&1; then r=ok; else r=FAILED; failed=1; fi
        log "test $(basename "$t"): $r $(grep -c 'SKIPPED' "$W/test-$(basename "$t").log") skipped"
    done
    unset ERNIE_FT_SKIP_EMULATION ERNIE_FT_CUDA_POISON
    if ((failed)); then log "a CUDA test failed: stopping"; return 1; fi
    if grep -q 'SKIPPED (no CUDA GPU)' "$W"/test-*.log; then log "the backend found no GPU: stopping"; return 1; fi
    timeout 60 xtask kernels > "$W/kernels.log" 2>&1
    log "kernels: rc $?"
}

phase_speed() {
    local S=$W/speed t
    t=$(($(left) * 2 / 5))
    timeout "$t" xtask bench-speed --ernie-ft "$B/ernie-ft" --out "$S" --no-torch --timeout 60 >> "$W/speed.log" 2>&1
    log "speed ernie-ft: rc $?"
    t=$(($(left) * 3 / 5))
    timeout "$t" xtask bench-speed --ernie-ft "$B/ernie-ft" --out "$S" --no-ernie --torch-modes eager \
        --torch-budget $((t - 10)) >> "$W/speed.log" 2>&1
    log "speed torch eager: rc $?"
    t=$(($(left) - 15))
    if ((t > 30)); then
        timeout "$t" xtask bench-speed --ernie-ft "$B/ernie-ft" --out "$S" --no-ernie --torch-modes compile \
            --shapes ernie-base --sizes 128x64 --strategies base --torch-budget $((t - 10)) >> "$W/speed.log" 2>&1
        log "speed torch compile: rc $?"
    fi
    xtask bench-speed --report-only --out "$S" >> "$W/speed.log" 2>&1
    log "speed table: rc $?"
}

phase_iflytek() {
    local out=$W/iflytek-cuda t flags
    read -ra flags <<< "${IFLYTEK_FLAGS:---lr 2e-4 -- --epochs 6}"
    t=$(($(left) - 90))
    timeout "$t" xtask bench-iflytek --device cuda --seeds 5 --jobs "${JOBS:-4}" --out "$out" "${flags[@]}" \
        >> "$W/campaign.log" 2>&1
    log "campaign: rc $? ($(ls -d "$out"/cells/*/ 2>/dev/null | wc -l) cells)"
    t=$(($(left) - 10))
    if ((t > 30)); then
        timeout "$t" ernie-ft train --task iflytek --device cuda --precision f32 --seed 1 --no-save --lr 2e-4 \
            --epochs 6 --output-dir "$W/iflytek-base-f32-seed1" >> "$W/base-f32.log" 2>&1
        log "base f32 seed 1: rc $?"
    fi
    xtask bench-iflytek --report-only --seeds 5 --out "$out" >> "$W/campaign.log" 2>&1
    log "tables: rc $?"
}

# The seconds left to the running phase: its own, plus what the phases before it left unused.
deadline=0
left() { echo $((deadline - (SECONDS - start))); }
IFS=, read -ra phases <<< "$spec"
for p in "${phases[@]}"; do
    secs=${p#*:}
    [[ $secs == "$p" ]] && secs=300
    deadline=$((deadline + secs))
    case ${p%%:*} in
    tests) phase_tests || exit 1 ;;
    speed) phase_speed ;;
    iflytek) phase_iflytek ;;
    *) log "unknown phase ${p%%:*}"; exit 2 ;;
    esac
done
log "done"
