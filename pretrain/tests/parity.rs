//! Parity with the official PyTorch implementations.
//!
//! Runs every `cae_*.safetensors` and `dvae_*.safetensors` in `tests/fixtures/reference/` (or in
//! `$CAE_REFERENCE_DIR`) and compares every output and gradient with the tolerances of
//! `cae_pretrain::parity`. A failure names the tensor and its worst error.

use std::path::{Path, PathBuf};

use cae_pretrain::parity::{reference_dir, run_reference};

fn reference_files(prefixes: &[&str]) -> Vec<PathBuf> {
    let dir = reference_dir();
    cae_pretrain::parity::reference_files(&dir, prefixes)
        .unwrap_or_else(|e| panic!("reading the reference folder {}: {e}", dir.display()))
}

fn check_all(prefixes: &[&str]) {
    let files = reference_files(prefixes);
    if files.is_empty() && std::env::var_os("CAE_REFERENCE_DIR").is_some() {
        // A user folder may hold only some kinds of reference files.
        eprintln!("no {prefixes:?} files in {}", reference_dir().display());
        return;
    }
    assert!(
        !files.is_empty(),
        "no {prefixes:?} reference files in {}",
        reference_dir().display()
    );
    let mut failures = Vec::new();
    for file in &files {
        match run_reference(file) {
            Ok(report) => {
                eprintln!("{}: {}", file.display(), report.summary());
                if !report.failures().is_empty() {
                    failures.push(format!("{}:\n{}", file.display(), report.summary()));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn official_cae_and_dalle_reference_files_match() {
    check_all(&["cae_", "dvae_"]);
}

#[test]
fn official_beit_reference_files_match() {
    check_all(&["beit_"]);
}

/// Copies a reference file with one tensor changed by `delta` at element 0.
fn perturbed_copy(src: &Path, dst: &Path, tensor: &str, delta: f32) {
    let bytes = std::fs::read(src).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let entry = owned
        .iter_mut()
        .find(|(n, ..)| n == tensor)
        .expect("tensor present");
    let v = f32::from_le_bytes(entry.3[0..4].try_into().unwrap()) + delta;
    entry.3[0..4].copy_from_slice(&v.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, meta.metadata().clone()).unwrap();
    std::fs::write(dst, out).unwrap();
}

#[test]
fn a_perturbed_reference_makes_the_check_fail_and_names_the_tensor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference/cae_tiny_a.safetensors");
    let dir = tempfile::tempdir().unwrap();
    // An output off by 1e-3 (10× the tolerance) and a gradient off by far more than its bound.
    for (tensor, delta) in [
        ("output.latent_pred", 1e-3f32),
        (
            "grad.regresser.regressor_blocks.1.cross_attn.q.weight",
            1e-2,
        ),
        ("state.encoder.blocks.0.mlp.fc1.weight", 0.5),
    ] {
        let dst = dir.path().join("cae_perturbed.safetensors");
        perturbed_copy(&src, &dst, tensor, delta);
        let report = run_reference(&dst).expect("the perturbed file still runs");
        let fails: Vec<String> = report.failures().iter().map(|c| c.name.clone()).collect();
        assert!(!fails.is_empty(), "perturbing {tensor} went unnoticed");
        if tensor.starts_with("output.") || tensor.starts_with("grad.") {
            assert_eq!(fails, vec![tensor.to_string()], "perturbing {tensor}");
        }
        assert!(
            report.summary().contains("exceeds tolerance"),
            "{}",
            report.summary()
        );
    }
}
