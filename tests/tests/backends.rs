//! The same short runs on another backend give the same numbers as on `flex` with its fused
//! kernels, within float32 rounding.
//!
//! The device under test is `$CAE_TEST_DEVICE` (`vulkan:cpu`, `tch:cpu`, … in CI; see
//! `cae_pretrain::device::parse_device`). Unset, it is `flex` with `CAE_UNFUSED=1`: the composed
//! path of burn primitives that every GPU backend takes, since the fused kernels are `flex`-only.
//! Each test runs the real command line twice from the same seed (the reference on `cpu`, then the
//! device under test) and compares the training losses step by step and every tensor of the
//! final checkpoint.
//!
//! Tolerances. Model initialisation, data, masks and drop-path draws come from host RNGs seeded
//! by `--seed`, so the two runs differ only in float32 rounding (summation order inside matrix
//! products, reductions and fused versus composed kernels: a relative 1e-7..1e-6 per operation).
//! After a few AdamW steps that grows, because AdamW divides the first moment by the square root
//! of the second: a gradient element whose rounding differs in the last bits moves its weight by
//! nearly the same `lr` either way, but a near-zero one can move by a visibly different fraction
//! of `lr`. Hence: the first step's loss within 1e-4 relative (forward only), later losses within
//! 1e-3 relative, and each checkpoint tensor within `max(lr, 1e-4·max|w|)` (one learning-rate step
//! per element over the whole run), with the mean difference a tenth of that. Measured on
//! `tch:cpu`: losses 1.5e-7 (pretraining) and 6.4e-8 (UperNet) relative apart, checkpoints 4.3e-7
//! and 1.0e-4 at worst.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{cli, metrics, world};

/// The device under test, and the environment that selects it for the CLI.
fn device_under_test() -> (String, Vec<(&'static str, &'static str)>) {
    match std::env::var("CAE_TEST_DEVICE") {
        Ok(d) if !d.is_empty() && d != "cpu" && d != "flex" => (d, vec![]),
        _ => ("cpu".into(), vec![("CAE_UNFUSED", "1")]),
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = cli().args(args).envs(env.iter().copied()).output().unwrap();
    assert!(
        out.status.success(),
        "cae-bench {args:?} {env:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json output")
}

/// Every float tensor of a safetensors file, as f32.
fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.names()
        .into_iter()
        .filter_map(|n| {
            let t = st.tensor(n).unwrap();
            (t.dtype() == safetensors::Dtype::F32).then(|| {
                (
                    n.to_string(),
                    cae_pretrain::weights::tensor_to_f32(&t).unwrap(),
                )
            })
        })
        .collect()
}

/// Asserts that two checkpoints hold the same tensors within `abs` (or 1e-4 of the tensor's
/// largest value), with a mean difference below a tenth of that.
fn assert_checkpoints_close(reference: &Path, other: &Path, abs: f32, what: &str) {
    let (a, b) = (tensors(reference), tensors(other));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: tensor names"
    );
    assert!(!a.is_empty(), "{what}: no float tensors");
    // The largest difference as a share of its tolerance, reported for the record (--nocapture).
    let mut closest = (0f32, String::new());
    for (name, x) in &a {
        let y = &b[name];
        assert_eq!(x.len(), y.len(), "{what}: {name} size");
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let tol = abs.max(1e-4 * scale);
        let (mut worst, mut sum) = (0f32, 0f64);
        for (p, q) in x.iter().zip(y) {
            assert!(q.is_finite(), "{what}: {name} is not finite");
            let d = (p - q).abs();
            worst = worst.max(d);
            sum += d as f64;
        }
        let mean = sum / x.len() as f64;
        if worst / tol >= closest.0 {
            closest = (
                worst / tol,
                format!("{name}: {worst:.3e} (tolerance {tol:.3e})"),
            );
        }
        assert!(
            worst <= tol && mean <= tol as f64 / 10.0,
            "{what}: {name} differs by {worst:.3e} at worst, {mean:.3e} on average (tolerance {tol:.3e})"
        );
    }
    eprintln!("{what}: checkpoint, largest difference {}", closest.1);
}

