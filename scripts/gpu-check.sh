#!/usr/bin/env bash
# The GPU check of cae-bench, in two halves:
#
#   scripts/gpu-check.sh build   # here (x86-64, no GPU needed): the `cuda` and `tch` release
#                                # binaries, stripped and compressed into .device-bin/ (git-ignored),
#                                # with the shared libraries each needs (readelf -d) and a start test
#   scripts/gpu-check.sh run     # on the GPU machine (no Rust, no network): every benchmark below
#                                # beside PyTorch's twin, logs under $OUT (default ./gpu-out)
#
# `run` fits the device tool's 10-minute command limit: each step has its own timeout (STEP_TIMEOUT,
# default 100 s) and the whole run a budget (RUN_BUDGET, default 560 s) after which the remaining
# steps are logged as skipped, never run half. It expects python3 with torch 2.11.0 (CUDA) on the machine: the `tch` binary
# links that torch's libraries (LD_LIBRARY_PATH is set to its torch/lib), and the twins run on it.
# Carry .device-bin (about 60 MB) with the call.
#
# What `run` measures, each ours (cuda, tch:cuda; f32 and `--precision bf16`) beside the twin
# (PyTorch eager, f32 and bf16 autocast), with peak GPU memory (the driver's figure, sampled every 100 ms, for ours;
# torch.cuda.max_memory_allocated for the twins):
#   1. the `mini` pretraining step at batch 256 and the ViT-B/16 step at batch 64;
#   2. one UperNet ViT-B iteration at the paper's 512 crop (batch 2);
#   3. one Mask R-CNN ViT-B iteration, where this binary has `bench detect`;
#   4. a 200-step `mini` pretraining run on the synthetic world (its encoder comes back in $OUT,
#      to be probed on the CPU: `cae-bench linear-probe --encoder gpu-out/encoder.safetensors ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
BIN=.device-bin

# Decompresses with Python's lzma (present wherever PyTorch is), not the xz tool.
unxz_py() { python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }

case "$mode" in
build)
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cae-bench/target}"
  mkdir -p "$BIN"
  echo "== cuda: LLVM SDK from PyPI, then cargo build --features cuda"
  scripts/setup-cuda-build.sh
  cargo build --release --locked -p cae-bench --features cuda
  cp "$CARGO_TARGET_DIR/release/cae-bench" "$BIN/cae-bench-cuda"
  echo "== tch: libtorch 2.11.0 with its CUDA link (the GPU machine's torch), cargo build --features tch"
  scripts/setup-tch.sh cuda
  # shellcheck disable=SC1091
  # libtorch_cuda.so names the CUDA stack (cuBLAS, cuDNN, NCCL, ...), which is not here; the GPU
  # machine's torch supplies it at run time. GNU ld refuses an executable whose shared libraries
  # have undefined symbols, so the final link (only that: `cargo rustc` passes the flag to the
  # binary, not its dependencies) allows them.
  (source "$HOME/.cache/cae-bench/libtorch-2.11.0-cuda/env.sh" &&
    cargo rustc --release --locked -p cae-bench --bin cae-bench --features tch -- \
      -C link-arg=-Wl,--allow-shlib-undefined)
  cp "$CARGO_TARGET_DIR/release/cae-bench" "$BIN/cae-bench-tch"
  for b in cuda tch; do
    f="$BIN/cae-bench-$b"
    strip "$f"
    readelf -d "$f" | grep NEEDED | sed 's/.*\[\(.*\)\]/\1/' > "$f.libs"
    echo "cae-bench-$b needs: $(tr '\n' ' ' < "$f.libs")"
    # The start test: the binary runs here and lists its devices (no GPU here, so the GPU
    # devices show as unavailable). The tch binary needs libtorch_cuda's CUDA libraries to load:
    # those of a local CUDA torch when one is installed, else only its library list is checked.
    if [ "$b" = tch ]; then
      NV=""
      NVROOT="$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || true)"
      [ -n "$NVROOT" ] && NV="$(find "$NVROOT" -maxdepth 3 -type d -name lib | tr '\n' ':')"
      if LD_LIBRARY_PATH="$HOME/.cache/cae-bench/libtorch-2.11.0-cuda/lib:$NV" "$f" devices; then
        echo "cae-bench-tch started here"
      else
        echo "cae-bench-tch: could not load its CUDA libraries here (no CUDA torch); library list above"
        grep -q libtorch_cuda.so "$f.libs"
      fi
    else
      "$f" devices
    fi
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(open(sys.argv[1], "rb"), lzma.open(sys.argv[1] + ".xz", "wb", preset=9))' "$f"
    rm "$f"
  done
  cp benches/torch_twin.py benches/torch_seg_twin.py "$BIN/"
  cp benches/torch_det_twin.py "$BIN/"
  ls -la "$BIN"
  du -sh "$BIN"
  ;;
