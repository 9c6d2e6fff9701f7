#!/bin/bash
# A longer-pretrained CAE encoder (600 steps on the quickstart world's 320 training images) and
# the same segmentation runs with it (mini preset, UperNet and linear, seeds 0 and 1).
set -e
cd /work/runs
export PATH=/work/bin3:$PATH
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: $(cae-bench --version) (debug build of commit 4962554: cargo build --workspace)"
W=qs-docs/world-8826de5d
P=seg-docs/pretrain/cae-600
rm -rf $P
echo "\$ cae-bench pretrain --preset mini --data $W/imagefolder/train --steps 600 --seed 0 --out $P --no-progress"
/usr/bin/time -f "# wall %e s, max RSS %M KiB" cae-bench pretrain --preset mini --data $W/imagefolder/train --steps 600 --seed 0 --out $P --no-progress 2>&1
for proto in upernet linear; do
  for seed in 0 1; do
    out=seg-docs/runs/cae600-$proto/seed-$seed
    rm -rf $out
    echo "\$ cae-bench segment --encoder $P/encoder.safetensors --label \"CAE mini, 600 steps\" --data $W/ade --preset mini --protocol $proto --seed $seed --out $out --no-progress"
    /usr/bin/time -f "# wall %e s, max RSS %M KiB" cae-bench segment --encoder $P/encoder.safetensors --label "CAE mini, 600 steps" --data $W/ade --preset mini --protocol $proto --seed $seed --out $out --no-progress 2>&1
  done
done
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