fn assert_losses_close(reference: &[f64], other: &[f64], what: &str) {
    assert_eq!(reference.len(), other.len(), "{what}: number of losses");
    assert!(!reference.is_empty(), "{what}: no losses");
    let worst = reference
        .iter()
        .zip(other)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1e-3))
        .fold(0f64, f64::max);
    eprintln!("{what}: losses, largest relative difference {worst:.3e}");
    for (i, (a, b)) in reference.iter().zip(other).enumerate() {
        let rel = if i == 0 { 1e-4 } else { 1e-3 };
        assert!(
            b.is_finite() && (a - b).abs() <= rel * a.abs().max(1e-3),
            "{what}: loss {i} is {b} on the device under test, {a} on flex (relative tolerance {rel})"
        );
    }
}

#[test]
fn a_short_pretraining_run_matches_flex() {
    let (device, env) = device_under_test();
    let dir = tempfile::tempdir().unwrap();
    let data = world(&dir.path().join("w"), 120, 3);
    let data = data.to_str().unwrap();
    let steps = 8;
    let mut losses = Vec::new();
    for (name, dev, env) in [("ref", "cpu", &[][..]), ("dut", device.as_str(), &env[..])] {
        let out = dir.path().join(name);
        let v = run(
            &[
                "pretrain",
                "--preset",
                "mini",
                "--data",
                data,
                "--out",
                out.to_str().unwrap(),
                "--steps",
                &steps.to_string(),
                "--batch",
                "8",
                "--device",
                dev,
                "--no-progress",
                "--json",
            ],
            env,
        );
        assert_eq!(v["steps"], steps);
        let l: Vec<f64> = metrics(&out)
            .iter()
            .map(|m| m["loss"].as_f64().expect("loss"))
            .collect();
        losses.push(l);
    }
    let what = format!("pretraining on {device} {env:?}");
    assert_losses_close(&losses[0], &losses[1], &what);
    // lr is 1.875e-4 at batch 8 (blr 6e-3): one lr step per element over the run.
    assert_checkpoints_close(
        &dir.path().join("ref/encoder.safetensors"),
        &dir.path().join("dut/encoder.safetensors"),
        1.875e-4,
        &what,
    );
}

#[test]
fn a_short_upernet_run_matches_flex() {
    let (device, env) = device_under_test();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    world(&root, 120, 3);
    let data = root.join("ade");
    let mut runs = Vec::new();
    for (name, dev, env) in [("ref", "cpu", &[][..]), ("dut", device.as_str(), &env[..])] {
        let out = dir.path().join(name);
        let v = run(
            &[
                "segment",
                "--encoder",
                "random",
                "--preset",
                "test",
                "--data",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--device",
                dev,
                "--json",
            ],
            env,
        );
        assert_eq!(v["complete"], true);
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap())
                .unwrap();
        let losses: Vec<f64> = record["per_epoch"]
            .as_array()
            .expect("per_epoch")
            .iter()
            .map(|e| e["metrics"]["loss"].as_f64().expect("per-epoch loss"))
            .collect();
        runs.push((v, losses));
    }
    let what = format!("UperNet on {device} {env:?}");
    assert_losses_close(&runs[0].1, &runs[1].1, &what);
    let iters = runs[0].0["iters"].as_u64().unwrap();
    let ckpt = format!("checkpoints/ckpt-{iters:08}.safetensors");
    // The test recipe's AdamW lr is at most 1e-3: one lr step per element over the run.
    assert_checkpoints_close(
        &dir.path().join("ref").join(&ckpt),
        &dir.path().join("dut").join(&ckpt),
        1e-3,
        &what,
    );
    // mIoU counts whole pixels: equal unless a near-tie logit flips, which a few pixels can do.
    let (a, b) = (
        runs[0].0["mIoU"].as_f64().unwrap(),
        runs[1].0["mIoU"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1.0, "{what}: mIoU {b} vs {a} on flex");
}

