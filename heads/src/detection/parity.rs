//! Parity with torchvision 0.24 on a `detops_*.safetensors` reference file
//! (`../shared/oracles/detection/make_oracle.py`; a copy in `tests/fixtures/reference/`).
//!
//! Every group of the file is recomputed from its inputs and compared: values within 1e-5
//! absolute (NaN only where the reference has NaN, e.g. the log of a negative target width in
//! the box coder), RoIAlign gradients within 1e-4, kept indices and levels exactly equal. The
//! settings that are not tensors (the anchors' image size, RoIAlign's spatial scale, the paste
//! padding) are read from the metadata `notes`.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use cae_pretrain::parity::{Check, ParityReport};
use cae_pretrain::weights::{read_file, tensor_to_f32, tensor_to_i64};
use safetensors::SafeTensors;

use super::anchors::AnchorConfig;
use super::box_coder::BoxCoder;
use super::iou::{box_iou, generalized_box_iou};
use super::level::LevelMapper;
use super::nms::{batched_nms, nms};
use super::paste::paste_masks_in_image;
use super::roi_align::{Roi, RoiAlignConfig, roi_align};
use super::{BBox, DetectionError, Result, boxes_from_flat};

/// Absolute tolerance on values.
pub const VALUE_TOL: f64 = 1e-5;
/// Absolute tolerance on RoIAlign's gradients.
pub const GRAD_TOL: f64 = 1e-4;

/// The FPN strides of the anchor group (P2–P6).
const ANCHOR_STRIDES: [usize; 5] = [4, 8, 16, 32, 64];

struct Reference<'a> {
    path: PathBuf,
    st: SafeTensors<'a>,
    notes: serde_json::Value,
}

impl Reference<'_> {
    fn bad(&self, message: impl Into<String>) -> DetectionError {
        DetectionError::Reference {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let v = self
            .st
            .tensor(name)
            .map_err(|e| self.bad(format!("tensor `{name}`: {e}")))?;
        let data = tensor_to_f32(&v).map_err(|e| self.bad(format!("`{name}`: {e}")))?;
        Ok((data, v.shape().to_vec()))
    }

    fn i64(&self, name: &str) -> Result<Vec<i64>> {
        let v = self
            .st
            .tensor(name)
            .map_err(|e| self.bad(format!("tensor `{name}`: {e}")))?;
        tensor_to_i64(&v).map_err(|e| self.bad(format!("`{name}`: {e}")))
    }

    fn boxes(&self, name: &str) -> Result<Vec<BBox>> {
        let (v, shape) = self.f32(name)?;
        if shape.len() != 2 || shape[1] != 4 {
            return Err(self.bad(format!("`{name}` has shape {shape:?}, not [n, 4]")));
        }
        boxes_from_flat(name, &v)
    }

    fn names(&self, prefix: &str, suffix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .st
            .names()
            .into_iter()
            .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// The text of `notes[group]`.
    fn note(&self, group: &str) -> Result<&str> {
        self.notes[group]
            .as_str()
            .ok_or_else(|| self.bad(format!("no `{group}` in the metadata notes")))
    }

    /// The token after `key` in `notes[group]` (e.g. `spatial_scale 0.25`, `padding=1`).
    fn note_token(&self, group: &str, key: &str) -> Result<&str> {
        let text = self.note(group)?;
        let start = text
            .find(key)
            .map(|i| i + key.len())
            .ok_or_else(|| self.bad(format!("notes `{group}` do not give `{key}`")))?;
        let rest = &text[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        Ok(&rest[..end])
    }
}

/// Compares float values (NaN must be where the reference has NaN).
fn compare(name: &str, ours: &[f32], reference: &[f32], shape: &[usize], tol: f64) -> Check {
    let mut check = Check {
        name: name.to_string(),
        max_abs_err: 0.0,
        tol,
        passed: true,
        note: None,
    };
    if ours.len() != reference.len() {
        check.max_abs_err = f64::INFINITY;
        check.passed = false;
        check.note = Some(format!(
            "{} values, reference {} ({shape:?})",
            ours.len(),
            reference.len()
        ));
        return check;
    }
    let mut nan_mismatch = 0usize;
    for (&a, &b) in ours.iter().zip(reference) {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => {}
            (false, false) => {
                let d = (f64::from(a) - f64::from(b)).abs();
                if d.is_nan() || (a.is_infinite() && a == b) {
                    // inf − inf: equal infinities pass, others count as infinite error.
                    if a != b {
                        check.max_abs_err = f64::INFINITY;
                    }
                } else {
                    check.max_abs_err = check.max_abs_err.max(d);
                }
            }
            _ => nan_mismatch += 1,
        }
    }
    if nan_mismatch > 0 {
        check.note = Some(format!("{nan_mismatch} values are NaN on one side only"));
        check.max_abs_err = f64::INFINITY;
    }
    check.passed = check.max_abs_err <= tol;
    check
}

/// Compares integers exactly; the error is the number of differing positions.
fn compare_exact(name: &str, ours: &[i64], reference: &[i64]) -> Check {
    let differing = ours.iter().zip(reference).filter(|(a, b)| a != b).count();
    let note = (ours.len() != reference.len()).then(|| {
        format!(
            "{} values, reference {}: {ours:?} vs {reference:?}",
            ours.len(),
            reference.len()
        )
    });
    let err = if note.is_some() {
        f64::INFINITY
    } else {
        differing as f64
    };
    Check {
        name: name.to_string(),
        max_abs_err: err,
        tol: 0.0,
        passed: err == 0.0,
        note: note
            .or_else(|| (differing > 0).then(|| format!("ours {ours:?}, reference {reference:?}"))),
    }
}

fn flat(boxes: &[BBox]) -> Vec<f32> {
    boxes.iter().flatten().copied().collect()
}

fn indices(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&i| i as i64).collect()
}

