#!/usr/bin/env bash
# The parity suite on one backend, then the proof that it can fail there.
#
#   CAE_TEST_DEVICE=vulkan:cpu CAE_SUITE_PKGS="-p cae-pretrain -p cae-heads -p cae-e2e" \
#     scripts/parity-suite.sh --features cae-pretrain/vulkan
#   CAE_UNFUSED=1 scripts/parity-suite.sh            # flex, composed path
#
# 1. Runs the parity tests (CAE, BEiT, dVAE, position-table resampling, UperNet, detection ops) of
#    cae-pretrain and cae-heads, with the extra cargo arguments given, on $CAE_TEST_DEVICE (cpu when
#    unset). Their own "perturbed reference" tests run too, on the same device.
# 2. Writes a copy of the reference folder with one expected tensor of every file perturbed
#    (scripts/perturb-reference.py) and runs each reference test against it
#    (CAE_REFERENCE_DIR): every one must fail with a tolerance error.
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS=("$@")
# The packages of the cargo invocation: keep them those of the build being reused (feature
# unification depends on them), `--workspace` after `cargo test --workspace`.
read -r -a PKGS <<< "${CAE_SUITE_PKGS:---workspace}"
# shellcheck source=scripts/ci-backends.sh
source scripts/ci-backends.sh
# On wgpu / vulkan one test at a time: the tests of one binary share the device, and with several
# test threads at once the CAE file's run on lavapipe did not finish in 15 minutes (one at a time:
# about a minute; docs/backends/wgpu-cpu-parity.log).
TEST_ARGS=()
case "${CAE_TEST_DEVICE:-cpu}" in wgpu* | vulkan*) TEST_ARGS=(-- --test-threads=1) ;; esac
# CAE_SUITE_SKIP: test binaries left out (space-separated, e.g. "parity_upernet"); the README
# says which backend leaves out which, and why.
read -r -a SKIP <<< "${CAE_SUITE_SKIP:-}"
skipped() { local s; for s in "${SKIP[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
TESTS=()
for b in "${PARITY_TESTS[@]}"; do
  if skipped "$b"; then echo "parity-suite: $b left out (CAE_SUITE_SKIP)"; else TESTS+=(--test "$b"); fi
done
echo "== parity suite on ${CAE_TEST_DEVICE:-cpu}${CAE_UNFUSED:+ (CAE_UNFUSED=$CAE_UNFUSED)}"
cargo test --locked "${PKGS[@]}" "${ARGS[@]}" "${TESTS[@]}" "${TEST_ARGS[@]}"
P="$(mktemp -d)"
trap 'rm -rf "$P"' EXIT
python3 scripts/perturb-reference.py tests/fixtures/reference "$P/ref" > "$P/perturbed.txt"
for t in parity:official_cae_and_dalle_reference_files_match \
  parity:official_beit_reference_files_match \
  parity_posinterp:torch_bicubic_reference_files_match \
  parity_upernet:mmseg_upernet_reference_files_match \
  parity_detops:detops_reference_files_match_torchvision; do
  bin="${t%%:*}"
  name="${t#*:}"
  skipped "$bin" && continue
  if CAE_REFERENCE_DIR="$P/ref" cargo test -q --locked "${PKGS[@]}" "${ARGS[@]}" --test "$bin" \
    -- --exact "$name" > "$P/log" 2>&1; then
    echo "parity-suite: $bin::$name PASSED on a perturbed reference (${CAE_TEST_DEVICE:-cpu})" >&2
    cat "$P/perturbed.txt" >&2
    exit 1
  fi
  if ! grep -q "exceeds tolerance" "$P/log"; then
    echo "parity-suite: $bin::$name failed on the perturbed reference, but not with a tolerance error:" >&2
    tail -n 30 "$P/log" >&2
    exit 1
  fi
  echo "ok: $bin::$name fails on the perturbed reference ($(grep -m1 -o '[^ ]*: worst error [^ ]* exceeds tolerance [^ ]*' "$P/log"))"
done
