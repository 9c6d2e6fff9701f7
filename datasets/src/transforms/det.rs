//! COCO detection / instance segmentation transforms (mmdet `Resize(keep_ratio=True)`,
//! `RandomFlip`, `Normalize`, `Pad(size_divisor=32)`; protocols.md §3).
//!
//! Train: the shorter side is resized to a size drawn from `short_sides` (one entry = the
//! standard 1x schedule's 800; DETR-style multi-scale lists 480..800) unless the longer side
//! would pass `max_size` (mmcv `rescale_size`), image bilinear, masks nearest (OpenCV rules).
//! Boxes are scaled by the actual `new/old` ratios and clipped to the image; then an optional
//! horizontal flip of image, boxes (`x1' = W - x2`) and masks; then normalisation and padding
//! of the image (bottom/right, zeros after normalisation) to a multiple of `size_divisor`.
//!
//! Objects with a box narrower or shorter than 1 px, or with zero area, are dropped (mmdet's
//! `_parse_ann_info`); crowd objects are kept and flagged (mmdet's `gt_bboxes_ignore`).
//! Masks are kept at the *unpadded* size (`valid_width × valid_height`): the padding is empty
//! by definition and a full-size mask per object would cost `H·W` bytes each.

use image::RgbImage;
use rand::Rng;

use super::Normalize;
use super::resample::{
    flip_map_horizontal, flip_rgb_horizontal, resize_bilinear_cv, resize_nearest_cv,
};
use super::seg::rescale_keep_ratio;
use crate::coco::CocoRecord;
use crate::error::{DatasetError, Result};

/// One object after the transform.
#[derive(Debug, Clone, PartialEq)]
pub struct DetInstance {
    /// `[x1, y1, x2, y2]` in output pixels.
    pub bbox: [f32; 4],
    /// Contiguous label.
    pub label: usize,
    /// Crowd region (to be ignored by the loss, as mmdet's `gt_bboxes_ignore`).
    pub crowd: bool,
    /// Binary mask, `valid_height × valid_width`, row-major.
    pub mask: Vec<u8>,
}

/// One transformed image.
#[derive(Debug, Clone, PartialEq)]
pub struct DetSample {
    /// CHW `3 × height × width`, normalised, zero-padded.
    pub image: Vec<f32>,
    /// Padded width (multiple of the size divisor).
    pub width: u32,
    /// Padded height.
    pub height: u32,
    /// Resized width before padding.
    pub valid_width: u32,
    /// Resized height before padding.
    pub valid_height: u32,
    /// `(new_w / old_w, new_h / old_h)`: divide predicted boxes by it to return to the input.
    pub scale: (f32, f32),
    /// Whether the image was flipped.
    pub flipped: bool,
    /// Objects.
    pub instances: Vec<DetInstance>,
}

/// COCO training transform.
#[derive(Debug, Clone, PartialEq)]
pub struct DetTrainTransform {
    /// Shorter-side sizes to draw from uniformly.
    pub short_sides: Vec<u32>,
    /// Bound on the longer side.
    pub max_size: u32,
    /// Probability of the horizontal flip.
    pub flip_prob: f64,
    /// Pad to a multiple of this.
    pub size_divisor: u32,
    /// Normalisation (mmdet's ImageNet mean/std on 0..255).
    pub normalize: Normalize,
}

impl DetTrainTransform {
    /// The 1x schedule: short side 800, max 1333, flip 0.5, pad 32.
    pub fn coco_1x() -> Self {
        DetTrainTransform {
            short_sides: vec![800],
            max_size: 1333,
            flip_prob: 0.5,
            size_divisor: 32,
            normalize: Normalize::IMAGENET_255,
        }
    }

    /// Checks sizes.
    pub fn validate(&self) -> Result<()> {
        if self.short_sides.is_empty()
            || self.short_sides.contains(&0)
            || self.max_size == 0
            || self.size_divisor == 0
        {
            return Err(DatasetError::InvalidConfig(format!(
                "detection transform needs non-empty positive short_sides, max_size and size_divisor (got {:?}, {}, {})",
                self.short_sides, self.max_size, self.size_divisor
            )));
        }
        Ok(())
    }

    /// Transforms a loaded COCO image with its objects.
    pub fn apply(&self, record: &CocoRecord, rng: &mut impl Rng) -> Result<DetSample> {
        self.validate()?;
        let short = self.short_sides[rng.random_range(0..self.short_sides.len())];
        let flip = rng.random::<f64>() < self.flip_prob;
        transform(
            record,
            short,
            self.max_size,
            flip,
            self.size_divisor,
            &self.normalize,
        )
    }
}

/// COCO test transform: resize (short 800, max 1333), no flip, pad 32.
#[derive(Debug, Clone, PartialEq)]
pub struct DetTestTransform {
    /// Shorter side.
    pub short_side: u32,
    /// Bound on the longer side.
    pub max_size: u32,
    /// Pad to a multiple of this.
    pub size_divisor: u32,
    /// Normalisation.
    pub normalize: Normalize,
}

impl DetTestTransform {
    /// Short side 800, max 1333, pad 32.
    pub fn coco() -> Self {
        DetTestTransform {
            short_side: 800,
            max_size: 1333,
            size_divisor: 32,
            normalize: Normalize::IMAGENET_255,
        }
    }

