#!/bin/bash
# W2.5 round 2 measurements: the mini b64 step beside PyTorch (alternating rounds), an A/B of the
# fused kernels' AVX2 and baseline builds on the whole step, and the criterion benches of the
# fused kernels and the dense heads' ops. Run from the repository root after
# `cargo build --release --bin cae-bench`; python3 must have torch (PY overrides it).
set -e
BIN=${CARGO_TARGET_DIR:-target}/release/cae-bench
PY=${PY:-python3}
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr); nothing else running"
echo "# commit: $(git rev-parse --short HEAD) (release build); torch: $($PY -c 'import torch;print(torch.__version__)')"
echo "\$ python3 benches/side_by_side.py --preset mini --batch 64 --steps 5 --warmup 2 --threads 2 --rounds 6"
python3 benches/side_by_side.py --bin "$BIN" --python "$PY" --preset mini --batch 64 --steps 5 --warmup 2 --threads 2 --rounds 6
echo
echo "# A/B: the whole mini b64 step, 2 threads, fused kernels' AVX2 build (default) vs CAE_SIMD=baseline, 6 alternations, median of 8 steps each"
for i in 1 2 3 4 5 6; do
  for m in avx2 baseline; do
    echo "$m $(CAE_SIMD=$m $BIN --threads 2 bench pretrain --preset mini --batch 64 --steps 8 --warmup 2 2>&1 | grep -o 'median [0-9.]*') ms/step"
  done
done
echo
echo "\$ cargo bench -p cae-pretrain --bench kernels"
CAE_SIMD=avx2 cargo bench -q -p cae-pretrain --bench kernels 2>&1 | grep -E "^fused|time:" | paste - - | awk '{print $1, "(AVX2 build):", $3, $4, $5, $6, $7, $8, $9}'
echo "\$ CAE_SIMD=baseline cargo bench -p cae-pretrain --bench kernels -- /fused"
CAE_SIMD=baseline cargo bench -q -p cae-pretrain --bench kernels -- /fused 2>&1 | grep -E "^fused|time:" | paste - - | awk '{print $1, "(baseline build):", $3, $4, $5, $6, $7, $8, $9}'
echo "\$ cargo bench -p cae-heads --bench dense_ops"
cargo bench -q -p cae-heads --bench dense_ops 2>&1 | grep -E "^dense|time:" | paste - - | awk '{print $1, $3, $4, $5, $6, $7, $8, $9}'
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