/// Mixed precision through the command line, on the device under test: the same short `mini`
/// run in f32 and with `--precision bf16` (matrix products in bf16, f32 master weights:
/// `cae_pretrain::autocast`). The bf16 run must really differ (its products were rounded), stay
/// near the f32 run (each step's loss within 1e-2 relative: bf16's rounding of 2⁻⁹ per operand,
/// grown over a few AdamW steps, where both runs see the same data, masks and drop path), write
/// f32 weights, and name its precision in `config.toml` and in its record's settings. A device
/// without bf16 tensors must refuse the run, naming the precision, before anything is written.
#[test]
fn a_bf16_pretraining_run_stays_near_f32_on_f32_master_weights() {
    let (device, env) = device_under_test();
    let dir = tempfile::tempdir().unwrap();
    let data = world(&dir.path().join("w"), 120, 3);
    let data = data.to_str().unwrap();
    let steps = 6;
    let args = |out: &Path, precision: &'static str| {
        vec![
            "pretrain".to_string(),
            "--preset".into(),
            "mini".into(),
            "--data".into(),
            data.into(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--steps".into(),
            steps.to_string(),
            "--batch".into(),
            "8".into(),
            "--device".into(),
            device.clone(),
            "--precision".into(),
            precision.into(),
            "--no-progress".into(),
            "--json".into(),
        ]
    };
    let bf16_out = dir.path().join("bf16");
    let bf16_args = args(&bf16_out, "bf16");
    let bf16_args: Vec<&str> = bf16_args.iter().map(String::as_str).collect();
    let bf16 = cli()
        .args(&bf16_args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    if !bf16.status.success() {
        let err = String::from_utf8_lossy(&bf16.stderr);
        assert!(
            err.contains("no bf16 tensors") && !bf16_out.join("encoder.safetensors").exists(),
            "bf16 on {device} failed without naming the precision:\n{err}"
        );
        eprintln!("bf16 on {device}: refused ({})", err.trim());
        return;
    }
    let f32_out = dir.path().join("f32");
    let f32_args = args(&f32_out, "f32");
    let f32_args: Vec<&str> = f32_args.iter().map(String::as_str).collect();
    run(&f32_args, &env);
    let losses = |out: &Path| -> Vec<f64> {
        metrics(out)
            .iter()
            .map(|m| m["loss"].as_f64().expect("loss"))
            .collect()
    };
    let (a, b) = (losses(&f32_out), losses(&bf16_out));
    assert_eq!((a.len(), b.len()), (steps, steps));
    let rel: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / x.abs())
        .collect();
    eprintln!("bf16 on {device}: losses f32 {a:?}, bf16 {b:?}, relative {rel:?}");
    assert!(
        rel[0] > 0.0,
        "bf16 on {device}: the first loss equals f32's"
    );
    for (i, r) in rel.iter().enumerate() {
        assert!(
            *r < 1e-2,
            "bf16 on {device}: loss {i} is {} vs {} in f32",
            b[i],
            a[i]
        );
    }
    // f32 master weights: every float tensor the run wrote is f32 (and finite).
    let bytes = std::fs::read(bf16_out.join("encoder.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(!st.names().is_empty());
    for name in st.names() {
        assert_eq!(
            st.tensor(name).unwrap().dtype(),
            safetensors::Dtype::F32,
            "{name}"
        );
    }
    assert!(
        tensors(&bf16_out.join("encoder.safetensors"))
            .values()
            .all(|v| v.iter().all(|x| x.is_finite()))
    );
    let config = std::fs::read_to_string(bf16_out.join("config.toml")).unwrap();
    assert!(config.contains("precision = \"bf16\""), "{config}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bf16_out.join("record.json")).unwrap())
            .unwrap();
    assert_eq!(
        record["protocol"]["settings"]["precision"], "bf16",
        "{record}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f32_out.join("record.json")).unwrap())
            .unwrap();
    assert!(
        record["protocol"]["settings"]["model"].is_object(),
        "{record}"
    );
    assert!(
        record["protocol"]["settings"].get("precision").is_none(),
        "{record}"
    );
}
