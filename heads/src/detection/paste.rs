//! Pasting per-RoI mask probabilities into the image, for COCO segm evaluation: mmdet's
//! `grid_sample` paste ([`paste_masks_grid_sample`], what CAE's detection code uses) and
//! torchvision's legacy paste ([`paste_masks_in_image`]).
//!
//! **mmdet** (`fcn_mask_head.py` `_do_paste_mask`, on the CPU one mask at a time): the image
//! pixels `x ∈ [⌊x1⌋ − 1, ⌈x2⌉ + 1)` (clipped to the image; rows likewise) are mapped to
//! `gx = (x + 0.5 − x1) / (x2 − x1) · 2 − 1` and sampled from the `M × M` mask by
//! `grid_sample(bilinear, zeros padding, align_corners = false)`: the mask pixel coordinate is
//! `((gx + 1)·M − 1) / 2`, corners outside the mask count 0. Pixels outside that window stay 0
//! (on a GPU mmdet pastes a chunk of masks over their common window instead; the extra pixels it
//! fills lie outside the box, where the zero padding keeps them below 0.5, so the binarised masks
//! are the same). A degenerate box (`x2 = x1`) gives an infinite coordinate, which mmdet sets
//! to 0 (the mask's centre).
//!
//! **torchvision**: each `M × M` mask is zero-padded by `padding` pixels, its box grown by `(M + 2p) / M` about
//! the centre and truncated to integers; the padded mask is resized bilinearly
//! (`align_corners = false`) to `(x2 − x1 + 1) × (y2 − y1 + 1)` pixels and copied into the image
//! at the box, clipped to the image. The result is probabilities; [`binarize`] thresholds them
//! (0.5 in Mask R-CNN). All in f32, in PyTorch's order of operations.

use super::{BBox, Result, check_finite, invalid};

/// Source index and weights of the bilinear resize of `input` samples to `output` samples
/// (PyTorch's `upsample_bilinear2d`, `align_corners = false`, no antialias).
fn linear_weights(input: usize, output: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            if input == output {
                return (i, i, 1.0, 0.0);
            }
            let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real.floor() as usize).min(input - 1);
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// Pastes `masks` (`n` row-major `M × M` probability maps, `masks.len() = n·M·M`) into images of
/// `image_hw` (height, width) at `boxes`: `n` row-major `H × W` maps.
pub fn paste_masks_in_image(
    masks: &[f32],
    mask_size: usize,
    boxes: &[BBox],
    image_hw: (usize, usize),
    padding: usize,
) -> Result<Vec<f32>> {
    let m = mask_size;
    if m == 0 || masks.len() != boxes.len() * m * m {
        return Err(invalid(format!(
            "{} mask values for {} boxes of {m}×{m} masks",
            masks.len(),
            boxes.len()
        )));
    }
    check_finite("boxes", boxes)?;
    if masks.iter().any(|v| !v.is_finite()) {
        return Err(invalid("mask probabilities are not finite"));
    }
    let (im_h, im_w) = image_hw;
    let pm = m + 2 * padding;
    let scale = (pm as f64 / m as f64) as f32;
    let mut out = vec![0f32; boxes.len() * im_h * im_w];
    let mut padded = vec![0f32; pm * pm];
    for (n, b) in boxes.iter().enumerate() {
        for y in 0..m {
            let src = &masks[(n * m + y) * m..(n * m + y + 1) * m];
            padded[(y + padding) * pm + padding..(y + padding) * pm + padding + m]
                .copy_from_slice(src);
        }
        let w_half = (b[2] - b[0]) * 0.5 * scale;
        let h_half = (b[3] - b[1]) * 0.5 * scale;
        let x_c = (b[2] + b[0]) * 0.5;
        let y_c = (b[3] + b[1]) * 0.5;
        // truncation towards zero, as `.to(torch.int64)`.
        let bx0 = (x_c - w_half) as i64;
        let bx1 = (x_c + w_half) as i64;
        let by0 = (y_c - h_half) as i64;
        let by1 = (y_c + h_half) as i64;
        let w = (bx1 - bx0 + 1).max(1) as usize;
        let h = (by1 - by0 + 1).max(1) as usize;
        let x0 = bx0.max(0);
        let x1 = (bx1 + 1).min(im_w as i64);
        let y0 = by0.max(0);
        let y1 = (by1 + 1).min(im_h as i64);
        if x1 <= x0 || y1 <= y0 {
            continue;
        }
        let wx = linear_weights(pm, w);
        let wy = linear_weights(pm, h);
        let img = &mut out[n * im_h * im_w..(n + 1) * im_h * im_w];
        for iy in y0..y1 {
            let (r0, r1, a0, a1) = wy[(iy - by0) as usize];
            for ix in x0..x1 {
                let (c0, c1, b0, b1) = wx[(ix - bx0) as usize];
                let top = padded[r0 * pm + c0] * b0 + padded[r0 * pm + c1] * b1;
                let bottom = padded[r1 * pm + c0] * b0 + padded[r1 * pm + c1] * b1;
                img[iy as usize * im_w + ix as usize] = top * a0 + bottom * a1;
            }
        }
    }
    Ok(out)
}

