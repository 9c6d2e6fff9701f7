//! Choosing the compute device at run time.
//!
//! `flex` (pure Rust, CPU) is always built. `cuda` (CubeCL) and `tch` (libtorch) are cargo features
//! of this crate, never needed to build or test; asking for one that was not compiled in is an
//! error that says how to get it.

use burn::tensor::Device;

use crate::error::PretrainError;

pub mod spirv;

/// The backends compiled into this binary.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut v = vec!["cpu (flex)"];
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    if cfg!(feature = "tch") {
        v.push("tch");
    }
    if cfg!(feature = "vulkan") {
        v.push("vulkan");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    v
}

/// Parses a device:
///
/// | spec | device |
/// |---|---|
/// | `cpu`, `flex` | burn-flex, pure Rust (always built) |
/// | `cuda`, `cuda:N` | CubeCL CUDA, GPU N (feature `cuda`) |
/// | `vulkan` | wgpu on Vulkan, the best adapter Vulkan offers (a GPU first, else Mesa's lavapipe) |
/// | `vulkan:N`, `vulkan:cpu` | the N-th discrete GPU; the CPU adapter (lavapipe) (feature `vulkan`) |
/// | `wgpu`, `wgpu:N`, `wgpu:cpu` | wgpu on any graphics API, WGSL kernels (feature `wgpu`) |
/// | `tch`, `tch:cpu` | libtorch on the CPU (feature `tch`) |
/// | `tch:cuda`, `tch:cuda:N`, `tch-cuda:N` | libtorch on GPU N (feature `tch`, CUDA link) |
pub fn parse_device(spec: &str) -> Result<Device, PretrainError> {
    let (kind, rest) = match spec.split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (spec, None),
    };
    let index = |i: &str| {
        i.parse::<usize>().map_err(|_| {
            PretrainError::Config(format!("device `{spec}`: `{i}` is not a device index"))
        })
    };
    match (kind, rest) {
        ("cpu" | "flex", None) => Ok(Device::flex()),
        ("cuda", None) => cuda(0),
        ("cuda", Some(i)) => cuda(index(i)?),
        ("vulkan", None) => vulkan(spec, VulkanAdapter::Default),
        ("vulkan", Some("cpu")) => vulkan(spec, VulkanAdapter::Cpu),
        ("vulkan", Some(i)) => vulkan(spec, VulkanAdapter::Discrete(index(i)?)),
        ("wgpu", None) => wgpu(VulkanAdapter::Default),
        ("wgpu", Some("cpu")) => wgpu(VulkanAdapter::Cpu),
        ("wgpu", Some(i)) => wgpu(VulkanAdapter::Discrete(index(i)?)),
        ("tch" | "libtorch", None | Some("cpu")) => tch(None),
        ("tch" | "libtorch", Some("cuda")) => tch(Some(0)),
        ("tch" | "libtorch", Some(r)) => match r.strip_prefix("cuda:") {
            Some(i) => tch(Some(index(i)?)),
            None => Err(PretrainError::Config(format!(
                "device `{spec}`: use tch:cpu or tch:cuda:N"
            ))),
        },
        ("tch-cuda", None) => tch(Some(0)),
        ("tch-cuda", Some(i)) => tch(Some(index(i)?)),
        ("cpu" | "flex", Some(_)) => Err(PretrainError::Config(format!(
            "device `{spec}`: the CPU backend takes no index (threads: --threads)"
        ))),
        (other, _) => Err(PretrainError::Config(format!(
            "unknown device `{other}`; use cpu, cuda[:N], vulkan[:N|:cpu], wgpu[:N|:cpu], tch[:cpu|:cuda:N] (compiled in: {})",
            compiled_backends().join(", ")
        ))),
    }
}

/// The device the parity and backend tests run on: `$CAE_TEST_DEVICE` (any [`parse_device`]
/// spec), `cpu` when unset. CI sets it to run the same tests on `vulkan:cpu` and `tch:cpu`.
pub fn test_device() -> Device {
    let spec = std::env::var("CAE_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    parse_device(&spec).unwrap_or_else(|e| panic!("CAE_TEST_DEVICE: {e}"))
}

/// The default device spec of each compiled-in backend, for `cae-bench devices`.
pub fn default_specs() -> Vec<&'static str> {
    let mut v = vec!["cpu"];
    if cfg!(feature = "cuda") {
        v.push("cuda:0");
    }
    if cfg!(feature = "vulkan") {
        v.push("vulkan");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "tch") {
        v.extend(["tch:cpu", "tch:cuda:0"]);
    }
    v
}

