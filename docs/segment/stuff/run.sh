#!/bin/bash
# Segmentation on a world with stuff classes (`data synth --stuff 4`): the quickstart's world
# parameters (12,000 scenes of 32 px, seed 0) plus sky / grass / wall / water backgrounds; the
# quickstart's 600-step CAE `mini` encoder and a random initialisation; UperNet and the linear
# head; seeds 0 and 1; the `mini` preset, everything else default.
set -e
cd /work/runs/w30
export PATH=/work/bin-w30:$PATH
BIN=cae-bench
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: $($BIN --version) (release build of commit $(git -C /work/main rev-parse --short HEAD): cargo build --release --bin cae-bench)"
W=seg-stuff/world
ENC=$(ls qs/pretrain/cae-*/encoder.safetensors)
echo "# encoder: $ENC (docs/quickstart/run.log), sha256 $(sha256sum $ENC | cut -c1-16)..."
rm -rf seg-stuff && mkdir -p seg-stuff
echo "\$ cae-bench data synth --out $W --images 12000 --size 32 --seed 0 --stuff 4"
/usr/bin/time -f "# wall %e s" $BIN data synth --out $W --images 12000 --size 32 --seed 0 --stuff 4 2>&1
for proto in upernet linear; do
  for enc in cae random; do
    for seed in 0 1; do
      out=seg-stuff/$enc-$proto-s$seed
      if [ $enc = cae ]; then E="$ENC --label CAE-mini-600"; else E=random; fi
      echo "\$ cae-bench segment --encoder $E --data $W/ade --preset mini --protocol $proto --seed $seed --out $out --no-progress -v"
      /usr/bin/time -f "# wall %e s, max RSS %M KiB" $BIN segment --encoder $E --data $W/ade --preset mini --protocol $proto --seed $seed --out $out --no-progress -v 2>&1 | grep -v TRACE
    done
  done
done
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