/// Runs every group of the `detops_*` reference file at `path` and compares the results.
pub fn run_detops_reference(path: &Path) -> Result<ParityReport> {
    let bad = |message: String| DetectionError::Reference {
        path: path.to_path_buf(),
        message,
    };
    let bytes = read_file(path).map_err(|e| bad(e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let notes = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("notes"))
        .ok_or_else(|| bad("no `notes` in the metadata".into()))?;
    let notes: serde_json::Value =
        serde_json::from_str(notes).map_err(|e| bad(format!("metadata `notes`: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let r = Reference {
        path: path.to_path_buf(),
        st,
        notes,
    };
    let mut report = ParityReport {
        kind: "detops".into(),
        checks: Vec::new(),
    };
    check_anchors(&r, &mut report)?;
    check_box_coder(&r, &mut report)?;
    check_iou(&r, &mut report)?;
    check_nms(&r, &mut report)?;
    check_levels(&r, &mut report)?;
    check_paste(&r, &mut report)?;
    check_roi_align(&r, &mut report)?;
    Ok(report)
}

fn check_anchors(r: &Reference<'_>, report: &mut ParityReport) -> Result<()> {
    let image = r.note_token("anchors", "image ")?;
    let (h, w) = image
        .split_once('x')
        .and_then(|(h, w)| Some((h.parse::<usize>().ok()?, w.parse::<usize>().ok()?)))
        .ok_or_else(|| r.bad(format!("notes `anchors`: image size `{image}` is not HxW")))?;
    let grids: Vec<(usize, usize)> = ANCHOR_STRIDES.iter().map(|s| (h / s, w / s)).collect();
    let cfg = AnchorConfig::fpn();
    let ours = cfg.generate((h, w), &grids)?;
    let (reference, shape) = r.f32("anchors.all")?;
    report.checks.push(compare(
        "anchors.all",
        &flat(&ours),
        &reference,
        &shape,
        VALUE_TOL,
    ));
    if let Some(counts) = r.notes["anchors_counts"].as_array() {
        let want: Vec<i64> = counts.iter().filter_map(|c| c.as_i64()).collect();
        let got: Vec<i64> = cfg.level_counts(&grids).iter().map(|&c| c as i64).collect();
        report
            .checks
            .push(compare_exact("anchors_counts", &got, &want));
    }
    Ok(())
}

fn check_box_coder(r: &Reference<'_>, report: &mut ParityReport) -> Result<()> {
    let props = r.boxes("box_coder.proposals")?;
    let targets = r.boxes("box_coder.targets")?;
    for (name, coder) in [("roi", BoxCoder::roi_head()), ("rpn", BoxCoder::rpn())] {
        let key = format!("box_coder.{name}.deltas");
        let (want, shape) = r.f32(&key)?;
        let ours = coder.encode(&targets, &props)?;
        report
            .checks
            .push(compare(&key, &flat(&ours), &want, &shape, VALUE_TOL));
        let deltas = r.boxes(&format!("box_coder.{name}.rand_deltas"))?;
        let key = format!("box_coder.{name}.decoded");
        let (want, shape) = r.f32(&key)?;
        let ours = coder.decode(&deltas, &props)?;
        report
            .checks
            .push(compare(&key, &flat(&ours), &want, &shape, VALUE_TOL));
    }
    Ok(())
}

fn check_iou(r: &Reference<'_>, report: &mut ParityReport) -> Result<()> {
    let b1 = r.boxes("iou.boxes1")?;
    let b2 = r.boxes("iou.boxes2")?;
    let (want, shape) = r.f32("iou.iou")?;
    let ours = box_iou(&b1, &b2)?;
    report
        .checks
        .push(compare("iou.iou", &ours, &want, &shape, VALUE_TOL));
    let (want, shape) = r.f32("iou.giou")?;
    let ours = generalized_box_iou(&b1, &b2)?;
    report
        .checks
        .push(compare("iou.giou", &ours, &want, &shape, VALUE_TOL));
    Ok(())
}

fn threshold_of(r: &Reference<'_>, key: &str) -> Result<f64> {
    key.rsplit_once("keep_")
        .and_then(|(_, t)| t.parse::<f64>().ok())
        .ok_or_else(|| r.bad(format!("`{key}` does not end in keep_<threshold>")))
}

fn check_nms(r: &Reference<'_>, report: &mut ParityReport) -> Result<()> {
    let boxes = r.boxes("nms.boxes")?;
    let (scores, _) = r.f32("nms.scores")?;
    let labels = r.i64("nms.labels")?;
    let plain = r.names("nms.keep_", "");
    let batched = r.names("batched_nms.keep_", "");
    if plain.is_empty() || batched.is_empty() {
        return Err(r.bad("no nms.keep_* or batched_nms.keep_* tensors"));
    }
    for key in plain {
        let ours = nms(&boxes, &scores, threshold_of(r, &key)?)?;
        report
            .checks
            .push(compare_exact(&key, &indices(&ours), &r.i64(&key)?));
    }
    for key in batched {
        let ours = batched_nms(&boxes, &scores, &labels, threshold_of(r, &key)?)?;
        report
            .checks
            .push(compare_exact(&key, &indices(&ours), &r.i64(&key)?));
    }
    Ok(())
}

fn check_levels(r: &Reference<'_>, report: &mut ParityReport) -> Result<()> {
    let boxes = r.boxes("level_mapper.boxes")?;
    let ours = LevelMapper::fpn().levels(&boxes)?;
    report.checks.push(compare_exact(
        "level_mapper.level",
        &indices(&ours),
        &r.i64("level_mapper.level")?,
    ));
    Ok(())
}

fn check_paste(r: &Reference<'_>, report: &mut ParityReport) -> Result<()> {
    let padding: usize = r
        .note_token("paste", "padding=")?
        .parse()
        .map_err(|e| r.bad(format!("notes `paste`: padding: {e}")))?;
    let (masks, mshape) = r.f32("paste.masks")?;
    let boxes = r.boxes("paste.boxes")?;
    let (want, shape) = r.f32("paste.out")?;
    if mshape.len() != 4 || mshape[1] != 1 || mshape[2] != mshape[3] || shape.len() != 4 {
        return Err(r.bad(format!(
            "paste.masks {mshape:?} is not [n, 1, M, M] or paste.out {shape:?} not [n, 1, H, W]"
        )));
    }
    let ours = paste_masks_in_image(&masks, mshape[2], &boxes, (shape[2], shape[3]), padding)?;
    report
        .checks
        .push(compare("paste.out", &ours, &want, &shape, VALUE_TOL));
    Ok(())
}

fn check_roi_align(r: &Reference<'_>, report: &mut ParityReport) -> Result<()> {
    let scale: f32 = r
        .note_token("roi_align", "spatial_scale ")?
        .parse()
        .map_err(|e| r.bad(format!("notes `roi_align`: spatial_scale: {e}")))?;
    let (feat, fshape) = r.f32("roi_align.features")?;
    let (rois_flat, rshape) = r.f32("roi_align.rois")?;
    if fshape.len() != 4 || rshape.len() != 2 || rshape[1] != 5 {
        return Err(r.bad(format!(
            "roi_align.features {fshape:?} is not [N, C, H, W] or roi_align.rois {rshape:?} not [R, 5]"
        )));
    }
    let mut rois = Vec::with_capacity(rshape[0]);
    for (i, v) in rois_flat.chunks_exact(5).enumerate() {
        if !(v[0] >= 0.0 && v[0].fract() == 0.0) {
            return Err(r.bad(format!("roi_align.rois[{i}] has batch index {}", v[0])));
        }
        rois.push(Roi {
            batch: v[0] as usize,
            bbox: [v[1], v[2], v[3], v[4]],
        });
    }
    let outs = r.names("roi_align.", ".out");
    if outs.is_empty() {
        return Err(r.bad("no roi_align.*.out tensors"));
    }
    let device = cae_pretrain::device::test_device().autodiff();
    for key in outs {
        // roi_align.<aligned|legacy>_s<sampling>.<size>.out
        let parts: Vec<&str> = key.split('.').collect();
        let parsed = (parts.len() == 4)
            .then(|| {
                let (kind, s) = parts[1].split_once("_s")?;
                let aligned = match kind {
                    "aligned" => true,
                    "legacy" => false,
                    _ => return None,
                };
                Some((
                    aligned,
                    s.parse::<usize>().ok()?,
                    parts[2].parse::<usize>().ok()?,
                ))
            })
            .flatten();
        let (aligned, sampling_ratio, size) =
            parsed.ok_or_else(|| r.bad(format!("cannot read the settings of `{key}`")))?;
        let cfg = RoiAlignConfig {
            output_size: (size, size),
            spatial_scale: scale,
            sampling_ratio,
            aligned,
        };
        let prefix = &key[..key.len() - ".out".len()];
        let features = Tensor::<4>::from_data(
            TensorData::new(feat.clone(), [fshape[0], fshape[1], fshape[2], fshape[3]]),
            &device,
        )
        .require_grad();
        let out = roi_align(features.clone(), &rois, &cfg)?;
        let out_shape = out.dims();
        let (upstream, ushape) = r.f32(&format!("{prefix}.upstream"))?;
        if ushape != out_shape {
            return Err(r.bad(format!(
                "{prefix}.upstream has shape {ushape:?}, the output {out_shape:?}"
            )));
        }
        let up = Tensor::<4>::from_data(TensorData::new(upstream, out_shape), &device);
        let grads = (out.clone() * up).sum().backward();
        let (want, shape) = r.f32(&key)?;
        report
            .checks
            .push(compare(&key, &to_vec(out)?, &want, &shape, VALUE_TOL));
        let gkey = format!("{prefix}.grad_features");
        let grad = features
            .grad(&grads)
            .ok_or_else(|| DetectionError::Backend(format!("no gradient for `{gkey}`")))?;
        let (want, shape) = r.f32(&gkey)?;
        report
            .checks
            .push(compare(&gkey, &to_vec(grad)?, &want, &shape, GRAD_TOL));
    }
    Ok(())
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| DetectionError::Backend(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_hold_nan_and_lengths_to_account() {
        let c = compare("x", &[1.0, f32::NAN], &[1.0 + 5e-6, f32::NAN], &[2], 1e-5);
        assert!(c.passed, "{c:?}");
        let c = compare("x", &[1.0, 0.0], &[1.0, f32::NAN], &[2], 1e-5);
        assert!(!c.passed && c.note.is_some());
        assert!(!compare("x", &[1.0], &[1.0, 2.0], &[2], 1e-5).passed);
        assert!(!compare("x", &[1.0], &[1.0 + 2e-5], &[1], 1e-5).passed);
        assert!(compare("x", &[f32::INFINITY], &[f32::INFINITY], &[1], 1e-5).passed);
        assert!(!compare("x", &[f32::INFINITY], &[f32::NEG_INFINITY], &[1], 1e-5).passed);
        assert!(compare_exact("k", &[3, 1], &[3, 1]).passed);
        assert!(!compare_exact("k", &[3, 1], &[1, 3]).passed);
        assert!(!compare_exact("k", &[3], &[3, 1]).passed);
    }
}
