#!/usr/bin/env bash
# ernie-ft vs PyTorch on the CPU, side by side in one run on this machine (2 threads each, one after the
# other): e5-small-zh, batch 32 x seq 128, training step (dropout 0.1 + AdamW) and inference: ernie-ft's
# `infer` (to the logits, as evaluation and `predict` run) and `encode` (every token's final state, as
# `encode` runs) both against PyTorch's eval forward (which computes both).
# PyTorch comes from PyPI into a venv (target/torch-venv, or $ERNIE_FT_TORCH_VENV) with the fixture script's
# pinned versions. The first line printed is the host class: the figures hold for that class only.
# Usage: scripts/bench_cpu_ratio.sh [rounds]   (default 1; rounds alternate ernie-ft and PyTorch)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
shared=${ERNIE_FT_SHARED:-../shared}
python=$(scripts/torch-venv.sh)
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2
model=$(grep -m1 "^model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
simd=avx2-only
grep -qw avx512f /proc/cpuinfo && simd=avx512
echo "host class: $simd; CPU: $model; $(nproc) cores; $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile)$' | tr '\n' ' ')"
cargo build -q --release --example bench_cpu
out=target/bench_cpu_ratio.jsonl
: > "$out"
for r in $(seq "$rounds"); do
  for mode in train infer; do
    target/release/examples/bench_cpu "$mode" | tee -a "$out"
    "$python" "$shared/fixtures/scripts/bench_cpu.py" --mode "$mode" | tee -a "$out"
  done
  target/release/examples/bench_cpu encode | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"\n{'mode':<6} {'ernie-ft samples/s':>19} {'PyTorch samples/s':>18} {'ratio':>6} {'peak RSS MB (ernie-ft / PyTorch)':>33}")
for mode, torch_mode in (("train", "train"), ("infer", "infer"), ("encode", "infer")):
    ours = [r for r in rows if r.get("engine") == "ernie-ft" and r["mode"] == mode]
    theirs = [r for r in rows if r.get("engine") is None and r["mode"] == torch_mode]
    if ours and theirs:
        o = statistics.median(r["samples_per_s_median"] for r in ours)
        t = statistics.median(r["samples_per_s_median"] for r in theirs)
        rss = f"{max(r['peak_rss_mb'] or 0 for r in ours):.0f} / {max(r['peak_rss_mb'] or 0 for r in theirs):.0f}"
        print(f"{mode:<6} {o:>19.2f} {t:>18.2f} {o / t:>6.2f} {rss:>33}")
PY
