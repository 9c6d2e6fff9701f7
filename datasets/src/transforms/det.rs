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

/// CAE's DETR-style `AutoAugment` branch (the second policy of CAE's detection config, after
/// DETR): resize to a short side drawn from `first_short_sides` (keep ratio, the transform's
/// `max_size`), a `RandomCrop(crop_type="absolute_range", crop_size=crop_range,
/// allow_negative_crop=True)`, then the multi-scale resize of the first policy again
/// (`override=True`, a new draw from the transform's `short_sides`).
///
/// mmdet 2.11 `RandomCrop` semantics: `crop_h` is uniform in `[min(h, lo), min(h, hi)]`
/// (inclusive), `crop_w` likewise; the offsets are uniform in `[0, h - crop_h]`,
/// `[0, w - crop_w]`; boxes are shifted by the offset and clipped to the crop, and an object
/// is kept when its clipped box has `x2 > x1 && y2 > y1` (crowd boxes, mmdet's
/// `gt_bboxes_ignore`, the same); masks are cropped with their objects. A crop that keeps no
/// object is allowed (the image trains as a negative).
#[derive(Debug, Clone, PartialEq)]
pub struct DetrCropBranch {
    /// Short sides of the resize before the crop.
    pub first_short_sides: Vec<u32>,
    /// `(lo, hi)` bounds of the crop's height and width in pixels.
    pub crop_range: (u32, u32),
    /// Probability of this branch (AutoAugment draws one of its policies uniformly: ½ for two).
    pub prob: f64,
}

impl DetrCropBranch {
    /// CAE's config: short sides 400/500/600, crop 384–600, one of two policies.
    pub fn cae() -> Self {
        DetrCropBranch {
            first_short_sides: vec![400, 500, 600],
            crop_range: (384, 600),
            prob: 0.5,
        }
    }
}

/// COCO training transform.
///
/// Without a crop branch this is mmdet's base 1x pipeline: `Resize`, then `RandomFlip`. With
/// one it is CAE's: `RandomFlip` at the original resolution first, then `AutoAugment`
/// choosing between the multi-scale resize and [`DetrCropBranch`].
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
    /// CAE's DETR-style crop policy (None: mmdet's base pipeline).
    pub crop_branch: Option<DetrCropBranch>,
}

impl DetTrainTransform {
    /// The 1x schedule: short side 800, max 1333, flip 0.5, pad 32, no crop branch.
    pub fn coco_1x() -> Self {
        DetTrainTransform {
            short_sides: vec![800],
            max_size: 1333,
            flip_prob: 0.5,
            size_divisor: 32,
            normalize: Normalize::IMAGENET_255,
            crop_branch: None,
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
        if let Some(c) = &self.crop_branch {
            let (lo, hi) = c.crop_range;
            if c.first_short_sides.is_empty()
                || c.first_short_sides.contains(&0)
                || lo == 0
                || lo > hi
                || !(0.0..=1.0).contains(&c.prob)
            {
                return Err(DatasetError::InvalidConfig(format!(
                    "crop branch needs non-empty positive first_short_sides, 0 < lo <= hi and a probability (got {:?}, {:?}, {})",
                    c.first_short_sides, c.crop_range, c.prob
                )));
            }
        }
        Ok(())
    }

    /// Transforms a loaded COCO image with its objects.
    pub fn apply(&self, record: &CocoRecord, rng: &mut impl Rng) -> Result<DetSample> {
        self.validate()?;
        let work = Work::from_record(record)?;
        let Some(branch) = &self.crop_branch else {
            // mmdet base: Resize, then RandomFlip.
            let short = self.short_sides[rng.random_range(0..self.short_sides.len())];
            let flip = rng.random::<f64>() < self.flip_prob;
            let mut work = work.resize(short, self.max_size);
            if flip {
                work.flip();
            }
            return Ok(work.finish(flip, self.size_divisor, &self.normalize));
        };
        // CAE: RandomFlip, then AutoAugment.
        let flip = rng.random::<f64>() < self.flip_prob;
        let mut work = work;
        if flip {
            work.flip();
        }
        let crop = rng.random::<f64>() < branch.prob;
        let work = if crop {
            let first =
                branch.first_short_sides[rng.random_range(0..branch.first_short_sides.len())];
            let mut w = work.resize(first, self.max_size);
            w.random_crop(branch.crop_range, rng);
            w
        } else {
            work
        };
        let short = self.short_sides[rng.random_range(0..self.short_sides.len())];
        let mut work = work.resize(short, self.max_size);
        if crop {
            // The sample's scale is the product of both resizes (the crop adds an offset it
            // does not carry): it is for training only.
            work.scale = (
                work.scale.0 * work.prev_scale.0,
                work.scale.1 * work.prev_scale.1,
            );
        }
        Ok(work.finish(flip, self.size_divisor, &self.normalize))
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
        let work = Work::from_record(&record)?.resize(self.short_side, self.max_size);
        Ok(work.finish(false, self.size_divisor.max(1), &self.normalize))
    }
}

/// One object between the stages: `[x1, y1, x2, y2]` and a mask at the current image size.
struct WorkInstance {
    bbox: [f32; 4],
    label: usize,
    crowd: bool,
    mask: Vec<u8>,
}

/// An image and its objects between the stages of the pipeline.
struct Work {
    image: RgbImage,
    instances: Vec<WorkInstance>,
    /// `(new_w / old_w, new_h / old_h)` of the last resize.
    scale: (f32, f32),
    /// The same of the resize before it (the crop branch's first).
    prev_scale: (f32, f32),
}

impl Work {
    /// Objects narrower or shorter than 1 px or with zero area are dropped (mmdet's
    /// `_parse_ann_info`); masks must have the image's size.
    fn from_record(record: &CocoRecord) -> Result<Work> {
        let img = &record.image;
        let (w, h) = img.dimensions();
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
            instances.push(WorkInstance {
                bbox: [x as f32, y as f32, (x + bw) as f32, (y + bh) as f32],
                label: inst.label,
                crowd: inst.iscrowd,
                mask: inst.mask.data.clone(),
            });
        }
        Ok(Work {
            image: img.clone(),
            instances,
            scale: (1.0, 1.0),
            prev_scale: (1.0, 1.0),
        })
    }

