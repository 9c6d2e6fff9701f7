//! Whether a Vulkan adapter can run cubecl's SPIR-V kernels, asked before `--device vulkan…` opens it.
//!
//! cubecl-spirv 0.11.3 (burn 0.22.1's `vulkan` backend) lowers shared memory (the tiles of every
//! matrix product, the partial sums of reductions) in one of two ways. With the Vulkan feature
//! `workgroupMemoryExplicitLayout` (`VK_KHR_workgroup_memory_explicit_layout`) it declares an
//! explicitly laid-out block; without it, it declares a `Workgroup` variable whose type is a
//! *pointer to* the tile instead of the tile, and indexes it as an array. That module is invalid
//! SPIR-V (`spirv-val`: "OpInBoundsAccessChain reached non-composite type while indexes still
//! remain to be traversed"), and Mesa's lavapipe 25.0.7, which lacks the extension, segfaults
//! compiling it in `vkCreateComputePipelines` (`docs/backends/vulkan-lavapipe-spirv.log`: the
//! element-wise kernel, without shared memory, is valid and runs; the matrix product's is
//! invalid and kills the process). A GPU driver with the feature (NVIDIA's, AMD's, Intel's, Mesa's
//! RADV/ANV) takes the valid path. So an adapter without it is refused with an error that names
//! the way out (`--device wgpu…`, whose WGSL compiler does not have this bug), instead of a crash.

use super::VulkanAdapter;

/// The Vulkan extension whose feature cubecl-spirv 0.11.3 needs for valid shared memory.
pub const EXPLICIT_LAYOUT_EXTENSION: &str = "VK_KHR_workgroup_memory_explicit_layout";

/// The kind of a Vulkan physical device, as `VkPhysicalDeviceType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterType {
    /// A discrete GPU.
    Discrete,
    /// An integrated GPU.
    Integrated,
    /// A virtual GPU.
    Virtual,
    /// A CPU implementation (lavapipe, SwiftShader).
    Cpu,
    /// Anything else.
    Other,
}

/// One Vulkan physical device, as the check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adapter {
    /// `VkPhysicalDeviceProperties::deviceName`.
    pub name: String,
    /// Its type.
    pub kind: AdapterType,
    /// Whether it has `workgroupMemoryExplicitLayout` (the extension and the feature bit).
    pub explicit_layout: bool,
}

/// The adapter `selection` opens among `adapters` (in the driver's enumeration order), if any,
/// the way cubecl-wgpu 0.11.3 picks it: `Cpu`, the first CPU adapter; `Discrete(n)`, the n-th
/// discrete GPU; `Default`, wgpu's high-performance preference (a discrete GPU, then an integrated
/// one, …, the CPU adapter last).
pub fn select(adapters: &[Adapter], selection: VulkanAdapter) -> Option<&Adapter> {
    match selection {
        VulkanAdapter::Cpu => adapters.iter().find(|a| a.kind == AdapterType::Cpu),
        VulkanAdapter::Discrete(i) => adapters
            .iter()
            .filter(|a| a.kind == AdapterType::Discrete)
            .nth(i),
        VulkanAdapter::Default => [
            AdapterType::Discrete,
            AdapterType::Integrated,
            AdapterType::Virtual,
            AdapterType::Other,
            AdapterType::Cpu,
        ]
        .into_iter()
        .find_map(|kind| adapters.iter().find(|a| a.kind == kind)),
    }
}

/// `Err` with the message a user reads when the adapter `selection` opens would crash in
/// cubecl's SPIR-V path; `Ok` when it has the feature, or when none matches (cubecl then reports
/// that no such adapter exists).
pub fn check(adapters: &[Adapter], selection: VulkanAdapter, spec: &str) -> Result<(), String> {
    match select(adapters, selection) {
        Some(a) if !a.explicit_layout => Err(format!(
            "device `{spec}`: the Vulkan adapter `{}` lacks {EXPLICIT_LAYOUT_EXTENSION} \
             (workgroupMemoryExplicitLayout), and without it the SPIR-V that burn 0.22.1's \
             `vulkan` backend (cubecl-spirv 0.11.3) compiles for shared memory is invalid: \
             drivers crash on it (Mesa's lavapipe segfaults). Use `--device wgpu{}` from a binary \
             built with `--features wgpu` and without `vulkan` (WGSL kernels, the same CubeCL \
             code), or a GPU whose driver has the extension",
            a.name,
            spec.strip_prefix("vulkan").unwrap_or("")
        )),
        _ => Ok(()),
    }
}

