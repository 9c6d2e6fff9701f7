//! ADE20K semantic segmentation transforms (mmseg `configs/_base_/datasets/ade20k.py`,
//! protocols.md §2.3–2.4).
//!
//! Train: `RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio)` (image bilinear,
//! labels nearest, OpenCV rules), `RandomCrop(512, cat_max_ratio=0.75)` with up to 10 redraws,
//! `RandomFlip(0.5)`, `PhotoMetricDistortion`, `Normalize`, then pad to the crop size (image 0
//! after normalisation, labels 255). Labels are expected after `reduce_zero_label`
//! ([`crate::ade::reduce_zero_label`]), so 255 is the ignore value.
//!
//! Test: `Resize(scale=(2048, 512), keep_ratio=True)`; the label stays at full resolution and
//! the prediction is resized back to it.

use image::RgbImage;
use rand::Rng;

use super::Normalize;
use super::photometric::PhotoMetricDistortion;
use super::resample::{
    flip_map_horizontal, flip_rgb_horizontal, resize_bilinear_cv, resize_nearest_cv,
};
use crate::error::{DatasetError, Result};
use crate::io::LabelMap;

/// mmcv `rescale_size`: the largest scale factor that fits `(long, short)` bounds, keeping
/// the aspect ratio; sizes are rounded with `int(x * f + 0.5)`. Returns `(new_w, new_h, f)`.
pub fn rescale_keep_ratio(
    width: u32,
    height: u32,
    long_edge: u32,
    short_edge: u32,
) -> (u32, u32, f64) {
    let (max_long, max_short) = (
        long_edge.max(short_edge) as f64,
        long_edge.min(short_edge) as f64,
    );
    let (w, h) = (width as f64, height as f64);
    let f = (max_long / w.max(h)).min(max_short / w.min(h));
    let nw = ((w * f + 0.5) as u32).max(1);
    let nh = ((h * f + 0.5) as u32).max(1);
    (nw, nh, f)
}

/// ADE20K training transform.
#[derive(Debug, Clone, PartialEq)]
pub struct SegTrainTransform {
    /// `(long, short)` bounds before the random ratio (`(2048, 512)`).
    pub scale: (u32, u32),
    /// Random ratio range (`(0.5, 2.0)`).
    pub ratio_range: (f64, f64),
    /// Crop `(height, width)` (`(512, 512)`).
    pub crop_size: (u32, u32),
    /// Largest share one class may take in a crop (`0.75`); 1 disables the check.
    pub cat_max_ratio: f64,
    /// Redraws when the check fails (`10`).
    pub crop_retries: usize,
    /// Probability of the horizontal flip.
    pub flip_prob: f64,
    /// Photometric distortion (`None` = off).
    pub photometric: Option<PhotoMetricDistortion>,
    /// Normalisation (mmseg's ImageNet mean/std on 0..255).
    pub normalize: Normalize,
    /// Ignore value; also the label padding value (`255`).
    pub ignore_index: u8,
}

/// One training sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SegSample {
    /// CHW `3 × height × width`, normalised, zero-padded.
    pub image: Vec<f32>,
    /// `height × width` labels, row-major, 255-padded.
    pub label: Vec<u8>,
    /// Padded width (the crop width).
    pub width: u32,
    /// Padded height (the crop height).
    pub height: u32,
    /// Width of the real content (top-left).
    pub valid_width: u32,
    /// Height of the real content (top-left).
    pub valid_height: u32,
}

impl SegTrainTransform {
    /// The ADE20K recipe: scale (2048, 512), crop 512.
    pub fn ade20k() -> Self {
        Self::for_crop(512)
    }

    /// The same recipe scaled to crop side `crop`: scale `(4·crop, crop)`.
    pub fn for_crop(crop: u32) -> Self {
        SegTrainTransform {
            scale: (4 * crop, crop),
            ratio_range: (0.5, 2.0),
            crop_size: (crop, crop),
            cat_max_ratio: 0.75,
            crop_retries: 10,
            flip_prob: 0.5,
            photometric: Some(PhotoMetricDistortion::default()),
            normalize: Normalize::IMAGENET_255,
            ignore_index: 255,
        }
    }

    /// Checks sizes and ranges.
    pub fn validate(&self) -> Result<()> {
        let (r0, r1) = self.ratio_range;
        if self.crop_size.0 == 0
            || self.crop_size.1 == 0
            || self.scale.0 == 0
            || self.scale.1 == 0
            || !(r0 > 0.0 && r0 <= r1)
        {
            return Err(DatasetError::InvalidConfig(format!(
                "segmentation transform needs positive sizes and 0 < ratio.0 <= ratio.1 (crop {:?}, scale {:?}, ratio {:?})",
                self.crop_size, self.scale, self.ratio_range
            )));
        }
        Ok(())
    }