run)
  SECONDS=0
  RUN_BUDGET="${RUN_BUDGET:-560}"
  OUT="${OUT:-$PWD/gpu-out}"
  mkdir -p "$OUT"
  T=/tmp/cae-gpu
  mkdir -p "$T"
  for b in cuda tch; do
    unxz_py "$BIN/cae-bench-$b.xz" "$T/cae-bench-$b"
    chmod +x "$T/cae-bench-$b"
  done
  CUDA_BIN="$T/cae-bench-cuda"
  TCH_BIN="$T/cae-bench-tch"
  # Binaries of a build older than `--precision` cannot run the bf16 rows: refuse them whole.
  if ! "$CUDA_BIN" bench pretrain --help | grep -- '--precision' >/dev/null; then
    echo "gpu-check: $BIN holds binaries older than --precision; run \`scripts/gpu-check.sh build\` first" >&2
    exit 1
  fi
  TORCH_LIB="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
  export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  bin_for() { if [ "${1%%:*}" = tch ]; then echo "$TCH_BIN"; else echo "$CUDA_BIN"; fi; }
  step() {
    # step NAME COMMAND...: runs it under a timeout, with the driver's peak GPU memory beside it.
    local name="$1"
    shift
    echo "== $name"
    local left=$((RUN_BUDGET - SECONDS))
    if [ "$left" -lt 10 ]; then
      echo "   (skipped: the run's budget of $RUN_BUDGET s is spent)"
      return 0
    fi
    local limit=$((left < ${STEP_TIMEOUT:-100} ? left : ${STEP_TIMEOUT:-100}))
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$T/mem" 2>/dev/null &
    local mon=$!
    local t0=$SECONDS rc=0
    timeout "$limit" "$@" || rc=$?
    kill "$mon" 2>/dev/null || true
    wait "$mon" 2>/dev/null || true
    echo "   ($((SECONDS - t0)) s, exit $rc, driver peak GPU memory $(sort -n "$T/mem" | tail -n 1) MiB)"
  }
  ours() {
    # ours WHAT ARGS...: `cae-bench ARGS` on each device of ours, in f32 and in bf16.
    local what="$1"
    shift
    local dt dev
    for dt in f32 bf16; do
      for dev in cuda:0 tch:cuda:0; do
        step "$what, ours on $dev, $dt" \
          "$(bin_for "$dev")" "$@" --device "$dev" --precision "$dt" --json
      done
    done
  }
  {
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    echo "idle GPU memory: $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits) MiB"
    step "devices (cuda binary)" "$CUDA_BIN" devices --try cuda:0
    step "devices (tch binary)" "$TCH_BIN" devices --try tch:cuda:0
    for p in "mini 256 20 3" "vit_base_patch16 64 8 2"; do
      set -- $p
      ours "pretraining step $1 batch $2" bench pretrain --preset "$1" --batch "$2" --steps "$3" --warmup "$4"
      for dt in f32 bf16; do
        step "pretraining step $1 batch $2, PyTorch twin on cuda, $dt" \
          python3 "$BIN/torch_twin.py" --preset "$1" --batch "$2" --steps "$3" --warmup "$4" --device cuda --dtype "$dt" --json
      done
    done
    ours "UperNet ViT-B crop 512 batch 2" bench segment --preset paper --batch 2 --iters 3 --warmup 1
    for dt in f32 bf16; do
      step "UperNet ViT-B crop 512 batch 2, PyTorch twin on cuda, $dt" \
        python3 "$BIN/torch_seg_twin.py" --preset vit_base --batch 2 --iters 3 --warmup 1 --device cuda --dtype "$dt" --json
    done
    if "$CUDA_BIN" bench detect --help >/dev/null 2>&1; then
      ours "Mask R-CNN ViT-B" bench detect --preset paper --batch 1 --iters 2 --warmup 1
      # The twin needs torchvision beside torch on the GPU machine; without it the step fails
      # alone (logged) and the script goes on.
      for dt in f32 bf16; do
        step "Mask R-CNN ViT-B, PyTorch twin on cuda, $dt" \
          python3 "$BIN/torch_det_twin.py" --preset vit_base --batch 1 --iters 2 --warmup 1 --device cuda --dtype "$dt" --json
      done
    else
      echo "== Mask R-CNN ViT-B: this binary has no \`bench detect\` (not measured)"
    fi
    step "200-step mini pretraining on the synthetic world, cuda:0" bash -c "
      $CUDA_BIN data synth --out $T/world --images 2500 --size 32 --seed 3 >/dev/null &&
      $CUDA_BIN pretrain --preset mini --data $T/world/imagefolder/train --out $T/run-mini \
        --steps 200 --device cuda:0 --no-progress --json"
    date -u
  } 2>&1 | tee "$OUT/gpu-check.log"
  cp "$T/run-mini/metrics.jsonl" "$OUT/mini-metrics.jsonl" 2>/dev/null || true
  cp "$T/run-mini/record.json" "$OUT/mini-record.json" 2>/dev/null || true
  cp "$T/run-mini/encoder.safetensors" "$OUT/encoder.safetensors" 2>/dev/null || true
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
