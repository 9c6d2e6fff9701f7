#!/usr/bin/env bash
# libtorch for burn's `tch` backend, from PyPI's torch wheel (the version the GPU machine has: 2.11.0).
#
#   scripts/setup-tch.sh cpu  [DIR]   # CPU-only link: what CI and `--device tch:cpu` use
#   scripts/setup-tch.sh cuda [DIR]   # links libtorch_cuda too: the binary for a GPU machine
#   source DIR/env.sh
#   cargo build --release --locked -p cae-bench --features tch
#   cae-bench pretrain --device tch:cpu ...      # or tch:cuda:0 with the `cuda` link
#
# DIR defaults to ~/.cache/cae-bench/libtorch-2.11.0-MODE. Idempotent: a DIR holding `.complete` is
# left as it is. Needs python3 with pip and PyPI (the wheel is ~530 MB; only its libraries and
# headers are unpacked). No Python environment is created and nothing is installed system-wide.
#
# Why two links: torch-sys links libtorch_cuda.so whenever the library folder holds it, and
# libtorch_cuda.so needs the whole CUDA stack (cuBLAS, cuDNN, NCCL: gigabytes of nvidia-* wheels) to
# load. The `cpu` folder leaves it out, so the binary needs libtorch_cpu.so, libc10.so and, because
# the CUDA wheel's libtorch_cpu.so names them, libcudart.so.13 and libcupti.so.13 (two small
# nvidia-* wheels, the versions torch 2.11.0 pins). The `cuda` binary is meant to run on a machine
# whose own torch 2.11.0 has the CUDA libraries: point LD_LIBRARY_PATH at that torch/lib
# (scripts/gpu-check.sh run does).
set -euo pipefail
MODE="${1:-cpu}"
case "$MODE" in cpu | cuda) ;; *)
  echo "usage: $0 cpu|cuda [DIR]" >&2
  exit 2
  ;;
esac
TORCH_VERSION="${TORCH_VERSION:-2.11.0}"
DIR="${2:-$HOME/.cache/cae-bench/libtorch-$TORCH_VERSION-$MODE}"
PY="${PYTHON:-python3}"

if [ -f "$DIR/.complete" ]; then
  echo "libtorch $TORCH_VERSION ($MODE) already in $DIR"
else
  rm -rf "$DIR"
  mkdir -p "$DIR/wheels" "$DIR/lib"
  pip_dl() { "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$DIR/wheels" "$@"; }
  pip_dl "torch==$TORCH_VERSION"
  whl="$(ls "$DIR"/wheels/torch-"$TORCH_VERSION"-*.whl | head -n 1)"
  tmp="$DIR/unpack"
  if [ "$MODE" = cpu ]; then
    unzip -q -o "$whl" 'torch/include/*' 'torch/lib/libc10.so' 'torch/lib/libtorch_cpu.so' \
      'torch/lib/libtorch.so' 'torch/lib/libgomp.so.1' 'torch/lib/libshm.so' -d "$tmp"
    # The runtime libraries the CUDA wheel's libtorch_cpu.so names (cuda-toolkit 13.0.2's pins).
    pip_dl "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cupti==13.0.85"
    for w in "$DIR"/wheels/nvidia_cuda_runtime-*.whl "$DIR"/wheels/nvidia_cuda_cupti-*.whl; do
      unzip -q -o "$w" 'nvidia/cu13/lib/libcudart.so.13' 'nvidia/cu13/lib/libcupti.so.13' -d "$tmp" 2>/dev/null || true
    done
    mv "$tmp"/nvidia/cu13/lib/* "$DIR/lib/"
  else
    unzip -q -o "$whl" 'torch/include/*' 'torch/lib/*' -d "$tmp"
  fi
  mv "$tmp/torch/include" "$DIR/include"
  mv "$tmp"/torch/lib/* "$DIR/lib/"
  rm -rf "$tmp" "$DIR/wheels"
  echo "$TORCH_VERSION" > "$DIR/build-version"
  touch "$DIR/.complete"
fi

cat > "$DIR/env.sh" <<ENV
# source this before building or running with --features tch (libtorch $TORCH_VERSION, $MODE link)
export LIBTORCH="$DIR"
export LIBTORCH_CXX11_ABI=1
export LIBTORCH_BYPASS_VERSION_CHECK=1
unset LIBTORCH_USE_PYTORCH
export LD_LIBRARY_PATH="$DIR/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
ENV
echo "libtorch $TORCH_VERSION ($MODE): $DIR; now: source $DIR/env.sh"
