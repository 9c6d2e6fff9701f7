#!/bin/bash
# The detection runs quoted in the README: `detect --preset mini` on a 400-scene world (320 train /
# 80 validation, generator seed 5, so none of its scenes is among the pretraining images), with the
# quickstart's 600-step CAE `mini` encoder and a random initialisation, seeds 0 and 1; then
# pycocotools on each run's results files (check.py, when a Python with pycocotools is at hand)
# and the leaderboard.
set -e
cd /work/runs/w31
export PATH=/work/bin-w31:$PATH
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: $(cae-bench --version), release build of commit $(git -C /work/main rev-parse --short HEAD) (cargo build --release -p cae-bench)"
W=det-world
if ! ls qs/pretrain/cae-*/encoder.safetensors >/dev/null 2>&1; then
  # The quickstart's fixed plan rebuilds the same encoder bit for bit on one CPU, not across
  # CPUs: float sums vectorise differently (11d9007e6368b2f0 on the AMD EPYC of 2026-12-05,
  # 8fb95e92e84e3eeb on the Intel Xeon of 2026-12-06, both at final loss 0.7710). The log
  # prints the sha256 of the file each run used, and the records carry it.
  echo "\$ cae-bench quickstart --out qs --no-progress   # for its 600-step CAE mini encoder"
  cae-bench quickstart --out qs --no-progress > quickstart.log 2>&1
fi
E=$(ls qs/pretrain/cae-*/encoder.safetensors)
echo "# encoder: $E (docs/quickstart/run.log), sha256 $(sha256sum $E | cut -c1-16)..."
rm -rf $W det-docs
echo "\$ cae-bench data synth --out $W --images 400 --size 32 --seed 5"
cae-bench data synth --out $W --images 400 --size 32 --seed 5 2>&1
for enc in cae random; do
  for seed in 0 1; do
    src=$E; label="CAE-mini-600"
    [ $enc = random ] && src=random && label="random init mini"
    out=det-docs/runs/$enc/seed-$seed
    echo "\$ cae-bench detect --encoder $src --label \"$label\" --data $W/coco --preset mini --seed $seed --out $out --no-progress"
    /usr/bin/time -f "# wall %e s, max RSS %M KiB" cae-bench detect --encoder $src --label "$label" --data $W/coco --preset mini --seed $seed --out $out --no-progress 2>&1
  done
done
if [ -x /work/torchenv/bin/python ]; then
  echo "\$ python check.py (pycocotools on every run's results files)"
  /work/torchenv/bin/python /work/main/docs/detect/check.py $W/coco/annotations/instances_val2017.json det-docs/runs
fi
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