    /// mmdet `Resize(keep_ratio=True)`: image bilinear, masks nearest, boxes scaled by the
    /// actual ratios and clipped to the new image.
    fn resize(self, short: u32, max_size: u32) -> Work {
        let (w, h) = self.image.dimensions();
        let (nw, nh, _) = rescale_keep_ratio(w, h, max_size, short);
        let (sx, sy) = (nw as f32 / w as f32, nh as f32 / h as f32);
        let image = resize_bilinear_cv(&self.image, nw, nh);
        let instances = self
            .instances
            .into_iter()
            .map(|i| WorkInstance {
                bbox: [
                    (i.bbox[0] * sx).clamp(0.0, nw as f32),
                    (i.bbox[1] * sy).clamp(0.0, nh as f32),
                    (i.bbox[2] * sx).clamp(0.0, nw as f32),
                    (i.bbox[3] * sy).clamp(0.0, nh as f32),
                ],
                mask: resize_nearest_cv(&i.mask, w, h, nw, nh),
                ..i
            })
            .collect();
        Work {
            image,
            instances,
            scale: (sx, sy),
            prev_scale: self.scale,
        }
    }

    /// mmdet `RandomFlip(direction="horizontal")`: `x1' = W - x2`.
    fn flip(&mut self) {
        let w = self.image.width();
        flip_rgb_horizontal(&mut self.image);
        for i in &mut self.instances {
            let b = i.bbox;
            i.bbox = [w as f32 - b[2], b[1], w as f32 - b[0], b[3]];
            flip_map_horizontal(&mut i.mask, w as usize);
        }
    }

    /// mmdet 2.11 `RandomCrop(crop_type="absolute_range", allow_negative_crop=True)`.
    fn random_crop(&mut self, (lo, hi): (u32, u32), rng: &mut impl Rng) {
        let (w, h) = self.image.dimensions();
        let crop_h = rng.random_range(lo.min(h)..=hi.min(h));
        let crop_w = rng.random_range(lo.min(w)..=hi.min(w));
        let off_y = rng.random_range(0..=h - crop_h);
        let off_x = rng.random_range(0..=w - crop_w);
        self.crop(off_x, off_y, crop_w, crop_h);
    }

    /// Crops `[off_x, off_x + cw) × [off_y, off_y + ch)`; objects whose shifted, clipped box
    /// is empty are dropped.
    fn crop(&mut self, off_x: u32, off_y: u32, cw: u32, ch: u32) {
        let w = self.image.width() as usize;
        self.image = image::imageops::crop_imm(&self.image, off_x, off_y, cw, ch).to_image();
        let (fx, fy) = (off_x as f32, off_y as f32);
        let instances = std::mem::take(&mut self.instances);
        self.instances = instances
            .into_iter()
            .filter_map(|i| {
                let b = [
                    (i.bbox[0] - fx).clamp(0.0, cw as f32),
                    (i.bbox[1] - fy).clamp(0.0, ch as f32),
                    (i.bbox[2] - fx).clamp(0.0, cw as f32),
                    (i.bbox[3] - fy).clamp(0.0, ch as f32),
                ];
                if !(b[2] > b[0] && b[3] > b[1]) {
                    return None;
                }
                let mut mask = Vec::with_capacity((cw * ch) as usize);
                for y in off_y as usize..(off_y + ch) as usize {
                    let row = y * w + off_x as usize;
                    mask.extend_from_slice(&i.mask[row..row + cw as usize]);
                }
                Some(WorkInstance { bbox: b, mask, ..i })
            })
            .collect();
    }

