#!/usr/bin/env bash
# ernie-ft vs PyTorch on the CPU, side by side in one run on this machine (2 threads each, one after the
# other): e5-small-zh, batch 32 x seq 128, training step (dropout 0.1 + AdamW) and inference.
# PyTorch comes from PyPI into a venv (target/torch-venv) with the fixture script's pinned versions.
# Usage: scripts/bench_cpu_ratio.sh [rounds]   (default 1; rounds alternate ernie-ft and PyTorch)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
shared=${ERNIE_FT_SHARED:-../shared}
venv=target/torch-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$shared/fixtures/scripts/requirements.txt"
fi
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2
cargo build -q --release --example bench_cpu
out=target/bench_cpu_ratio.jsonl
: > "$out"
for r in $(seq "$rounds"); do
  for mode in train infer; do
    target/release/examples/bench_cpu "$mode" | tee -a "$out"
    "$venv/bin/python" "$shared/fixtures/scripts/bench_cpu.py" --mode "$mode" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"\n{'mode':<6} {'ernie-ft samples/s':>19} {'PyTorch samples/s':>18} {'ratio':>6}")
for mode in ("train", "infer"):
    ours = [r["samples_per_s_median"] for r in rows if r.get("engine") == "ernie-ft" and r["mode"] == mode]
    theirs = [r["samples_per_s_median"] for r in rows if r.get("engine") is None and r["mode"] == mode]
    if ours and theirs:
        o, t = statistics.median(ours), statistics.median(theirs)
        print(f"{mode:<6} {o:>19.2f} {t:>18.2f} {o / t:>6.2f}")
PY
