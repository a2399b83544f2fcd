#!/usr/bin/env bash
# Stage the model, task data and GPU-test fixtures of ../shared in .carry/ so that they travel to the remote
# GPU machine beside the repository and the binaries of stage-bins.sh (64 MiB in all, repository included).
# The fp16 e5-small-zh weights are 59 MB raw but 27 MB as xz, which is what lets the model, the data, the test
# fixtures and the binaries travel in ONE remote command (docs/gpu-runbook.md).
#
# Usage (from the repository root): bash scripts/gpu/stage-carry.sh [TASK...]   (default: iflytek)
#   $SHARED (default ../shared) is where models/, data/ and fixtures/ are.
# On the remote machine, `source .carry/env.sh` (scripts/gpu/remote.sh does) unpacks them under /tmp and
# exports ERNIE_FT_MODEL, ERNIE_FT_DATA and ERNIE_FT_FIXTURES.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
shared=$(cd "${SHARED:-$root/../shared}" && pwd)
tasks=("${@:-iflytek}")
grep -qx '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
rm -rf .carry.tmp && mkdir -p .carry.tmp/model .carry.tmp/fixtures
m=$shared/models/e5-small-zh
cp "$m/config.json" "$m/tokenizer.json" .carry.tmp/model/
xz -T0 -6 -c "$m/model.safetensors" > .carry.tmp/model/model.safetensors.xz
# The e5 parity test of the CUDA backend (crates/cuda/tests/model_parity.rs) needs these two.
cp "$shared"/fixtures/{e5_iflytek_f32.safetensors,e5_head_iflytek.safetensors} .carry.tmp/fixtures/
for t in "${tasks[@]}"; do
    [[ -d $shared/data/$t ]] || { echo "no task data in $shared/data/$t" >&2; exit 2; }
done
tar -C "$shared/data" -cJf .carry.tmp/data.tar.xz "${tasks[@]}"
cat > .carry.tmp/env.sh <<'SH'
# sourced on the remote machine, from the repository root
mkdir -p /tmp/ernie-ft-data /tmp/ernie-ft-model
tar -C /tmp/ernie-ft-data -xJf .carry/data.tar.xz
cp .carry/model/config.json .carry/model/tokenizer.json /tmp/ernie-ft-model/
[ -f /tmp/ernie-ft-model/model.safetensors ] || xz -dc .carry/model/model.safetensors.xz > /tmp/ernie-ft-model/model.safetensors
export ERNIE_FT_DATA=/tmp/ernie-ft-data ERNIE_FT_MODEL=/tmp/ernie-ft-model ERNIE_FT_FIXTURES=$PWD/.carry/fixtures
SH
rm -rf .carry && mv .carry.tmp .carry
echo "staged in .carry: $(du -sb .carry | cut -f1) bytes"
