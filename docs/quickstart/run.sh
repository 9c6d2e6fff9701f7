#!/bin/bash
# The quickstart quoted in the README: the fixed default plan, release build, fresh folder.
# Writes its log to stdout (docs/quickstart/run.log); the run folder is copied into docs/quickstart
# afterwards without the world's images, the encoders' weights and the checkpoints. The zoo's
# encoders (zoo/) are measured beside the quickstart's own (`--zoo auto`, the default).
# RUNS: the scratch folder; BIN: the folder holding the release binary.
set -e
cd "${RUNS:-/work/runs/w32}"
export PATH=${BIN:-/work/bin-w32}:$PATH
echo "# \$ /usr/bin/time -v cae-bench quickstart --out qs --no-progress"
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "# cae-bench: $(cae-bench --version), release build of commit $(git -C /work/main rev-parse --short HEAD) (cargo build --release -p cae-bench)"
rm -rf qs
/usr/bin/time -v cae-bench quickstart --out qs --no-progress 2>&1
echo "# done: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