/// The mask pixel coordinate `grid_sample` reads for normalised `g` (`align_corners = false`).
fn unnormalize(g: f32, size: usize) -> f32 {
    ((g + 1.0) * size as f32 - 1.0) / 2.0
}

/// The normalised coordinates of pixels `lo..hi` in a box side `[a, b)`, as mmdet computes them
/// in f32 (infinite ones set to 0).
fn grid_coords(lo: i64, hi: i64, a: f32, b: f32) -> Vec<f32> {
    (lo..hi)
        .map(|i| {
            let g = (i as f32 + 0.5 - a) / (b - a) * 2.0 - 1.0;
            if g.is_infinite() { 0.0 } else { g }
        })
        .collect()
}

/// mmdet's paste (see the module docs): `masks` (`n` row-major `M × M` probability maps) into
/// images of `image_hw` (height, width) at `boxes`; `n` row-major `H × W` maps.
pub fn paste_masks_grid_sample(
    masks: &[f32],
    mask_size: usize,
    boxes: &[BBox],
    image_hw: (usize, usize),
) -> Result<Vec<f32>> {
    let m = mask_size;
    if m == 0 || masks.len() != boxes.len() * m * m {
        return Err(invalid(format!(
            "{} mask values for {} boxes of {m}×{m} masks",
            masks.len(),
            boxes.len()
        )));
    }
    check_finite("boxes", boxes)?;
    if masks.iter().any(|v| !v.is_finite()) {
        return Err(invalid("mask probabilities are not finite"));
    }
    let (im_h, im_w) = image_hw;
    let mut out = vec![0f32; boxes.len() * im_h * im_w];
    for (n, b) in boxes.iter().enumerate() {
        let mask = &masks[n * m * m..(n + 1) * m * m];
        let x0 = ((b[0].floor() - 1.0).max(0.0)) as i64;
        let y0 = ((b[1].floor() - 1.0).max(0.0)) as i64;
        let x1 = ((b[2].ceil() + 1.0).min(im_w as f32)) as i64;
        let y1 = ((b[3].ceil() + 1.0).min(im_h as f32)) as i64;
        if x1 <= x0 || y1 <= y0 {
            continue;
        }
        let gx = grid_coords(x0, x1, b[0], b[2]);
        let gy = grid_coords(y0, y1, b[1], b[3]);
        let at = |r: i64, c: i64| -> f32 {
            if r < 0 || c < 0 || r >= m as i64 || c >= m as i64 {
                0.0
            } else {
                mask[r as usize * m + c as usize]
            }
        };
        let img = &mut out[n * im_h * im_w..(n + 1) * im_h * im_w];
        for (iy, &g_y) in (y0..y1).zip(&gy) {
            let sy = unnormalize(g_y, m);
            let ry = sy.floor();
            let ty = sy - ry;
            let r = ry as i64;
            for (ix, &g_x) in (x0..x1).zip(&gx) {
                let sx = unnormalize(g_x, m);
                let cx = sx.floor();
                let tx = sx - cx;
                let c = cx as i64;
                // torch's order: nw·(1−tx)(1−ty) + ne·tx(1−ty) + sw·(1−tx)ty + se·tx·ty.
                let v = at(r, c) * ((1.0 - tx) * (1.0 - ty))
                    + at(r, c + 1) * (tx * (1.0 - ty))
                    + at(r + 1, c) * ((1.0 - tx) * ty)
                    + at(r + 1, c + 1) * (tx * ty);
                img[iy as usize * im_w + ix as usize] = v;
            }
        }
    }
    Ok(out)
}

