//! The linear probe's classifier (MAE `main_linprobe.py`, CAE `tools/run_linear.py`):
//! `BatchNorm1d(F, affine=False, eps=1e-6)` ([`crate::classification::norm::BatchNormStats`]) then
//! `Linear(F, classes)`, weight trunc-normal(std 0.01) (MoCo v3; timm's bounds are ±2, so in
//! effect a plain normal), bias 0. Trained with LARS ([`crate::optim::Rule::Lars`]).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::classification::head::ProbeHead;

/// `n` draws of normal(0, std) truncated to `[-2, 2]` (timm's `trunc_normal_` defaults), from a
/// seeded ChaCha8 stream.
pub fn normal_init(n: usize, std: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            loop {
                let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std;
                if z.abs() <= 2.0 {
                    break z as f32;
                }
            }
        })
        .collect()
}

/// A `d_in → d_out` Linear with weight normal(0, std) (drawn in PyTorch's `[out, in]` order) and
/// a zero bias.
pub fn classifier(d_in: usize, d_out: usize, std: f64, seed: u64, device: &Device) -> Linear {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0c1a_5511_f1e5);
    let torch = normal_init(d_in * d_out, std, &mut rng);
    let mut burn = vec![0.0f32; d_in * d_out];
    for o in 0..d_out {
        for i in 0..d_in {
            burn[i * d_out + o] = torch[o * d_in + i];
        }
    }
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(burn, [d_in, d_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::zeros([d_out], device))),
    }
}

/// The trainable part of the linear probe.
#[derive(Module, Debug)]
pub struct LinearProbe {
    /// The classifier.
    pub head: Linear,
}

impl LinearProbe {
    /// A new probe on `features`-wide inputs.
    pub fn new(features: usize, classes: usize, seed: u64, device: &Device) -> Self {
        Self {
            head: classifier(features, classes, 0.01, seed, device),
        }
    }
}

impl ProbeHead for LinearProbe {
    fn represent(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, _, f] = x.dims();
        x.reshape([b, f])
    }

    fn classify(&self, x: Tensor<2>) -> Tensor<2> {
        self.head.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_seeded_with_the_right_spread() {
        let dev = Device::flex();
        let a = LinearProbe::new(64, 100, 3, &dev);
        let b = LinearProbe::new(64, 100, 3, &dev);
        let wa = crate::error::to_vec(a.head.weight.val()).unwrap();
        assert_eq!(wa, crate::error::to_vec(b.head.weight.val()).unwrap());
        let var = wa.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / wa.len() as f64;
        assert!((var.sqrt() - 0.01).abs() < 0.001, "std {}", var.sqrt());
    }
}
