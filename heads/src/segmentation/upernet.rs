//! mmseg's `UPerHead` (protocols.md §2.5): a pyramid pooling module on the coarsest level, an FPN
//! over the four levels, fusion at the finest level and a 1×1 classifier.
//!
//! * **PPM** on level 3: for each pool scale `s` (1, 2, 3, 6) `AdaptiveAvgPool(s)` → 1×1
//!   [`ConvModule`] → bilinear back to the level's size; `[x, ppm_1, …]` concatenated →
//!   `bottleneck` (3×3 ConvModule). Keys `psp_modules.{i}.1.*` (entry 0 is the pooling).
//! * **FPN**: 1×1 `lateral_convs` on levels 0..2, the PPM output as the top lateral; top-down
//!   `lateral[i−1] += resize(lateral[i])`; 3×3 `fpn_convs` on levels 0..2, the top lateral as is.
//! * **Fusion**: all four resized to level 0, concatenated, `fpn_bottleneck` (3×3 ConvModule),
//!   `Dropout2d`, `conv_seg` (1×1 with bias). The logits are at level 0's resolution.
//!
//! Every resize is bilinear with `align_corners = False`.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::tensor::Tensor;
use cae_pretrain::model::ForwardCtx;
use cae_pretrain::model::init::Init;

use super::conv_module::{ConvModule, conv_seg, dropout2d, resize_bilinear};
use crate::error::{HeadsError, Result};

/// One PPM branch entry (`nn.Sequential(AdaptiveAvgPool2d, ConvModule)` in mmseg; the variant
/// names are not part of the keys).
// One value per PPM branch, built once: the size difference between variants costs nothing, and
// boxing would put a `Box` between burn's module derive and the keys.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum PpmStage {
    /// `AdaptiveAvgPool2d(s)`.
    Pool(AdaptiveAvgPool2d),
    /// The 1×1 ConvModule.
    Conv(ConvModule),
}

/// mmseg's `UPerHead`.
#[derive(Module, Debug)]
pub struct UPerHead {
    /// The PPM branches, one per pool scale: `[pool, 1×1 ConvModule]`.
    pub psp_modules: Vec<Vec<PpmStage>>,
    /// 3×3 ConvModule after the PPM concatenation.
    pub bottleneck: ConvModule,
    /// 1×1 ConvModules on levels 0..L−2.
    pub lateral_convs: Vec<ConvModule>,
    /// 3×3 ConvModules on levels 0..L−2.
    pub fpn_convs: Vec<ConvModule>,
    /// 3×3 ConvModule on the fused maps.
    pub fpn_bottleneck: ConvModule,
    /// 1×1 classifier.
    pub conv_seg: Conv2d,
    /// `Dropout2d` rate before the classifier.
    pub dropout: f64,
}

impl UPerHead {
    /// A head over `in_channels` (one per level, the last one pooled), `channels` wide.
    pub fn new(
        in_channels: &[usize],
        channels: usize,
        pool_scales: &[usize],
        num_classes: usize,
        dropout: f64,
        bn_eps: f64,
        init: &mut Init,
    ) -> Result<Self> {
        let Some((&top, lower)) = in_channels.split_last() else {
            return Err(HeadsError::Config(
                "UPerHead needs at least one level".into(),
            ));
        };
        if pool_scales.contains(&0) {
            return Err(HeadsError::Config("a PPM pool scale must be ≥ 1".into()));
        }
        let psp_modules = pool_scales
            .iter()
            .map(|&s| {
                vec![
                    PpmStage::Pool(AdaptiveAvgPool2dConfig::new([s, s]).init()),
                    PpmStage::Conv(ConvModule::new(top, channels, 1, bn_eps, init)),
                ]
            })
            .collect();
        let bottleneck = ConvModule::new(
            top + pool_scales.len() * channels,
            channels,
            3,
            bn_eps,
            init,
        );
        let lateral_convs = lower
            .iter()
            .map(|&c| ConvModule::new(c, channels, 1, bn_eps, init))
            .collect();
        let fpn_convs = lower
            .iter()
            .map(|_| ConvModule::new(channels, channels, 3, bn_eps, init))
            .collect();
        let fpn_bottleneck =
            ConvModule::new(in_channels.len() * channels, channels, 3, bn_eps, init);
        Ok(Self {
            psp_modules,
            bottleneck,
            lateral_convs,
            fpn_convs,
            fpn_bottleneck,
            conv_seg: conv_seg(channels, num_classes, init),
            dropout,
        })
    }

