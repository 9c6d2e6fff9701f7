//! `BatchNorm2d` as PyTorch has it, with PyTorch's parameter names and running-statistics rule.
//!
//! burn's own `BatchNorm` differs from PyTorch in two ways that matter here: its parameters are
//! `gamma`/`beta` (burn-store renames them only for a struct named exactly `BatchNorm`), and it
//! updates `running_var` with the *biased* batch variance, where PyTorch uses the unbiased one.
//! This module keeps PyTorch's keys (`weight`, `bias`, `running_mean`, `running_var`), so mmseg
//! checkpoints load without renaming, and PyTorch's update:
//!
//! * training: normalise with the batch mean and biased variance over `(B, H, W)`, then
//!   `running = (1 − m)·running + m·batch`, with the unbiased variance `var·n/(n − 1)` (m = 0.1);
//! * evaluation: normalise with the running statistics.
//!
//! The running statistics are parameters without gradient (`require_grad = false`), so the
//! optimizers leave them alone and they travel with the weights; training mode needs `&mut self`
//! to update them. `num_batches_tracked` (only used by PyTorch when `momentum = None`) is not kept;
//! loaders skip it.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

/// PyTorch's `BatchNorm2d` (affine, tracking running statistics).
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Scale γ `[C]` (1 at init).
    pub weight: Param<Tensor<1>>,
    /// Shift β `[C]` (0 at init).
    pub bias: Param<Tensor<1>>,
    /// Running mean `[C]` (0 at init; no gradient).
    pub running_mean: Param<Tensor<1>>,
    /// Running variance `[C]` (1 at init; no gradient).
    pub running_var: Param<Tensor<1>>,
    /// Update factor of the running statistics (0.1).
    pub momentum: f64,
    /// ε (1e-5).
    pub eps: f64,
}

