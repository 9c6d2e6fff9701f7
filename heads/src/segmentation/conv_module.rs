//! The building blocks the mmseg heads share: mmcv's `ConvModule` (conv without bias → BatchNorm
//! → ReLU), the `conv_seg` classifier, `Dropout2d`, and bilinear resizing with mmseg's
//! `align_corners = False`.
//!
//! Initialisation follows mmcv / mmseg, drawn from the seeded [`Init`] stream:
//! `ConvModule.init_weights` is `kaiming_init(conv, a=0, nonlinearity='relu')` (normal, fan-out:
//! std = √(2 / (C_out·k·k))) and BatchNorm 1 / 0; `conv_seg` is `normal_init(std=0.01)`, bias 0.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d};
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

/// `conv.forward(x)` computed as matrix products, as PyTorch's CPU kernels do.
///
/// On `flex`, a convolution with stride 1, dilation 1 and one group (every convolution of the
/// UperNet and Mask R-CNN heads) is the fused im2col convolution of
/// [`cae_pretrain::fused::conv`], forward and backward: burn-flex has no convolution backward of
/// its own, and burn's generic one (a transposed convolution and a convolution over swapped axes,
/// with layout conversions) ran the heads' 3×3 convolutions at 0.60–0.73× PyTorch's speed
/// (`docs/speed/ops-side-by-side.log`). Elsewhere, or with `CAE_UNFUSED=conv`, a `1×1`
/// convolution without padding is one batched matrix product `W[O, C] · x[b][C, H·W]` (burn's
/// generic convolution was 3.3× slower than PyTorch on UperNet's 1×1 laterals), and anything else
/// is burn's convolution. Same parameters, same result up to float rounding.
///
/// # Shapes
/// `x: [B, C_in, H, W] → [B, C_out, H', W']`
///
/// Under bf16 autocast ([`cae_pretrain::autocast`]) it is burn's convolution on bf16 operands,
/// the output back in f32.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    use cae_pretrain::fused;
    if cae_pretrain::autocast::active() {
        return cae_pretrain::autocast::conv2d(conv, x);
    }
    let plain = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    let padding = match conv.padding {
        PaddingConfig2d::Valid => Some([0; 4]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Some([top, left, bottom, right]),
        PaddingConfig2d::Same => None,
    };
    if let Some(padding) = padding.filter(|_| plain && fused::use_fused(fused::Op::Conv, &x)) {
        return fused::conv2d_fused(
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            padding,
        );
    }
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

/// `conv.forward(x)`, with a transposed convolution whose kernel equals its stride (no padding,
/// dilation 1, one group: the neck's `ConvTranspose2d(D, D, 2, stride 2)`) computed as one
/// batched matrix product: every input pixel writes its own `k×k` output block, so
/// `y[b, o, k·i + u, k·j + v] = bias[o] + Σ_c x[b, c, i, j] · W[c, o, u, v]` is
/// `Wᵀ[O·k·k, C] · x[b][C, H·W]` followed by one permutation of the blocks into place.
/// burn-flex's generic transposed convolution took 2.4× PyTorch's time at the neck's shape
/// (`docs/speed/ops-side-by-side.log`). Same parameters, same result up to float rounding.
///
/// # Shapes
/// `x: [B, C_in, H, W] → [B, C_out, k·H, k·W]`
pub fn conv_transpose2d(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let [kh, kw] = conv.kernel_size;
    let blocks = conv.stride == conv.kernel_size
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.padding == [0, 0]
        && conv.padding_out == [0, 0];
    if !blocks {
        return conv.forward(x);
    }
    let [b, c, h, w] = x.dims();
    let weight = conv.weight.val(); // [C, O, kh, kw]
    let o = weight.dims()[1];
    let wt = weight.reshape([c, o * kh * kw]).transpose(); // [O·kh·kw, C]
    // [B, O·kh·kw, H·W] (bf16 operands under autocast)
    let y = cae_pretrain::autocast::matmul(wt.unsqueeze_dim::<3>(0), x.reshape([b, c, h * w]));
    let y = y
        .reshape([b, o, kh, kw, h, w])
        .permute([0, 1, 4, 2, 5, 3]) // [B, O, H, kh, W, kw]
        .reshape([b, o, h * kh, w * kw]);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, o, 1, 1]),
        None => y,
    }
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
/// Bilinear resizing is separable: `y = A_h · x · A_wᵀ` per map, with interpolation matrices of
/// two non-zero weights per row ([`bilinear_weights`]). It runs as two matrix products, whose
/// backward is two more: rows first, a small product per map on the input's width, then columns
/// as one product over all `B·C·h` rows (the fused Linear layer on `flex`, which writes the large
/// output once; as per-map products through burn's matmul this step made the whole resize 0.67–
/// 1.06× PyTorch, `docs/speed/ops-side-by-side.log` runs 3–7). burn-flex's direct kernel took
/// 2.5× PyTorch's time to resize UperNet's logits forward and backward (same log, run 1). The weights
/// are PyTorch's, computed as it does in `f32`, and each output sums the same two products in
/// the same order, so the values equal burn's interpolation up to float rounding (tested, values
/// and gradients). It stays f32 under bf16 autocast: the products here are interpolation, not
/// learned layers.
///
/// # Shapes
/// `x: [B, C, H, W] → [B, C, h, w]`
pub fn resize_bilinear(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let _f32 = cae_pretrain::autocast::autocast(cae_pretrain::autocast::Precision::F32);
    let [b, c, h, w] = x.dims();
    let [oh, ow] = size;
    if [h, w] == size {
        return x;
    }
    if oh == 0 || ow == 0 || h == 0 || w == 0 {
        return burn::tensor::module::interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size(size),
        );
    }
    let device = x.device();
    let matrix = |out: usize, inp: usize| {
        Tensor::<2>::from_data(
            TensorData::new(bilinear_weights(out, inp), [out, inp]),
            &device,
        )
    };
    // Rows: A_h [h, H] · x[B·C][H, W], one small product per map.
    let y = x.reshape([b * c, h, w]);
    let y = if oh == h {
        y
    } else {
        matrix(oh, h).unsqueeze_dim::<3>(0).matmul(y)
    };
    // Columns: [B·C·h, W] · A_wᵀ [W, w], one product over all rows (the fused Linear on flex).
    let y = y.reshape([b * c * oh, w]);
    let y = if ow == w {
        y
    } else {
        cae_pretrain::fused::linear(y, matrix(ow, w).transpose(), None)
    };
    y.reshape([b, c, oh, ow])
}