/// The machine's Vulkan physical devices, read through the Vulkan loader (`libvulkan.so.1`).
// Vulkan is a C API: each call below is an FFI call through ash, on handles made and destroyed here.
#[cfg(feature = "vulkan")]
#[allow(unsafe_code)]
pub fn adapters() -> Result<Vec<Adapter>, String> {
    use ash::vk;

    // SAFETY: loading the system's Vulkan loader; every handle made below is destroyed here.
    let entry = unsafe { ash::Entry::load() }
        .map_err(|e| format!("cannot load the Vulkan loader (libvulkan.so.1): {e}"))?;
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: a valid create-info without layers or extensions.
    let instance = unsafe { entry.create_instance(&info, None) }
        .map_err(|e| format!("cannot create a Vulkan instance: {e}"))?;
    let read = || -> Result<Vec<Adapter>, String> {
        // SAFETY: `instance` is alive for the whole closure.
        let devices = unsafe { instance.enumerate_physical_devices() }
            .map_err(|e| format!("cannot list Vulkan devices: {e}"))?;
        let mut out = Vec::with_capacity(devices.len());
        for pd in devices {
            // SAFETY: `pd` comes from `instance`.
            let props = unsafe { instance.get_physical_device_properties(pd) };
            let name = props
                .device_name_as_c_str()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "(unnamed)".into());
            let kind = match props.device_type {
                vk::PhysicalDeviceType::DISCRETE_GPU => AdapterType::Discrete,
                vk::PhysicalDeviceType::INTEGRATED_GPU => AdapterType::Integrated,
                vk::PhysicalDeviceType::VIRTUAL_GPU => AdapterType::Virtual,
                vk::PhysicalDeviceType::CPU => AdapterType::Cpu,
                _ => AdapterType::Other,
            };
            // SAFETY: as above.
            let exts = unsafe { instance.enumerate_device_extension_properties(pd) }
                .map_err(|e| format!("cannot list the extensions of `{name}`: {e}"))?;
            let has_ext = exts.iter().any(|e| {
                e.extension_name_as_c_str()
                    .is_ok_and(|n| n.to_bytes() == EXPLICIT_LAYOUT_EXTENSION.as_bytes())
            });
            let explicit_layout = has_ext && {
                let mut wg = vk::PhysicalDeviceWorkgroupMemoryExplicitLayoutFeaturesKHR::default();
                let mut features = vk::PhysicalDeviceFeatures2::default().push_next(&mut wg);
                // SAFETY: the device supports the extension whose struct is chained.
                unsafe { instance.get_physical_device_features2(pd, &mut features) };
                wg.workgroup_memory_explicit_layout == vk::TRUE
            };
            out.push(Adapter {
                name,
                kind,
                explicit_layout,
            });
        }
        Ok(out)
    };
    let result = read();
    // SAFETY: nothing made from `instance` outlives it.
    unsafe { instance.destroy_instance(None) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(name: &str, kind: AdapterType, explicit_layout: bool) -> Adapter {
        Adapter {
            name: name.into(),
            kind,
            explicit_layout,
        }
    }

    #[test]
    fn selects_like_cubecl_wgpu() {
        let list = [
            adapter("llvmpipe", AdapterType::Cpu, false),
            adapter("igpu", AdapterType::Integrated, true),
            adapter("gpu0", AdapterType::Discrete, true),
            adapter("gpu1", AdapterType::Discrete, false),
        ];
        let name = |s| select(&list, s).map(|a| a.name.as_str());
        assert_eq!(name(VulkanAdapter::Default), Some("gpu0"));
        assert_eq!(name(VulkanAdapter::Cpu), Some("llvmpipe"));
        assert_eq!(name(VulkanAdapter::Discrete(1)), Some("gpu1"));
        assert_eq!(name(VulkanAdapter::Discrete(2)), None);
        // Without GPUs the default is the CPU adapter.
        assert_eq!(
            select(&list[..1], VulkanAdapter::Default).map(|a| a.name.as_str()),
            Some("llvmpipe")
        );
    }

    #[test]
    fn refuses_an_adapter_without_explicit_layout_and_names_the_way_out() {
        let list = [
            adapter("llvmpipe (LLVM 15.0.6, 256 bits)", AdapterType::Cpu, false),
            adapter("NVIDIA H200", AdapterType::Discrete, true),
        ];
        let e = check(&list, VulkanAdapter::Cpu, "vulkan:cpu").unwrap_err();
        assert!(e.contains("llvmpipe (LLVM 15.0.6, 256 bits)"), "{e}");
        assert!(e.contains(EXPLICIT_LAYOUT_EXTENSION), "{e}");
        assert!(e.contains("`--device wgpu:cpu`"), "{e}");
        assert!(check(&list, VulkanAdapter::Default, "vulkan").is_ok());
        assert!(check(&list, VulkanAdapter::Discrete(0), "vulkan:0").is_ok());
        // No such adapter: left to cubecl, which says so.
        assert!(check(&list, VulkanAdapter::Discrete(3), "vulkan:3").is_ok());
        let e = check(&list[..1], VulkanAdapter::Default, "vulkan").unwrap_err();
        assert!(e.contains("`--device wgpu`"), "{e}");
    }
}