    /// Augments one image and its label map (same size) into a padded crop.
    pub fn apply(&self, img: &RgbImage, label: &LabelMap, rng: &mut impl Rng) -> Result<SegSample> {
        check_same_size(img, label)?;
        // 1. Random resize, keeping the ratio.
        let r =
            self.ratio_range.0 + (self.ratio_range.1 - self.ratio_range.0) * rng.random::<f64>();
        let target = (
            (self.scale.0 as f64 * r) as u32,
            (self.scale.1 as f64 * r) as u32,
        );
        let (nw, nh, _) =
            rescale_keep_ratio(img.width(), img.height(), target.0.max(1), target.1.max(1));
        let img = resize_bilinear_cv(img, nw, nh);
        let lab = resize_nearest_cv(&label.data, label.width, label.height, nw, nh);

        // 2. Random crop with the class-ratio check.
        let (ch, cw) = self.crop_size;
        let draw = |rng: &mut dyn rand::RngCore| {
            let y = rng.random_range(0..=nh.saturating_sub(ch));
            let x = rng.random_range(0..=nw.saturating_sub(cw));
            (x, y)
        };
        let mut pos = draw(rng);
        if self.cat_max_ratio < 1.0 {
            for _ in 0..self.crop_retries {
                if self.crop_is_mixed(&lab, nw, pos, (cw.min(nw), ch.min(nh))) {
                    break;
                }
                pos = draw(rng);
            }
        }
        let (vw, vh) = (cw.min(nw), ch.min(nh));
        let mut crop_img = image::imageops::crop_imm(&img, pos.0, pos.1, vw, vh).to_image();
        let mut crop_lab = Vec::with_capacity((vw * vh) as usize);
        for y in pos.1..pos.1 + vh {
            let s = (y * nw + pos.0) as usize;
            crop_lab.extend_from_slice(&lab[s..s + vw as usize]);
        }

        // 3. Flip. 4. Photometric distortion.
        if rng.random::<f64>() < self.flip_prob {
            flip_rgb_horizontal(&mut crop_img);
            flip_map_horizontal(&mut crop_lab, vw as usize);
        }
        if let Some(p) = &self.photometric {
            p.apply(&mut crop_img, rng);
        }

        // 5. Normalise and pad.
        let mut image = vec![0f32; 3 * (cw * ch) as usize];
        self.normalize.apply_into(&crop_img, &mut image, cw, ch);
        let mut label = vec![self.ignore_index; (cw * ch) as usize];
        for y in 0..vh as usize {
            label[y * cw as usize..y * cw as usize + vw as usize]
                .copy_from_slice(&crop_lab[y * vw as usize..(y + 1) * vw as usize]);
        }
        Ok(SegSample {
            image,
            label,
            width: cw,
            height: ch,
            valid_width: vw,
            valid_height: vh,
        })
    }

    /// mmseg's test: more than one non-ignored class, none above `cat_max_ratio`.
    fn crop_is_mixed(
        &self,
        lab: &[u8],
        stride: u32,
        (x, y): (u32, u32),
        (w, h): (u32, u32),
    ) -> bool {
        let mut hist = [0u64; 256];
        for row in y..y + h {
            let s = (row * stride + x) as usize;
            for &v in &lab[s..s + w as usize] {
                hist[v as usize] += 1;
            }
        }
        hist[self.ignore_index as usize] = 0;
        let classes = hist.iter().filter(|&&c| c > 0).count();
        let total: u64 = hist.iter().sum();
        let max = hist.iter().copied().max().unwrap_or(0);
        classes > 1 && (max as f64) / (total as f64) < self.cat_max_ratio
    }
}

fn check_same_size(img: &RgbImage, label: &LabelMap) -> Result<()> {
    if img.dimensions() != (label.width, label.height) {
        return Err(DatasetError::InvalidConfig(format!(
            "image is {}x{} but its label map is {}x{}",
            img.width(),
            img.height(),
            label.width,
            label.height
        )));
    }
    Ok(())
}

/// ADE20K single-scale test transform.
#[derive(Debug, Clone, PartialEq)]
pub struct SegTestTransform {
    /// `(long, short)` bounds (`(2048, 512)`).
    pub scale: (u32, u32),
    /// Normalisation.
    pub normalize: Normalize,
}

