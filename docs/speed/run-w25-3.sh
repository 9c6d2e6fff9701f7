#!/bin/bash
# W2.5 round 3 measurements (the fused Linear layer and glibc's allocator kept for reuse):
# the mini b64 step beside PyTorch with every A/B variant (alternating rounds), the
# vit_small_patch16 b8 step beside PyTorch, the peak RSS of the mini b64 step, and a perf profile
# of the mini step. Run from the repository root after `cargo build --release --bin cae-bench`;
# PY must have torch (default python3); perf must be installed for the last part.
set -e
BIN=${CARGO_TARGET_DIR:-target}/release/cae-bench
PY=${PY:-python3}
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr); nothing else running"
echo "# commit: $(git rev-parse --short HEAD) (release build); torch: $($PY -c 'import torch;print(torch.__version__)')"
echo "\$ python3 benches/side_by_side.py --preset mini --batch 64 --steps 5 --warmup 2 --threads 2 --rounds 8"
python3 benches/side_by_side.py --bin "$BIN" --python "$PY" --preset mini --batch 64 --steps 5 --warmup 2 --threads 2 --rounds 8
echo
echo "\$ python3 benches/side_by_side.py --preset vit_small_patch16 --batch 8 --steps 3 --warmup 1 --threads 2 --rounds 3 --only-default"
python3 benches/side_by_side.py --bin "$BIN" --python "$PY" --preset vit_small_patch16 --batch 8 --steps 3 --warmup 1 --threads 2 --rounds 3 --only-default
echo
echo "# peak RSS of the mini b64 step, 2 threads (/usr/bin/time -f %M, KiB; 5 timed steps + 2 warmup, whole process), 3 alternations"
for i in 1 2 3; do
  echo "ours (default): $(/usr/bin/time -f %M $BIN --threads 2 bench pretrain --preset mini --batch 64 --steps 5 --warmup 2 2>&1 >/dev/null | tail -1)"
  echo "ours (CAE_MALLOC=default): $(CAE_MALLOC=default /usr/bin/time -f %M $BIN --threads 2 bench pretrain --preset mini --batch 64 --steps 5 --warmup 2 2>&1 >/dev/null | tail -1)"
  echo "PyTorch: $(OMP_NUM_THREADS=2 /usr/bin/time -f %M $PY benches/torch_twin.py --preset mini --batch 64 --steps 5 --warmup 2 --threads 2 2>&1 >/dev/null | tail -1)"
done
echo
echo "# perf profile of the mini b64 step (8 steps + 2 warmup, 2 threads), symbols above 0.8% of the samples"
echo "\$ perf record -g -o perf.data cae-bench --threads 2 bench pretrain --preset mini --batch 64 --steps 8 --warmup 2"
TMP=$(mktemp -d)
perf record -q -g -o "$TMP/perf.data" $BIN --threads 2 bench pretrain --preset mini --batch 64 --steps 8 --warmup 2 2>&1 | grep img/s
echo "\$ perf report --no-children --sort dso,sym -g none --percent-limit 0.8"
perf report -i "$TMP/perf.data" --no-children --sort dso,sym -g none --percent-limit 0.8 2>/dev/null | grep '%'
rm -rf "$TMP"
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
