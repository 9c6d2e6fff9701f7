//! Parity with the official PyTorch implementations.
//!
//! Runs every `cae_*.safetensors` and `dvae_*.safetensors` in `tests/fixtures/reference/` (or in
//! `$CAE_REFERENCE_DIR`) and compares every output and gradient with the tolerances of
//! `cae_pretrain::parity`. A failure names the tensor and its worst error.

use std::path::Path;

use cae_pretrain::parity::{
    add_to_f32, check_reference_files, edited_reference_copy, run_reference,
};

fn check_all(prefixes: &[&str]) {
    check_reference_files(prefixes, 1, run_reference).unwrap_or_else(|e| panic!("{e}"));
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
    edited_reference_copy(src, dst, tensor, add_to_f32(0, delta)).unwrap();
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
