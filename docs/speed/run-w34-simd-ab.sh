#!/usr/bin/env bash
# W3.4: what AVX-512 gives the mini pretraining step. Alternating pairs of
#   old: a release build without AVX-512 (gemm's AVX2/FMA kernel, our fused kernels' AVX2 twin)
#   new: the build with gemm's `x86-v4` kernels and our AVX-512 twin (both picked at run time)
#   new, CAE_SIMD=avx2: the same binary with our kernels capped at their AVX2 twin (gemm stays AVX-512)
# each `bench pretrain --preset mini --batch 64 --steps STEPS --warmup 2`, 2 threads; then the paired
# differences of the medians with their 95% t intervals.
# Usage: docs/speed/run-w34-simd-ab.sh OLD_BIN NEW_BIN PAIRS [STEPS] [PYTHON with scipy]
set -euo pipefail
OLD=$1; NEW=$2; PAIRS=$3; STEPS=${4:-8}; PY=${5:-python3}
echo "# date $(date -u +%FT%TZ); host $(hostname); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(grep -o 'avx512f' /proc/cpuinfo | head -n 1 || echo 'no avx512f')"
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'); command: $0 $*"
med() { RAYON_NUM_THREADS=2 "$@" bench pretrain --preset mini --batch 64 --steps "$STEPS" --warmup 2 --json |
  "$PY" -c 'import json, sys; print(round(json.load(sys.stdin)["median_ms"], 2))'; }
rows=()
for p in $(seq 1 "$PAIRS"); do
  a=$(med "$OLD"); b=$(med "$NEW"); c=$(CAE_SIMD=avx2 med "$NEW")
  echo "pair $p: old $a ms, new $b ms, new with CAE_SIMD=avx2 $c ms"
  rows+=("$a $b $c")
done
printf '%s\n' "${rows[@]}" | "$PY" -c '
import sys, statistics as st
from scipy import stats
r = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
def ci(name, d):
    m = st.mean(d); h = stats.t.ppf(0.975, len(d) - 1) * st.stdev(d) / len(d) ** 0.5
    print(f"# {name}: mean {m:+.1f} ms, 95% t interval [{m - h:+.1f}, {m + h:+.1f}] ms (n = {len(d)} pairs)")
print(f"# medians: old {st.median(x[0] for x in r):.1f}, new {st.median(x[1] for x in r):.1f}, new CAE_SIMD=avx2 {st.median(x[2] for x in r):.1f} ms")
ci("new - old (gemm AVX-512 + our AVX-512 twin)", [x[1] - x[0] for x in r])
ci("(new CAE_SIMD=avx2) - old (gemm AVX-512 alone)", [x[2] - x[0] for x in r])
ci("new - (new CAE_SIMD=avx2) (our AVX-512 twin alone)", [x[1] - x[2] for x in r])
'