    /// The PPM on the top level and its bottleneck.
    fn psp_forward(&mut self, x: Tensor<4>, train: bool) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let mut outs = vec![x.clone()];
        for branch in &mut self.psp_modules {
            let mut y = x.clone();
            for stage in branch.iter_mut() {
                y = match stage {
                    PpmStage::Pool(p) => p.forward(y),
                    PpmStage::Conv(c) => c.forward(y, train),
                };
            }
            outs.push(resize_bilinear(y, [h, w]));
        }
        self.bottleneck.forward(Tensor::cat(outs, 1), train)
    }

    /// The fused features before dropout and the classifier.
    ///
    /// # Shapes
    /// `levels[i]: [B, C_i, H_i, W_i]` → `[B, channels, H_0, W_0]`
    pub fn forward_feature(&mut self, levels: &[Tensor<4>], train: bool) -> Result<Tensor<4>> {
        let n = self.lateral_convs.len() + 1;
        if levels.len() != n {
            return Err(HeadsError::Config(format!(
                "UPerHead has {n} levels but got {} maps",
                levels.len()
            )));
        }
        let mut laterals: Vec<Tensor<4>> = self
            .lateral_convs
            .iter_mut()
            .zip(levels)
            .map(|(conv, x)| conv.forward(x.clone(), train))
            .collect();
        laterals.push(self.psp_forward(levels[n - 1].clone(), train));
        for i in (1..n).rev() {
            let [_, _, h, w] = laterals[i - 1].dims();
            let up = resize_bilinear(laterals[i].clone(), [h, w]);
            laterals[i - 1] = laterals[i - 1].clone() + up;
        }
        let top = laterals[n - 1].clone();
        let mut outs: Vec<Tensor<4>> = self
            .fpn_convs
            .iter_mut()
            .zip(laterals)
            .map(|(conv, x)| conv.forward(x, train))
            .collect();
        outs.push(top);
        let [_, _, h0, w0] = outs[0].dims();
        let outs: Vec<Tensor<4>> = outs
            .into_iter()
            .map(|o| resize_bilinear(o, [h0, w0]))
            .collect();
        Ok(self.fpn_bottleneck.forward(Tensor::cat(outs, 1), train))
    }

    /// Logits at level 0's resolution.
    ///
    /// # Shapes
    /// `levels[i]: [B, C_i, H_i, W_i]` → `[B, num_classes, H_0, W_0]`
    pub fn forward(&mut self, levels: &[Tensor<4>], ctx: &mut ForwardCtx) -> Result<Tensor<4>> {
        let feats = self.forward_feature(levels, ctx.train)?;
        let feats = dropout2d(feats, self.dropout, ctx);
        Ok(super::conv_module::conv2d(&self.conv_seg, feats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use cae_pretrain::model::init::LinearInit;
    use cae_pretrain::weights::expected_tensors;

    #[test]
    fn mmseg_keys_and_output_shape() {
        let dev = Device::flex();
        let mut init = Init::new(0, LinearInit::Xavier, &dev);
        let mut head = UPerHead::new(&[8; 4], 6, &[1, 2, 3, 6], 5, 0.1, 1e-5, &mut init).unwrap();
        let keys = expected_tensors(&head);
        assert_eq!(keys["psp_modules.3.1.conv.weight"], vec![6, 8, 1, 1]);
        assert_eq!(keys["psp_modules.0.1.bn.running_var"], vec![6]);
        assert_eq!(keys["bottleneck.conv.weight"], vec![6, 8 + 4 * 6, 3, 3]);
        assert_eq!(keys["lateral_convs.2.conv.weight"], vec![6, 8, 1, 1]);
        assert_eq!(keys["fpn_convs.0.conv.weight"], vec![6, 6, 3, 3]);
        assert_eq!(keys["fpn_bottleneck.conv.weight"], vec![6, 24, 3, 3]);
        assert_eq!(keys["conv_seg.weight"], vec![5, 6, 1, 1]);
        assert_eq!(keys["conv_seg.bias"], vec![5]);
        assert!(!keys.contains_key("lateral_convs.3.conv.weight"));
        // 4 PPM + bottleneck + 3 lateral + 3 fpn + fpn_bottleneck ConvModules (5 tensors each),
        // plus the classifier.
        assert_eq!(keys.len(), 12 * 5 + 2);
        let levels: Vec<Tensor<4>> = [16, 8, 4, 2]
            .iter()
            .map(|&s| Tensor::<4>::ones([2, 8, s, s], &dev))
            .collect();
        let logits = head.forward(&levels, &mut ForwardCtx::eval()).unwrap();
        assert_eq!(logits.dims(), [2, 5, 16, 16]);
        assert!(head.forward(&levels[..3], &mut ForwardCtx::eval()).is_err());
    }
}