/// How mask probabilities are pasted into the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskPaste {
    /// mmdet's `grid_sample` paste (CAE's detection code).
    #[default]
    GridSample,
    /// torchvision's legacy paste (pad 1, integer box, `+1` width).
    Torchvision,
}

impl MaskPaste {
    /// Pastes with this rule (see [`paste_masks_grid_sample`] and [`paste_masks_in_image`]).
    pub fn paste(
        self,
        masks: &[f32],
        mask_size: usize,
        boxes: &[BBox],
        image_hw: (usize, usize),
    ) -> Result<Vec<f32>> {
        match self {
            Self::GridSample => paste_masks_grid_sample(masks, mask_size, boxes, image_hw),
            Self::Torchvision => paste_masks_in_image(masks, mask_size, boxes, image_hw, 1),
        }
    }
}

/// `p ≥ threshold` per pixel.
pub fn binarize(probs: &[f32], threshold: f32) -> Vec<bool> {
    probs.iter().map(|&p| p >= threshold).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mask_fills_its_box() {
        let m = 4;
        let masks = vec![1.0f32; m * m];
        let out = paste_masks_in_image(&masks, m, &[[2.0, 1.0, 7.0, 5.0]], (8, 10), 1).unwrap();
        let bin = binarize(&out, 0.5);
        // the box grows by 6/4 about its centre to x 0..=8, y 0..=6; the padding fades the rim.
        for y in 0..8 {
            for x in 0..10 {
                let v = out[y * 10 + x];
                if (2..=6).contains(&x) && (2..=4).contains(&y) {
                    assert_eq!(v, 1.0, "pixel ({y}, {x})");
                }
                if (2..=6).contains(&x) && (1..=5).contains(&y) {
                    assert!(bin[y * 10 + x], "pixel ({y}, {x}): {v}");
                }
                if x >= 9 || y >= 7 || x == 0 || y == 0 {
                    assert_eq!(v, 0.0, "pixel ({y}, {x})");
                }
            }
        }
    }

    #[test]
    fn grid_sample_paste_by_hand() {
        // A 2×2 mask [[1, 0], [0, 0]] into the box x 1..5, y 0..2 of a 3×6 image.
        // Columns: window ⌊1⌋−1 = 0 .. ⌈5⌉+1 = 6; gx = (x + 0.5 − 1)/4·2 − 1 → mask coordinate
        // ((gx + 1)·2 − 1)/2 = (x − 0.5)/2 − 0.5 = x/2 − 0.75: x = 0 → −0.75, 1 → −0.25,
        // 2 → 0.25, 3 → 0.75, 4 → 1.25, 5 → 1.75.
        // Rows: window 0 .. min(3, 3) = 3; coordinate ((y + 0.5)/2·2 − 1 + 1)·2/2 − 0.5 = y:
        // row 0 reads mask row 0 exactly, row 1 mask row 1, row 2 is past the mask (0).
        let masks = [1.0f32, 0.0, 0.0, 0.0];
        let out = paste_masks_grid_sample(&masks, 2, &[[1.0, 0.0, 5.0, 2.0]], (3, 6)).unwrap();
        // Row 0 along x: mask row [1, 0] at coordinate c: weight of column 0 is 1 − |c| inside
        // (−1, 1), zeros padding outside: −0.75 → 0.25, −0.25 → 0.75, 0.25 → 0.75, 0.75 → 0.25,
        // 1.25 → 0, 1.75 → 0.
        let row0 = &out[..6];
        assert_eq!(row0, &[0.25, 0.75, 0.75, 0.25, 0.0, 0.0]);
        assert!(out[6..].iter().all(|&v| v == 0.0));
        // A full mask: inside the box ≥ 0.5 after binarising, the outside ring below it, and
        // nothing outside the window [⌊x1⌋−1, ⌈x2⌉+1).
        let full = vec![1.0f32; 16];
        let out = paste_masks_grid_sample(&full, 4, &[[3.0, 2.0, 9.0, 6.0]], (10, 12)).unwrap();
        let bin = binarize(&out, 0.5);
        for y in 0..10 {
            for x in 0..12 {
                let inside = (3..9).contains(&x) && (2..6).contains(&y);
                assert_eq!(
                    bin[y * 12 + x],
                    inside,
                    "pixel ({y}, {x}) = {}",
                    out[y * 12 + x]
                );
                if !(2..10).contains(&x) || !(1..7).contains(&y) {
                    assert_eq!(out[y * 12 + x], 0.0, "outside the window ({y}, {x})");
                }
            }
        }
        // The ring pixel just left of the box (row 3 reads mask row 1 exactly): coordinate
        // ((2.5 − 3)/6·2 − 1 + 1)·4/2 − 0.5 = −5/6 → weight 1 − 5/6 = 1/6 on column 0.
        assert!(
            (out[3 * 12 + 2] - 1.0 / 6.0).abs() < 1e-6,
            "{}",
            out[3 * 12 + 2]
        );
        // The two rules differ (torchvision's box is integer and one pixel wider).
        let tv = MaskPaste::Torchvision
            .paste(&full, 4, &[[3.0, 2.0, 9.0, 6.0]], (10, 12))
            .unwrap();
        assert_ne!(tv, out);
        // A degenerate box maps to the mask centre instead of failing.
        let d = paste_masks_grid_sample(&full, 4, &[[3.0, 2.0, 3.0, 6.0]], (10, 12)).unwrap();
        assert!(d.iter().all(|v| v.is_finite()));
        assert!(paste_masks_grid_sample(&full, 4, &[], (10, 12)).is_err());
    }

    #[test]
    fn resize_weights_match_pytorch_half_pixel_rule() {
        // 2 → 4: sources −0.25 (clamped 0), 0.25, 0.75, 1.25 (last index clamps).
        let w = linear_weights(2, 4);
        assert_eq!(w[0], (0, 1, 1.0, 0.0));
        assert_eq!(w[1], (0, 1, 0.75, 0.25));
        assert_eq!(w[3], (1, 1, 0.75, 0.25));
        assert_eq!(linear_weights(3, 3)[2], (2, 2, 1.0, 0.0));
    }

    #[test]
    fn boxes_off_the_image_and_bad_input() {
        let masks = vec![1.0f32; 4];
        let out = paste_masks_in_image(&masks, 2, &[[50.0, 50.0, 60.0, 60.0]], (4, 4), 1).unwrap();
        assert!(out.iter().all(|&v| v == 0.0));
        assert!(paste_masks_in_image(&masks, 2, &[], (4, 4), 1).is_err());
        assert!(paste_masks_in_image(&masks, 2, &[[f32::NAN, 0.0, 1.0, 1.0]], (4, 4), 1).is_err());
        assert!(paste_masks_in_image(&[f32::NAN; 4], 2, &[[0.0; 4]], (4, 4), 1).is_err());
        assert!(paste_masks_in_image(&[], 0, &[], (4, 4), 1).is_err());
        assert!(
            paste_masks_in_image(&[], 3, &[], (4, 4), 1)
                .unwrap()
                .is_empty()
        );
    }
}
