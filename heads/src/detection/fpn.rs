//! mmdet's `FPN` on the 4-scale ViT neck (protocols.md §3.1): 1×1 `lateral_convs` to `C`
//! channels, top-down fusion `lateral[i−1] += nearest(lateral[i])`, 3×3 `fpn_convs`, and one
//! extra level by `max_pool2d(kernel 1, stride 2)` on the last output (`num_outs = 5`, P2–P6).
//!
//! Keys are mmdet's: `lateral_convs.{i}.conv.{weight,bias}`, `fpn_convs.{i}.conv.{weight,bias}`
//! (a `ConvModule` without norm or activation). Initialisation: xavier-uniform weights, zero
//! bias (`FPN.init_weights`).

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::Tensor;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, MaxPoolOptions};
use cae_pretrain::model::init::Init;

use crate::error::{HeadsError, Result};

/// A conv without norm or activation, wrapped so its keys read `….conv.weight`.
#[derive(Module, Debug)]
pub struct PlainConv {
    /// The convolution (with bias).
    pub conv: Conv2d,
}

impl PlainConv {
    /// `k×k` conv `c_in → c_out`, "same" padding, xavier-uniform weight, zero bias.
    pub fn new(c_in: usize, c_out: usize, k: usize, init: &mut Init) -> Self {
        let p = k / 2;
        let mut conv = Conv2dConfig::new([c_in, c_out], [k, k])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .init(&init.device);
        let bound = (6.0 / ((c_in + c_out) * k * k) as f64).sqrt();
        let w = init.uniform(c_out * c_in * k * k, bound);
        conv.weight = init.param(w, [c_out, c_in, k, k]);
        conv.bias = Some(init.zeros([c_out]));
        Self { conv }
    }

    /// The convolution.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        crate::segmentation::conv_module::conv2d(&self.conv, x)
    }
}

/// mmdet's `FPN` with max-pooled extra levels.
#[derive(Module, Debug)]
pub struct Fpn {
    /// 1×1 convs, one per input level.
    pub lateral_convs: Vec<PlainConv>,
    /// 3×3 convs, one per input level.
    pub fpn_convs: Vec<PlainConv>,
    /// Outputs in all (inputs + max-pooled extra levels).
    pub num_outs: usize,
}

impl Fpn {
    /// An FPN over `in_channels` (finest first) to `out_channels`, with `num_outs` outputs.
    pub fn new(
        in_channels: &[usize],
        out_channels: usize,
        num_outs: usize,
        init: &mut Init,
    ) -> Result<Self> {
        if in_channels.is_empty() || num_outs < in_channels.len() {
            return Err(HeadsError::Config(format!(
                "an FPN over {} levels cannot give {num_outs} outputs",
                in_channels.len()
            )));
        }
        let lateral_convs = in_channels
            .iter()
            .map(|&c| PlainConv::new(c, out_channels, 1, init))
            .collect();
        let fpn_convs = in_channels
            .iter()
            .map(|_| PlainConv::new(out_channels, out_channels, 3, init))
            .collect();
        Ok(Self {
            lateral_convs,
            fpn_convs,
            num_outs,
        })
    }

    /// # Shapes
    /// `levels[i]: [B, C_i, H_i, W_i]` (each half the previous) → `num_outs` maps
    /// `[B, out, H_i, W_i]`, the extra ones halving again (`⌈H/2⌉`).
    pub fn forward(&self, levels: Vec<Tensor<4>>) -> Result<Vec<Tensor<4>>> {
        if levels.len() != self.lateral_convs.len() {
            return Err(HeadsError::Config(format!(
                "the FPN has {} inputs but got {} maps",
                self.lateral_convs.len(),
                levels.len()
            )));
        }
        let mut laterals: Vec<Tensor<4>> = levels
            .into_iter()
            .zip(&self.lateral_convs)
            .map(|(x, l)| l.forward(x))
            .collect();
        for i in (1..laterals.len()).rev() {
            let [_, _, h, w] = laterals[i - 1].dims();
            let up = burn::tensor::module::interpolate(
                laterals[i].clone(),
                InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h, w]),
            );
            laterals[i - 1] = laterals[i - 1].clone() + up;
        }
        let mut outs: Vec<Tensor<4>> = laterals
            .into_iter()
            .zip(&self.fpn_convs)
            .map(|(x, c)| c.forward(x))
            .collect();
        while outs.len() < self.num_outs {
            let last = outs[outs.len() - 1].clone();
            outs.push(max_pool2d(
                last,
                MaxPoolOptions::new([1, 1]).with_stride([2, 2]),
            ));
        }
        Ok(outs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};
    use cae_pretrain::model::init::LinearInit;
    use cae_pretrain::weights::expected_tensors;

    #[test]
    fn mmdet_keys_shapes_and_top_down_fusion() {
        let dev = Device::flex();
        let mut init = Init::new(0, LinearInit::Xavier, &dev);
        let fpn = Fpn::new(&[6; 4], 5, 5, &mut init).unwrap();
        let keys = expected_tensors(&fpn);
        assert_eq!(keys["lateral_convs.3.conv.weight"], vec![5, 6, 1, 1]);
        assert_eq!(keys["fpn_convs.0.conv.weight"], vec![5, 5, 3, 3]);
        assert_eq!(keys["fpn_convs.0.conv.bias"], vec![5]);
        assert_eq!(keys.len(), 16);
        let levels: Vec<Tensor<4>> = [16, 8, 4, 2]
            .iter()
            .map(|&s| Tensor::<4>::random([2, 6, s, s], Distribution::Normal(0.0, 1.0), &dev))
            .collect();
        let outs = fpn.forward(levels.clone()).unwrap();
        let sides: Vec<usize> = outs.iter().map(|o| o.dims()[2]).collect();
        assert_eq!(sides, vec![16, 8, 4, 2, 1]);
        // The extra level is the top output subsampled.
        let top = outs[3].clone().slice([0..2, 0..5, 0..1, 0..1]);
        let diff = (outs[4].clone() - top).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-6, "{diff}");
        // The finest output depends on the coarsest input (top-down path).
        let mut changed = levels.clone();
        changed[3] = changed[3].clone() + 1.0;
        let outs2 = fpn.forward(changed).unwrap();
        let d = (outs2[0].clone() - outs[0].clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(d > 1e-4);
        assert!(fpn.forward(levels[..3].to_vec()).is_err());
    }
}
