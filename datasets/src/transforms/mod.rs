//! Seeded transforms for each protocol, on `image::RgbImage`, producing CHW `Vec<f32>`.
//!
//! Every random transform takes `&mut impl rand::Rng`, so the caller owns the seeding (the
//! [`crate::loader`] gives each sample its own ChaCha8 stream). The reference for each protocol:
//!
//! | protocol | type | reference |
//! |---|---|---|
//! | CAE pretraining | [`PretrainTransform`] | `furnace/transforms.py` `RandomResizedCropAndInterpolationWithTwoPic` (cae.md §3) |
//! | linear probe train / eval | [`ProbeTrainTransform`], [`ProbeEvalTransform`] | MAE `main_linprobe.py`, `util/crop.py` |
//! | ADE20K train / test | [`SegTrainTransform`], [`SegTestTransform`] | mmseg `configs/_base_/datasets/ade20k.py` (protocols.md §2.3–2.4) |
//! | COCO train / test | [`DetTrainTransform`], [`DetTestTransform`] | mmdet `Resize` / `RandomFlip` / `Pad` (protocols.md §3) |
//!
//! Resampling follows the library each reference runs on: Pillow for the classification
//! pipelines, OpenCV for mmseg/mmdet ([`resample`]).

pub mod crop;
pub mod det;
pub mod photometric;
pub mod pretrain;
pub mod probe;
pub mod resample;
pub mod seg;

use image::RgbImage;

pub use crop::{CropSampling, RandomResizedCrop, center_crop_rect, resize_short_side_size};
pub use det::{DetSample, DetTestTransform, DetTrainTransform, DetrCropBranch};
pub use photometric::PhotoMetricDistortion;
pub use pretrain::{PretrainTransform, PretrainViews};
pub use probe::{ProbeEvalTransform, ProbeTrainTransform};
pub use resample::{Filter, Rect};
pub use seg::{SegSample, SegTestSample, SegTestTransform, SegTrainTransform};

/// Per-channel normalisation `(v / divisor - mean) / std` of RGB pixels, in `f32`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    /// Channel means (in units of `v / divisor`).
    pub mean: [f32; 3],
    /// Channel standard deviations.
    pub std: [f32; 3],
    /// Pixel values are divided by this first: 255 for torchvision's `ToTensor`, 1 for mmcv.
    pub divisor: f32,
}

impl Normalize {
    /// torchvision `ToTensor` + `Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)`.
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        divisor: 255.0,
    };
    /// mmseg / mmdet `Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)`.
    pub const IMAGENET_255: Normalize = Normalize {
        mean: [123.675, 116.28, 103.53],
        std: [58.395, 57.12, 57.375],
        divisor: 1.0,
    };

    /// The normalised value of each 8-bit level, per channel.
    pub fn lut(&self) -> [[f32; 256]; 3] {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, t) in table.iter_mut().enumerate() {
                *t = (v as f32 / self.divisor - self.mean[c]) / self.std[c];
            }
        }
        lut
    }

    /// CHW tensor of `img`.
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        let (w, h) = img.dimensions();
        let mut out = vec![0f32; 3 * w as usize * h as usize];
        self.apply_into(img, &mut out, w, h);
        out
    }

    /// Writes `img` normalised into the top-left corner of a CHW `3 × out_h × out_w` buffer
    /// (the rest is left as is: padding).
    pub fn apply_into(&self, img: &RgbImage, out: &mut [f32], out_w: u32, out_h: u32) {
        let lut = self.lut();
        let (w, h) = img.dimensions();
        let (ow, oh) = (out_w as usize, out_h as usize);
        assert!(
            w <= out_w && h <= out_h && out.len() == 3 * ow * oh,
            "output too small"
        );
        let plane = ow * oh;
        for (y, row) in img.as_raw().chunks_exact(w as usize * 3).enumerate() {
            for (x, p) in row.chunks_exact(3).enumerate() {
                let i = y * ow + x;
                out[i] = lut[0][p[0] as usize];
                out[plane + i] = lut[1][p[1] as usize];
                out[2 * plane + i] = lut[2][p[2] as usize];
            }
        }
    }
}

/// The dVAE tokenizer's input: `ToTensor` then `map_pixels(x) = 0.8·x + 0.1`, CHW.
pub fn tokenizer_pixels(img: &RgbImage) -> Vec<f32> {
    let mut lut = [0f32; 256];
    for (v, t) in lut.iter_mut().enumerate() {
        *t = 0.8f32 * (v as f32 / 255.0) + 0.1f32;
    }
    let (w, h) = img.dimensions();
    let plane = w as usize * h as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
        out[i] = lut[p[0] as usize];
        out[plane + i] = lut[p[1] as usize];
        out[2 * plane + i] = lut[p[2] as usize];
    }
    out
}

/// Python's `round()` (ties to even), which torchvision uses for crop sizes and offsets.
pub(crate) fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_matches_formula_and_layout() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 255, 128, 0]));
        let t = Normalize::IMAGENET.apply(&img);
        assert_eq!(t.len(), 6);
        assert!((t[0] - (0.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((t[1] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((t[2] - (128.0 / 255.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((t[5] - (0.0 - 0.406) / 0.225).abs() < 1e-6);
        let m = Normalize::IMAGENET_255.apply(&img);
        assert!((m[1] - (255.0 - 123.675) / 58.395).abs() < 1e-5);
    }

    #[test]
    fn tokenizer_range() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 255; 3]));
        let t = tokenizer_pixels(&img);
        assert!((t[0] - 0.1).abs() < 1e-7 && (t[1] - 0.9).abs() < 1e-6);
    }

    #[test]
    fn python_rounding() {
        assert_eq!(py_round(2.5), 2);
        assert_eq!(py_round(3.5), 4);
        assert_eq!(py_round(2.51), 3);
    }
}
