#!/usr/bin/env bash
# Optional fast CPU path: burn's `tch` backend on the libtorch that ships inside PyTorch's wheel.
#
#   scripts/setup-tch.sh [VENV]        # default VENV: .venv-tch
#   source VENV/tch-env.sh
#   cargo build --release --features tch --bin cae-bench
#   cae-bench --threads 2 bench pretrain --preset mini --batch 64 --device tch --json
#
# Installs torch==2.9.0 into a virtual environment with pip (PyPI's Linux wheel is the CUDA 12.8
# build, ~900 MB plus the nvidia-* wheels; it runs on CPU too; set PIP_FIND_LINKS / PIP_INDEX_URL /
# TORCH_INDEX for an offline wheel folder, a mirror or download.pytorch.org's CPU index), then writes VENV/tch-env.sh, which sets
# LIBTORCH_USE_PYTORCH=1 (torch-sys builds against that Python's torch) and LD_LIBRARY_PATH (torch/lib,
# needed at run time). Not needed by CI or the default `flex` backend.
set -euo pipefail
VENV="${1:-.venv-tch}"
PY="${PYTHON:-python3}"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip >/dev/null
"$VENV/bin/pip" install "torch==2.9.0" numpy ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"}
TORCH_LIB="$("$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
VENV_ABS="$(cd "$VENV" && pwd)"
cat > "$VENV/tch-env.sh" <<ENV
# source this before building or running with --features tch
export LIBTORCH_USE_PYTORCH=1
export PATH="$VENV_ABS/bin:\$PATH"
export LD_LIBRARY_PATH="$TORCH_LIB:\${LD_LIBRARY_PATH:-}"
ENV
echo "libtorch: $TORCH_LIB"
echo "now: source $VENV/tch-env.sh && cargo build --release --features tch --bin cae-bench"
