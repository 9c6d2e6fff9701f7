//! Non-maximum suppression, written here rather than taken from burn's `vision` feature, which
//! would pull `image`'s default formats into every build (ARCHITECTURE.md).
//!
//! Same semantics as torchvision's CPU kernel: boxes are visited by decreasing score (a stable
//! sort, so equal scores keep their index order); a visited box that is not suppressed is kept
//! and suppresses every later box whose IoU with it is strictly greater than the threshold.
//! The IoU is computed in f32 and compared in f64, as torchvision does. The kept indices come
//! back in decreasing score order. [`batched_nms`] suppresses only within a label (torchvision's
//! `batched_nms`). It compares the boxes as given; torchvision, for fewer than 1000 boxes on the
//! CPU, instead shifts each label's boxes by `label · (max coordinate + 1)` and runs one NMS, which
//! rounds the shifted coordinates: the two can only disagree on an IoU within f32 rounding of the
//! threshold (the reference files agree exactly).

use super::iou::box_area;
use super::{BBox, Result, check_boxes, invalid};

fn check(boxes: &[BBox], scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>> {
    if boxes.len() != scores.len() {
        return Err(invalid(format!(
            "{} boxes and {} scores",
            boxes.len(),
            scores.len()
        )));
    }
    if iou_threshold.is_nan() {
        return Err(invalid("the NMS IoU threshold is NaN"));
    }
    check_boxes("boxes", boxes)?;
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(invalid(format!("scores[{i}] is NaN")));
    }
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    Ok(order)
}

/// Suppression over `order` (indices sorted by decreasing score); `same_group(i, j)` says whether
/// `i` may suppress `j`.
fn suppress(
    boxes: &[BBox],
    order: &[usize],
    iou_threshold: f64,
    same_group: impl Fn(usize, usize) -> bool,
) -> Vec<usize> {
    let areas: Vec<f32> = boxes.iter().map(box_area).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &boxes[i];
        for &j in &order[pos + 1..] {
            if suppressed[j] || !same_group(i, j) {
                continue;
            }
            let b = &boxes[j];
            let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            let inter = w * h;
            let ovr = inter / (areas[i] + areas[j] - inter);
            // 0/0 (two empty boxes) is NaN and suppresses nothing, as in torchvision.
            if f64::from(ovr) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// Indices of the boxes NMS keeps, by decreasing score.
pub fn nms(boxes: &[BBox], scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>> {
    let order = check(boxes, scores, iou_threshold)?;
    Ok(suppress(boxes, &order, iou_threshold, |_, _| true))
}

/// NMS within each label: a box only suppresses boxes of its own label. Indices by decreasing
/// score.
pub fn batched_nms(
    boxes: &[BBox],
    scores: &[f32],
    labels: &[i64],
    iou_threshold: f64,
) -> Result<Vec<usize>> {
    if labels.len() != boxes.len() {
        return Err(invalid(format!(
            "{} boxes and {} labels",
            boxes.len(),
            labels.len()
        )));
    }
    let order = check(boxes, scores, iou_threshold)?;
    Ok(suppress(boxes, &order, iou_threshold, |i, j| {
        labels[i] == labels[j]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppresses_overlaps_above_the_threshold_only() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 0.0, 11.0, 10.0],  // IoU 90/110 with box 0
            [20.0, 0.0, 30.0, 10.0], // disjoint
            [5.0, 0.0, 15.0, 10.0],  // IoU 50/150 = 1/3 with box 0
        ];
        let scores = [0.9, 0.8, 0.7, 0.6];
        assert_eq!(nms(&boxes, &scores, 0.5).unwrap(), vec![0, 2, 3]);
        assert_eq!(nms(&boxes, &scores, 0.3).unwrap(), vec![0, 2]);
        assert_eq!(nms(&boxes, &scores, 0.9).unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn order_is_by_score_and_ties_keep_index_order() {
        let boxes = [
            [0.0, 0.0, 1.0, 1.0],
            [2.0, 0.0, 3.0, 1.0],
            [4.0, 0.0, 5.0, 1.0],
        ];
        assert_eq!(nms(&boxes, &[0.1, 0.5, 0.5], 0.5).unwrap(), vec![1, 2, 0]);
        // two identical boxes with equal scores: the first index wins.
        let same = [[0.0, 0.0, 1.0, 1.0]; 2];
        assert_eq!(nms(&same, &[0.5, 0.5], 0.5).unwrap(), vec![0]);
    }

    #[test]
    fn batched_nms_only_within_a_label() {
        let boxes = [[0.0, 0.0, 10.0, 10.0]; 3];
        let scores = [0.3, 0.9, 0.5];
        assert_eq!(
            batched_nms(&boxes, &scores, &[0, 0, 1], 0.5).unwrap(),
            vec![1, 2]
        );
        assert_eq!(
            batched_nms(&boxes, &scores, &[0, 1, 2], 0.5).unwrap(),
            vec![1, 2, 0]
        );
    }

    #[test]
    fn empty_and_bad_input() {
        assert!(nms(&[], &[], 0.5).unwrap().is_empty());
        assert!(nms(&[[0.0; 4]], &[], 0.5).is_err());
        assert!(nms(&[[0.0; 4]], &[f32::NAN], 0.5).is_err());
        assert!(nms(&[[1.0, 0.0, 0.0, 1.0]], &[0.5], 0.5).is_err());
        assert!(nms(&[[0.0; 4]], &[0.5], f64::NAN).is_err());
        assert!(batched_nms(&[[0.0; 4]], &[0.5], &[], 0.5).is_err());
        // empty boxes never suppress each other
        assert_eq!(nms(&[[0.0; 4]; 2], &[0.5, 0.4], 0.5).unwrap(), vec![0, 1]);
    }
}
