#!/bin/bash
# The quickstart quoted in the README: the fixed default plan, release build, fresh folder.
# Writes its log to stdout (docs/quickstart/run.log); the run folder is copied into docs/quickstart
# afterwards without the world's images, the encoders' weights and the checkpoints.
set -e
cd /work/runs/w30
export PATH=/work/bin-w30:$PATH
echo "# \$ /usr/bin/time -v cae-bench quickstart --out qs --no-progress"
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: $(cae-bench --version), release build of commit $(git -C /work/main rev-parse --short HEAD) (cargo build --release -p cae-bench)"
rm -rf qs
/usr/bin/time -v cae-bench quickstart --out qs --no-progress 2>&1
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
