#!/usr/bin/env bash
# Prints the python of a venv with PyTorch and transformers at the versions the fixtures were made with
# (../shared/fixtures/scripts/requirements.txt), creating it first where it is missing:
# $ERNIE_FT_TORCH_VENV, else target/torch-venv. For the scripts that set ernie-ft beside PyTorch.
#   py=$(scripts/torch-venv.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shared=${ERNIE_FT_SHARED:-../shared}
venv=${ERNIE_FT_TORCH_VENV:-target/torch-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers" 2>/dev/null; then
  echo "creating the PyTorch venv $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q -r "$shared/fixtures/scripts/requirements.txt" >&2
fi
case "$venv" in /*) echo "$venv/bin/python" ;; *) echo "$PWD/$venv/bin/python" ;; esac