    /// Resizes, normalises and pads an image (no objects).
    pub fn apply(&self, image: &RgbImage) -> Result<DetSample> {
        let record = CocoRecord {
            image_id: 0,
            file: Default::default(),
            image: image.clone(),
            instances: Vec::new(),
        };
        transform(
            &record,
            self.short_side,
            self.max_size,
            false,
            self.size_divisor.max(1),
            &self.normalize,
        )
    }
}

fn transform(
    record: &CocoRecord,
    short: u32,
    max_size: u32,
    flip: bool,
    divisor: u32,
    normalize: &Normalize,
) -> Result<DetSample> {
    let img = &record.image;
    let (w, h) = img.dimensions();
    let (nw, nh, _) = rescale_keep_ratio(w, h, max_size, short);
    let (sx, sy) = (nw as f32 / w as f32, nh as f32 / h as f32);
    let mut resized = resize_bilinear_cv(img, nw, nh);
    if flip {
        flip_rgb_horizontal(&mut resized);
    }
    let mut instances = Vec::new();
    for inst in &record.instances {
        let [x, y, bw, bh] = inst.bbox;
        if bw < 1.0 || bh < 1.0 || inst.area <= 0.0 {
            continue;
        }
        if (inst.mask.width, inst.mask.height) != (w, h) {
            return Err(DatasetError::InvalidConfig(format!(
                "object {} of image {}: mask is {}x{} but the image is {w}x{h}",
                inst.ann_id,
                record.file.display(),
                inst.mask.width,
                inst.mask.height
            )));
        }
        let mut b = [
            (x as f32 * sx).clamp(0.0, nw as f32),
            (y as f32 * sy).clamp(0.0, nh as f32),
            ((x + bw) as f32 * sx).clamp(0.0, nw as f32),
            ((y + bh) as f32 * sy).clamp(0.0, nh as f32),
        ];
        if flip {
            b = [nw as f32 - b[2], b[1], nw as f32 - b[0], b[3]];
        }
        let mut mask = resize_nearest_cv(&inst.mask.data, w, h, nw, nh);
        if flip {
            flip_map_horizontal(&mut mask, nw as usize);
        }
        instances.push(DetInstance {
            bbox: b,
            label: inst.label,
            crowd: inst.iscrowd,
            mask,
        });
    }
    let pw = nw.div_ceil(divisor) * divisor;
    let ph = nh.div_ceil(divisor) * divisor;
    let mut image = vec![0f32; 3 * (pw * ph) as usize];
    normalize.apply_into(&resized, &mut image, pw, ph);
    Ok(DetSample {
        image,
        width: pw,
        height: ph,
        valid_width: nw,
        valid_height: nh,
        scale: (sx, sy),
        flipped: flip,
        instances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coco::CocoInstance;
    use crate::io::LabelMap;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn record() -> CocoRecord {
        let (w, h) = (40u32, 30u32);
        let mut mask = LabelMap::filled(w, h, 0);
        for y in 5..15 {
            for x in 2..12 {
                mask.data[(y * w + x) as usize] = 1;
            }
        }
        CocoRecord {
            image_id: 1,
            file: "x.png".into(),
            image: RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30])),
            instances: vec![
                CocoInstance {
                    ann_id: 1,
                    category_id: 5,
                    label: 0,
                    bbox: [2.0, 5.0, 10.0, 10.0],
                    area: 100.0,
                    iscrowd: false,
                    mask,
                },
                CocoInstance {
                    ann_id: 2,
                    category_id: 5,
                    label: 0,
                    bbox: [0.0, 0.0, 0.5, 3.0],
                    area: 1.0,
                    iscrowd: false,
                    mask: LabelMap::filled(w, h, 0),
                },
            ],
        }
    }

    #[test]
    fn resize_flip_pad_boxes_and_masks() {
        let t = DetTrainTransform {
            short_sides: vec![60],
            max_size: 1000,
            flip_prob: 1.0,
            size_divisor: 32,
            normalize: Normalize::IMAGENET_255,
        };
        let s = t
            .apply(&record(), &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap();
        assert_eq!((s.valid_width, s.valid_height), (80, 60));
        assert_eq!((s.width, s.height), (96, 64));
        assert!(s.flipped);
        assert_eq!(s.instances.len(), 1, "the 0.5-px-wide box is dropped");
        let inst = &s.instances[0];
        // x 2..12 scaled by 2 -> 4..24, flipped in an 80-wide image -> 56..76.
        assert_eq!(inst.bbox, [56.0, 10.0, 76.0, 30.0]);
        assert_eq!(inst.mask.len(), 80 * 60);
        let on = |x: usize, y: usize| inst.mask[y * 80 + x];
        assert_eq!(
            (on(56, 10), on(75, 29), on(55, 10), on(76, 29)),
            (1, 1, 0, 0)
        );
        // Padding stays 0.
        assert_eq!(s.image[63 * 96 + 95], 0.0);
    }

    #[test]
    fn test_transform_caps_long_side() {
        let t = DetTestTransform {
            short_side: 80,
            max_size: 100,
            size_divisor: 32,
            normalize: Normalize::IMAGENET_255,
        };
        // Short side 80 would make the long side 320 > 100, so the long side wins.
        let s = t.apply(&RgbImage::new(200, 50)).unwrap();
        assert_eq!(
            (s.valid_width, s.valid_height, s.width, s.height),
            (100, 25, 128, 32)
        );
    }
}
