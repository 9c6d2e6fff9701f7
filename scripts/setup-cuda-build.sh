#!/usr/bin/env bash
# Makes `cargo build --features cuda` work offline: the LLVM SDK that burn's CubeCL stack needs.
#
#   scripts/setup-cuda-build.sh
#   cargo build --release --locked -p cae-bench --features cuda
#
# burn/cuda → cubecl-cuda → cubecl-llvm → tracel-llvm-bundler 23.1.0-4, whose build script downloads
# an LLVM bundle from GitHub unless `$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4` (default
# `~/.local/share/...`) already holds the file `.tracel-llvm-installed`. PyPI's mlc-llvm-static and
# mlc-llvm-static-extra-targets 23.1.1.post0 wheels unpack to an LLVM 23.1.1 static SDK
# (`mlc_llvm_static/static`, with `bin/llvm-config`), which serves instead. This script downloads
# the two wheels with pip (~92 MB), unpacks them under ~/.cache/cae-bench/llvm-23.1.1, links that
# folder where the bundler looks, and writes the sentinel. Idempotent; needs python3 with pip.
#
# No CUDA toolkit is needed to build: cudarc loads libcuda.so (and NVRTC) from the driver at run
# time, so the stripped binary needs only libc, libm, libstdc++ and libgcc (`readelf -d` shows it).
set -euo pipefail
PY="${PYTHON:-python3}"
VERSION=23.1.1.post0
SDK_ROOT="${CAE_LLVM_SDK:-$HOME/.cache/cae-bench/llvm-23.1.1}"
SDK="$SDK_ROOT/mlc_llvm_static/static"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
TARGET="$DATA/tracel/tracel-llvm-23.1.0-4"

if [ ! -x "$SDK/bin/llvm-config" ] || [ ! -f "$SDK_ROOT/.complete" ]; then
  rm -rf "$SDK_ROOT"
  mkdir -p "$SDK_ROOT/wheels"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$SDK_ROOT/wheels" \
    "mlc-llvm-static==$VERSION" "mlc-llvm-static-extra-targets==$VERSION"
  for w in "$SDK_ROOT"/wheels/*.whl; do unzip -q -o "$w" 'mlc_llvm_static/static/*' -d "$SDK_ROOT"; done
  chmod +x "$SDK"/bin/*
  rm -rf "$SDK_ROOT/wheels"
  touch "$SDK_ROOT/.complete"
fi
echo "LLVM SDK: $SDK ($("$SDK/bin/llvm-config" --version))"

mkdir -p "$(dirname "$TARGET")"
if [ -L "$TARGET" ] || [ ! -e "$TARGET" ]; then
  ln -sfn "$SDK" "$TARGET"
elif [ ! -f "$TARGET/.tracel-llvm-installed" ]; then
  echo "setup-cuda-build: $TARGET exists and is not this SDK; move it away first" >&2
  exit 1
fi
touch "$TARGET/.tracel-llvm-installed"
echo "tracel-llvm-bundler will use $TARGET; now: cargo build --release --locked -p cae-bench --features cuda"
