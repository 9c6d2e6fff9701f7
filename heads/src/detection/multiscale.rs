//! RoIAlign over a feature pyramid (torchvision `MultiScaleRoIAlign`, mmdet
//! `SingleRoIExtractor`): each RoI is pooled from the one level [`LevelMapper`] gives it
//! (P2–P5 for Mask R-CNN), with that level's `1 / stride` as the spatial scale; the outputs
//! come back in the RoIs' order.
//!
//! Both parts are checked against torchvision on their own (`level.rs`, `roi_align.rs`); this
//! file only routes, and its test checks the routing against per-level [`roi_align`] calls.
//! Gradients reach every level through the per-level RoIAlign and one differentiable gather.

use burn::tensor::{Int, Tensor, TensorData};

use super::level::LevelMapper;
use super::roi_align::{Roi, RoiAlignConfig, roi_align};
use super::{Result, invalid};

/// Pooling from a pyramid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiScaleRoiAlign {
    /// Which level a RoI pools from; its `min_level..=max_level` are the pyramid's levels.
    pub mapper: LevelMapper,
    /// Output size, sampling and alignment; its `spatial_scale` is replaced per level.
    pub align: RoiAlignConfig,
}

impl MultiScaleRoiAlign {
    /// Mask R-CNN's: levels P2–P5, aligned RoIAlign with adaptive sampling onto `size × size`
    /// (7 for the box head, 14 for the mask head).
    pub fn mask_rcnn(size: usize) -> Self {
        Self {
            mapper: LevelMapper::fpn(),
            align: RoiAlignConfig::new(size, 1.0),
        }
    }

    /// Pools `rois` from `levels` (`levels[i]` is level `min_level + i`, `[N, C, H_i, W_i]`,
    /// of stride `2^(min_level + i)` pixels).
    ///
    /// # Shapes
    /// → `[R, C, out_h, out_w]`, row `r` for `rois[r]`
    pub fn forward(&self, levels: &[Tensor<4>], rois: &[Roi]) -> Result<Tensor<4>> {
        let (lo, hi) = (self.mapper.min_level, self.mapper.max_level);
        if levels.len() != hi - lo + 1 {
            return Err(invalid(format!(
                "{} feature maps for pyramid levels {lo}..={hi}",
                levels.len()
            )));
        }
        let Some(first) = levels.first() else {
            return Err(invalid("no feature map"));
        };
        let [_, c, _, _] = first.dims();
        if let Some((i, l)) = levels.iter().enumerate().find(|(_, l)| l.dims()[1] != c) {
            return Err(invalid(format!(
                "level {} has {} channels, level {lo} has {c}",
                lo + i,
                l.dims()[1]
            )));
        }
        let (oh, ow) = self.align.output_size;
        let device = first.device();
        if rois.is_empty() {
            return Ok(Tensor::zeros([0, c, oh, ow], &device));
        }
        let boxes: Vec<_> = rois.iter().map(|r| r.bbox).collect();
        let assigned = self.mapper.levels(&boxes)?;
        let mut parts = Vec::new();
        // Position in the concatenated parts of each RoI, in the RoIs' order.
        let mut slot = vec![0i64; rois.len()];
        let mut filled = 0i64;
        for (i, features) in levels.iter().enumerate() {
            let level = lo + i;
            let members: Vec<usize> = (0..rois.len()).filter(|&r| assigned[r] == level).collect();
            if members.is_empty() {
                continue;
            }
            let picked: Vec<Roi> = members.iter().map(|&r| rois[r]).collect();
            let cfg = RoiAlignConfig {
                spatial_scale: 1.0 / (1u64 << level) as f32,
                ..self.align
            };
            parts.push(roi_align(features.clone(), &picked, &cfg)?);
            for &r in &members {
                slot[r] = filled;
                filled += 1;
            }
        }
        let pooled = Tensor::cat(parts, 0);
        let index = Tensor::<1, Int>::from_data(TensorData::new(slot, [rois.len()]), &device);
        Ok(pooled.select(0, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;
    use burn::tensor::{Device, Distribution};

    fn pyramid(dev: &Device) -> Vec<Tensor<4>> {
        // A 256-px image: P2..P5 are 64, 32, 16, 8 px, 3 channels, 2 images.
        (2..=5)
            .map(|k| {
                let side = 256 >> k;
                Tensor::<4>::random([2, 3, side, side], Distribution::Normal(0.0, 1.0), dev)
            })
            .collect()
    }

    #[test]
    fn each_roi_pools_from_its_level_in_order() {
        let dev = Device::flex();
        let levels = pyramid(&dev);
        // Sizes 20, 230, 150, 500 px → P2, P4, P3, P5: ⌊4 + log2(s / 224)⌋ clamped to 2..=5.
        let rois = [
            Roi {
                batch: 0,
                bbox: [10.0, 10.0, 30.0, 30.0],
            },
            Roi {
                batch: 1,
                bbox: [5.0, 8.0, 235.0, 238.0],
            },
            Roi {
                batch: 1,
                bbox: [40.0, 60.0, 190.0, 210.0],
            },
            Roi {
                batch: 0,
                bbox: [0.0, 0.0, 500.0, 500.0],
            },
        ];
        let msra = MultiScaleRoiAlign::mask_rcnn(7);
        let out = msra.forward(&levels, &rois).unwrap();
        assert_eq!(out.dims(), [4, 3, 7, 7]);
        let want_levels = [2usize, 4, 3, 5];
        assert_eq!(
            msra.mapper
                .levels(&rois.iter().map(|r| r.bbox).collect::<Vec<_>>())
                .unwrap(),
            want_levels
        );
        for (r, &level) in want_levels.iter().enumerate() {
            let cfg = RoiAlignConfig::new(7, 1.0 / (1u64 << level) as f32);
            let single = roi_align(levels[level - 2].clone(), &rois[r..r + 1], &cfg).unwrap();
            let got = to_vec(out.clone().slice([r..r + 1, 0..3, 0..7, 0..7])).unwrap();
            assert_eq!(got, to_vec(single).unwrap(), "RoI {r} (level {level})");
        }
        // No RoIs: an empty batch; a wrong number of levels: an error.
        assert_eq!(msra.forward(&levels, &[]).unwrap().dims(), [0, 3, 7, 7]);
        assert!(msra.forward(&levels[..3], &rois).is_err());
    }

    #[test]
    fn gradients_reach_the_levels_that_were_used() {
        let dev = Device::flex().autodiff();
        let levels: Vec<Tensor<4>> = pyramid(&dev)
            .into_iter()
            .map(|t| t.require_grad())
            .collect();
        let rois = [
            Roi {
                batch: 0,
                bbox: [10.0, 10.0, 30.0, 30.0],
            },
            Roi {
                batch: 1,
                bbox: [40.0, 60.0, 190.0, 210.0],
            },
        ];
        let out = MultiScaleRoiAlign::mask_rcnn(7)
            .forward(&levels, &rois)
            .unwrap();
        let grads = out.sum().backward();
        let norm = |t: &Tensor<4>| -> f32 {
            t.grad(&grads)
                .map(|g| to_vec(g.abs().sum().reshape([1])).unwrap()[0])
                .unwrap_or(0.0)
        };
        assert!(norm(&levels[0]) > 0.0, "P2 pooled the small RoI");
        assert!(norm(&levels[1]) > 0.0, "P3 pooled the 150-px RoI");
        assert_eq!(norm(&levels[3]), 0.0, "P5 pooled nothing");
    }
}
