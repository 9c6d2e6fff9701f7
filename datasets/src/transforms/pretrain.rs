//! CAE pretraining views (cae.md §3, `DataAugmentationForCAE`).
//!
//! `RandomHorizontalFlip(0.5)`, then one RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3,
//! torchvision sampling), resized twice: to `size` with bicubic for the encoder (ImageNet
//! normalisation), and to `tokenizer_size` (default `size / 2`) with Lanczos for the dVAE
//! tokenizer (`ToTensor` then `0.8·x + 0.1`, no normalisation).

use image::RgbImage;
use rand::Rng;

use super::crop::RandomResizedCrop;
use super::resample::{Filter, flip_rgb_horizontal, resize_pil};
use super::{Normalize, tokenizer_pixels};
use crate::error::{DatasetError, Result};

/// Pretraining transform configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainTransform {
    /// Encoder view side (224 in the paper).
    pub size: u32,
    /// Tokenizer view side; `None` = `size / 2` (112 in the paper).
    pub tokenizer_size: Option<u32>,
    /// The shared crop (default scale 0.08–1, ratio 3/4–4/3).
    pub crop: RandomResizedCrop,
    /// Probability of the horizontal flip.
    pub flip_prob: f64,
    /// Encoder view filter (bicubic).
    pub filter: Filter,
    /// Tokenizer view filter (Lanczos).
    pub tokenizer_filter: Filter,
    /// Encoder view normalisation (ImageNet).
    pub normalize: Normalize,
}

/// The two views of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainViews {
    /// Encoder input, CHW `3 × size × size`, normalised.
    pub image: Vec<f32>,
    /// Tokenizer input, CHW `3 × t × t`, values `0.8·x + 0.1` with `x` in [0, 1].
    pub tokenizer: Vec<f32>,
    /// Encoder view side.
    pub size: u32,
    /// Tokenizer view side.
    pub tokenizer_size: u32,
}

impl PretrainTransform {
    /// The paper's recipe at encoder side `size` (tokenizer `size / 2`).
    pub fn new(size: u32) -> Self {
        PretrainTransform {
            size,
            tokenizer_size: None,
            crop: RandomResizedCrop::default(),
            flip_prob: 0.5,
            filter: Filter::Bicubic,
            tokenizer_filter: Filter::Lanczos,
            normalize: Normalize::IMAGENET,
        }
    }

    /// The tokenizer view side in effect.
    pub fn tokenizer_side(&self) -> u32 {
        self.tokenizer_size.unwrap_or(self.size / 2)
    }

    /// Checks sizes and ranges.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 || self.tokenizer_side() == 0 {
            return Err(DatasetError::InvalidConfig(format!(
                "pretrain sizes must be > 0 (size {}, tokenizer {})",
                self.size,
                self.tokenizer_side()
            )));
        }
        self.crop.validate()
    }

    /// Both views as 8-bit images `(encoder view, tokenizer view)`.
    pub fn apply_rgb(&self, img: &RgbImage, rng: &mut impl Rng) -> (RgbImage, RgbImage) {
        let flip = rng.random::<f64>() < self.flip_prob;
        // Crop of the flipped image = mirrored crop of the original, flipped back.
        let mut rect = self.crop.sample(img.width(), img.height(), rng);
        if flip {
            rect = rect.mirrored(img.width());
        }
        let t = self.tokenizer_side();
        let mut a = resize_pil(img, rect, self.size, self.size, self.filter);
        let mut b = resize_pil(img, rect, t, t, self.tokenizer_filter);
        if flip {
            flip_rgb_horizontal(&mut a);
            flip_rgb_horizontal(&mut b);
        }
        (a, b)
    }

    /// Both views as tensors.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng) -> PretrainViews {
        let (a, b) = self.apply_rgb(img, rng);
        PretrainViews {
            image: self.normalize.apply(&a),
            tokenizer: tokenizer_pixels(&b),
            size: self.size,
            tokenizer_size: self.tokenizer_side(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::resample::Rect;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn views_come_from_the_same_crop() {
        let img = RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([x as u8 * 3, y as u8 * 5, (x * y) as u8])
        });
        let t = PretrainTransform::new(32);
        for seed in 0..20 {
            let (a, b) = t.apply_rgb(&img, &mut ChaCha8Rng::seed_from_u64(seed));
            // Replay the draws: flip first, then the crop.
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let flip = rng.random::<f64>() < 0.5;
            let rect = t.crop.sample(64, 48, &mut rng);
            let mut flipped = img.clone();
            if flip {
                flip_rgb_horizontal(&mut flipped);
            }
            assert_eq!(
                a,
                resize_pil(&flipped, rect, 32, 32, Filter::Bicubic),
                "seed {seed}"
            );
            assert_eq!(
                b,
                resize_pil(&flipped, rect, 16, 16, Filter::Lanczos),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn flip_probability_one_mirrors() {
        let img = RgbImage::from_fn(40, 40, |x, y| image::Rgb([x as u8 * 6, y as u8 * 6, 9]));
        let mut t = PretrainTransform::new(20);
        t.crop.scale = (1.0, 1.0);
        t.crop.ratio = (1.0, 1.0);
        t.flip_prob = 1.0;
        let (a, _) = t.apply_rgb(&img, &mut ChaCha8Rng::seed_from_u64(0));
        let mut expect = resize_pil(&img, Rect::full(40, 40), 20, 20, Filter::Bicubic);
        flip_rgb_horizontal(&mut expect);
        assert_eq!(a, expect);
        let v = t.apply(&img, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(v.image.len(), 3 * 20 * 20);
        assert_eq!(v.tokenizer.len(), 3 * 10 * 10);
        assert!(v.tokenizer.iter().all(|&x| (0.1..=0.9).contains(&x)));
    }
}
