//! Sliding-window inference (mmseg `EncoderDecoder.slide_inference`, protocols.md §2.4).
//!
//! The image is covered by `crop`-sized windows every `stride` pixels:
//! `grids = max(H − crop + stride − 1, 0) / stride + 1` per axis, window `i` at
//! `y1 = i·stride`, `y2 = min(y1 + crop, H)`, then `y1 = max(y2 − crop, 0)`, so the last window
//! is shifted back inside the image. Each window's logits (at the window's size) are summed into
//! a canvas, and the canvas is divided by the count matrix: how many windows cover each pixel.
//!
//! **One deviation, documented:** mmseg does not pad an image smaller than the crop (its ViTs
//! resample their position tables per forward). Our encoder has one fixed table for the crop
//! size, so such a window is zero-padded (bottom / right, as training pads) to the crop, run,
//! and its logits cut back to the window. On ADE20K's test resize (short side = crop) this only
//! happens for images wider than 4:1.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{HeadsError, Result};

/// One window: rows `y0..y1`, columns `x0..x1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First row.
    pub y0: usize,
    /// One past the last row.
    pub y1: usize,
    /// First column.
    pub x0: usize,
    /// One past the last column.
    pub x1: usize,
}

/// mmseg's window starts along one axis of length `len`.
fn axis(len: usize, crop: usize, stride: usize) -> Vec<(usize, usize)> {
    let grids = (len + stride).saturating_sub(crop + 1) / stride + 1;
    (0..grids)
        .map(|i| {
            let end = (i * stride + crop).min(len);
            (end.saturating_sub(crop), end)
        })
        .collect()
}

/// The windows over an `h × w` image, row-major (the order mmseg visits them).
pub fn windows(h: usize, w: usize, crop: [usize; 2], stride: [usize; 2]) -> Result<Vec<Window>> {
    if crop.contains(&0) || stride.contains(&0) || h == 0 || w == 0 {
        return Err(HeadsError::Config(format!(
            "sliding window needs positive sizes (image {h}×{w}, crop {crop:?}, stride {stride:?})"
        )));
    }
    if stride[0] > crop[0] || stride[1] > crop[1] {
        return Err(HeadsError::Config(format!(
            "a stride {stride:?} larger than the crop {crop:?} leaves pixels no window covers"
        )));
    }
    let rows = axis(h, crop[0], stride[0]);
    let cols = axis(w, crop[1], stride[1]);
    Ok(rows
        .iter()
        .flat_map(|&(y0, y1)| cols.iter().map(move |&(x0, x1)| Window { y0, y1, x0, x1 }))
        .collect())
}

/// How many windows cover each pixel, row-major `h × w`.
pub fn count_matrix(h: usize, w: usize, windows: &[Window]) -> Vec<u32> {
    let mut c = vec![0u32; h * w];
    for win in windows {
        for y in win.y0..win.y1 {
            for v in &mut c[y * w + win.x0..y * w + win.x1] {
                *v += 1;
            }
        }
    }
    c
}

