//! Anchors of the RPN on an FPN (torchvision `AnchorGenerator`, protocols.md §3): one size per
//! level (32, 64, 128, 256, 512 on P2–P6) × the aspect ratios 0.5, 1, 2, scaled by a preset for
//! smaller images.
//!
//! Conventions, as torchvision: the base anchors of a level are `[-w, -h, w, h] / 2` rounded
//! half to even, with `h = size·√r`, `w = size/√r`, computed in f32; a level's stride is
//! `image_size / grid_size` (integer division, per axis, so it need not be the nominal stride);
//! anchors are listed level by level, then position by position in row-major order (y outer),
//! then ratio by ratio.

use super::{BBox, Result, invalid};

/// Sizes (one per level) and aspect ratios (height / width) of the anchors.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorConfig {
    /// Anchor size (square root of the area) on each level, finest first.
    pub sizes: Vec<f32>,
    /// Aspect ratios `h / w`, shared by every level.
    pub ratios: Vec<f32>,
}

impl AnchorConfig {
    /// Mask R-CNN's FPN anchors: sizes 32–512 on P2–P6, ratios 0.5, 1, 2.
    pub fn fpn() -> Self {
        Self {
            sizes: vec![32.0, 64.0, 128.0, 256.0, 512.0],
            ratios: vec![0.5, 1.0, 2.0],
        }
    }

