#!/usr/bin/env bash
# What runs ON the remote GPU machine, one phase per remote command (docs/gpu-runbook.md). It needs no Rust
# toolchain: everything was built and staged beforehand by scripts/gpu/stage-bins.sh. $RESULTS is the
# directory whose files come back (a few files, two folders deep at most), so a phase works in
# /tmp/gpu-work/<phase>/ and, after every step, leaves in $RESULTS: <phase>.log, machine.txt and
# <phase>.tar.gz (everything so far): a command cut off by its time limit still returns what it finished.
# Unpack here with `tar xzf <phase>.tar.gz -C results/gpu-<date>/`.
#
#   RESULTS=DIR bash scripts/gpu/remote.sh tests-speed [SECONDS]   call 1: tree + .gpubin (speed staging)
#   RESULTS=DIR bash scripts/gpu/remote.sh iflytek [SECONDS]       call 2: tree + .gpubin (iflytek staging) + .carry
#
# tests-speed: the ernie-cuda tests with the host emulation off, each under a 25 s limit, all within the
#   first minute; if one fails the phase stops there (nothing long runs on a broken backend). Then the speed
#   table (ernie-ft on every shape, PyTorch eager, then torch.compile where it matters) in what is left.
# iflytek: the IFLYTEK strategy campaign on the GPU (5 seeds, jobs sharing the GPU), cells and tables
#   (cells and tables in iflytek-cuda/ of the tarball, repacked as they finish), then the base row in f32
#   for seed 1.
set -uo pipefail
phase=${1:?usage: remote.sh tests-speed|iflytek [SECONDS]}
budget=${2:-540}
: "${RESULTS:?set RESULTS to the directory that comes back}"
mkdir -p "$RESULTS"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
W=/tmp/gpu-work/$phase
mkdir -p "$W"
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
# Model weights and training states stay behind (an e5 checkpoint is 130 MB; the files back are small).
pack() { tar czf "$RESULTS/.$phase.tar.gz" --exclude='*.safetensors' --exclude=checkpoints -C "$W" . && mv "$RESULTS/.$phase.tar.gz" "$RESULTS/$phase.tar.gz"; }
log() {
    echo "[$((SECONDS - start))s] $*" | tee -a "$RESULTS/$phase.log"
    pack
}
# Test executables find tests/fixtures through the build checkout's path: link it to this copy.
if [[ -f .gpubin/built-at ]]; then
    built=$(cat .gpubin/built-at)
    [[ "$PWD" == "$built" ]] || { mkdir -p "$(dirname "$built")"; ln -sfn "$PWD" "$built"; }
fi
export PATH=$PWD/.gpubin:$PATH PYTHONUNBUFFERED=1 RUST_BACKTRACE=1
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    grep -m1 'model name' /proc/cpuinfo
    git rev-parse HEAD 2>/dev/null || cat .gpubin/commit 2>/dev/null
} > "$RESULTS/machine.txt" 2>&1
log "phase $phase, budget ${budget}s, $(head -1 "$RESULTS/machine.txt")"

case $phase in
tests-speed)
    export ERNIE_FT_SKIP_EMULATION=1 ERNIE_FT_CUDA_POISON=1
    failed=0
    for t in .gpubin/tests/*; do
        if timeout 25 "$t" > "$W/test-$(basename "$t").log" 2>&1; then r=ok; else r=FAILED; failed=1; fi
        log "test $(basename "$t"): $r $(grep -c 'SKIPPED' "$W/test-$(basename "$t").log") skipped"
    done
    if ((failed)); then log "a CUDA test failed: stopping before the speed table"; exit 1; fi
    if grep -q 'SKIPPED (no CUDA GPU)' "$W"/test-*.log; then log "the backend found no GPU: stopping"; exit 1; fi
    timeout 60 xtask kernels > "$W/kernels.log" 2>&1; log "kernels: rc $?"
    S=$W/speed
    t=$(( $(left) * 2 / 5 )); timeout "$t" xtask bench-speed --ernie-ft .gpubin/ernie-ft --out "$S" --no-torch --timeout 60 >> "$W/speed.log" 2>&1
    log "speed ernie-ft: rc $?"
    t=$(( $(left) * 3 / 5 )); timeout "$t" xtask bench-speed --ernie-ft .gpubin/ernie-ft --out "$S" --no-ernie --torch-modes eager --torch-budget $((t - 10)) >> "$W/speed.log" 2>&1
    log "speed torch eager: rc $?"
    t=$(( $(left) - 15 )); ((t > 30)) && timeout "$t" xtask bench-speed --ernie-ft .gpubin/ernie-ft --out "$S" --no-ernie --torch-modes compile --shapes ernie-base --sizes 128x64 --strategies base --torch-budget $((t - 10)) >> "$W/speed.log" 2>&1
    log "speed torch compile: rc $?"
    xtask bench-speed --report-only --out "$S" >> "$W/speed.log" 2>&1
    log "speed table: rc $?"
    ;;
iflytek)
    # shellcheck disable=SC1091
    source .carry/env.sh
    for b in ernie-ft xtask; do xz -dc ".gpubin/$b.xz" > "/tmp/$b" && chmod +x "/tmp/$b"; done
    export ERNIE_FT_BIN=/tmp/ernie-ft
    out=$W/iflytek-cuda
    jobs=${JOBS:-4}
    t=$(( $(left) - 90 ))
    timeout "$t" /tmp/xtask bench-iflytek --device cuda --seeds 5 --jobs "$jobs" --out "$out" >> "$W/campaign.log" 2>&1
    log "campaign: rc $? ($(ls -d "$out"/cells/*/ 2>/dev/null | wc -l) cells)"
    t=$(( $(left) - 10 ))
    ((t > 30)) && timeout "$t" /tmp/ernie-ft train --task iflytek --device cuda --precision f32 --seed 1 --no-save \
        --output-dir "$W/iflytek-base-f32-seed1" >> "$W/base-f32.log" 2>&1
    log "base f32 seed 1: rc $?"
    /tmp/xtask bench-iflytek --report-only --out "$out" >> "$W/campaign.log" 2>&1
    log "tables: rc $?"
    ;;
*) echo "unknown phase $phase" >&2; exit 2 ;;
esac
