#!/bin/bash
# Segmentation on the quickstart's fixed-plan world (9,600 train / 2,400 validation 32-px scenes)
# with the quickstart's 600-step CAE encoder (docs/quickstart) and a random initialisation,
# UperNet and linear, seeds 0 and 1, release build.
set -e
cd /work/runs
BIN=/work/bin3/cae-bench-s20
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: $($BIN --version) (release build: cargo build --release --bin cae-bench)"
W=qs-fresh/world-e683e10f/ade
E=qs-fresh/pretrain/cae-839e1e7d/encoder.safetensors
for proto in upernet linear; do
  for enc in cae random; do
    for seed in 0 1; do
      src=$E; label="CAE mini, 600 steps (quickstart)"
      [ $enc = random ] && src=random && label="random init mini"
      out=seg-qs600/runs/$enc-$proto/seed-$seed
      rm -rf $out
      echo "\$ cae-bench segment --encoder $src --label \"$label\" --data $W --preset mini --protocol $proto --seed $seed --out $out --no-progress"
      /usr/bin/time -f "# wall %e s, max RSS %M KiB" $BIN segment --encoder $src --label "$label" --data $W --preset mini --protocol $proto --seed $seed --out $out --no-progress 2>&1
    done
  done
done
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
