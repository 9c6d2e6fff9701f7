//! Semantic segmentation with UperNet on a plain ViT (protocols.md §2, cae.md §5b), as
//! mmsegmentation builds it for BEiT / CAE / MAE:
//!
//! ```text
//! image ─▶ ViT (taps after blocks 4/6/8/12, no final norm) ─▶ Feature2Pyramid (×4, ×2, ×1, ×0.5)
//!        ─▶ UPerHead (PPM + FPN) ─▶ logits at stride 4        ─┐
//!        └▶ FCNHead on level 2 ─▶ auxiliary logits at stride 16 ┴▶ CE + 0.4·CE (ignore 255)
//! ```
//!
//! [`UperNet`]'s parameter paths are mmseg's checkpoint keys (`backbone.*`, `neck.*`,
//! `decode_head.*`, `auxiliary_head.*`), so mmseg / CAE segmentation weights load through
//! burn-store without a renaming table (CAE keeps the neck in its backbone as `backbone.fpn*`:
//! [`crate::neck::official_neck_key`]). [`parity`] checks the whole stack against mmseg itself.
//!
//! BatchNorm follows PyTorch ([`crate::batch_norm`]); training mode (batch statistics, dropout)
//! is selected by the [`ForwardCtx`], and updates the running statistics, hence `&mut self`.

pub mod conv_module;
pub mod fcn;
pub mod layer_decay;
pub mod linear;
pub mod loss;
pub mod parity;
pub mod slide;
pub mod upernet;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use cae_pretrain::model::init::{Init, LinearInit};
use cae_pretrain::model::{ForwardCtx, VisionTransformerEncoder};
use serde::{Deserialize, Serialize};

use crate::error::{HeadsError, Result};
use crate::neck::{Feature2Pyramid, tap_blocks, tokens_to_map};
pub use fcn::FCNHead;
pub use linear::{BNHead, LinearSegmentor};
pub use loss::{SegLoss, label_tensor, seg_cross_entropy, upernet_loss};
pub use slide::{Window, count_matrix, slide_logits, windows};
pub use upernet::UPerHead;

/// The auxiliary FCN head's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuxHeadConfig {
    /// Width of its convs (256).
    pub channels: usize,
    /// Number of 3×3 ConvModules (1).
    pub num_convs: usize,
    /// Pyramid level it reads (2: the stride-16 map).
    pub in_index: usize,
    /// Weight of its loss (0.4).
    pub loss_weight: f64,
}

/// The segmentor's settings (the encoder's come from its own config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UperNetConfig {
    /// Preset name, for records.
    pub preset: String,
    /// Width of the encoder taps and of every pyramid level (`D`; 768 for ViT-B).
    pub in_channels: usize,
    /// Scale of each pyramid level relative to the token grid (`[4, 2, 1, 0.5]`).
    pub rescales: Vec<f64>,
    /// Tap blocks (0-based); `None` = [`tap_blocks`] of the encoder's depth.
    pub out_indices: Option<Vec<usize>>,
    /// Width of the UPerHead (`channels`: 768 in the BEiT / CAE / MAE ADE configs).
    pub channels: usize,
    /// PPM pool scales (1, 2, 3, 6).
    pub pool_scales: Vec<usize>,
    /// Number of classes (150 for ADE20K).
    pub num_classes: usize,
    /// `Dropout2d` rate before each classifier (0.1).
    pub dropout: f64,
    /// The auxiliary head, if any.
    pub aux: Option<AuxHeadConfig>,
    /// BatchNorm ε (1e-5).
    pub bn_eps: f64,
    /// Label value ignored by the loss (255).
    pub ignore_index: u8,
    /// Mean the cross-entropy over non-ignored pixels only (PyTorch) instead of all pixels
    /// (mmseg's default); see [`loss`].
    pub avg_non_ignore: bool,
}

