#!/usr/bin/env bash
# W3.3: what bf16 autocast (`--precision bf16`) costs on the CPU, and how far its loss lands from
# f32's. Alternating pairs of `bench pretrain --preset mini --batch 64 --steps STEPS --warmup 2`
# in f32 and in bf16 (2 threads), then the paired difference of the medians with its 95% t
# interval; then one f32/bf16 pair each of `bench segment` and `bench detect` at `mini`.
# The loss is the benchmark's last one (random data, seed 0): the two precisions take the same
# steps on the same batches, so it differs by rounding only.
# Usage: docs/speed/run-bf16-cpu.sh BIN PAIRS [STEPS] [PYTHON with scipy]
set -euo pipefail
BIN=$1; PAIRS=$2; STEPS=${3:-8}; PY=${4:-python3}
echo "# date $(date -u +%FT%TZ); host $(hostname); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'); command: $0 $*"
pre() { RAYON_NUM_THREADS=2 "$BIN" bench pretrain --preset mini --batch 64 --steps "$STEPS" --warmup 2 --precision "$1" --json; }
field() { "$PY" -c 'import json, sys; v = json.load(sys.stdin); print(" ".join(str(round(v[k], 6)) for k in sys.argv[1:]))' "$@"; }
rows=()
for p in $(seq 1 "$PAIRS"); do
  read -r a la < <(pre f32 | field median_ms last_loss)
  read -r b lb < <(pre bf16 | field median_ms last_loss)
  echo "pair $p: f32 $a ms (loss $la), bf16 $b ms (loss $lb)"
  rows+=("$a $b $la $lb")
done
printf '%s\n' "${rows[@]}" | "$PY" -c '
import sys, statistics as st
from scipy import stats
r = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
d = [x[1] - x[0] for x in r]
m = st.mean(d); h = stats.t.ppf(0.975, len(d) - 1) * st.stdev(d) / len(d) ** 0.5
print(f"# medians: f32 {st.median(x[0] for x in r):.1f} ms, bf16 {st.median(x[1] for x in r):.1f} ms")
print(f"# bf16 - f32: mean {m:+.1f} ms, 95% t interval [{m - h:+.1f}, {m + h:+.1f}] ms (n = {len(d)} pairs)")
rel = max(abs(x[3] - x[2]) / abs(x[2]) for x in r)
print(f"# last loss after {2 + int(sys.argv[1])} steps: f32 {r[0][2]:.6f}, bf16 {r[0][3]:.6f}, largest relative difference {rel:.2e}")
' "$STEPS"
for task in segment detect; do
  for dt in f32 bf16; do
    RAYON_NUM_THREADS=2 "$BIN" bench "$task" --preset mini --iters 5 --warmup 1 --precision "$dt" --json |
      field ms_median loss | sed "s/^/$task mini $dt: median ms, loss: /"
  done
done
