#!/usr/bin/env bash
# Build portable x86-64 binaries here and stage them in .gpubin/ for the GPU machine (see docs/gpu-runbook.md).
# The GPU machine has no Rust toolchain listed and no network (no crates.io), so the Rust side travels built.
#
# Usage (from the repository root):  bash scripts/gpu/stage-bins.sh [window|speed|iflytek|accuracy]
#   window    what `speed` stages, every executable xz-compressed: small enough to travel beside the model,
#             data and fixtures of scripts/gpu/stage-carry.sh in one remote command (remote.sh tests,iflytek,speed)
#   speed     .gpubin/{ernie-ft, xtask, tests/<ernie-cuda test executables>, tests.txt}, stripped
#             (scripts/gpu/remote.sh tests-speed)
#   iflytek   .gpubin/{ernie-ft.xz, xtask.xz} (stripped, xz): beside .carry's model and data
#             (scripts/gpu/remote.sh iflytek)
#   accuracy  .gpubin/ernie-ft.xz only (stripped, xz): small enough to travel beside .carry's model and data
# Then send ".gpubin" with the tree to the remote machine (and ".carry" for accuracy runs).
#
# The build uses its own target directory (target/gpu, or $GPU_TARGET_DIR) and RUSTFLAGS
# "-C target-cpu=x86-64-v3": the workspace's .cargo/config.toml builds for target-cpu=native, and this
# machine's CPU (AVX-512) need not match the GPU machine's. The binaries need glibc >= 2.34.
set -euo pipefail
what=${1:-speed}
case $what in window|speed|iflytek|accuracy) ;; *) echo "usage: $0 [window|speed|iflytek|accuracy]" >&2; exit 2 ;; esac
root=$(git rev-parse --show-toplevel)
cd "$root"
grep -qx '/.gpubin/' .git/info/exclude 2>/dev/null || echo '/.gpubin/' >> .git/info/exclude
export CARGO_TARGET_DIR=${GPU_TARGET_DIR:-$root/target/gpu}
export RUSTFLAGS="-C target-cpu=x86-64-v3"
rel=$CARGO_TARGET_DIR/release

cargo build --release -p ernie-ft-cli --bin ernie-ft
rm -rf .gpubin && mkdir -p .gpubin
# Test binaries find their fixtures through paths fixed at build time (CARGO_MANIFEST_DIR): the device
# command links this checkout's path to its own working copy (see docs/gpu-runbook.md).
echo "$root" > .gpubin/built-at
git rev-parse HEAD > .gpubin/commit
if [[ $what == speed || $what == window ]]; then
    cargo build --release -p xtask
    cp "$rel/ernie-ft" "$rel/xtask" .gpubin/
    strip .gpubin/ernie-ft .gpubin/xtask
    # The ernie-cuda test executables (what `cargo test --release -p ernie-cuda` runs).
    mkdir -p .gpubin/tests
    cargo test --release -p ernie-cuda --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])' > .gpubin/tests.txt
    while read -r exe; do
        name=$(basename "$exe" | sed 's/-[0-9a-f]\{16\}$//')
        cp "$exe" ".gpubin/tests/$name" && strip ".gpubin/tests/$name"
    done < .gpubin/tests.txt
    (cd .gpubin/tests && ls) > .gpubin/tests.txt
    if [[ $what == window ]]; then
        for f in .gpubin/ernie-ft .gpubin/xtask .gpubin/tests/*; do xz -T0 -6 "$f"; done
    fi
fi
if [[ $what == iflytek ]]; then
    cargo build --release -p xtask
    for b in ernie-ft xtask; do
        cp "$rel/$b" ".gpubin/$b.tmp" && strip ".gpubin/$b.tmp"
        xz -T0 -9 -c ".gpubin/$b.tmp" > ".gpubin/$b.xz" && rm ".gpubin/$b.tmp"
    done
fi
if [[ $what == accuracy ]]; then
    cp "$rel/ernie-ft" .gpubin/ernie-ft.acc && strip .gpubin/ernie-ft.acc
    xz -T0 -9 -c .gpubin/ernie-ft.acc > .gpubin/ernie-ft.xz && rm .gpubin/ernie-ft.acc
fi
echo "staged in .gpubin: $(du -sb .gpubin | cut -f1) bytes"
[[ -d .carry ]] && echo "with .carry: $(du -sbc .gpubin .carry | tail -1 | cut -f1) bytes (limit for everything carried, repo included: 67108864)"
exit 0