/// One test input.
#[derive(Debug, Clone, PartialEq)]
pub struct SegTestSample {
    /// CHW `3 × height × width`, normalised.
    pub image: Vec<f32>,
    /// Resized width.
    pub width: u32,
    /// Resized height.
    pub height: u32,
    /// Original width (predictions are resized back to it).
    pub ori_width: u32,
    /// Original height.
    pub ori_height: u32,
}

impl SegTestTransform {
    /// `Resize(scale=(2048, 512), keep_ratio=True)`.
    pub fn ade20k() -> Self {
        Self::for_crop(512)
    }

    /// The same rule for crop side `crop`: scale `(4·crop, crop)`.
    pub fn for_crop(crop: u32) -> Self {
        SegTestTransform {
            scale: (4 * crop, crop),
            normalize: Normalize::IMAGENET_255,
        }
    }

    /// Resizes and normalises.
    pub fn apply(&self, img: &RgbImage) -> SegTestSample {
        let (nw, nh, _) = rescale_keep_ratio(img.width(), img.height(), self.scale.0, self.scale.1);
        let resized = resize_bilinear_cv(img, nw, nh);
        SegTestSample {
            image: self.normalize.apply(&resized),
            width: nw,
            height: nh,
            ori_width: img.width(),
            ori_height: img.height(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn rescale_matches_mmcv() {
        // 683x512 with (2048, 512): factor min(2048/683, 512/512) = 1.
        assert_eq!(rescale_keep_ratio(683, 512, 2048, 512).0, 683);
        // 400x300 -> short side 512: 682.67 -> 683.
        let (w, h, _) = rescale_keep_ratio(400, 300, 2048, 512);
        assert_eq!((w, h), (683, 512));
        // Very wide: the long bound wins.
        let (w, h, _) = rescale_keep_ratio(5000, 500, 2048, 512);
        assert_eq!((w, h), (2048, 205));
    }

    fn two_class_scene() -> (RgbImage, LabelMap) {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 77]));
        let mut lab = LabelMap::filled(64, 48, 0);
        for y in 0..48 {
            for x in 40..64 {
                lab.data[y * 64 + x] = 3;
            }
        }
        (img, lab)
    }

    #[test]
    fn train_shapes_padding_and_labels() {
        let (img, lab) = two_class_scene();
        let mut t = SegTrainTransform::for_crop(32);
        t.ratio_range = (0.25, 0.25); // scale (32, 8) * ... -> a tiny image that needs padding
        let s = t
            .apply(&img, &lab, &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap();
        assert_eq!((s.width, s.height), (32, 32));
        assert!(s.valid_width < 32 && s.valid_height < 32);
        assert_eq!(s.image.len(), 3 * 32 * 32);
        // Padding: labels 255, image 0.
        assert_eq!(s.label[31 * 32 + 31], 255);
        assert_eq!(s.image[31 * 32 + 31], 0.0);
        assert!(s.label.iter().all(|&v| v == 0 || v == 3 || v == 255));
    }

    #[test]
    fn cat_max_ratio_prefers_mixed_crops() {
        let (img, lab) = two_class_scene();
        let mut t = SegTrainTransform::for_crop(16);
        t.ratio_range = (1.0, 1.0); // scale (64, 16): image becomes 21x16
        t.photometric = None;
        let mut balanced = 0;
        for seed in 0..50 {
            let s = t
                .apply(&img, &lab, &mut ChaCha8Rng::seed_from_u64(seed))
                .unwrap();
            let threes = s.label.iter().filter(|&&v| v == 3).count();
            let zeros = s.label.iter().filter(|&&v| v == 0).count();
            balanced += ((threes.max(zeros) as f64) / ((threes + zeros) as f64) < 0.75) as usize;
        }
        // The image becomes 21x16 with class 3 in columns 14..=20: half of the 6 possible
        // 16-wide crops keep the background under 75%. With 10 redraws nearly all do.
        assert!(balanced >= 45, "{balanced}");
    }

    #[test]
    fn size_mismatch_is_an_error() {
        let (img, _) = two_class_scene();
        let lab = LabelMap::filled(10, 10, 0);
        let t = SegTrainTransform::for_crop(16);
        assert!(
            t.apply(&img, &lab, &mut ChaCha8Rng::seed_from_u64(0))
                .is_err()
        );
    }

    #[test]
    fn test_transform_keeps_ratio() {
        let img = RgbImage::new(64, 48);
        let s = SegTestTransform::for_crop(32).apply(&img);
        assert_eq!(
            (s.width, s.height, s.ori_width, s.ori_height),
            (43, 32, 64, 48)
        );
        assert_eq!(s.image.len(), 3 * 43 * 32);
    }
}
