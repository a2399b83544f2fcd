#!/usr/bin/env bash
# Installs NVIDIA's run-time compiler (NVRTC) and the CUDA headers the kernels include (cuda_bf16.h,
# cuda_fp16.h, and CCCL for <cuda/std/...>) from PyPI wheels into DIR, without a CUDA toolkit and without
# a GPU. Enough for `cargo xtask kernels` and the ernie-cuda NVRTC test; running kernels still needs an
# NVIDIA driver (libcuda.so), which only GPU machines have.
#
#   bash .ci/install-nvrtc.sh DIR        # then eval the printed export lines
#   eval "$(bash .ci/install-nvrtc.sh target/nvrtc | grep ^export)"
#
# Pinned to CUDA 13.0.x on purpose: newer NVRTC releases emit PTX with an ISA version that the GPU machines'
# driver (R580, CUDA 13.0) refuses to JIT ("unsupported toolchain"), so what compiles here must be what runs
# there.
set -euo pipefail

DIR="${1:?usage: $0 DIR}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

NVRTC_VER=13.0.88
RUNTIME_VER=13.0.96
CCCL_VER=13.0.85
STAMP="$DIR/.ernie-nvrtc-$NVRTC_VER-$RUNTIME_VER-$CCCL_VER"
LIB="$DIR/nvidia/cu13/lib"
INC="$DIR/nvidia/cu13/include"

if [[ -f "$STAMP" && -d "$LIB" && -f "$INC/cuda_bf16.h" ]]; then
    echo "# NVRTC $NVRTC_VER already installed in $DIR" >&2
else
    PIP=(python3 -m pip)
    if ! "${PIP[@]}" --version >/dev/null 2>&1; then
        if command -v pip3 >/dev/null; then PIP=(pip3); else
            echo "error: pip is needed to install NVRTC (python3 -m pip or pip3)" >&2
            exit 1
        fi
    fi
    echo "# installing NVRTC $NVRTC_VER, CUDA runtime headers $RUNTIME_VER, CCCL $CCCL_VER into $DIR" >&2
    "${PIP[@]}" install --quiet --disable-pip-version-check --no-deps --upgrade --target "$DIR" \
        "nvidia-cuda-nvrtc==$NVRTC_VER" \
        "nvidia-cuda-runtime==$RUNTIME_VER" \
        "nvidia-cuda-cccl==$CCCL_VER" >&2
    # cudarc looks for libnvrtc.so / libnvrtc.so.13; make sure the unversioned name exists too.
    if [[ ! -e "$LIB/libnvrtc.so" ]]; then
        so="$(ls "$LIB"/libnvrtc.so.* 2>/dev/null | head -n1 || true)"
        [[ -n "$so" ]] && ln -sf "$(basename "$so")" "$LIB/libnvrtc.so"
    fi
    touch "$STAMP"
fi

if [[ ! -f "$INC/cuda_bf16.h" ]]; then
    echo "error: $INC/cuda_bf16.h missing after install" >&2
    exit 1
fi
if ! ls "$LIB"/libnvrtc.so* >/dev/null 2>&1; then
    echo "error: no libnvrtc.so under $LIB after install" >&2
    exit 1
fi

echo "export LD_LIBRARY_PATH=$LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
echo "export ERNIE_FT_CUDA_INCLUDE=$INC:$INC/cccl"
