//! Choosing the compute device at run time.
//!
//! `flex` (pure Rust, CPU) is always built. `cuda` (CubeCL) and `tch` (libtorch) are cargo features
//! of this crate, never needed to build or test; asking for one that was not compiled in is an
//! error that says how to get it.

use burn::tensor::Device;

use crate::error::PretrainError;

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
    v
}

/// Parses `cpu`, `flex`, `cuda`, `cuda:N`, `tch` (libtorch CPU), `tch-cuda:N` or `vulkan[:N]`
/// (the N-th discrete GPU through wgpu on Vulkan).
pub fn parse_device(spec: &str) -> Result<Device, PretrainError> {
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => (
            k,
            i.parse::<usize>().map_err(|_| {
                PretrainError::Config(format!("device `{spec}`: `{i}` is not a device index"))
            })?,
        ),
        None => (spec, 0),
    };
    match kind {
        "cpu" | "flex" => Ok(Device::flex()),
        "cuda" => cuda(index),
        "tch" | "libtorch" => tch(false, index),
        "tch-cuda" => tch(true, index),
        "vulkan" => vulkan(index),
        other => Err(PretrainError::Config(format!(
            "unknown device `{other}`; use cpu, cuda[:N], vulkan[:N], tch or tch-cuda[:N] (compiled in: {})",
            compiled_backends().join(", ")
        ))),
    }
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
fn vulkan(index: usize) -> Result<Device, PretrainError> {
    Ok(Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(index)))
}

#[cfg(not(feature = "vulkan"))]
fn vulkan(_index: usize) -> Result<Device, PretrainError> {
    Err(PretrainError::Config(
        "this binary was built without Vulkan; rebuild with `cargo build --release --features vulkan`".into(),
    ))
}

#[cfg(feature = "tch")]
fn tch(gpu: bool, index: usize) -> Result<Device, PretrainError> {
    Ok(if gpu {
        Device::libtorch_cuda(index)
    } else {
        Device::libtorch()
    })
}

#[cfg(not(feature = "tch"))]
fn tch(_gpu: bool, _index: usize) -> Result<Device, PretrainError> {
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
        if !cfg!(feature = "cuda") {
            assert!(
                parse_device("cuda")
                    .unwrap_err()
                    .to_string()
                    .contains("--features cuda")
            );
        }
    }
}
