#!/usr/bin/env bash
# W3.4: a whole UperNet training iteration, ours (`cae-bench bench segment`) beside the PyTorch
# twin (`benches/torch_seg_twin.py`), alternating, 2 threads each, on the same synthetic batch.
# Usage: docs/speed/run-w34-seg.sh BIN PYTHON ROUNDS PRESET ITERS [BATCH]
#   PRESET: mini | paper (ours) -- the twin's names are mini | vit_base.
set -euo pipefail
BIN=$1; PY=$2; ROUNDS=$3; PRESET=$4; ITERS=$5; BATCH=${6:-}
TWIN=$PRESET; [ "$PRESET" = paper ] && TWIN=vit_base
BA=(); [ -n "$BATCH" ] && BA=(--batch "$BATCH")
WARM=1; [ "$PRESET" = paper ] && WARM=0
echo "# date $(date -u +%FT%TZ); host $(hostname); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'); $("$PY" -c 'import torch; print("torch", torch.__version__)')"
echo "# command: $0 $*"
JSON=$(mktemp); trap 'rm -f "$JSON"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  echo "## round $r"
  RAYON_NUM_THREADS=2 "$BIN" bench segment --preset "$PRESET" --iters "$ITERS" --warmup $WARM "${BA[@]}" --json | tee -a "$JSON"
  "$PY" benches/torch_seg_twin.py --preset "$TWIN" --iters "$ITERS" --warmup $WARM "${BA[@]}" --threads 2 --json | tee -a "$JSON"
done
"$PY" "$(dirname "$0")/summarize-w34.py" "$JSON"
