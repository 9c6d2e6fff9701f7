#!/usr/bin/env bash
# GPU check for cae-bench, in two halves:
#
#   scripts/gpu-check.sh build   # here (x86-64, no GPU needed): release build with the GPU
#                                # backend, stripped, copied to .device-bin/ (git-ignored)
#   scripts/gpu-check.sh run     # on a machine with a GPU: ViT-B/16 step benchmark and a
#                                # 200-step `mini` run, results under $OUT (default ./gpu-out)
#
# The GPU backend is wgpu on Vulkan (`--features vulkan`, `--device vulkan`): burn's `cuda`
# backend downloads an LLVM bundle from GitHub while it builds, which this project's build
# machines cannot reach. On a machine without the Vulkan loader, put the loader .deb files in
# .gl/ (see the README) and they are unpacked first.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
case "$mode" in
build)
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cae-bench/target-vulkan}"
  cargo build --release --locked -p cae-bench --features vulkan
  mkdir -p .device-bin
  cp "$CARGO_TARGET_DIR/release/cae-bench" .device-bin/cae-bench
  strip .device-bin/cae-bench
  # The stripped binary is ~85 MB; gzip keeps what travels to the GPU machine under its limit.
  gzip -9 -f .device-bin/cae-bench
  cp benches/torch_twin.py .device-bin/ 2>/dev/null || true
  ls -la .device-bin
  ;;
run)
  OUT="${OUT:-$PWD/gpu-out}"
  mkdir -p "$OUT"
  if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  fi
  B=/tmp/cae-bench
  gunzip -c .device-bin/cae-bench.gz > "$B"
  chmod +x "$B"
  TWIN=.device-bin/torch_twin.py
  [ -f "$TWIN" ] || TWIN=benches/torch_twin.py
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"
  # Sample GPU memory while the benchmarks run.
  (while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 1; done) > "$OUT/mem.log" 2>/dev/null &
  mon=$!
  trap 'kill $mon 2>/dev/null || true' EXIT
  step() { echo "== $1"; shift; timeout "${STEP_TIMEOUT:-150}" "$@" || echo "(exit $?)"; }
  {
    step "mini training step, batch 256, vulkan" \
      $B bench pretrain --preset mini --batch 256 --steps 20 --warmup 3 --device vulkan --json
    step "same, PyTorch twin on CUDA" \
      python3 "$TWIN" --preset mini --batch 256 --steps 20 --warmup 3 --device cuda --json
    step "ViT-B/16 training step (forward, backward, AdamW), f32, batch 64, vulkan" \
      $B bench pretrain --preset vit_base_patch16 --batch 64 --steps 8 --warmup 2 --device vulkan --json
    step "same, PyTorch twin on CUDA (f32)" \
      python3 "$TWIN" --preset vit_base_patch16 --batch 64 --steps 8 --warmup 2 --device cuda --json
    step "mini on 2 CPU threads of this machine, flex and PyTorch" \
      $B bench pretrain --preset mini --batch 64 --steps 5 --warmup 2 --device cpu --threads 2 --json
    step "" python3 "$TWIN" --preset mini --batch 64 --steps 5 --warmup 2 --threads 2 --json
    step "200-step mini pretraining run on the synthetic world, vulkan" bash -c "
      $B data synth --out $OUT/world --images 2500 --size 32 --seed 3 >/dev/null &&
      $B pretrain --preset mini --data $OUT/world/imagefolder/train --out $OUT/run-mini \
        --steps 200 --device vulkan --no-progress --json &&
      head -n 1 $OUT/run-mini/metrics.jsonl && tail -n 1 $OUT/run-mini/metrics.jsonl"
    if [ -n "${LEARNABILITY:-}" ]; then
      step "learnability: ViT and CNN from scratch on 1,500 labels (datasets/scripts/learnability_torch.py)" \
        python3 datasets/scripts/learnability_torch.py "$OUT/world/imagefolder" --labels 1500
    fi
  } 2>&1 | tee "$OUT/gpu-check.log"
  kill $mon 2>/dev/null || true
  echo "peak GPU memory (MiB): $(sort -n "$OUT/mem.log" | tail -n 1)" | tee -a "$OUT/gpu-check.log"
  cp "$OUT/run-mini/metrics.jsonl" "$OUT/mini-metrics.jsonl" 2>/dev/null || true
  cp "$OUT/run-mini/record.json" "$OUT/mini-record.json" 2>/dev/null || true
  rm -rf "$OUT/world" "$OUT/run-mini"
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
