//! Crop geometry: RandomResizedCrop parameters, center crops, shorter-side resizing.

use rand::Rng;

use super::py_round;
use super::resample::Rect;
use crate::error::{DatasetError, Result};

/// How RandomResizedCrop draws its rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropSampling {
    /// torchvision `RandomResizedCrop.get_params` (also timm's and CAE's): up to 10 draws of
    /// (area, log-aspect); the first that fits is used, else a center crop of the nearest
    /// allowed aspect ratio.
    Torchvision,
    /// MAE/CAE linear probing (`util/crop.py`, TF/BYOL style): one draw, width and height
    /// clipped to the image.
    Clipped,
}

/// RandomResizedCrop's rectangle sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// Range of the crop area as a fraction of the image area.
    pub scale: (f64, f64),
    /// Range of the aspect ratio `w / h` (drawn uniformly in log space).
    pub ratio: (f64, f64),
    /// Which sampling rule.
    pub sampling: CropSampling,
}

impl Default for RandomResizedCrop {
    /// scale 0.08–1, ratio 3/4–4/3, torchvision sampling.
    fn default() -> Self {
        RandomResizedCrop {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            sampling: CropSampling::Torchvision,
        }
    }
}

impl RandomResizedCrop {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let (s0, s1) = self.scale;
        let (r0, r1) = self.ratio;
        let scale_ok = s0 > 0.0 && s0 <= s1 && s1.is_finite();
        let ratio_ok = r0 > 0.0 && r0 <= r1 && r1.is_finite();
        if !(scale_ok && ratio_ok) {
            return Err(DatasetError::InvalidConfig(format!(
                "RandomResizedCrop needs 0 < scale.0 <= scale.1 and 0 < ratio.0 <= ratio.1, got scale {:?} ratio {:?}",
                self.scale, self.ratio
            )));
        }
        Ok(())
    }

    /// Draws a crop rectangle inside a `width × height` image (both > 0).
    pub fn sample(&self, width: u32, height: u32, rng: &mut impl Rng) -> Rect {
        let (w_img, h_img) = (width as f64, height as f64);
        let area = w_img * h_img;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        let draw = |rng: &mut dyn rand::RngCore| {
            let target = area * uniform(rng, self.scale.0, self.scale.1);
            let aspect = uniform(rng, lr0, lr1).exp();
            let w = py_round((target * aspect).sqrt());
            let h = py_round((target / aspect).sqrt());
            (w, h)
        };
        match self.sampling {
            CropSampling::Torchvision => {
                for _ in 0..10 {
                    let (w, h) = draw(rng);
                    if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
                        let (w, h) = (w as u32, h as u32);
                        let y = rng.random_range(0..=height - h);
                        let x = rng.random_range(0..=width - w);
                        return Rect { x, y, w, h };
                    }
                }
                // Fallback: center crop at the closest allowed ratio.
                let in_ratio = w_img / h_img;
                let (w, h) = if in_ratio < self.ratio.0 {
                    (
                        width,
                        (py_round(w_img / self.ratio.0) as u32).clamp(1, height),
                    )
                } else if in_ratio > self.ratio.1 {
                    (
                        (py_round(h_img * self.ratio.1) as u32).clamp(1, width),
                        height,
                    )
                } else {
                    (width, height)
                };
                Rect {
                    x: (width - w) / 2,
                    y: (height - h) / 2,
                    w,
                    h,
                }
            }
            CropSampling::Clipped => {
                let (w, h) = draw(rng);
                let w = (w.max(1) as u32).min(width);
                let h = (h.max(1) as u32).min(height);
                let y = rng.random_range(0..=height - h);
                let x = rng.random_range(0..=width - w);
                Rect { x, y, w, h }
            }
        }
    }
}

fn uniform(rng: &mut (impl Rng + ?Sized), lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer
/// `int(size * long / short)`. Returns `(new_w, new_h)`.
pub fn resize_short_side_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = ((size as f64 * long as f64 / short as f64) as u32).max(1);
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision `CenterCrop`: offsets `round((in - out) / 2)` (ties to even). Requires the
/// crop to fit.
pub fn center_crop_rect(width: u32, height: u32, crop_w: u32, crop_h: u32) -> Rect {
    let x = py_round((width as f64 - crop_w as f64) / 2.0).max(0) as u32;
    let y = py_round((height as f64 - crop_h as f64) / 2.0).max(0) as u32;
    Rect {
        x,
        y,
        w: crop_w.min(width),
        h: crop_h.min(height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn rrc_stays_inside_and_respects_ranges() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for sampling in [CropSampling::Torchvision, CropSampling::Clipped] {
            let rrc = RandomResizedCrop {
                sampling,
                ..Default::default()
            };
            let mut areas = Vec::new();
            for _ in 0..2000 {
                let r = rrc.sample(256, 192, &mut rng);
                assert!(r.w > 0 && r.h > 0 && r.x + r.w <= 256 && r.y + r.h <= 192);
                areas.push((r.w * r.h) as f64 / (256.0 * 192.0));
            }
            let min = areas.iter().cloned().fold(1.0, f64::min);
            let max = areas.iter().cloned().fold(0.0, f64::max);
            assert!(min < 0.1 && min > 0.07, "{sampling:?} {min}");
            assert!(max > 0.9, "{sampling:?} {max}");
        }
    }

    #[test]
    fn rrc_fallback_is_center_crop() {
        // A 100x10 strip: no draw of ratio <= 4/3 with area >= 8% fits often; force with scale 1.
        let rrc = RandomResizedCrop {
            scale: (1.0, 1.0),
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let r = rrc.sample(100, 10, &mut rng);
        assert_eq!(
            r,
            Rect {
                x: 43,
                y: 0,
                w: 13,
                h: 10
            }
        );
    }

    #[test]
    fn short_side_and_center_crop_follow_torchvision() {
        assert_eq!(resize_short_side_size(500, 375, 256), (341, 256));
        assert_eq!(resize_short_side_size(32, 32, 37), (37, 37));
        assert_eq!(resize_short_side_size(30, 40, 37), (37, 49));
        // (37 - 32) / 2 = 2.5 rounds to 2.
        assert_eq!(
            center_crop_rect(37, 37, 32, 32),
            Rect {
                x: 2,
                y: 2,
                w: 32,
                h: 32
            }
        );
        assert_eq!(
            center_crop_rect(256, 341, 224, 224),
            Rect {
                x: 16,
                y: 58,
                w: 224,
                h: 224
            }
        );
    }
}
