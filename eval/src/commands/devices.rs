//! `cae-bench devices`: the backends compiled into this binary, and whether each one's device
//! starts here (a small matrix product on it, checked against the CPU's result).

use burn::tensor::{Device, Tensor, TensorData};
use clap::Args;

use cae_pretrain::device::{compiled_backends, default_specs, parse_device};

/// Options of `cae-bench devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Devices to try (any `--device` spec); default: one per compiled-in backend.
    #[arg(long = "try", value_name = "DEVICE")]
    pub try_: Vec<String>,
    /// Print one JSON object per device.
    #[arg(long)]
    pub json: bool,
}

/// What happened on one device.
#[derive(Debug, serde::Serialize)]
struct Probe {
    device: String,
    ok: bool,
    detail: String,
}

/// `[[1, 2], [3, 4]] · [[5, 6], [7, 8]]` summed, on `device`: 19 + 22 + 43 + 50 = 134.
fn matmul_sum(device: &Device) -> f32 {
    let a = Tensor::<2>::from_data(TensorData::new(vec![1f32, 2., 3., 4.], [2, 2]), device);
    let b = Tensor::<2>::from_data(TensorData::new(vec![5f32, 6., 7., 8.], [2, 2]), device);
    a.matmul(b).sum().into_scalar::<f32>()
}

fn probe(spec: &str) -> Probe {
    let result = parse_device(spec).map_err(|e| e.to_string()).and_then(|d| {
        // A backend that finds no device panics inside burn; report it as this device's failure.
        std::panic::catch_unwind(|| matmul_sum(&d)).map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the backend panicked".into())
        })
    });
    match result {
        Ok(134.0) => Probe {
            device: spec.into(),
            ok: true,
            detail: "a 2×2 matrix product gave the CPU's result".into(),
        },
        Ok(v) => Probe {
            device: spec.into(),
            ok: false,
            detail: format!("a 2×2 matrix product summed to {v}, not 134"),
        },
        Err(e) => Probe {
            device: spec.into(),
            ok: false,
            detail: e.lines().next().unwrap_or("").to_string(),
        },
    }
}

/// Runs the command: exits non-zero when a device named with `--try` does not start.
pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let explicit = !args.try_.is_empty();
    let specs: Vec<String> = if explicit {
        args.try_.clone()
    } else {
        default_specs().into_iter().map(String::from).collect()
    };
    if !args.json {
        println!("compiled in: {}", compiled_backends().join(", "));
    }
    // Quiet the panic hook while probing: failures are reported in the table.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probes: Vec<Probe> = specs.iter().map(|s| probe(s)).collect();
    std::panic::set_hook(hook);
    for p in &probes {
        if args.json {
            println!("{}", serde_json::to_string(p)?);
        } else {
            let status = if p.ok { "ok" } else { "unavailable" };
            println!("{:<12} {:<12} {}", p.device, status, p.detail);
        }
    }
    let failed: Vec<&str> = probes
        .iter()
        .filter(|p| !p.ok)
        .map(|p| p.device.as_str())
        .collect();
    if explicit && !failed.is_empty() {
        anyhow::bail!("device(s) did not start: {}", failed.join(", "));
    }
    Ok(())
}
