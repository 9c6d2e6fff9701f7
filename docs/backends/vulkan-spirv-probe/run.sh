#!/usr/bin/env bash
# Runs the probe on lavapipe (or whatever `DeviceKind::Cpu` finds) and validates every SPIR-V
# module cubecl compiled, so a driver crash can be told apart from invalid SPIR-V.
#   docs/backends/vulkan-spirv-probe/run.sh > docs/backends/vulkan-lavapipe-spirv.log 2>&1
# Needs mesa-vulkan-drivers, vulkan-tools and spirv-tools (apt).
set -uo pipefail
cd "$(dirname "$0")"
cp ../../../Cargo.lock . # the workspace's versions of burn and cubecl
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cae-bench/target}"
echo "# $(date -u +%FT%TZ) on $(uname -m), $(nproc) cores; $(dpkg-query -W -f='mesa-vulkan-drivers ${Version}' mesa-vulkan-drivers 2>/dev/null)"
vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverInfo'
echo "# VK_KHR_workgroup_memory_explicit_layout advertised: $(vulkaninfo 2>/dev/null | grep -c VK_KHR_workgroup_memory_explicit_layout) time(s)"
cargo build -q 2>&1 | tail -n 5
DUMP="$(mktemp -d)"
echo "\$ CUBECL_DEBUG_PLIRON=$DUMP vulkan-spirv-probe"
CUBECL_DEBUG_PLIRON="$DUMP" "$CARGO_TARGET_DIR/debug/vulkan-spirv-probe"
echo "# exit status $? (139: SIGSEGV)"
for m in "$DUMP"/*/module.spv; do
  k="$(basename "$(dirname "$m")")"
  echo "== $k"
  echo "workgroup variables:"
  spirv-dis "$m" | grep -E 'OpVariable .* Workgroup$' || echo "  (none)"
  echo "capabilities: $(spirv-dis "$m" | grep -oE 'OpCapability [A-Za-z0-9]+' | cut -d' ' -f2 | tr '\n' ' ')"
  if out="$(spirv-val --target-env vulkan1.3 "$m" 2>&1)"; then echo "spirv-val: valid"; else echo "spirv-val: INVALID"; echo "$out"; fi
done
rm -rf "$DUMP" Cargo.lock
