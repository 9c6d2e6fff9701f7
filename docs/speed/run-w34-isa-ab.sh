#!/usr/bin/env bash
# W3.4: does the instruction set explain PyTorch's lead on the mini iterations (UperNet; Mask R-CNN
# and the pretraining step with TASK = detect | pretrain)?
# Alternates the PyTorch twin with its default kernels (AVX-512 on this Xeon) and with oneDNN and
# MKL limited to AVX2 (the ISA of the `gemm` crate's kernel we run), and ours, 2 threads each.
# Usage: docs/speed/run-w34-isa-ab.sh BIN PYTHON ROUNDS ITERS [TASK]
set -euo pipefail
BIN=$1; PY=$2; ROUNDS=$3; ITERS=$4; TASK=${5:-segment}
case "$TASK" in
  segment) OURS=(bench segment --preset mini --iters "$ITERS"); TWIN=(benches/torch_seg_twin.py --preset mini --iters "$ITERS") ;;
  detect) OURS=(bench detect --preset mini --iters "$ITERS"); TWIN=(benches/torch_det_twin.py --preset mini --iters "$ITERS") ;;
  pretrain) OURS=(bench pretrain --preset mini --batch 64 --steps "$ITERS" --warmup 2)
    TWIN=(benches/torch_twin.py --preset mini --batch 64 --steps "$ITERS" --warmup 2) ;;
  *) echo "TASK is segment, detect or pretrain" >&2; exit 2 ;;
esac
echo "# date $(date -u +%FT%TZ); host $(hostname); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'); $("$PY" -c 'import torch; print("torch", torch.__version__, torch.backends.cpu.get_cpu_capability())')"
echo "# command: $0 $*"
for r in $(seq 1 "$ROUNDS"); do
  echo "## round $r: ours, PyTorch default, PyTorch AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2)"
  RAYON_NUM_THREADS=2 "$BIN" "${OURS[@]}" --json
  "$PY" "${TWIN[@]}" --threads 2 --json
  ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 \
    "$PY" "${TWIN[@]}" --threads 2 --json
done
