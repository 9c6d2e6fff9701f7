#!/bin/bash
# The detection runs quoted in the README: mini preset on the quickstart's world, with the
# quickstart's CAE encoder and a random initialisation, seeds 0 and 1; then pycocotools on each
# run's results files (check.py) and the leaderboard.
set -e
cd /work/runs
export PATH=/work/bin3:$PATH
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: debug build (cargo build --workspace) of commit $(git -C /work/main rev-parse --short HEAD)"
W=qs-docs/world-8826de5d/coco
E=qs-docs/pretrain/cae-0958f880/encoder.safetensors
for enc in cae random; do
  for seed in 0 1; do
    src=$E; label="CAE mini, 40 steps (quickstart)"
    [ $enc = random ] && src=random && label="random init mini"
    out=det-docs/runs/$enc/seed-$seed
    rm -rf $out
    echo "\$ cae-bench detect --encoder $src --label \"$label\" --data $W --preset mini --seed $seed --out $out --no-progress"
    /usr/bin/time -f "# wall %e s, max RSS %M KiB" cae-bench-det detect --encoder $src --label "$label" --data $W --preset mini --seed $seed --out $out --no-progress 2>&1
  done
done
echo "\$ python check.py (pycocotools 2.0.11 on every run's results files)"
/work/torchenv/bin/python /work/main/docs/detect/check.py $W/annotations/instances_val2017.json det-docs/runs
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
