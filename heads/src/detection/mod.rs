//! Building blocks of Mask R-CNN (protocols.md §3), each checked against torchvision 0.24 by the
//! `detops_*` reference files (`tests/fixtures/reference/`, see [`parity`]).
//!
//! | block | module | torchvision |
//! |---|---|---|
//! | anchors of a 5-level FPN (sizes 32–512 × ratios 0.5 / 1 / 2, scalable) | [`anchors`] | `AnchorGenerator` |
//! | box coder, RPN weights (1, 1, 1, 1) and RoI-head weights (10, 10, 5, 5) | [`box_coder`] | `BoxCoder` |
//! | IoU and GIoU matrices | [`iou`] | `box_iou`, `generalized_box_iou` |
//! | NMS and per-class (batched) NMS | [`nms`] | `nms`, `batched_nms` |
//! | FPN level of a RoI | [`level`] | `LevelMapper` |
//! | RoIAlign (aligned or legacy, any sampling ratio), differentiable w.r.t. the features | [`roi_align`] | `roi_align` |
//! | pasting mask probabilities into the image | [`paste`] | `paste_masks_in_image` |
//!
//! Boxes are `[x1, y1, x2, y2]` in pixels, widths are `x2 − x1` (no `+1`), as in torchvision.
//! Everything but RoIAlign is index-heavy work on small data and runs on the CPU on plain
//! slices; RoIAlign is a gather + weighted sum of burn tensor ops, so autodiff gives its
//! gradient. Bad input (non-finite coordinates or scores, boxes with `x2 < x1`, mismatched
//! lengths) is a [`DetectionError`], never a panic.

pub mod anchors;
pub mod assign;
pub mod box_coder;
pub mod fpn;
pub mod iou;
pub mod level;
pub mod mask_rcnn;
pub mod multiscale;
pub mod nms;
pub mod parity;
pub mod paste;
pub mod roi_align;
pub mod roi_head;
pub mod rpn;

use std::path::PathBuf;

/// A box `[x1, y1, x2, y2]` in pixels.
pub type BBox = [f32; 4];

/// Errors of the detection building blocks.
#[derive(Debug, thiserror::Error)]
pub enum DetectionError {
    /// Input that the op cannot work on; the message names the argument and what is wrong.
    #[error("invalid input: {0}")]
    Input(String),
    /// A reference file that cannot be read or lacks what the parity check needs.
    #[error("{path}: {message}")]
    Reference {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Reading tensor data back from the backend.
    #[error("backend: {0}")]
    Backend(String),
}

/// `Result` with [`DetectionError`].
pub type Result<T> = std::result::Result<T, DetectionError>;

pub(crate) fn invalid(message: impl Into<String>) -> DetectionError {
    DetectionError::Input(message.into())
}

/// Checks that every coordinate is finite and `x1 ≤ x2`, `y1 ≤ y2` (zero-size boxes are allowed).
pub fn check_boxes(what: &str, boxes: &[BBox]) -> Result<()> {
    for (i, b) in boxes.iter().enumerate() {
        if b.iter().any(|v| !v.is_finite()) {
            return Err(invalid(format!("{what}[{i}] = {b:?} is not finite")));
        }
        if b[2] < b[0] || b[3] < b[1] {
            return Err(invalid(format!(
                "{what}[{i}] = {b:?} has x2 < x1 or y2 < y1"
            )));
        }
    }
    Ok(())
}

/// Checks that every coordinate is finite (boxes may be inverted, e.g. noisy regression targets).
pub fn check_finite(what: &str, boxes: &[BBox]) -> Result<()> {
    match boxes.iter().position(|b| b.iter().any(|v| !v.is_finite())) {
        Some(i) => Err(invalid(format!(
            "{what}[{i}] = {:?} is not finite",
            boxes[i]
        ))),
        None => Ok(()),
    }
}

/// Groups a flat `[n × 4]` slice into boxes (error when the length is not a multiple of 4).
pub fn boxes_from_flat(what: &str, flat: &[f32]) -> Result<Vec<BBox>> {
    if !flat.len().is_multiple_of(4) {
        return Err(invalid(format!(
            "{what}: {} values is not a multiple of 4",
            flat.len()
        )));
    }
    Ok(flat
        .chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_checks_name_the_bad_box() {
        assert!(check_boxes("b", &[[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]).is_ok());
        let e = check_boxes("b", &[[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 1.0, 1.0]]).unwrap_err();
        assert!(e.to_string().contains("b[1]"), "{e}");
        assert!(check_boxes("b", &[[f32::NAN, 0.0, 1.0, 1.0]]).is_err());
        assert!(check_finite("b", &[[2.0, 0.0, 1.0, 1.0]]).is_ok());
        assert!(check_finite("b", &[[2.0, f32::INFINITY, 1.0, 1.0]]).is_err());
        assert_eq!(boxes_from_flat("f", &[1.0; 8]).unwrap().len(), 2);
        assert!(boxes_from_flat("f", &[1.0; 7]).is_err());
    }
}
