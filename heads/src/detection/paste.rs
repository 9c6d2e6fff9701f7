//! Pasting per-RoI mask probabilities into the image (torchvision `paste_masks_in_image`), for
//! COCO segm evaluation.
//!
//! Each `M × M` mask is zero-padded by `padding` pixels, its box grown by `(M + 2p) / M` about
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