    /// Normalises and pads the image (bottom/right) to a multiple of `divisor`.
    fn finish(self, flipped: bool, divisor: u32, normalize: &Normalize) -> DetSample {
        let (nw, nh) = self.image.dimensions();
        let pw = nw.div_ceil(divisor) * divisor;
        let ph = nh.div_ceil(divisor) * divisor;
        let mut image = vec![0f32; 3 * (pw * ph) as usize];
        normalize.apply_into(&self.image, &mut image, pw, ph);
        DetSample {
            image,
            width: pw,
            height: ph,
            valid_width: nw,
            valid_height: nh,
            scale: self.scale,
            flipped,
            instances: self
                .instances
                .into_iter()
                .map(|i| DetInstance {
                    bbox: i.bbox,
                    label: i.label,
                    crowd: i.crowd,
                    mask: i.mask,
                })
                .collect(),
        }
    }
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
            crop_branch: None,
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

    /// A `w × h` record with one crowd-free object per `[x, y, bw, bh]` box (mask = box).
    fn boxes_record(w: u32, h: u32, boxes: &[([u32; 4], bool)]) -> CocoRecord {
        let instances = boxes
            .iter()
            .enumerate()
            .map(|(k, &([x, y, bw, bh], crowd))| {
                let mut mask = LabelMap::filled(w, h, 0);
                for yy in y..y + bh {
                    for xx in x..x + bw {
                        mask.data[(yy * w + xx) as usize] = 1;
                    }
                }
                CocoInstance {
                    ann_id: k as u64 + 1,
                    category_id: 1,
                    label: k,
                    bbox: [x as f64, y as f64, bw as f64, bh as f64],
                    area: (bw * bh) as f64,
                    iscrowd: crowd,
                    mask,
                }
            })
            .collect();
        CocoRecord {
            image_id: 1,
            file: "c.png".into(),
            image: RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 0])),
            instances,
        }
    }

    #[test]
    fn crop_shifts_clips_and_drops_objects_by_hand() {
        // 100x80 image; crop x 20..70, y 10..50 (50 x 40).
        let rec = boxes_record(
            100,
            80,
            &[
                ([30, 20, 10, 10], false), // inside: shifted to [10, 10, 20, 20]
                ([60, 40, 30, 30], true), // crowd, straddles the corner: clipped to [40, 30, 50, 40]
                ([0, 0, 20, 80], false),  // ends at x = 20: empty after the clip, dropped
                ([80, 60, 10, 10], true), // crowd wholly outside: dropped
            ],
        );
        let mut w = Work::from_record(&rec).unwrap();
        w.crop(20, 10, 50, 40);
        assert_eq!(w.image.dimensions(), (50, 40));
        assert_eq!(w.image.get_pixel(0, 0).0, [20, 10, 0]);
        assert_eq!(w.image.get_pixel(49, 39).0, [69, 49, 0]);
        let got: Vec<_> = w
            .instances
            .iter()
            .map(|i| (i.label, i.crowd, i.bbox))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, false, [10.0, 10.0, 20.0, 20.0]),
                (1, true, [40.0, 30.0, 50.0, 40.0])
            ]
        );
        for i in &w.instances {
            assert_eq!(i.mask.len(), 50 * 40);
            let area: usize = i.mask.iter().map(|&m| m as usize).sum();
            let [x1, y1, x2, y2] = i.bbox;
            assert_eq!(
                area as f32,
                (x2 - x1) * (y2 - y1),
                "mask cropped with its box"
            );
            assert_eq!(i.mask[y1 as usize * 50 + x1 as usize], 1);
        }
    }

    #[test]
    fn crop_draws_stay_in_mmdets_absolute_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut hs, mut ws) = (
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::new(),
        );
        for _ in 0..400 {
            let mut w = Work::from_record(&boxes_record(700, 450, &[])).unwrap();
            w.random_crop((384, 600), &mut rng);
            let (cw, ch) = w.image.dimensions();
            assert!(
                (384..=450).contains(&ch),
                "crop_h in [min(h,384), min(h,600)]: {ch}"
            );
            assert!((384..=600).contains(&cw), "crop_w in [384, 600]: {cw}");
            hs.insert(ch);
            ws.insert(cw);
        }
        assert!(
            hs.contains(&384) && hs.contains(&450),
            "both ends drawn: {hs:?}"
        );
        assert!(ws.len() > 150, "widths spread over the range");
        // An image smaller than the range is kept whole.
        let mut w = Work::from_record(&boxes_record(300, 200, &[([5, 5, 4, 4], false)])).unwrap();
        w.random_crop((384, 600), &mut rng);
        assert_eq!(w.image.dimensions(), (300, 200));
        assert_eq!(w.instances[0].bbox, [5.0, 5.0, 9.0, 9.0]);
    }

    #[test]
    fn negative_crops_train_as_empty_images() {
        // One object in the corner of a 1000x1000 image; a 384..600 crop misses it whenever
        // an offset passes 300: such samples come out with no objects, not an error.
        let rec = boxes_record(1000, 1000, &[([0, 0, 300, 300], false)]);
        let t = DetTrainTransform {
            short_sides: vec![1000],
            max_size: 2000,
            flip_prob: 0.0,
            crop_branch: Some(DetrCropBranch {
                first_short_sides: vec![1000],
                crop_range: (384, 600),
                prob: 1.0,
            }),
            ..DetTrainTransform::coco_1x()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (mut empty, mut kept) = (0, 0);
        for _ in 0..60 {
            let s = t.apply(&rec, &mut rng).unwrap();
            if s.instances.is_empty() {
                empty += 1;
            } else {
                kept += 1;
            }
        }
        assert!(empty > 10 && kept > 10, "empty {empty}, kept {kept}");
    }

    #[test]
    fn cae_pipeline_picks_either_branch_with_the_right_sizes() {
        // 640x480: the resize branch gives short side 800 -> 1067x800; the crop branch resizes
        // to 533x400 / 667x500 / 800x600, crops 384..600 and resizes the crop to short 800.
        let rec = boxes_record(640, 480, &[([100, 100, 200, 200], false)]);
        let t = DetTrainTransform {
            short_sides: vec![800],
            max_size: 1333,
            crop_branch: Some(DetrCropBranch::cae()),
            ..DetTrainTransform::coco_1x()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut plain, mut cropped, mut flipped) = (0, 0, 0);
        for _ in 0..40 {
            let s = t.apply(&rec, &mut rng).unwrap();
            flipped += s.flipped as usize;
            let (w, h) = (s.valid_width, s.valid_height);
            if (w, h) == (1067, 800) {
                plain += 1;
                continue;
            }
            cropped += 1;
            assert!(
                w.min(h) == 800 || w.max(h) == 1333,
                "second resize: {w}x{h}"
            );
            assert_eq!((s.width % 32, s.height % 32), (0, 0));
            for i in &s.instances {
                assert!(i.bbox[2] <= w as f32 && i.bbox[3] <= h as f32);
                assert_eq!(i.mask.len(), (w * h) as usize);
            }
        }
        assert!(
            plain > 10 && cropped > 10,
            "plain {plain}, cropped {cropped}"
        );
        assert!(flipped > 10 && flipped < 30, "flipped {flipped}");
    }

    #[test]
    fn cae_flip_comes_before_the_resize() {
        // A mask column at x = 0 of a 40x30 image, resized x1.5 to 60x45 and flipped. Nearest
        // resize maps output columns 0 and 1 to source column 0, so the base order (resize,
        // then flip) marks columns 58 and 59; CAE's (flip at the original resolution, then
        // resize) maps source column 39 to output column 59 only.
        let rec = boxes_record(40, 30, &[([0, 0, 1, 30], false)]);
        let base = DetTrainTransform {
            short_sides: vec![45],
            max_size: 1000,
            flip_prob: 1.0,
            ..DetTrainTransform::coco_1x()
        };
        let cae = DetTrainTransform {
            crop_branch: Some(DetrCropBranch {
                prob: 0.0,
                ..DetrCropBranch::cae()
            }),
            ..base.clone()
        };
        let cols = |t: &DetTrainTransform| {
            let s = t.apply(&rec, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
            assert_eq!((s.valid_width, s.valid_height), (60, 45));
            let m = &s.instances[0].mask;
            let on: Vec<usize> = (0..60).filter(|&x| m[x] == 1).collect();
            (on, s.instances[0].bbox)
        };
        assert_eq!(cols(&base), (vec![58, 59], [58.5, 0.0, 60.0, 45.0]));
        assert_eq!(cols(&cae), (vec![59], [58.5, 0.0, 60.0, 45.0]));
        let bad = DetTrainTransform {
            crop_branch: Some(DetrCropBranch {
                crop_range: (600, 384),
                ..DetrCropBranch::cae()
            }),
            ..DetTrainTransform::coco_1x()
        };
        assert!(bad.validate().is_err());
    }
}
