//! The frozen-backbone linear segmentation head, as DINOv2 evaluates ADE20K ("linear" and
//! "+ms" variants; its `BNHead` in mmseg): the chosen blocks' patch tokens, each after the
//! encoder's final LayerNorm, reshaped to maps, resized bilinearly to the first map's size and
//! concatenated (`resize_concat`), then `BatchNorm2d` and a 1×1 conv to the classes. Logits stay
//! at the token grid; the loss and the prediction upsample them bilinearly (`align_corners =
//! False`) to the label size.
//!
//! Only `decode_head.*` is trained; the encoder runs without autodiff, so it costs one forward
//! pass per step and no gradient memory.
//!
//! Parameter names: `decode_head.bn.*`, `decode_head.conv_seg.*` (DINOv2 / mmseg `BNHead`).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use cae_pretrain::model::init::{Init, LinearInit};
use cae_pretrain::model::{ForwardCtx, VisionTransformerEncoder};

use super::conv_module::{conv_seg, resize_bilinear};
use crate::batch_norm::BatchNorm2d;
use crate::error::{HeadsError, Result};
use crate::neck::tokens_to_map;

/// BatchNorm + 1×1 classifier over concatenated maps.
#[derive(Module, Debug)]
pub struct BNHead {
    /// BatchNorm over the concatenated channels (`SyncBN` in DINOv2; batch statistics here).
    pub bn: BatchNorm2d,
    /// 1×1 conv to the classes.
    pub conv_seg: Conv2d,
}

impl BNHead {
    /// `in_channels` = the concatenated width (`D × blocks`).
    pub fn new(in_channels: usize, num_classes: usize, bn_eps: f64, init: &mut Init) -> Self {
        Self {
            bn: BatchNorm2d::new(in_channels, bn_eps, &init.device),
            conv_seg: conv_seg(in_channels, num_classes, init),
        }
    }

    /// Logits at the first map's size.
    ///
    /// # Shapes
    /// `maps[i]: [B, D_i, h_i, w_i]` → `[B, K, h_0, w_0]`
    pub fn forward(&mut self, maps: Vec<Tensor<4>>, train: bool) -> Result<Tensor<4>> {
        let Some(first) = maps.first() else {
            return Err(HeadsError::Config(
                "the linear head needs a feature map".into(),
            ));
        };
        let [_, _, h, w] = first.dims();
        let x = Tensor::cat(
            maps.into_iter()
                .map(|m| resize_bilinear(m, [h, w]))
                .collect(),
            1,
        );
        Ok(super::conv_module::conv2d(
            &self.conv_seg,
            self.bn.forward(x, train),
        ))
    }
}

/// A frozen encoder under a [`BNHead`].
#[derive(Module, Debug)]
pub struct LinearSegmentor {
    /// The frozen encoder (on the inner, non-autodiff device).
    pub backbone: VisionTransformerEncoder,
    /// The trained head.
    pub decode_head: BNHead,
    /// The blocks whose normed patch tokens are concatenated (0-based).
    pub blocks: Vec<usize>,
}

impl LinearSegmentor {
    /// A fresh head over `blocks` of `encoder` (moved to the inner device of `device`; the head
    /// lives on `device`).
    pub fn new(
        encoder: VisionTransformerEncoder,
        blocks: Vec<usize>,
        num_classes: usize,
        bn_eps: f64,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let depth = encoder.blocks.len();
        if blocks.is_empty() {
            return Err(HeadsError::Config(
                "the linear head needs at least one block".into(),
            ));
        }
        if let Some(b) = blocks.iter().find(|&&b| b >= depth) {
            return Err(HeadsError::Config(format!(
                "block {b} is past the encoder's {depth} blocks"
            )));
        }
        let d = encoder.embed_dim();
        let mut init = Init::new(seed, LinearInit::Xavier, device);
        Ok(Self {
            backbone: encoder.fork(&device.clone().without_autodiff()),
            decode_head: BNHead::new(d * blocks.len(), num_classes, bn_eps, &mut init),
            blocks,
        })
    }

    /// The frozen features: each chosen block's tokens after the final norm, as maps on the
    /// head's device, without a graph.
    ///
    /// # Shapes
    /// `images: [B, 3, H, W]` → each `[B, D, H/p, W/p]`
    pub fn features(&self, images: Tensor<4>, head_device: &Device) -> Result<Vec<Tensor<4>>> {
        let [_, _, h, w] = images.dims();
        let p = self.backbone.patch_embed.proj.kernel_size[0];
        if !h.is_multiple_of(p) || !w.is_multiple_of(p) {
            return Err(HeadsError::Config(format!(
                "a {h}×{w} image is not a whole number of {p}-px patches"
            )));
        }
        let images = images.without_autodiff();
        let taps = self
            .backbone
            .forward_taps(images, &self.blocks, &mut ForwardCtx::eval());
        taps.into_iter()
            .map(|t| {
                let normed = self.backbone.norm.forward(t);
                let map = tokens_to_map(normed, [h / p, w / p])?;
                // A fresh leaf on the head's device (no graph behind it).
                Ok(Tensor::from_data(map.into_data(), head_device))
            })
            .collect()
    }

    /// Logits at the token grid.
    ///
    /// # Shapes
    /// `images: [B, 3, H, W]` → `[B, K, H/p, W/p]`
    pub fn forward(&mut self, images: Tensor<4>, train: bool) -> Result<Tensor<4>> {
        let device = images.device();
        let maps = self.features(images, &device)?;
        self.decode_head.forward(maps, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cae_pretrain::config::CaeConfig;
    use cae_pretrain::weights::expected_tensors;

    #[test]
    fn only_the_head_learns_and_names_follow_bnhead() {
        let dev = Device::flex().autodiff();
        let enc_cfg = CaeConfig::test();
        let encoder = cae_pretrain::model::ContextAutoencoder::new(&enc_cfg, 0, &dev).encoder;
        let depth = encoder.blocks.len();
        let mut model =
            LinearSegmentor::new(encoder, vec![depth - 2, depth - 1], 4, 1e-5, 0, &dev).unwrap();
        let keys = expected_tensors(&model);
        assert!(keys.contains_key("decode_head.bn.running_var"));
        assert!(keys.contains_key("decode_head.conv_seg.weight"));
        let img = enc_cfg.encoder.img_size;
        let p = enc_cfg.encoder.patch_size;
        let x = Tensor::<4>::random(
            [2, 3, img, img],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let logits = model.forward(x, true).unwrap();
        assert_eq!(logits.dims(), [2, 4, img / p, img / p]);
        let grads = logits.sum().backward();
        assert!(
            model
                .decode_head
                .conv_seg
                .weight
                .val()
                .grad(&grads)
                .is_some()
        );
        assert!(
            model.backbone.blocks[0]
                .attn
                .qkv
                .weight
                .val()
                .grad(&grads)
                .is_none(),
            "the encoder is frozen"
        );
        assert!(
            LinearSegmentor::new(
                cae_pretrain::model::ContextAutoencoder::new(&enc_cfg, 0, &dev).encoder,
                vec![depth],
                4,
                1e-5,
                0,
                &dev
            )
            .is_err()
        );
    }
}