/// Sliding-window logits of one normalised image `[1, 3, H, W]`: `run` maps a `[1, 3, ch, cw]`
/// crop to logits `[1, K, ch, cw]` (already resized to the crop, as mmseg's `encode_decode`
/// does). Returns `[1, K, H, W]`, the count-normalised sum.
pub fn slide_logits(
    image: Tensor<4>,
    crop: [usize; 2],
    stride: [usize; 2],
    mut run: impl FnMut(Tensor<4>) -> Result<Tensor<4>>,
) -> Result<Tensor<4>> {
    let [b, c, h, w] = image.dims();
    if b != 1 {
        return Err(HeadsError::Config(format!(
            "sliding-window inference takes one image at a time, got a batch of {b}"
        )));
    }
    let device: Device = image.device();
    let wins = windows(h, w, crop, stride)?;
    let mut canvas: Option<Tensor<4>> = None;
    for win in &wins {
        let (wh, ww) = (win.y1 - win.y0, win.x1 - win.x0);
        let mut part = image
            .clone()
            .slice([0..1, 0..c, win.y0..win.y1, win.x0..win.x1]);
        let padded = wh < crop[0] || ww < crop[1];
        if padded {
            part = Tensor::<4>::zeros([1, c, crop[0], crop[1]], &device)
                .slice_assign([0..1, 0..c, 0..wh, 0..ww], part);
        }
        let mut logits = run(part)?;
        if padded {
            let k = logits.dims()[1];
            logits = logits.slice([0..1, 0..k, 0..wh, 0..ww]);
        }
        let k = logits.dims()[1];
        let acc = canvas.unwrap_or_else(|| Tensor::<4>::zeros([1, k, h, w], &device));
        let region = acc
            .clone()
            .slice([0..1, 0..k, win.y0..win.y1, win.x0..win.x1]);
        canvas = Some(acc.slice_assign(
            [0..1, 0..k, win.y0..win.y1, win.x0..win.x1],
            region + logits,
        ));
    }
    let canvas = canvas.expect("an image has at least one window");
    let counts: Vec<f32> = count_matrix(h, w, &wins)
        .into_iter()
        .map(|n| n as f32)
        .collect();
    let counts = Tensor::<4>::from_data(TensorData::new(counts, [1, 1, h, w]), &device);
    Ok(canvas / counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;

    /// A 5×7 image, crop 3, stride 2 (by hand): rows 5 → grids (5−3+2−1)/2+1 = 2: [0,3), [2,5);
    /// columns 7 → (7−3+2−1)/2+1 = 3: [0,3), [2,5), [4,7). Row 2 and columns 2, 4 are covered twice
    /// in their axis.
    #[test]
    fn count_matrix_by_hand() {
        let wins = windows(5, 7, [3, 3], [2, 2]).unwrap();
        assert_eq!(wins.len(), 6);
        assert_eq!(
            wins[0],
            Window {
                y0: 0,
                y1: 3,
                x0: 0,
                x1: 3
            }
        );
        assert_eq!(
            wins[5],
            Window {
                y0: 2,
                y1: 5,
                x0: 4,
                x1: 7
            }
        );
        #[rustfmt::skip]
        let expected = vec![
            1, 1, 2, 1, 2, 1, 1,
            1, 1, 2, 1, 2, 1, 1,
            2, 2, 4, 2, 4, 2, 2,
            1, 1, 2, 1, 2, 1, 1,
            1, 1, 2, 1, 2, 1, 1,
        ];
        assert_eq!(count_matrix(5, 7, &wins), expected);
    }

    /// The last window is shifted back inside: 10 px, crop 4, stride 3 → grids (10−4+3−1)/3+1 = 3,
    /// starts 0, 3, 6 (6+4 = 10 fits); 11 px → grids (11−4+3−1)/3+1 = 4: 0, 3, 6, then 9 → end
    /// min(13, 11) = 11, start 7.
    #[test]
    fn last_window_is_shifted_inside() {
        let starts = |len| axis(len, 4, 3);
        assert_eq!(starts(10), vec![(0, 4), (3, 7), (6, 10)]);
        assert_eq!(starts(11), vec![(0, 4), (3, 7), (6, 10), (7, 11)]);
        // Image no larger than the crop: one window, the whole axis.
        assert_eq!(starts(4), vec![(0, 4)]);
        assert_eq!(starts(2), vec![(0, 2)]);
        assert!(windows(4, 4, [4, 4], [5, 5]).is_err());
        assert!(windows(4, 4, [0, 4], [1, 1]).is_err());
    }

    /// A per-pixel model (logit = 2·pixel + window-independent constant) slid over an image
    /// gives back that per-pixel map exactly, whatever the overlap, and a padded small image
    /// keeps its size.
    #[test]
    fn sliding_a_pointwise_model_is_exact() {
        let dev = Device::flex();
        let (h, w) = (5, 7);
        let vals: Vec<f32> = (0..3 * h * w).map(|i| i as f32 * 0.5).collect();
        let img = Tensor::<4>::from_data(TensorData::new(vals, [1, 3, h, w]), &dev);
        let pointwise = |x: Tensor<4>| -> Result<Tensor<4>> {
            let [_, _, ch, cw] = x.dims();
            assert_eq!(
                [ch, cw],
                [3, 3],
                "every crop reaches the model at the crop size"
            );
            Ok(x.slice([0..1, 0..1, 0..ch, 0..cw])
                .mul_scalar(2.0)
                .add_scalar(1.0))
        };
        let out = slide_logits(img.clone(), [3, 3], [2, 2], pointwise).unwrap();
        assert_eq!(out.dims(), [1, 1, h, w]);
        let want = to_vec(
            img.clone()
                .slice([0..1, 0..1, 0..h, 0..w])
                .mul_scalar(2.0)
                .add_scalar(1.0),
        )
        .unwrap();
        let got = to_vec(out).unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Smaller than the crop: padded for the model, cut back after.
        let small = img.slice([0..1, 0..3, 0..2, 0..2]);
        let out = slide_logits(small, [3, 3], [2, 2], pointwise).unwrap();
        assert_eq!(out.dims(), [1, 1, 2, 2]);
    }
}
