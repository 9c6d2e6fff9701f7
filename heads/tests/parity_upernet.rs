//! Parity of the segmentation neck and heads with mmsegmentation 1.2.2.
//!
//! Runs every `upernet_*.safetensors` in `tests/fixtures/reference/` (or in `$CAE_REFERENCE_DIR`)
//! through [`run_upernet_reference`]: the neck's four levels, the UPerHead and auxiliary logits
//! and the loss at 1e-4, every parameter and input gradient at `1e-3·max|g_ref| + 1e-6`.

use std::path::Path;

use cae_heads::segmentation::parity::run_upernet_reference;
use cae_pretrain::parity::{add_to_f32, check_reference_files, edited_reference_copy};

#[test]
fn mmseg_upernet_reference_files_match() {
    // Every output, the loss and every gradient of each file are compared (4 + 3 + 4 at least).
    check_reference_files(&["upernet_"], 4 + 3 + 4, run_upernet_reference)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Copies a reference file with one tensor changed by `delta` at element 0.
fn perturbed_copy(src: &Path, dst: &Path, tensor: &str, delta: f32) {
    edited_reference_copy(src, dst, tensor, add_to_f32(0, delta)).unwrap();
}

#[test]
fn a_perturbed_reference_fails_and_names_the_tensor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference/upernet_0.safetensors");
    let dir = tempfile::tempdir().unwrap();
    for (tensor, delta) in [
        // An output off by 10× the tolerance, a gradient far past its bound, and a weight.
        ("output.aux_logits", 1e-3f32),
        ("grad.decode_head.psp_modules.2.1.conv.weight", 1.0),
        ("grad.input.features.1", 1.0),
        ("state.neck.upsample_4x.1.running_var", 0.5),
    ] {
        let dst = dir.path().join("upernet_perturbed.safetensors");
        perturbed_copy(&src, &dst, tensor, delta);
        let report = run_upernet_reference(&dst).expect("the perturbed file still runs");
        let fails: Vec<String> = report.failures().iter().map(|c| c.name.clone()).collect();
        assert!(!fails.is_empty(), "perturbing {tensor} went unnoticed");
        if !tensor.starts_with("state.") {
            assert_eq!(fails, vec![tensor.to_string()], "perturbing {tensor}");
        }
        assert!(
            report.summary().contains("exceeds tolerance"),
            "{}",
            report.summary()
        );
    }
}
