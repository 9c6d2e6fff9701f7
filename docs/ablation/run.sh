#!/usr/bin/env bash
# The λ × mask-ratio ablation of docs/ablation/ (README "Ablations"): CAE `mini`, 300 pretraining
# steps per cell, λ ∈ {0, 1, 2} × mask ratio ∈ {0.25, 0.5, 0.75} × seeds {0, 1}, each cell measured
# by the linear probe and kNN on the quickstart's world (9,600 train / 2,400 val 32-px scenes).
# Run from a folder holding the quickstart's output `qs-plan/` (cae-bench quickstart --out
# qs-plan), with a release build of cae-bench as $CAE_BENCH. Then copy the records, the manifest,
# the report and its plots into docs/ablation/ (no encoders or checkpoints).
set -euo pipefail
B=${CAE_BENCH:-cae-bench}
date -u
uname -m; nproc; grep -m1 "model name" /proc/cpuinfo
$B ablate --data qs-plan/world-e683e10f/imagefolder --out ablation \
  --param lambda=0,1,2 --param mask-ratio=0.25,0.5,0.75 \
  --protocol linear,knn --seeds 2 --steps 300 --no-progress
date -u
