//! `BatchNorm1d(D, affine=False)`: the feature normalisation in front of the linear and attentive
//! probes' classifiers (MAE `main_linprobe.py`, eps 1e-6; CAE `LP_BatchNorm`, eps 1e-5).
//!
//! It has no parameters, only running statistics, which live here rather than in a module:
//! training normalises with the batch statistics (biased variance) and updates the running
//! statistics with `momentum` (PyTorch's convention: `running = (1 − m)·running + m·batch`, the
//! running variance from the unbiased batch variance); evaluation uses the running statistics.
//! (The released CAE attentive code normalises with batch statistics at evaluation time too, a
//! quirk of `LP_BatchNorm(is_train=True)` that is not reproduced; cae.md §5a-2.)

use burn::tensor::{Device, Tensor};

/// Running statistics of a parameter-free BatchNorm.
#[derive(Debug, Clone)]
pub struct BatchNormStats {
    /// Running mean `[D]` (starts at 0).
    pub mean: Tensor<1>,
    /// Running variance `[D]` (starts at 1).
    pub var: Tensor<1>,
    /// Update factor (0.1).
    pub momentum: f64,
    /// ε.
    pub eps: f64,
}

impl BatchNormStats {
    /// Fresh statistics for `d` features on `device` (a plain, non-autodiff device).
    pub fn new(d: usize, eps: f64, device: &Device) -> Self {
        Self {
            mean: Tensor::zeros([d], device),
            var: Tensor::ones([d], device),
            momentum: 0.1,
            eps,
        }
    }

    /// Training mode: normalises `x` with its own statistics (differentiable) and updates the
    /// running ones.
    ///
    /// # Shapes
    /// `x: [B, D]` (B ≥ 2) → `[B, D]`
    pub fn forward_train(&mut self, x: Tensor<2>) -> Tensor<2> {
        let [b, d] = x.dims();
        let mean = x.clone().mean_dim(0); // [1, D]
        let centered = x - mean.clone();
        let var = centered.clone().square().mean_dim(0); // biased, [1, D]
        let y = centered / var.clone().add_scalar(self.eps).sqrt();
        let m = self.momentum;
        let batch_mean = mean.detach().without_autodiff().reshape([d]);
        let unbiased = var
            .detach()
            .without_autodiff()
            .reshape([d])
            .mul_scalar(b as f64 / (b as f64 - 1.0));
        self.mean = self.mean.clone().mul_scalar(1.0 - m) + batch_mean.mul_scalar(m);
        self.var = self.var.clone().mul_scalar(1.0 - m) + unbiased.mul_scalar(m);
        y
    }

    /// Evaluation mode: normalises with the running statistics.
    ///
    /// # Shapes
    /// `x: [B, D]` → `[B, D]`
    pub fn forward_eval(&self, x: Tensor<2>) -> Tensor<2> {
        let mean = self.mean.clone().unsqueeze_dim::<2>(0);
        let std = self
            .var
            .clone()
            .add_scalar(self.eps)
            .sqrt()
            .unsqueeze_dim::<2>(0);
        (x - mean) / std
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;
    use burn::tensor::TensorData;

    #[test]
    fn train_uses_batch_stats_and_updates_running_stats_like_torch() {
        let dev = Device::flex();
        let x =
            Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 10.0, 3.0, 20.0], [2, 2]), &dev);
        let mut bn = BatchNormStats::new(2, 1e-6, &dev);
        let y = to_vec(bn.forward_train(x.clone())).unwrap();
        // Column 0: mean 2, biased var 1 → (−1, 1); column 1: mean 15, var 25 → (−1, 1).
        let want = [-1.0f32, -1.0, 1.0, 1.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
        // running_mean = 0.9·0 + 0.1·mean; running_var = 0.9·1 + 0.1·unbiased var (2, 50).
        let m = to_vec(bn.mean.clone()).unwrap();
        let v = to_vec(bn.var.clone()).unwrap();
        assert!((m[0] - 0.2).abs() < 1e-6 && (m[1] - 1.5).abs() < 1e-6);
        assert!((v[0] - 1.1).abs() < 1e-6 && (v[1] - 5.9).abs() < 1e-5);
        let e = to_vec(bn.forward_eval(x)).unwrap();
        assert!((e[0] - (1.0 - 0.2) / (1.1f32 + 1e-6).sqrt()).abs() < 1e-5);
    }
}
