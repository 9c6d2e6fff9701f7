//! The building blocks the mmseg heads share: mmcv's `ConvModule` (conv without bias → BatchNorm
//! → ReLU), the `conv_seg` classifier, `Dropout2d`, and bilinear resizing with mmseg's
//! `align_corners = False`.
//!
//! Initialisation follows mmcv / mmseg, drawn from the seeded [`Init`] stream:
//! `ConvModule.init_weights` is `kaiming_init(conv, a=0, nonlinearity='relu')` (normal, fan-out:
//! std = √(2 / (C_out·k·k))) and BatchNorm 1 / 0; `conv_seg` is `normal_init(std=0.01)`, bias 0.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};
use cae_pretrain::model::ForwardCtx;
use cae_pretrain::model::init::Init;
use rand::Rng;

use crate::batch_norm::BatchNorm2d;

/// mmcv `ConvModule(in, out, k, padding=k//2, norm_cfg=BN, act_cfg=ReLU)`: keys `conv.weight`,
/// `bn.{weight, bias, running_mean, running_var}`.
#[derive(Module, Debug)]
pub struct ConvModule {
    /// The convolution (no bias: the norm follows).
    pub conv: Conv2d,
    /// BatchNorm (SyncBN in the multi-GPU configs; the same on one device).
    pub bn: BatchNorm2d,
}

impl ConvModule {
    /// A `k×k` ConvModule `c_in → c_out` with "same" padding, kaiming-normal (fan-out, ReLU).
    pub fn new(c_in: usize, c_out: usize, k: usize, bn_eps: f64, init: &mut Init) -> Self {
        let mut conv = Conv2dConfig::new([c_in, c_out], [k, k])
            .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
            .with_bias(false)
            .init(&init.device);
        let std = (2.0 / (c_out * k * k) as f64).sqrt();
        let w = init.normal(c_out * c_in * k * k, std);
        conv.weight = init.param(w, [c_out, c_in, k, k]);
        Self {
            conv,
            bn: BatchNorm2d::new(c_out, bn_eps, &init.device),
        }
    }

    /// conv → BN (batch statistics when `train`) → ReLU.
    ///
    /// # Shapes
    /// `x: [B, C_in, H, W] → [B, C_out, H, W]`
    pub fn forward(&mut self, x: Tensor<4>, train: bool) -> Tensor<4> {
        let y = conv2d(&self.conv, x);
        burn::tensor::activation::relu(self.bn.forward(y, train))
    }
}

/// `conv.forward(x)`, with a `1×1` convolution (stride 1, no padding, dilation 1, one group)
/// computed as one batched matrix product `W[O, C] · x[b][C, H·W]`, as PyTorch does: burn-flex's
/// generic convolution was 3.3× slower than PyTorch on UperNet's 1×1 laterals
/// (`docs/speed/ops-side-by-side.log`). Same parameters, same result up to float rounding.
///
/// # Shapes
/// `x: [B, C_in, H, W] → [B, C_out, H', W']`
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let pointwise = conv.kernel_size == [1, 1]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(
            conv.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        );
    if !pointwise {
        return conv.forward(x);
    }
    let [b, c, h, w] = x.dims();
    let weight = conv.weight.val();
    let o = weight.dims()[0];
    let y = weight.reshape([1, o, c]).matmul(x.reshape([b, c, h * w]));
    let y = match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, o, 1]),
        None => y,
    };
    y.reshape([b, o, h, w])
}

/// The `1×1` classifier `conv_seg` (with bias), `normal(0, 0.01)`, bias 0.
pub fn conv_seg(c_in: usize, num_classes: usize, init: &mut Init) -> Conv2d {
    let mut conv = Conv2dConfig::new([c_in, num_classes], [1, 1]).init(&init.device);
    let w = init.normal(num_classes * c_in, 0.01);
    conv.weight = init.param(w, [num_classes, c_in, 1, 1]);
    conv.bias = Some(init.zeros([num_classes]));
    conv
}

