//! mmseg's `FCNHead` as the auxiliary head of UperNet (protocols.md §2.5): on one pyramid level
//! (`in_index = 2`, the stride-16 map), `num_convs` 3×3 [`ConvModule`]s (`convs.{i}`),
//! `concat_input = False`, `Dropout2d`, then the 1×1 `conv_seg`.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use cae_pretrain::model::ForwardCtx;
use cae_pretrain::model::init::Init;

use super::conv_module::{ConvModule, conv_seg, dropout2d};
use crate::error::{HeadsError, Result};

/// mmseg's `FCNHead` (kernel 3, dilation 1, no input concatenation).
#[derive(Module, Debug)]
pub struct FCNHead {
    /// The 3×3 ConvModules (the first `in → channels`, the others `channels → channels`).
    pub convs: Vec<ConvModule>,
    /// 1×1 classifier.
    pub conv_seg: Conv2d,
    /// The pyramid level the head reads.
    pub in_index: usize,
    /// `Dropout2d` rate before the classifier.
    pub dropout: f64,
}

impl FCNHead {
    /// A head on level `in_index` of width `in_channels`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_channels: usize,
        channels: usize,
        num_convs: usize,
        in_index: usize,
        num_classes: usize,
        dropout: f64,
        bn_eps: f64,
        init: &mut Init,
    ) -> Result<Self> {
        if num_convs == 0 {
            return Err(HeadsError::Config(
                "the auxiliary FCNHead needs at least one conv (num_convs = 0 is the identity, \
                 which needs channels = in_channels; not supported)"
                    .into(),
            ));
        }
        let convs = (0..num_convs)
            .map(|i| {
                let c_in = if i == 0 { in_channels } else { channels };
                ConvModule::new(c_in, channels, 3, bn_eps, init)
            })
            .collect();
        Ok(Self {
            convs,
            conv_seg: conv_seg(channels, num_classes, init),
            in_index,
            dropout,
        })
    }

    /// Logits at the resolution of level `in_index`.
    ///
    /// # Shapes
    /// `levels[in_index]: [B, C, H, W]` → `[B, num_classes, H, W]`
    pub fn forward(&mut self, levels: &[Tensor<4>], ctx: &mut ForwardCtx) -> Result<Tensor<4>> {
        let Some(x) = levels.get(self.in_index) else {
            return Err(HeadsError::Config(format!(
                "the auxiliary head reads level {} of {}",
                self.in_index,
                levels.len()
            )));
        };
        let mut y = x.clone();
        for conv in &mut self.convs {
            y = conv.forward(y, ctx.train);
        }
        let y = dropout2d(y, self.dropout, ctx);
        Ok(super::conv_module::conv2d(&self.conv_seg, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use cae_pretrain::model::init::LinearInit;
    use cae_pretrain::weights::expected_tensors;

    #[test]
    fn keys_and_shapes() {
        let dev = Device::flex();
        let mut init = Init::new(0, LinearInit::Xavier, &dev);
        let mut head = FCNHead::new(8, 4, 1, 2, 3, 0.1, 1e-5, &mut init).unwrap();
        let keys = expected_tensors(&head);
        assert_eq!(keys["convs.0.conv.weight"], vec![4, 8, 3, 3]);
        assert_eq!(keys["convs.0.bn.running_mean"], vec![4]);
        assert_eq!(keys["conv_seg.weight"], vec![3, 4, 1, 1]);
        assert_eq!(keys.len(), 7);
        let levels: Vec<Tensor<4>> = [8, 4, 2]
            .iter()
            .map(|&s| Tensor::<4>::ones([1, 8, s, s], &dev))
            .collect();
        let y = head.forward(&levels, &mut ForwardCtx::eval()).unwrap();
        assert_eq!(y.dims(), [1, 3, 2, 2]);
        assert!(head.forward(&levels[..2], &mut ForwardCtx::eval()).is_err());
        assert!(FCNHead::new(8, 4, 0, 2, 3, 0.1, 1e-5, &mut init).is_err());
    }
}
