//! Parity of the detection building blocks with torchvision 0.24.
//!
//! Runs every `detops_*.safetensors` in `tests/fixtures/reference/` (or in `$CAE_REFERENCE_DIR`)
//! through `cae_heads::detection::parity` and requires every group to match: values within 1e-5,
//! RoIAlign gradients within 1e-4, kept indices exactly. A perturbed copy must fail and name the
//! perturbed tensor.

use std::path::Path;

use cae_heads::detection::parity::run_detops_reference;
use cae_pretrain::parity::{add_to_f32, check_reference_files, edited_reference_copy};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

fn shipped_reference() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/detops_0.safetensors")
}

#[test]
fn detops_reference_files_match_torchvision() {
    check_reference_files(&["detops_"], 25, run_detops_reference).unwrap_or_else(|e| panic!("{e}"));
}

/// Writes a copy of `src` to `dst` with `edit` applied to the raw bytes of tensor `name`.
fn edited_copy(src: &Path, dst: &Path, name: &str, edit: impl Fn(Dtype, &mut [u8])) {
    edited_reference_copy(src, dst, name, edit).unwrap();
}

fn add_to_first_f32(delta: f32) -> impl Fn(Dtype, &mut [u8]) {
    add_to_f32(0, delta)
}

/// An edit of a tensor's raw bytes.
type Edit = Box<dyn Fn(Dtype, &mut [u8])>;

fn swap_first_two_i64(dtype: Dtype, data: &mut [u8]) {
    assert_eq!(dtype, Dtype::I64);
    let (a, b) = data.split_at_mut(8);
    a.swap_with_slice(&mut b[..8]);
}

#[test]
fn a_perturbed_reference_fails_and_names_the_tensor() {
    let src = shipped_reference();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("detops_perturbed.safetensors");
    let cases: Vec<(&str, Edit)> = vec![
        ("anchors.all", Box::new(add_to_first_f32(1.0))),
        ("box_coder.roi.decoded", Box::new(add_to_first_f32(1e-3))),
        ("iou.giou", Box::new(add_to_first_f32(5e-5))),
        ("nms.keep_0.5", Box::new(swap_first_two_i64)),
        ("batched_nms.keep_0.3", Box::new(swap_first_two_i64)),
        ("level_mapper.level", Box::new(|_, d: &mut [u8]| d[0] ^= 1)),
        ("paste.out", Box::new(add_to_first_f32(1e-3))),
        (
            "roi_align.aligned_s0.7.out",
            Box::new(add_to_first_f32(1e-4)),
        ),
        (
            "roi_align.legacy_s2.14.grad_features",
            Box::new(add_to_first_f32(1e-3)),
        ),
    ];
    for (tensor, edit) in cases {
        edited_copy(&src, &dst, tensor, edit);
        let report = run_detops_reference(&dst).expect("the perturbed file still runs");
        let fails: Vec<String> = report.failures().iter().map(|c| c.name.clone()).collect();
        assert_eq!(fails, vec![tensor.to_string()], "perturbing {tensor}");
    }
    // An input changed: the outputs computed from it no longer match (x1 of the first RoI moved
    // by half a feature pixel: every RoIAlign output and gradient).
    edited_copy(&src, &dst, "roi_align.rois", add_to_f32(1, 2.0));
    let report = run_detops_reference(&dst).unwrap();
    let fails = report.failures().len();
    assert_eq!(fails, 12, "a moved RoI: {}", report.summary());
}

#[test]
fn a_reference_without_its_settings_is_an_error_naming_the_file() {
    let src = shipped_reference();
    let bytes = std::fs::read(&src).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, TensorView<'_>)> = st.tensors();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("detops_no_notes.safetensors");
    std::fs::write(&dst, safetensors::serialize(views, None).unwrap()).unwrap();
    let err = run_detops_reference(&dst).unwrap_err().to_string();
    assert!(
        err.contains("detops_no_notes") && err.contains("notes"),
        "{err}"
    );
    std::fs::write(&dst, b"not a safetensors file").unwrap();
    assert!(run_detops_reference(&dst).is_err());
}

fn reverse_rows(data: &[u8], rows: usize) -> Vec<u8> {
    data.chunks(data.len() / rows)
        .rev()
        .flatten()
        .copied()
        .collect()
}

fn transpose4(data: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for c in 0..cols {
        for r in 0..rows {
            out.extend_from_slice(&data[4 * (r * cols + c)..4 * (r * cols + c) + 4]);
        }
    }
    out
}

/// A second reference file of the same format whose values follow exactly from the shipped
/// one: RoIs and NMS boxes in reverse order (outputs and kept indices mapped alike), IoU with
/// the two box sets swapped (transposed matrices).
#[test]
fn a_derived_reference_with_reordered_inputs_also_matches() {
    let bytes = std::fs::read(shipped_reference()).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let n_nms = st.tensor("nms.scores").unwrap().shape()[0] as i64;
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, v) in st.tensors() {
        let (dtype, mut shape, data) = (v.dtype(), v.shape().to_vec(), v.data().to_vec());
        let (name, data) = match name.as_str() {
            "iou.boxes1" => ("iou.boxes2".to_string(), data),
            "iou.boxes2" => ("iou.boxes1".to_string(), data),
            "iou.iou" | "iou.giou" => {
                let t = transpose4(&data, shape[0], shape[1]);
                shape.swap(0, 1);
                (name, t)
            }
            "nms.boxes" | "nms.scores" | "nms.labels" => {
                let d = reverse_rows(&data, shape[0]);
                (name, d)
            }
            n if n.starts_with("nms.keep_") || n.starts_with("batched_nms.keep_") => {
                let d = data
                    .chunks_exact(8)
                    .flat_map(|c| {
                        (n_nms - 1 - i64::from_le_bytes(c.try_into().unwrap())).to_le_bytes()
                    })
                    .collect();
                (name, d)
            }
            n if n == "roi_align.rois"
                || (n.starts_with("roi_align.")
                    && (n.ends_with(".out") || n.ends_with(".upstream"))) =>
            {
                let d = reverse_rows(&data, shape[0]);
                (name, d)
            }
            _ => (name, data),
        };
        owned.push((name, dtype, shape, data));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("detops_derived.safetensors");
    std::fs::write(
        &dst,
        safetensors::serialize(views, meta.metadata().clone()).unwrap(),
    )
    .unwrap();
    let report = run_detops_reference(&dst).unwrap();
    assert!(report.failures().is_empty(), "{}", report.summary());
    assert_eq!(report.checks.len(), 28);
}
