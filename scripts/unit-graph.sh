#!/usr/bin/env bash
# How much of each extra build in .ci/run the workspace test build already made: cargo's unit graphs
# (resolved, nothing built; RUSTC_BOOTSTRAP for `-Z unstable-options --unit-graph`) of
#   A: the README's test command (cargo test --workspace)
#   B: the MPI test (--features cae-bench/mpi --test mpi)
#   C: the backend build (scripts/ci-backends.sh: wgpu + tch, the parity tests and tests/backends.rs)
# and, for B and C, the units A does not share (scripts/unit-graph-share.py). A crate rebuilt in
# C only because the backends turn on one of its features belongs in pretrain/Cargo.toml's
# feature-alignment list (ARCHITECTURE.md, Rules). Usage: scripts/unit-graph.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-$(mktemp -d)}"
mkdir -p "$OUT"
ug() { RUSTC_BOOTSTRAP=1 cargo test --locked "$@" --no-run -Z unstable-options --unit-graph; }
ug --workspace >"$OUT/A.json"
ug --workspace --features cae-bench/mpi --test mpi >"$OUT/B.json"
# shellcheck source=scripts/ci-backends.sh
source scripts/ci-backends.sh
# shellcheck disable=SC2086
ug $BACKEND_PKGS "${BACKENDS[@]}" "${PARITY_TESTS[@]/#/--test=}" "${SHORT_RUN_TESTS[@]/#/--test=}" \
  >"$OUT/C.json"
for g in B C; do
  echo "## $g against A"
  python3 scripts/unit-graph-share.py "$OUT/A.json" "$OUT/$g.json"
done