    /// The same anchors with every size multiplied by `factor` (a preset on smaller images).
    pub fn scaled(&self, factor: f32) -> Result<Self> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(invalid(format!("anchor scale factor {factor} must be > 0")));
        }
        Ok(Self {
            sizes: self.sizes.iter().map(|s| s * factor).collect(),
            ratios: self.ratios.clone(),
        })
    }

    /// Anchors per feature-map position.
    pub fn per_position(&self) -> usize {
        self.ratios.len()
    }

    fn validate(&self) -> Result<()> {
        if self.sizes.is_empty() || self.ratios.is_empty() {
            return Err(invalid("anchors need at least one size and one ratio"));
        }
        if let Some(s) = self.sizes.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(invalid(format!("anchor size {s} must be > 0")));
        }
        if let Some(r) = self.ratios.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
            return Err(invalid(format!("anchor ratio {r} must be > 0")));
        }
        Ok(())
    }

    /// The anchors of `level` centred at the origin, one per ratio.
    pub fn base_anchors(&self, level: usize) -> Result<Vec<BBox>> {
        self.validate()?;
        let size = *self.sizes.get(level).ok_or_else(|| {
            invalid(format!(
                "level {level} past the {} anchor sizes",
                self.sizes.len()
            ))
        })?;
        Ok(self
            .ratios
            .iter()
            .map(|&r| {
                let h_ratio = r.sqrt();
                let w_ratio = 1.0 / h_ratio;
                let ws = w_ratio * size;
                let hs = h_ratio * size;
                [-ws, -hs, ws, hs].map(|v| (v / 2.0).round_ties_even())
            })
            .collect())
    }

    /// Every anchor of an image of `image_hw` (height, width, padded) whose feature maps, finest
    /// first, have the sizes `grids` (height, width); one grid per anchor size.
    pub fn generate(
        &self,
        image_hw: (usize, usize),
        grids: &[(usize, usize)],
    ) -> Result<Vec<BBox>> {
        self.validate()?;
        if grids.len() != self.sizes.len() {
            return Err(invalid(format!(
                "{} feature maps for {} anchor sizes",
                grids.len(),
                self.sizes.len()
            )));
        }
        let mut out = Vec::with_capacity(self.count(grids));
        for (level, &(gh, gw)) in grids.iter().enumerate() {
            if gh == 0 || gw == 0 || gh > image_hw.0 || gw > image_hw.1 {
                return Err(invalid(format!(
                    "feature map {gh}×{gw} of level {level} does not fit the image {}×{}",
                    image_hw.0, image_hw.1
                )));
            }
            let (sh, sw) = (image_hw.0 / gh, image_hw.1 / gw);
            let base = self.base_anchors(level)?;
            for y in 0..gh {
                let shift_y = (y * sh) as f32;
                for x in 0..gw {
                    let shift_x = (x * sw) as f32;
                    for b in &base {
                        out.push([
                            shift_x + b[0],
                            shift_y + b[1],
                            shift_x + b[2],
                            shift_y + b[3],
                        ]);
                    }
                }
            }
        }
        Ok(out)
    }

    /// mmdet's `valid_flags`: which anchors of [`Self::generate`] (same `image_hw`, `grids`)
    /// sit on a feature cell inside an image padded to `pad_hw` (its own size rounded up to the
    /// size divisor, before the batch's padding): on a level of stride `s`, rows below
    /// `min(⌈pad_h / s⌉, grid_h)` and columns below `min(⌈pad_w / s⌉, grid_w)`.
    pub fn valid_flags(
        &self,
        image_hw: (usize, usize),
        grids: &[(usize, usize)],
        pad_hw: (usize, usize),
    ) -> Result<Vec<bool>> {
        self.validate()?;
        if grids.len() != self.sizes.len() {
            return Err(invalid(format!(
                "{} feature maps for {} anchor sizes",
                grids.len(),
                self.sizes.len()
            )));
        }
        let k = self.per_position();
        let mut out = Vec::with_capacity(self.count(grids));
        for &(gh, gw) in grids {
            if gh == 0 || gw == 0 || gh > image_hw.0 || gw > image_hw.1 {
                return Err(invalid(format!(
                    "feature map {gh}×{gw} does not fit the image {}×{}",
                    image_hw.0, image_hw.1
                )));
            }
            let (sh, sw) = (image_hw.0 / gh, image_hw.1 / gw);
            let vh = pad_hw.0.div_ceil(sh).min(gh);
            let vw = pad_hw.1.div_ceil(sw).min(gw);
            for y in 0..gh {
                for x in 0..gw {
                    out.extend(std::iter::repeat_n(y < vh && x < vw, k));
                }
            }
        }
        Ok(out)
    }

    /// Number of anchors on each level for the feature-map sizes `grids`.
    pub fn level_counts(&self, grids: &[(usize, usize)]) -> Vec<usize> {
        grids
            .iter()
            .map(|&(h, w)| h * w * self.per_position())
            .collect()
    }

    fn count(&self, grids: &[(usize, usize)]) -> usize {
        self.level_counts(grids).iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_anchors_are_rounded_and_centred() {
        let c = AnchorConfig::fpn();
        // 32 / √0.5 = 45.25 wide, 22.63 high; halves rounded: 23 and 11.
        assert_eq!(
            c.base_anchors(0).unwrap(),
            vec![
                [-23.0, -11.0, 23.0, 11.0],
                [-16.0, -16.0, 16.0, 16.0],
                [-11.0, -23.0, 11.0, 23.0]
            ]
        );
        assert!(c.base_anchors(5).is_err());
    }

    #[test]
    fn anchors_go_level_then_row_then_column_then_ratio() {
        let c = AnchorConfig {
            sizes: vec![8.0, 16.0],
            ratios: vec![1.0, 2.0],
        };
        let a = c.generate((8, 12), &[(2, 3), (1, 1)]).unwrap();
        assert_eq!(a.len(), 2 * 3 * 2 + 2);
        assert_eq!(c.level_counts(&[(2, 3), (1, 1)]), vec![12, 2]);
        // stride 4 × 4; position (y 0, x 1), ratio 1 is anchor 2.
        assert_eq!(a[2], [0.0, -4.0, 8.0, 4.0]);
        // position (y 1, x 0), ratio 2 is anchor 7.
        assert_eq!(a[7], [-3.0, -2.0, 3.0, 10.0]);
        // the coarse level starts after the fine one.
        assert_eq!(a[12], [-8.0, -8.0, 8.0, 8.0]);
    }

    #[test]
    fn valid_flags_follow_the_images_own_padded_size() {
        let c = AnchorConfig {
            sizes: vec![8.0, 16.0],
            ratios: vec![1.0, 2.0],
        };
        // Batch input 8×12 (levels 2×3 at stride 4, 1×1 at stride 8); this image pads to 4×5:
        // level 0 keeps rows < ⌈4/4⌉ = 1 and columns < ⌈5/4⌉ = 2; level 1 keeps its one cell.
        let v = c.valid_flags((8, 12), &[(2, 3), (1, 1)], (4, 5)).unwrap();
        let want: Vec<bool> = [true, true, false, false, false, false]
            .iter()
            .flat_map(|&f| [f, f])
            .chain([true, true])
            .collect();
        assert_eq!(v, want);
        // The largest image of the batch: every anchor is valid.
        let all = c.valid_flags((8, 12), &[(2, 3), (1, 1)], (8, 12)).unwrap();
        assert!(all.iter().all(|&f| f));
        assert!(c.valid_flags((8, 12), &[(2, 3)], (8, 12)).is_err());
    }

    #[test]
    fn scaling_and_bad_configs() {
        let c = AnchorConfig::fpn().scaled(0.25).unwrap();
        assert_eq!(c.sizes, vec![8.0, 16.0, 32.0, 64.0, 128.0]);
        assert!(AnchorConfig::fpn().scaled(0.0).is_err());
        assert!(AnchorConfig::fpn().scaled(f32::NAN).is_err());
        assert!(c.generate((64, 64), &[(16, 16)]).is_err());
        assert!(
            c.generate((64, 64), &[(16, 16), (8, 8), (4, 4), (2, 2), (0, 1)])
                .is_err()
        );
        let bad = AnchorConfig {
            sizes: vec![8.0],
            ratios: vec![-1.0],
        };
        assert!(bad.generate((8, 8), &[(1, 1)]).is_err());
    }
}