/// Which Vulkan adapter `vulkan[:…]` / `wgpu[:…]` asks wgpu for (and [`spirv::select`] finds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VulkanAdapter {
    /// `vulkan`, `wgpu`: the best adapter (a GPU first, else the CPU one).
    Default,
    /// `…:cpu`: the CPU adapter (Mesa's lavapipe).
    Cpu,
    /// `…:N`: the N-th discrete GPU.
    Discrete(usize),
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device, PretrainError> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device, PretrainError> {
    Err(PretrainError::Config(
        "this binary was built without CUDA; rebuild with `cargo build --release --features cuda`"
            .into(),
    ))
}

#[cfg(feature = "vulkan")]
fn vulkan(spec: &str, adapter: VulkanAdapter) -> Result<Device, PretrainError> {
    use burn::tensor::DeviceKind;
    // An adapter on which cubecl's SPIR-V would crash the process is refused first (spirv.rs).
    let adapters =
        spirv::adapters().map_err(|e| PretrainError::Config(format!("device `{spec}`: {e}")))?;
    spirv::check(&adapters, adapter, spec).map_err(PretrainError::Config)?;
    Ok(Device::vulkan(match adapter {
        VulkanAdapter::Default => DeviceKind::DefaultDevice,
        VulkanAdapter::Cpu => DeviceKind::Cpu,
        VulkanAdapter::Discrete(i) => DeviceKind::DiscreteGpu(i),
    }))
}

#[cfg(not(feature = "vulkan"))]
fn vulkan(_spec: &str, _adapter: VulkanAdapter) -> Result<Device, PretrainError> {
    Err(PretrainError::Config(
        "this binary was built without Vulkan; rebuild with `cargo build --release --features vulkan`".into(),
    ))
}

// burn marks burn-tch deprecated in 0.22; it is the libtorch path the design names (README, GPU).
#[cfg(feature = "wgpu")]
fn wgpu(adapter: VulkanAdapter) -> Result<Device, PretrainError> {
    use burn::tensor::DeviceKind;
    Ok(Device::wgpu(match adapter {
        VulkanAdapter::Default => DeviceKind::DefaultDevice,
        VulkanAdapter::Cpu => DeviceKind::Cpu,
        VulkanAdapter::Discrete(i) => DeviceKind::DiscreteGpu(i),
    }))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_adapter: VulkanAdapter) -> Result<Device, PretrainError> {
    Err(PretrainError::Config(
        "this binary was built without wgpu; rebuild with `cargo build --release --features wgpu`"
            .into(),
    ))
}

#[cfg(feature = "tch")]
#[allow(deprecated)]
fn tch(gpu: Option<usize>) -> Result<Device, PretrainError> {
    Ok(match gpu {
        Some(index) => Device::libtorch_cuda(index),
        None => Device::libtorch(),
    })
}

#[cfg(not(feature = "tch"))]
fn tch(_gpu: Option<usize>) -> Result<Device, PretrainError> {
    Err(PretrainError::Config(
        "this binary was built without libtorch; see the README (scripts/setup-tch.sh, `--features tch`)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_unknown() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device("flex").is_ok());
        assert!(
            parse_device("tpu")
                .unwrap_err()
                .to_string()
                .contains("unknown device")
        );
        assert!(parse_device("cuda:x").is_err());
        assert!(parse_device("cpu:1").is_err());
        assert!(parse_device("tch:gpu").is_err());
        assert!(parse_device("vulkan:x").is_err());
        if !cfg!(feature = "cuda") {
            assert!(
                parse_device("cuda")
                    .unwrap_err()
                    .to_string()
                    .contains("--features cuda")
            );
        }
        for spec in ["tch", "tch:cpu", "tch:cuda:1", "tch-cuda:0"] {
            assert_eq!(parse_device(spec).is_ok(), cfg!(feature = "tch"), "{spec}");
        }
        for spec in ["vulkan", "vulkan:cpu", "vulkan:0"] {
            assert_eq!(
                parse_device(spec).is_ok(),
                cfg!(feature = "vulkan"),
                "{spec}"
            );
        }
    }
}
