#!/usr/bin/env bash
# W3.4: does the instruction set explain PyTorch's lead on the UperNet mini iteration?
# Alternates the PyTorch twin with its default kernels (AVX-512 on this Xeon) and with oneDNN and
# MKL limited to AVX2 (the ISA of the `gemm` crate's kernel we run), and ours, 2 threads each.
# Usage: docs/speed/run-w34-isa-ab.sh BIN PYTHON ROUNDS ITERS
set -euo pipefail
BIN=$1; PY=$2; ROUNDS=$3; ITERS=$4
echo "# date $(date -u +%FT%TZ); host $(hostname); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'); $("$PY" -c 'import torch; print("torch", torch.__version__, torch.backends.cpu.get_cpu_capability())')"
echo "# command: $0 $*"
for r in $(seq 1 "$ROUNDS"); do
  echo "## round $r: ours, PyTorch default, PyTorch AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2)"
  RAYON_NUM_THREADS=2 "$BIN" bench segment --preset mini --iters "$ITERS" --json
  "$PY" benches/torch_seg_twin.py --preset mini --iters "$ITERS" --threads 2 --json
  ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 \
    "$PY" benches/torch_seg_twin.py --preset mini --iters "$ITERS" --threads 2 --json
done