/// The `out × inp` row-major matrix of 1-D bilinear interpolation with `align_corners = False`,
/// as PyTorch's `upsample_bilinear2d` computes its indices and weights (in `f32`): source
/// `s = max((d + ½)·inp/out − ½, 0)`, `i₀ = ⌊s⌋`, `i₁ = min(i₀ + 1, inp − 1)`, `λ₁ = s − i₀`,
/// `λ₀ = 1 − λ₁`.
pub fn bilinear_weights(out: usize, inp: usize) -> Vec<f32> {
    let scale = inp as f32 / out as f32;
    let mut m = vec![0f32; out * inp];
    for d in 0..out {
        let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(inp - 1);
        let i1 = if i0 < inp - 1 { i0 + 1 } else { i0 };
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let row = &mut m[d * inp..(d + 1) * inp];
        row[i0] += 1.0 - l1;
        row[i1] += l1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;

    /// Under bf16 autocast the convolutions (3×3 padded, 1×1, the neck's 2×2 transposed one)
    /// return f32 maps within bf16's rounding of the f32 ones (8 significant bits: operands off
    /// by up to 2⁻⁹ relative, so a sum of products by a few 2⁻⁹ of its magnitude), that really
    /// differ from them, and give the weights f32 gradients; resizing stays f32, bit for bit.
    #[test]
    fn convolutions_under_bf16_autocast_stay_within_bf16_rounding_of_f32() {
        use burn::nn::conv::ConvTranspose2dConfig;
        use burn::tensor::{DType, Distribution};
        use cae_pretrain::autocast::{Precision, autocast};
        let dev = burn::tensor::Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 8, 6, 6], Distribution::Normal(0.0, 1.0), &dev);
        let close = |name: &str, got: Tensor<4>, want: Tensor<4>| {
            assert_eq!(got.dtype(), DType::F32, "{name}");
            let scale = want.clone().abs().max().into_scalar::<f32>();
            let diff = (got - want).abs().max().into_scalar::<f32>();
            assert!(diff > 0.0, "{name}: no bf16 rounding at all");
            assert!(
                diff <= 8.0 * scale / 512.0,
                "{name}: {diff} against {scale}"
            );
        };
        for (kernel, padding) in [(3, 1), (1, 0)] {
            let conv = Conv2dConfig::new([8, 4], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(
                    padding, padding, padding, padding,
                ))
                .init(&dev);
            let want = conv2d(&conv, x.clone());
            let got = {
                let _bf16 = autocast(Precision::Bf16);
                conv2d(&conv, x.clone())
            };
            let grads = got.clone().sum().backward();
            let gw = conv.weight.val().grad(&grads).expect("a weight gradient");
            assert_eq!(gw.dtype(), DType::F32);
            close(&format!("{kernel}x{kernel} conv"), got, want);
        }
        let up = ConvTranspose2dConfig::new([8, 4], [2, 2])
            .with_stride([2, 2])
            .init(&dev);
        let want = conv_transpose2d(&up, x.clone());
        let got = {
            let _bf16 = autocast(Precision::Bf16);
            conv_transpose2d(&up, x.clone())
        };
        close("transposed conv", got, want);
        let want = resize_bilinear(x.clone(), [9, 11]);
        let got = {
            let _bf16 = autocast(Precision::Bf16);
            resize_bilinear(x, [9, 11])
        };
        assert_eq!(got.to_data(), want.to_data());
    }

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
    /// Same length, and every element within `tol` of the other, relative to its magnitude
    /// (absolute below 1).
    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let worst = a
            .iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs() / q.abs().max(1.0))
            .fold(0.0, f32::max);
        assert!(worst <= tol, "{what}: {worst}");
    }

    #[test]
    fn separable_bilinear_resize_equals_the_interpolation() {
        use burn::tensor::Distribution;
        let dev = burn::tensor::Device::flex().autodiff();
        let direct = |x: Tensor<4>, size: [usize; 2]| {
            burn::tensor::module::interpolate(
                x,
                InterpolateOptions::new(InterpolateMode::Bilinear)
                    .with_align_corners(false)
                    .with_output_size(size),
            )
        };
        // Relative to the magnitude: a gradient sums up to 64 output gradients here.
        let close = |a: &[f32], b: &[f32], what: &str| assert_close(a, b, 1e-5, what);
        // Up ×4 (the logits), up by odd ratios (PPM's 1/2/3/6 bins), down, one axis only.
        for (hw, size) in [
            ([4, 5], [16, 20]),
            ([1, 1], [8, 8]),
            ([3, 3], [8, 8]),
            ([6, 6], [8, 7]),
            ([9, 7], [4, 3]),
            ([5, 4], [5, 9]),
        ] {
            let x = Tensor::<4>::random([2, 3, hw[0], hw[1]], Distribution::Default, &dev)
                .require_grad();
            let want = direct(x.clone(), size);
            let got = resize_bilinear(x.clone(), size);
            assert_eq!(got.dims(), want.dims());
            let what = format!("{hw:?} -> {size:?}");
            close(
                &to_vec(got.clone()).unwrap(),
                &to_vec(want.clone()).unwrap(),
                &what,
            );
            let r = Tensor::<4>::random(want.dims(), Distribution::Default, &dev);
            let gw = (want * r.clone()).sum().backward();
            let gg = (got * r).sum().backward();
            close(
                &to_vec(x.grad(&gg).unwrap()).unwrap(),
                &to_vec(x.grad(&gw).unwrap()).unwrap(),
                &format!("{what}: dx"),
            );
        }
        // Each row of the weights sums to one.
        for (o, i) in [(16, 4), (8, 3), (3, 9), (7, 7)] {
            let m = bilinear_weights(o, i);
            for row in m.chunks(i) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn blockwise_transposed_conv_as_a_matrix_product_equals_the_transposed_convolution() {
        use burn::nn::conv::ConvTranspose2dConfig;
        use burn::tensor::Distribution;
        let dev = burn::tensor::Device::flex().autodiff();
        let close = assert_close;
        for (kernel, bias) in [([2, 2], true), ([2, 3], false), ([3, 3], true)] {
            let conv = ConvTranspose2dConfig::new([5, 4], kernel)
                .with_stride(kernel)
                .with_bias(bias)
                .init(&dev);
            let x = Tensor::<4>::random([2, 5, 3, 4], Distribution::Default, &dev).require_grad();
            let want = conv.forward(x.clone());
            let got = conv_transpose2d(&conv, x.clone());
            assert_eq!(got.dims(), want.dims());
            close(
                &to_vec(got.clone()).unwrap(),
                &to_vec(want.clone()).unwrap(),
                1e-5,
                "y",
            );
            // A random output gradient, so that a misplaced block shows in every gradient.
            let r = Tensor::<4>::random(want.dims(), Distribution::Default, &dev);
            let gw = (want * r.clone()).sum().backward();
            let gg = (got * r).sum().backward();
            let grad = |g: &_, t: Tensor<4>| to_vec(t.grad(g).unwrap()).unwrap();
            close(&grad(&gg, x.clone()), &grad(&gw, x.clone()), 1e-4, "dx");
            close(
                &grad(&gg, conv.weight.val()),
                &grad(&gw, conv.weight.val()),
                1e-4,
                "dW",
            );
            if let Some(b) = &conv.bias {
                close(
                    &to_vec(b.val().grad(&gg).unwrap()).unwrap(),
                    &to_vec(b.val().grad(&gw).unwrap()).unwrap(),
                    1e-4,
                    "db",
                );
            }
        }
        // Overlapping (stride below the kernel): the transposed convolution itself.
        let conv = ConvTranspose2dConfig::new([5, 4], [3, 3])
            .with_stride([2, 2])
            .init(&dev);
        let x = Tensor::<4>::random([1, 5, 3, 3], Distribution::Default, &dev);
        assert_eq!(conv_transpose2d(&conv, x).dims(), [1, 4, 7, 7]);
    }

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
