#!/bin/bash
# The segmentation runs quoted in the README: mini preset on the quickstart's world, with the
# quickstart's CAE encoder and a random initialisation, UperNet and linear, seeds 0 and 1.
set -e
cd /work/runs
export PATH=/work/bin3:$PATH
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: $(cae-bench --version) (debug build: cargo build --workspace)"
W=qs-docs/world-8826de5d/ade
E=qs-docs/pretrain/cae-0958f880/encoder.safetensors
for proto in upernet linear; do
  for enc in cae random; do
    for seed in 0 1; do
      src=$E; label="CAE mini, 40 steps (quickstart)"
      [ $enc = random ] && src=random && label="random init mini"
      out=seg-docs/runs/$enc-$proto/seed-$seed
      rm -rf $out
      echo "\$ cae-bench segment --encoder $src --label \"$label\" --data $W --preset mini --protocol $proto --seed $seed --out $out --no-progress"
      /usr/bin/time -f "# wall %e s, max RSS %M KiB" cae-bench segment --encoder $src --label "$label" --data $W --preset mini --protocol $proto --seed $seed --out $out --no-progress 2>&1
    done
  done
done
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