/// `nn.Dropout2d(p)` in training: each `(sample, channel)` map is zeroed with probability `p` and
/// the kept ones scaled by `1/(1 − p)`; the identity in inference (or for `p = 0`). The mask is
/// drawn on the CPU from the pass's seeded generator.
///
/// # Shapes
/// `x: [B, C, H, W] → [B, C, H, W]`
pub fn dropout2d(x: Tensor<4>, p: f64, ctx: &mut ForwardCtx) -> Tensor<4> {
    if !ctx.train || p <= 0.0 {
        return x;
    }
    let Some(rng) = ctx.rng_mut() else {
        return x;
    };
    let [b, c, _, _] = x.dims();
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..b * c)
        .map(|_| {
            if rng.random::<f64>() < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::<4>::from_data(TensorData::new(mask, [b, c, 1, 1]), &x.device());
    x * mask
}

/// Bilinear resize to `[h, w]` with `align_corners = False` (PyTorch's half-pixel rule, source
/// coordinates below 0 clamped to 0, no antialiasing), as mmseg's `resize`. A no-op when the size
/// already matches.
///
/// # Shapes
/// `x: [B, C, H, W] → [B, C, h, w]`
pub fn resize_bilinear(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    burn::tensor::module::interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size(size),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;

    #[test]
    fn pointwise_conv_as_a_matrix_product_equals_the_convolution() {
        use burn::tensor::Distribution;
        let dev = burn::tensor::Device::flex().autodiff();
        for (bias, padding) in [
            (true, PaddingConfig2d::Valid),
            (false, PaddingConfig2d::Explicit(0, 0, 0, 0)),
        ] {
            let conv = Conv2dConfig::new([5, 3], [1, 1])
                .with_bias(bias)
                .with_padding(padding)
                .init(&dev);
            let x = Tensor::<4>::random([2, 5, 4, 6], Distribution::Default, &dev).require_grad();
            let want = conv.forward(x.clone());
            let got = conv2d(&conv, x.clone());
            let (a, b) = (to_vec(got.clone()).unwrap(), to_vec(want.clone()).unwrap());
            assert!(
                a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= 1e-5),
                "values"
            );
            let gw = (want * 1.5).sum().backward();
            let gg = (got * 1.5).sum().backward();
            let (a, b) = (
                to_vec(x.grad(&gg).unwrap()).unwrap(),
                to_vec(x.grad(&gw).unwrap()).unwrap(),
            );
            assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= 1e-5), "dx");
            let (a, b) = (
                to_vec(conv.weight.val().grad(&gg).unwrap()).unwrap(),
                to_vec(conv.weight.val().grad(&gw).unwrap()).unwrap(),
            );
            assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= 1e-4), "dW");
        }
        // Not pointwise: the convolution itself.
        let conv3 = Conv2dConfig::new([5, 3], [3, 3]).init(&dev);
        let x = Tensor::<4>::random([1, 5, 4, 4], Distribution::Default, &dev);
        assert_eq!(conv2d(&conv3, x).dims(), [1, 3, 2, 2]);
    }
    use burn::tensor::Device;
    use cae_pretrain::model::init::LinearInit;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn bilinear_follows_pytorch_half_pixel_rule() {
        let dev = Device::flex();
        // A 1×2 row [0, 1] upsampled to 1×4. PyTorch (align_corners=False): source x = (i + 0.5)/2
        // − 0.5 = −0.25, 0.25, 0.75, 1.25 → clamped to [0, 1] → 0, 0.25, 0.75, 1.
        let x = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 1, 1, 2]), &dev);
        let y = to_vec(resize_bilinear(x, [1, 4])).unwrap();
        assert_eq!(y, vec![0.0, 0.25, 0.75, 1.0]);
        // Downsampling 4 → 2 without antialiasing: source x = 0.5, 2.5 → averages of neighbours.
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![0.0f32, 2.0, 4.0, 8.0], [1, 1, 1, 4]),
            &dev,
        );
        let y = to_vec(resize_bilinear(x, [1, 2])).unwrap();
        assert_eq!(y, vec![1.0, 6.0]);
    }

    #[test]
    fn dropout2d_zeroes_whole_maps_in_training_only() {
        let dev = Device::flex();
        let x = Tensor::<4>::ones([4, 32, 2, 2], &dev);
        let mut ctx = ForwardCtx::train(ChaCha8Rng::seed_from_u64(3));
        let y = to_vec(dropout2d(x.clone(), 0.5, &mut ctx)).unwrap();
        let zero = y.chunks(4).filter(|m| m.iter().all(|v| *v == 0.0)).count();
        let kept = y.chunks(4).filter(|m| m.iter().all(|v| *v == 2.0)).count();
        assert_eq!(zero + kept, 128);
        assert!(zero > 32 && kept > 32, "{zero} dropped, {kept} kept");
        let z = to_vec(dropout2d(x, 0.5, &mut ForwardCtx::eval())).unwrap();
        assert!(z.iter().all(|v| *v == 1.0));
    }

    #[test]
    fn conv_module_init_is_kaiming_fan_out_and_seeded() {
        let dev = Device::flex();
        let draw = |seed| {
            let mut init = Init::new(seed, LinearInit::Xavier, &dev);
            to_vec(
                ConvModule::new(16, 64, 3, 1e-5, &mut init)
                    .conv
                    .weight
                    .val(),
            )
            .unwrap()
        };
        let w = draw(1);
        assert_eq!(w, draw(1));
        assert_ne!(w, draw(2));
        let var = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        let expected = 2.0 / (64.0 * 9.0);
        assert!((var / expected - 1.0).abs() < 0.1, "{var} vs {expected}");
    }
}
