#!/bin/bash
# W2.5 round 3: what this round's two changes give together on the whole mini b64 step.
# Alternates the default build with both turned off (CAE_UNFUSED=linear: the Linear layers
# through burn's matmul; CAE_MALLOC=default: glibc's allocator defaults), which is the step as it
# was before them. Run from the repository root after `cargo build --release --bin cae-bench`.
set -e
BIN=${CARGO_TARGET_DIR:-target}/release/cae-bench
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr); nothing else running"
echo "# commit: $(git rev-parse --short HEAD) (release build)"
echo "# mini b64, 2 threads, median ms/step of 8 steps (2 warmup) per run; 10 alternating pairs"
step() { env "$@" $BIN --threads 2 bench pretrain --preset mini --batch 64 --steps 8 --warmup 2 2>&1 | grep -o 'median [0-9.]*' | cut -d' ' -f2; }
for i in $(seq 10); do
  a=$(step X=1)
  b=$(step CAE_UNFUSED=linear CAE_MALLOC=default)
  echo "pair $i: now $a ms, before $b ms, difference $(echo "$a - $b" | bc) ms"
done
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
