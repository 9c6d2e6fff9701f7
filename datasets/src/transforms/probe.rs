//! Linear-probe transforms (MAE `main_linprobe.py`, used by CAE `tools/run_linear.py`).
//!
//! Train: `RandomResizedCrop(size, bicubic)` with the one-draw clipped sampler of MAE's
//! `util/crop.py`, then `RandomHorizontalFlip`, `ToTensor`, ImageNet `Normalize`.
//! Eval: `Resize(round(size / crop_pct), bicubic)` on the shorter side, `CenterCrop(size)`.
//! With the default `crop_pct = 0.875` that is 256 → 224, and 37 → 32 for 32-px images.

use image::RgbImage;
use rand::Rng;

use super::crop::{CropSampling, RandomResizedCrop, center_crop_rect, resize_short_side_size};
use super::resample::{Filter, Rect, flip_rgb_horizontal, resize_pil};
use super::{Normalize, py_round};
use crate::error::{DatasetError, Result};

/// Linear-probe training transform.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTrainTransform {
    /// Output side.
    pub size: u32,
    /// Crop sampler (default: scale 0.08–1, ratio 3/4–4/3, [`CropSampling::Clipped`]).
    pub crop: RandomResizedCrop,
    /// Probability of a horizontal flip.
    pub flip_prob: f64,
    /// Resampling filter (bicubic).
    pub filter: Filter,
    /// Normalisation (ImageNet).
    pub normalize: Normalize,
}

impl ProbeTrainTransform {
    /// The MAE/CAE recipe at output side `size`.
    pub fn new(size: u32) -> Self {
        ProbeTrainTransform {
            size,
            crop: RandomResizedCrop {
                sampling: CropSampling::Clipped,
                ..Default::default()
            },
            flip_prob: 0.5,
            filter: Filter::Bicubic,
            normalize: Normalize::IMAGENET,
        }
    }

    /// Checks sizes and ranges.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 {
            return Err(DatasetError::InvalidConfig("probe size must be > 0".into()));
        }
        self.crop.validate()
    }

    /// The augmented crop as an 8-bit image.
    pub fn apply_rgb(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let rect = self.crop.sample(img.width(), img.height(), rng);
        let mut out = resize_pil(img, rect, self.size, self.size, self.filter);
        if rng.random::<f64>() < self.flip_prob {
            flip_rgb_horizontal(&mut out);
        }
        out
    }

    /// The augmented crop as a normalised CHW tensor (`3 × size × size`).
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> Vec<f32> {
        self.normalize.apply(&self.apply_rgb(img, rng))
    }
}

/// Linear-probe evaluation transform (deterministic).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeEvalTransform {
    /// Output side.
    pub size: u32,
    /// Center-crop fraction: the shorter side is first resized to `round(size / crop_pct)`.
    pub crop_pct: f64,
    /// Resampling filter (bicubic).
    pub filter: Filter,
    /// Normalisation (ImageNet).
    pub normalize: Normalize,
}

impl ProbeEvalTransform {
    /// Resize to `round(size / 0.875)`, center crop `size`.
    pub fn new(size: u32) -> Self {
        ProbeEvalTransform {
            size,
            crop_pct: 0.875,
            filter: Filter::Bicubic,
            normalize: Normalize::IMAGENET,
        }
    }

    /// Checks sizes and `0 < crop_pct <= 1`.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 || !(self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return Err(DatasetError::InvalidConfig(format!(
                "probe eval needs size > 0 and 0 < crop_pct <= 1 (got {}, {})",
                self.size, self.crop_pct
            )));
        }
        Ok(())
    }

    /// The shorter side after the resize.
    pub fn resize_size(&self) -> u32 {
        (py_round(self.size as f64 / self.crop_pct).max(self.size as i64)) as u32
    }

    /// The center crop as an 8-bit image.
    pub fn apply_rgb(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = resize_short_side_size(img.width(), img.height(), self.resize_size());
        let resized = resize_pil(
            img,
            Rect::full(img.width(), img.height()),
            w,
            h,
            self.filter,
        );
        let r = center_crop_rect(w, h, self.size, self.size);
        image::imageops::crop_imm(&resized, r.x, r.y, r.w, r.h).to_image()
    }

    /// The center crop as a normalised CHW tensor (`3 × size × size`).
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        self.normalize.apply(&self.apply_rgb(img))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn noise(w: u32, h: u32) -> RgbImage {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        RgbImage::from_fn(w, h, |_, _| {
            image::Rgb([rng.random(), rng.random(), rng.random()])
        })
    }

    #[test]
    fn eval_sizes() {
        let t = ProbeEvalTransform::new(32);
        assert_eq!(t.resize_size(), 37);
        assert_eq!(ProbeEvalTransform::new(224).resize_size(), 256);
        let out = t.apply_rgb(&noise(40, 30));
        assert_eq!(out.dimensions(), (32, 32));
        assert_eq!(t.apply(&noise(40, 30)).len(), 3 * 32 * 32);
        assert!(t.validate().is_ok());
        assert!(
            ProbeEvalTransform { crop_pct: 0.0, ..t }
                .validate()
                .is_err()
        );
    }

    #[test]
    fn train_is_seeded() {
        let t = ProbeTrainTransform::new(24);
        let img = noise(50, 40);
        let a = t.apply(&img, &mut ChaCha8Rng::seed_from_u64(3));
        let b = t.apply(&img, &mut ChaCha8Rng::seed_from_u64(3));
        let c = t.apply(&img, &mut ChaCha8Rng::seed_from_u64(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 3 * 24 * 24);
    }
}
