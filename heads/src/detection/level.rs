//! FPN level of a RoI (torchvision `LevelMapper`, FPN paper eq. 1):
//! `k = ⌊k0 + log2(√area / 224) + 1e-6⌋` clamped to the pyramid's levels, with `k0 = 4`
//! (a 224-pixel RoI pools from P4). mmdet's `finest_scale = 56` rule gives the same levels.
//! Computed in f32 in torchvision's order.

use super::iou::box_area;
use super::{BBox, Result, check_boxes, invalid};

/// Maps RoIs to the levels `min_level..=max_level` of a feature pyramid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelMapper {
    /// Finest level (2 for P2).
    pub min_level: usize,
    /// Coarsest level (5 for P5).
    pub max_level: usize,
    /// RoI size that maps to `canonical_level` (224).
    pub canonical_scale: f32,
    /// Level of a RoI of `canonical_scale` pixels (4).
    pub canonical_level: f32,
    /// Added before the floor (1e-6).
    pub eps: f32,
}

impl LevelMapper {
    /// Mask R-CNN's mapper onto P2–P5: canonical scale 224 at level 4.
    pub fn fpn() -> Self {
        Self {
            min_level: 2,
            max_level: 5,
            canonical_scale: 224.0,
            canonical_level: 4.0,
            eps: 1e-6,
        }
    }

    /// A mapper onto `min_level..=max_level` with the canonical scale 224 at level 4.
    pub fn new(min_level: usize, max_level: usize) -> Result<Self> {
        if min_level > max_level {
            return Err(invalid(format!(
                "FPN levels {min_level}..={max_level} are empty"
            )));
        }
        Ok(Self {
            min_level,
            max_level,
            ..Self::fpn()
        })
    }

    /// The level (absolute, `min_level..=max_level`) of each box.
    pub fn levels(&self, boxes: &[BBox]) -> Result<Vec<usize>> {
        check_boxes("boxes", boxes)?;
        Ok(boxes
            .iter()
            .map(|b| {
                let s = box_area(b).sqrt();
                let k =
                    (self.canonical_level + (s / self.canonical_scale).log2() + self.eps).floor();
                // an empty box has k = −∞ and goes to the finest level.
                k.clamp(self.min_level as f32, self.max_level as f32) as usize
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sizes_map_to_their_levels() {
        let m = LevelMapper::fpn();
        let sq = |s: f32| [0.0, 0.0, s, s];
        let boxes = [
            sq(224.0),
            sq(223.0),
            sq(112.0),
            sq(111.9),
            sq(448.0),
            sq(10_000.0),
            sq(0.0),
        ];
        assert_eq!(m.levels(&boxes).unwrap(), vec![4, 3, 3, 2, 5, 5, 2]);
    }

    #[test]
    fn bad_input() {
        assert!(LevelMapper::new(5, 2).is_err());
        assert!(
            LevelMapper::fpn()
                .levels(&[[0.0, 0.0, f32::NAN, 1.0]])
                .is_err()
        );
        assert!(LevelMapper::fpn().levels(&[]).unwrap().is_empty());
    }
}
