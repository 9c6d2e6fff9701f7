#!/bin/bash
# The long-horizon calibration quoted in the README: CAE and BEiT `mini` pretrained for 6,000
# steps (40 epochs of the quickstart world's 9,600 training scenes, batch 64, the quickstart's
# recipe otherwise: pixel targets, blr 6e-3, cosine with warmup over the whole run), a checkpoint
# every 250 steps kept, then `cae-bench calibrate` at 250 ... 6,000 steps (linear probe, kNN,
# 1%-label fine-tune, 3 probe seeds, random init beside them). STAGE picks what to run:
# `s0` (seed 0 of both methods and their calibrations), `s1` (a second pretraining seed of both,
# measured at the last budget). Usage: STAGE=s0 bash docs/calibration/run.sh, with `cae-bench`
# on PATH; the world is the quickstart's (`cae-bench quickstart` writes it).
set -e
R=${RUNS:-/work/runs/w32}
W=${WORLD:-/work/runs/w31/qs/world-e683e10f/imagefolder}
cd "$R"
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: $(cae-bench --version), release build of commit $(git -C /work/main rev-parse --short HEAD) (cargo build --release -p cae-bench)"
echo "# world: $W ($(ls $W/train | wc -l) classes)"
STEPS=250,500,1000,2000,4000,6000
seeds=0; [ "${STAGE:-s0}" = s1 ] && seeds=1
for seed in $seeds; do
  for m in cae beit; do
    out=pretrain/$m-s$seed
    cmd="cae-bench pretrain --method $m --preset mini --data $W/train --out $out --steps 6000 --seed $seed --checkpoint-every 250 --keep-checkpoints 30 --no-progress"
    [ -f $out/record.json ] && cmd="$cmd --resume"
    echo "\$ $cmd"
    /usr/bin/time -f "# wall %e s, max RSS %M KiB" $cmd 2>&1 | grep -v "^\s*$" | tail -4
    at=$STEPS; [ $seed = 1 ] && at=6000
    cmd="cae-bench calibrate --run $out --data $W --out calibration/$m-s$seed --steps $at --seeds 3"
    echo "\$ $cmd"
    /usr/bin/time -f "# wall %e s, max RSS %M KiB" $cmd 2>&1 | tail -12
  done
done
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
