//! IoU and generalized IoU matrices (torchvision `box_iou`, `generalized_box_iou`), row-major
//! `[boxes1.len() × boxes2.len()]`, in f32 in torchvision's order of operations.
//!
//! Boxes must be finite with `x1 ≤ x2`, `y1 ≤ y2`. Zero-size boxes are allowed and have
//! well-defined results where torchvision divides 0 by 0: the IoU of two boxes whose union is
//! empty is 0, and GIoU's penalty is 0 when the enclosing box is empty.

use super::{BBox, Result, check_boxes};

/// Area `(x2 − x1)·(y2 − y1)`.
pub fn box_area(b: &BBox) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

fn inter_union(a: &BBox, b: &BBox, area_a: f32, area_b: f32) -> (f32, f32) {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    (inter, area_a + area_b - inter)
}

fn ratio(inter: f32, union: f32) -> f32 {
    if union > 0.0 { inter / union } else { 0.0 }
}

/// IoU of every box of `boxes1` with every box of `boxes2`.
pub fn box_iou(boxes1: &[BBox], boxes2: &[BBox]) -> Result<Vec<f32>> {
    check_boxes("boxes1", boxes1)?;
    check_boxes("boxes2", boxes2)?;
    let area2: Vec<f32> = boxes2.iter().map(box_area).collect();
    let mut out = Vec::with_capacity(boxes1.len() * boxes2.len());
    for a in boxes1 {
        let area_a = box_area(a);
        for (b, &area_b) in boxes2.iter().zip(&area2) {
            let (inter, union) = inter_union(a, b, area_a, area_b);
            out.push(ratio(inter, union));
        }
    }
    Ok(out)
}

/// Generalized IoU, `IoU − (C − U)/C` with `C` the area of the smallest enclosing box.
pub fn generalized_box_iou(boxes1: &[BBox], boxes2: &[BBox]) -> Result<Vec<f32>> {
    check_boxes("boxes1", boxes1)?;
    check_boxes("boxes2", boxes2)?;
    let area2: Vec<f32> = boxes2.iter().map(box_area).collect();
    let mut out = Vec::with_capacity(boxes1.len() * boxes2.len());
    for a in boxes1 {
        let area_a = box_area(a);
        for (b, &area_b) in boxes2.iter().zip(&area2) {
            let (inter, union) = inter_union(a, b, area_a, area_b);
            let iou = ratio(inter, union);
            let cw = (a[2].max(b[2]) - a[0].min(b[0])).max(0.0);
            let ch = (a[3].max(b[3]) - a[1].min(b[1])).max(0.0);
            let enclosing = cw * ch;
            out.push(if enclosing > 0.0 {
                iou - (enclosing - union) / enclosing
            } else {
                iou
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let a = [[0.0, 0.0, 2.0, 2.0]];
        let b = [
            [1.0, 1.0, 3.0, 3.0],
            [0.0, 0.0, 2.0, 2.0],
            [4.0, 0.0, 6.0, 2.0],
        ];
        let iou = box_iou(&a, &b).unwrap();
        assert_eq!(iou, vec![1.0 / 7.0, 1.0, 0.0]);
        let giou = generalized_box_iou(&a, &b).unwrap();
        // enclosing 3×3 = 9, union 7: 1/7 − 2/9; disjoint: 0 − (12 − 8)/12.
        assert!((giou[0] - (1.0 / 7.0 - 2.0 / 9.0)).abs() < 1e-7);
        assert_eq!(giou[1], 1.0);
        assert!((giou[2] + 1.0 / 3.0).abs() < 1e-7);
    }

    #[test]
    fn degenerate_boxes_give_defined_values() {
        let p = [[1.0, 1.0, 1.0, 1.0]];
        assert_eq!(box_iou(&p, &p).unwrap(), vec![0.0]);
        assert_eq!(generalized_box_iou(&p, &p).unwrap(), vec![0.0]);
        let line = [[0.0, 0.0, 4.0, 0.0]];
        let g = generalized_box_iou(&line, &[[0.0, 0.0, 2.0, 2.0]]).unwrap();
        assert!(g[0].is_finite());
        assert!(box_iou(&[], &p).unwrap().is_empty());
    }

    #[test]
    fn invalid_boxes_are_errors() {
        assert!(box_iou(&[[2.0, 0.0, 1.0, 1.0]], &[[0.0; 4]]).is_err());
        assert!(generalized_box_iou(&[[0.0; 4]], &[[0.0, f32::NAN, 1.0, 1.0]]).is_err());
    }
}