impl BatchNorm2d {
    /// A fresh layer of `channels` features: γ = 1, β = 0, mean 0, variance 1, momentum 0.1,
    /// ε = `eps`.
    pub fn new(channels: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: Param::from_tensor(Tensor::zeros([channels], device))
                .set_require_grad(false),
            running_var: Param::from_tensor(Tensor::ones([channels], device))
                .set_require_grad(false),
            momentum: 0.1,
            eps,
        }
    }

    /// Number of features `C`.
    pub fn channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Evaluation mode: normalises with the running statistics.
    ///
    /// # Shapes
    /// `x: [B, C, H, W] → [B, C, H, W]`
    pub fn forward_eval(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        burn::tensor::module::batch_norm(
            x,
            self.weight.val(),
            self.bias.val(),
            self.running_mean.val().to_device(&device),
            self.running_var.val().to_device(&device),
            self.eps,
        )
    }

    /// Training mode: normalises with the batch statistics and updates the running ones.
    ///
    /// # Shapes
    /// `x: [B, C, H, W] → [B, C, H, W]` with `B·H·W ≥ 2`
    pub fn forward_train(&mut self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let n = (b * h * w) as f64;
        let out =
            burn::tensor::module::batch_norm_train(x, self.weight.val(), self.bias.val(), self.eps);
        let m = self.momentum;
        let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        let mean = out.mean.detach();
        let var = out.variance.detach().mul_scalar(unbiased);
        let running_mean = self.running_mean.val().detach();
        let running_var = self.running_var.val().detach();
        let device = running_mean.device();
        self.running_mean = Param::from_tensor(
            running_mean.mul_scalar(1.0 - m) + mean.to_device(&device).mul_scalar(m),
        )
        .set_require_grad(false);
        self.running_var = Param::from_tensor(
            running_var.mul_scalar(1.0 - m) + var.to_device(&device).mul_scalar(m),
        )
        .set_require_grad(false);
        out.output
    }

    /// Training mode over several inputs of different sizes at once, as SyncBN over the GPUs of
    /// a data-parallel batch: the statistics are those of every element of every input
    /// together; the running ones are updated once.
    ///
    /// # Shapes
    /// `xs[g]: [B_g, C, H_g, W_g]` → same shapes
    pub fn forward_train_sync(&mut self, xs: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        if xs.len() == 1 {
            return vec![self.forward_train(xs.into_iter().next().expect("one input"))];
        }
        let dims: Vec<[usize; 4]> = xs.iter().map(|x| x.dims()).collect();
        let c = self.channels();
        let flat: Vec<Tensor<2>> = xs
            .into_iter()
            .zip(&dims)
            .map(|(x, &[b, _, h, w])| x.swap_dims(0, 1).reshape([c, b * h * w]))
            .collect();
        let all: Tensor<2> = Tensor::cat(flat, 1);
        let n = all.dims()[1];
        let y = self.forward_train(all.reshape([1, c, n, 1]));
        let y: Tensor<2> = y.reshape([c, n]);
        let mut out = Vec::with_capacity(dims.len());
        let mut at = 0;
        for [b, _, h, w] in dims {
            let k = b * h * w;
            let part: Tensor<4> = y.clone().narrow(1, at, k).reshape([c, b, h, w]);
            out.push(part.swap_dims(0, 1));
            at += k;
        }
        out
    }

    /// [`Self::forward_train`] when `train`, else [`Self::forward_eval`].
    pub fn forward(&mut self, x: Tensor<4>, train: bool) -> Tensor<4> {
        if train {
            self.forward_train(x)
        } else {
            self.forward_eval(x)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;
    use burn::tensor::TensorData;

    #[test]
    fn sync_statistics_are_those_of_all_inputs_together() {
        let dev = Device::flex();
        // Two inputs of different sizes; channel 0 holds 1, 2 | 3, 4, 5, 6 (mean 3.5), channel 1
        // holds 0, 0 | 2, 2, 2, 2 (mean 4/3).
        let a = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 0.0, 0.0], [1, 2, 1, 2]),
            &dev,
        );
        let b = Tensor::<4>::from_data(
            TensorData::new(
                vec![3.0f32, 4.0, 5.0, 6.0, 2.0, 2.0, 2.0, 2.0],
                [1, 2, 2, 2],
            ),
            &dev,
        );
        let mut bn = BatchNorm2d::new(2, 0.0, &dev);
        let out = bn.forward_train_sync(vec![a, b]);
        assert_eq!(out[0].dims(), [1, 2, 1, 2]);
        assert_eq!(out[1].dims(), [1, 2, 2, 2]);
        let var0 = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .map(|v| (v - 3.5) * (v - 3.5))
            .sum::<f32>()
            / 6.0;
        let got = to_vec(out[0].clone()).unwrap();
        assert!((got[0] - (1.0 - 3.5) / var0.sqrt()).abs() < 1e-5, "{got:?}");
        let got1 = to_vec(out[1].clone()).unwrap();
        assert!(
            (got1[3] - (6.0 - 3.5) / var0.sqrt()).abs() < 1e-5,
            "{got1:?}"
        );
        // Running mean: 0.9·0 + 0.1·mean, once.
        let rm = to_vec(bn.running_mean.val()).unwrap();
        assert!(
            (rm[0] - 0.35).abs() < 1e-6 && (rm[1] - 0.4 / 3.0).abs() < 1e-6,
            "{rm:?}"
        );
    }

    fn input(dev: &Device) -> Tensor<4> {
        // Two samples, two channels, 1×2 maps: channel 0 = [1, 2, 3, 4], channel 1 = [0, 0, 2, 2].
        Tensor::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 0.0, 0.0, 3.0, 4.0, 2.0, 2.0],
                [2, 2, 1, 2],
            ),
            dev,
        )
    }

    #[test]
    fn training_uses_batch_statistics_and_updates_like_pytorch() {
        let dev = Device::flex();
        let mut bn = BatchNorm2d::new(2, 1e-5, &dev);
        let y = to_vec(bn.forward_train(input(&dev))).unwrap();
        // Channel 0: mean 2.5, biased var 1.25.
        let s = (1.25f32 + 1e-5).sqrt();
        assert!((y[0] - (1.0 - 2.5) / s).abs() < 1e-5);
        assert!((y[5] - (4.0 - 2.5) / s).abs() < 1e-5);
        let mean = to_vec(bn.running_mean.val()).unwrap();
        let var = to_vec(bn.running_var.val()).unwrap();
        // PyTorch: 0.9·0 + 0.1·2.5 and 0.9·1 + 0.1·(1.25·4/3).
        assert!((mean[0] - 0.25).abs() < 1e-6 && (mean[1] - 0.1).abs() < 1e-6);
        assert!((var[0] - (0.9 + 0.1 * 1.25 * 4.0 / 3.0)).abs() < 1e-6);
        assert!((var[1] - (0.9 + 0.1 * 4.0 / 3.0)).abs() < 1e-6);
    }

    #[test]
    fn evaluation_uses_running_statistics() {
        let dev = Device::flex();
        let mut bn = BatchNorm2d::new(2, 1e-5, &dev);
        bn.running_mean = Param::from_tensor(Tensor::from_data([1.0f32, -1.0], &dev));
        bn.running_var = Param::from_tensor(Tensor::from_data([4.0f32, 1.0], &dev));
        bn.weight = Param::from_tensor(Tensor::from_data([2.0f32, 1.0], &dev));
        bn.bias = Param::from_tensor(Tensor::from_data([0.5f32, 0.0], &dev));
        let y = to_vec(bn.forward(input(&dev), false)).unwrap();
        let s0 = (4.0f32 + 1e-5).sqrt();
        assert!((y[0] - (2.0 * (1.0 - 1.0) / s0 + 0.5)).abs() < 1e-5);
        assert!((y[1] - (2.0 * (2.0 - 1.0) / s0 + 0.5)).abs() < 1e-5);
        assert!((y[2] - (0.0 + 1.0) / (1.0f32 + 1e-5).sqrt()).abs() < 1e-5);
        // The running statistics are untouched in evaluation.
        assert_eq!(to_vec(bn.running_mean.val()).unwrap(), vec![1.0, -1.0]);
    }
}
