#!/usr/bin/env bash
# Speed bench of the standalone evaluators, side by side with the reference tools:
#   COCO bbox: 5,000 images, 500,000 detections; pycocotools vs faster-coco-eval vs
#              `cae-bench coco-eval` in one run, with the 12 stats compared;
#   ADE20K:    2,000 pairs of 512x512 label maps; `cae-bench ade-eval` in MPixel/s
#              (and a numpy restatement of mmseg's metric, with the numbers compared).
# Not part of CI. Needs Python with: pip install pycocotools faster-coco-eval numpy pillow
# Usage: scripts/bench_eval.sh [WORK_DIR]   (default /tmp/cae-bench-eval-bench; data is kept
# there and reused on the next run)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/cae-bench-eval-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/cae-bench/target}"
python3 -c "import pycocotools, faster_coco_eval, numpy, PIL" 2>/dev/null || {
    echo "needs: pip install pycocotools faster-coco-eval numpy pillow" >&2
    exit 1
}
cargo build --release -p cae-bench
bin="$CARGO_TARGET_DIR/release/cae-bench"
mkdir -p "$work"
[ -f "$work/coco/dt_bbox.json" ] || python3 scripts/bench_eval.py gen-coco "$work/coco"
[ -d "$work/ade/pred" ] || python3 scripts/bench_eval.py gen-ade "$work/ade"
echo "== COCO bbox =="
python3 scripts/bench_eval.py time-coco "$work/coco" "$bin"
echo
echo "== ADE20K =="
python3 scripts/bench_eval.py time-ade "$work/ade" "$bin" --reference
