//! Parity of the segmentation neck and heads with mmsegmentation 1.2.2.
//!
//! Runs every `upernet_*.safetensors` in `tests/fixtures/reference/` (or in `$CAE_REFERENCE_DIR`)
//! through [`run_upernet_reference`]: the neck's four levels, the UPerHead and auxiliary logits
//! and the loss at 1e-4, every parameter and input gradient at `1e-3·max|g_ref| + 1e-6`.

use std::path::{Path, PathBuf};

use cae_heads::segmentation::parity::run_upernet_reference;
use cae_pretrain::parity::{reference_dir, reference_files};

fn files() -> Vec<PathBuf> {
    let dir = reference_dir();
    reference_files(&dir, &["upernet_"])
        .unwrap_or_else(|e| panic!("reading the reference folder {}: {e}", dir.display()))
}

#[test]
fn mmseg_upernet_reference_files_match() {
    let files = files();
    if files.is_empty() && std::env::var_os("CAE_REFERENCE_DIR").is_some() {
        // A user folder may hold only other kinds of reference files.
        eprintln!("no upernet_* files in {}", reference_dir().display());
        return;
    }
    assert!(
        !files.is_empty(),
        "no upernet_* reference files in {}",
        reference_dir().display()
    );
    let mut failures = Vec::new();
    for file in &files {
        match run_upernet_reference(file) {
            Ok(report) => {
                eprintln!("{}: {}", file.display(), report.summary());
                // Every output, the loss and every gradient of the file were compared.
                assert!(report.checks.len() >= 4 + 3 + 4, "{}", report.summary());
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
