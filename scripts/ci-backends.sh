# The backend build of .ci/run, in one place: sourced by .ci/run (which builds and tests it),
# scripts/parity-suite.sh (the parity test binaries) and scripts/unit-graph.sh (which measures how
# much of it the workspace build shares), so the three name the same build.
# shellcheck shell=bash disable=SC2034
# The cargo features of the backends CI tests without a GPU (wgpu on lavapipe, tch on the CPU).
BACKENDS=(--features cae-pretrain/wgpu,cae-pretrain/tch)
# The packages of the backend invocations (feature unification depends on them).
BACKEND_PKGS="-p cae-pretrain -p cae-heads -p cae-e2e"
# The parity test binaries (cae-pretrain, cae-heads), and the short runs against flex (cae-e2e).
PARITY_TESTS=(parity parity_posinterp parity_upernet parity_detops)
SHORT_RUN_TESTS=(backends)