impl UperNetConfig {
    /// A named preset: `vit_base` (alias `paper`), `vit_large`, `mini`, `test`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "vit_base" | "paper" => Ok(Self::vit(name, 768)),
            "vit_large" => Ok(Self::vit(name, 1024)),
            "mini" => Ok(Self::mini()),
            "test" => Ok(Self::test()),
            other => Err(HeadsError::Config(format!(
                "unknown segmentation preset `{other}` (vit_base, paper, vit_large, mini, test)"
            ))),
        }
    }

    /// The ADE20K recipe of BEiT / CAE / MAE for a ViT of width `d`: UPerHead with
    /// `channels = d`, 150 classes, dropout 0.1, auxiliary FCNHead (256, one conv, level 2,
    /// weight 0.4), mmseg's loss mean over all pixels.
    pub fn vit(preset: &str, d: usize) -> Self {
        Self {
            preset: preset.to_string(),
            in_channels: d,
            rescales: vec![4.0, 2.0, 1.0, 0.5],
            out_indices: None,
            channels: d,
            pool_scales: vec![1, 2, 3, 6],
            num_classes: 150,
            dropout: 0.1,
            aux: Some(AuxHeadConfig {
                channels: 256,
                num_convs: 1,
                in_index: 2,
                loss_weight: 0.4,
            }),
            bn_eps: 1e-5,
            ignore_index: 255,
            avg_non_ignore: false,
        }
    }

    /// For the `mini` encoder (width 128, 4 blocks, 32-px images of the synthetic world, 8
    /// classes after `reduce_zero_label`): a 64-wide UPerHead and a 32-wide auxiliary head.
    pub fn mini() -> Self {
        Self {
            preset: "mini".into(),
            channels: 64,
            num_classes: 8,
            aux: Some(AuxHeadConfig {
                channels: 32,
                num_convs: 1,
                in_index: 2,
                loss_weight: 0.4,
            }),
            ..Self::vit("mini", 128)
        }
    }

    /// For the `test` encoder (width 32): tiny heads, 4 classes.
    pub fn test() -> Self {
        Self {
            preset: "test".into(),
            channels: 16,
            num_classes: 4,
            aux: Some(AuxHeadConfig {
                channels: 8,
                num_convs: 1,
                in_index: 2,
                loss_weight: 0.4,
            }),
            ..Self::vit("test", 32)
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(HeadsError::Config(m));
        if self.in_channels == 0 || self.channels == 0 || self.num_classes == 0 {
            return bad("segmentation widths and the number of classes must be ≥ 1".into());
        }
        if self.num_classes > 255 {
            return bad(format!(
                "{} classes do not fit 8-bit label maps",
                self.num_classes
            ));
        }
        if (self.ignore_index as usize) < self.num_classes {
            return bad(format!(
                "the ignore index {} is a class (< {})",
                self.ignore_index, self.num_classes
            ));
        }
        if self.rescales.is_empty() {
            return bad("the neck needs at least one level".into());
        }
        if let Some(idx) = &self.out_indices
            && idx.len() != self.rescales.len()
        {
            return bad(format!(
                "{} tap blocks for {} pyramid levels",
                idx.len(),
                self.rescales.len()
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        if let Some(aux) = &self.aux
            && aux.in_index >= self.rescales.len()
        {
            return bad(format!(
                "the auxiliary head reads level {} of {}",
                aux.in_index,
                self.rescales.len()
            ));
        }
        Ok(())
    }

    /// The tap blocks for an encoder of `depth` blocks.
    pub fn taps(&self, depth: usize) -> Result<Vec<usize>> {
        let taps = match &self.out_indices {
            Some(t) => t.clone(),
            None if self.rescales.len() == 4 => tap_blocks(depth),
            None => {
                return Err(HeadsError::Config(format!(
                    "{} pyramid levels need explicit out_indices",
                    self.rescales.len()
                )));
            }
        };
        if let Some(t) = taps.iter().find(|&&t| t >= depth) {
            return Err(HeadsError::Config(format!(
                "tap block {t} is past the encoder's {depth} blocks"
            )));
        }
        Ok(taps)
    }
}

/// What a forward pass gives.
#[derive(Debug, Clone)]
pub struct SegOutput {
    /// The neck's levels (strides 4, 8, 16, 32 for patch 16).
    pub pyramid: Vec<Tensor<4>>,
    /// UPerHead logits at level 0's resolution `[B, K, H/4, W/4]`.
    pub logits: Tensor<4>,
    /// Auxiliary logits at level `in_index`'s resolution.
    pub aux_logits: Option<Tensor<4>>,
}

/// UperNet on a plain ViT: `backbone` (optional: absent when the caller feeds the block maps
/// itself), `neck`, `decode_head`, `auxiliary_head`, named as mmseg's checkpoints.
#[derive(Module, Debug)]
pub struct UperNet {
    /// The encoder, run on all patches; its taps feed the neck.
    pub backbone: Option<VisionTransformerEncoder>,
    /// ViT maps → four scales.
    pub neck: Feature2Pyramid,
    /// The UPerHead.
    pub decode_head: UPerHead,
    /// The auxiliary FCNHead.
    pub auxiliary_head: Option<FCNHead>,
    /// Tap blocks of the backbone (empty without one).
    pub out_indices: Vec<usize>,
}

impl UperNet {
    /// Neck and heads, freshly initialised from `seed` (mmcv's rules, see [`conv_module`]); no
    /// backbone.
    pub fn new(cfg: &UperNetConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let mut init = Init::new(seed, LinearInit::Xavier, device);
        let d = cfg.in_channels;
        let neck = Feature2Pyramid::new(d, &cfg.rescales, cfg.bn_eps, &mut init)?;
        let decode_head = UPerHead::new(
            &vec![d; cfg.rescales.len()],
            cfg.channels,
            &cfg.pool_scales,
            cfg.num_classes,
            cfg.dropout,
            cfg.bn_eps,
            &mut init,
        )?;
        let auxiliary_head = match &cfg.aux {
            Some(a) => Some(FCNHead::new(
                d,
                a.channels,
                a.num_convs,
                a.in_index,
                cfg.num_classes,
                cfg.dropout,
                cfg.bn_eps,
                &mut init,
            )?),
            None => None,
        };
        Ok(Self {
            backbone: None,
            neck,
            decode_head,
            auxiliary_head,
            out_indices: Vec::new(),
        })
    }

    /// Puts `encoder` under the heads, tapped at `cfg`'s blocks.
    pub fn with_backbone(
        mut self,
        cfg: &UperNetConfig,
        encoder: VisionTransformerEncoder,
    ) -> Result<Self> {
        if encoder.embed_dim() != cfg.in_channels {
            return Err(HeadsError::Config(format!(
                "the encoder is {} wide, the segmentation heads expect {}",
                encoder.embed_dim(),
                cfg.in_channels
            )));
        }
        self.out_indices = cfg.taps(encoder.blocks.len())?;
        self.backbone = Some(encoder);
        Ok(self)
    }

    /// Neck and heads on the tapped block maps.
    ///
    /// # Shapes
    /// `maps[i]: [B, D, h, w]` → levels `[B, D, h·s_i, w·s_i]`, logits `[B, K, h·s_0, w·s_0]`
    pub fn forward_maps(
        &mut self,
        maps: Vec<Tensor<4>>,
        ctx: &mut ForwardCtx,
    ) -> Result<SegOutput> {
        let pyramid = self.neck.forward(maps, ctx.train)?;
        let logits = self.decode_head.forward(&pyramid, ctx)?;
        let aux_logits = match self.auxiliary_head.as_mut() {
            Some(h) => Some(h.forward(&pyramid, ctx)?),
            None => None,
        };
        Ok(SegOutput {
            pyramid,
            logits,
            aux_logits,
        })
    }

    /// The whole segmentor on images (needs a backbone).
    ///
    /// # Shapes
    /// `images: [B, 3, H, W]` (H, W the encoder's image size) → see [`Self::forward_maps`]
    pub fn forward(&mut self, images: Tensor<4>, ctx: &mut ForwardCtx) -> Result<SegOutput> {
        let Some(backbone) = self.backbone.as_ref() else {
            return Err(HeadsError::Config(
                "this UperNet has no backbone; feed block maps to forward_maps".into(),
            ));
        };
        let [_, _, h, w] = images.dims();
        let p = backbone.patch_embed.proj.kernel_size[0];
        let grid = [h / p, w / p];
        if h % p != 0 || w % p != 0 {
            return Err(HeadsError::Config(format!(
                "a {h}×{w} image is not a whole number of {p}-px patches"
            )));
        }
        if let Some(pos) = &backbone.pos_embed {
            let n = pos.dims()[1] - 1;
            if n != grid[0] * grid[1] {
                return Err(HeadsError::Config(format!(
                    "the encoder's position table holds {n} patches, a {h}×{w} image has {}",
                    grid[0] * grid[1]
                )));
            }
        }
        let taps = backbone.forward_taps(images, &self.out_indices, ctx);
        let maps = taps
            .into_iter()
            .map(|t| tokens_to_map(t, grid))
            .collect::<Result<Vec<_>>>()?;
        self.forward_maps(maps, ctx)
    }

    /// The training loss of an output against labels `[B, H, W]`.
    pub fn loss(&self, cfg: &UperNetConfig, out: &SegOutput, labels: Tensor<3, Int>) -> SegLoss {
        upernet_loss(
            out.logits.clone(),
            out.aux_logits.clone(),
            labels,
            cfg.aux.as_ref().map_or(0.0, |a| a.loss_weight),
            cfg.ignore_index as i64,
            cfg.avg_non_ignore,
        )
    }
}

/// File keys a segmentation checkpoint may hold that no module here keeps (regexes for
/// `cae_pretrain::weights::LoadOptions::ignore`): BatchNorm's `num_batches_tracked`.
pub const SEG_IGNORED_KEYS: &[&str] = &[r"\.num_batches_tracked$"];

#[cfg(test)]
mod tests {
    use super::*;
    use cae_pretrain::config::CaeConfig;
    use cae_pretrain::weights::expected_tensors;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn presets_validate() {
        for name in ["vit_base", "paper", "vit_large", "mini", "test"] {
            let cfg = UperNetConfig::preset(name).unwrap();
            cfg.validate().unwrap();
        }
        assert!(UperNetConfig::preset("nope").is_err());
        let paper = UperNetConfig::preset("paper").unwrap();
        assert_eq!((paper.channels, paper.num_classes), (768, 150));
        assert_eq!(paper.aux.as_ref().unwrap().channels, 256);
        assert_eq!(paper.taps(12).unwrap(), vec![3, 5, 7, 11]);
        let mut bad = UperNetConfig::test();
        bad.out_indices = Some(vec![0, 1]);
        assert!(bad.validate().is_err());
        bad.out_indices = Some(vec![0, 1, 2, 9]);
        assert!(bad.taps(4).is_err());
    }

    #[test]
    fn end_to_end_on_the_test_encoder_trains_and_updates_running_stats() {
        let dev = Device::flex().autodiff();
        let enc_cfg = CaeConfig::test();
        let encoder = cae_pretrain::model::ContextAutoencoder::new(&enc_cfg, 0, &dev).encoder;
        let cfg = UperNetConfig::test();
        let mut model = UperNet::new(&cfg, 0, &dev)
            .unwrap()
            .with_backbone(&cfg, encoder)
            .unwrap();
        let keys = expected_tensors(&model);
        assert!(keys.contains_key("backbone.blocks.0.attn.qkv.weight"));
        assert!(keys.contains_key("neck.upsample_4x.1.running_mean"));
        assert!(keys.contains_key("decode_head.psp_modules.0.1.conv.weight"));
        assert!(keys.contains_key("auxiliary_head.convs.0.bn.weight"));
        let img = enc_cfg.encoder.img_size;
        let x = Tensor::<4>::ones([2, 3, img, img], &dev);
        let mut ctx = ForwardCtx::train(ChaCha8Rng::seed_from_u64(0));
        let before =
            crate::error::to_vec(model.decode_head.bottleneck.bn.running_var.val()).unwrap();
        let out = model.forward(x, &mut ctx).unwrap();
        let g = img / 4;
        assert_eq!(out.logits.dims(), [2, cfg.num_classes, g * 4, g * 4]);
        assert_eq!(
            out.aux_logits.as_ref().unwrap().dims(),
            [2, cfg.num_classes, g, g]
        );
        let labels: Vec<u8> = (0..2 * img * img)
            .map(|i| (i % 5) as u8)
            .map(|v| if v == 4 { 255 } else { v })
            .collect();
        let labels = label_tensor(&labels, [2, img, img], cfg.num_classes, 255, &dev).unwrap();
        let loss = model.loss(&cfg, &out, labels);
        let value = crate::error::to_vec(loss.loss.clone()).unwrap()[0];
        assert!(value.is_finite() && value > 0.0);
        let grads = loss.loss.backward();
        let qkv = model.backbone.as_ref().unwrap().blocks[0]
            .attn
            .qkv
            .weight
            .val();
        assert!(qkv.grad(&grads).is_some(), "the backbone gets gradients");
        let after =
            crate::error::to_vec(model.decode_head.bottleneck.bn.running_var.val()).unwrap();
        assert_ne!(
            before, after,
            "training mode updates the running statistics"
        );
        // A wrong image size is an error, not a panic.
        let wrong = Tensor::<4>::ones([1, 3, img + enc_cfg.encoder.patch_size, img], &dev);
        assert!(model.forward(wrong, &mut ForwardCtx::eval()).is_err());
    }
}
