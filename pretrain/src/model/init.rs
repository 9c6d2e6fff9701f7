//! Parameter initialisation (cae.md §1.7), drawn on the CPU from one seeded generator.
//!
//! Every parameter is drawn here, in construction order, from a ChaCha8 stream, then uploaded. The
//! same seed therefore gives the same initial weights on every backend and thread count.
//!
//! * Default path (`fix_init_weight = false`, the official ViT-B scripts): every `nn.Linear` gets
//!   `xavier_uniform_` and a zero bias; LayerNorms are 1 / 0.
//! * `fix_init_weight = true` (intended for ViT-L): Linear weights get a trunc-normal(0.02) truncated
//!   at ±0.02 and the `proj` / `fc2` weights of block `l` (1-based) are divided by `sqrt(2·l)`.
//! * Either way the patch-embedding conv, `cls_token` and `mask_token` get trunc-normal(0.02)
//!   truncated at ±1σ; `q_bias`, `v_bias` and the conv bias are zero; layer scales are `init_values`.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How Linear weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearInit {
    /// `xavier_uniform_`: U(−a, a), a = sqrt(6 / (fan_in + fan_out)).
    Xavier,
    /// trunc-normal(0, 0.02) truncated at ±0.02 (BEiT's `_init_weights` with CAE's ±1σ wrapper).
    TruncNormal,
}

/// The standard deviation of every trunc-normal draw in CAE.
pub const INIT_STD: f64 = 0.02;

/// A seeded source of initial weights, passed down through the constructors.
pub struct Init {
    rng: ChaCha8Rng,
    /// How Linear weights are drawn.
    pub linear: LinearInit,
    /// The device the parameters are created on.
    pub device: Device,
}

impl Init {
    /// A new initialiser.
    pub fn new(seed: u64, linear: LinearInit, device: &Device) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            linear,
            device: device.clone(),
        }
    }

    /// `n` samples of a normal(0, std) truncated to `[−std, std]` (rejection sampling).
    pub fn trunc_normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                loop {
                    // Box–Muller; one of the pair is enough here.
                    let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
                    let u2: f64 = self.rng.random::<f64>();
                    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                    if z.abs() <= 1.0 {
                        break (z * std) as f32;
                    }
                }
            })
            .collect()
    }

    /// `n` samples of a normal(0, std) (Box–Muller, one of each pair; e.g. mmcv's
    /// `kaiming_init` and `normal_init` for the segmentation heads).
    pub fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = self.rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (z * std) as f32
            })
            .collect()
    }

    /// `n` samples of U(−a, a).
    pub fn uniform(&mut self, n: usize, a: f64) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.rng.random::<f64>() * 2.0 - 1.0) * a) as f32)
            .collect()
    }

    /// A tensor from values in row-major order.
    pub fn tensor<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    /// A parameter holding `values`.
    pub fn param<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> Param<Tensor<D>> {
        Param::from_tensor(self.tensor(values, shape))
    }

    /// A parameter of zeros.
    pub fn zeros<const D: usize>(&self, shape: [usize; D]) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::zeros(shape, &self.device))
    }

    /// A parameter filled with `value`.
    pub fn constant<const D: usize>(&self, shape: [usize; D], value: f64) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::full(shape, value, &self.device))
    }

    /// A trunc-normal(0.02, ±1σ) parameter (conv weights, cls / mask tokens).
    pub fn trunc_normal_param<const D: usize>(&mut self, shape: [usize; D]) -> Param<Tensor<D>> {
        let n = shape.iter().product();
        let v = self.trunc_normal(n, INIT_STD);
        self.param(v, shape)
    }

    /// A Linear layer `d_in → d_out` drawn with [`Self::linear`], zero bias.
    ///
    /// burn stores the weight as `[d_in, d_out]` (the transpose of PyTorch's `[d_out, d_in]`); the
    /// values are drawn in PyTorch's order and transposed, so a given seed means the same matrix
    /// as it would in PyTorch's layout.
    pub fn linear(&mut self, d_in: usize, d_out: usize, bias: bool) -> Linear {
        let n = d_in * d_out;
        let torch_layout = match self.linear {
            LinearInit::Xavier => self.uniform(n, (6.0 / (d_in + d_out) as f64).sqrt()),
            LinearInit::TruncNormal => self.trunc_normal(n, INIT_STD),
        };
        let mut burn_layout = vec![0.0f32; n];
        for o in 0..d_out {
            for i in 0..d_in {
                burn_layout[i * d_out + o] = torch_layout[o * d_in + i];
            }
        }
        Linear {
            weight: self.param(burn_layout, [d_in, d_out]),
            bias: bias.then(|| self.zeros([d_out])),
        }
    }

    /// A LayerNorm with weight 1, bias 0.
    pub fn layer_norm(&self, d: usize, eps: f64) -> LayerNorm {
        LayerNormConfig::new(d).with_epsilon(eps).init(&self.device)
    }
}

/// Divides a Linear's weight by `sqrt(2·layer_id)` (BEiT's `fix_init_weight` rescale, 1-based id).
pub fn rescale_linear(linear: Linear, layer_id: usize) -> Linear {
    let factor = (2.0 * layer_id as f64).sqrt();
    // Detached so that the scaled value is a fresh leaf, not a graph node hanging off the draw;
    // on a device without autodiff there is no graph (and no gradient to ask for: the
    // parameter's configured state, kept by `Param::map`, is what `train()` applies later).
    Linear {
        weight: linear.weight.map(|w| {
            let w = w.div_scalar(factor).detach();
            if w.is_autodiff() { w.require_grad() } else { w }
        }),
        bias: linear.bias,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunc_normal_stays_within_one_sigma_and_has_the_right_spread() {
        let mut init = Init::new(0, LinearInit::Xavier, &Device::flex());
        let v = init.trunc_normal(20_000, 0.02);
        assert!(v.iter().all(|x| x.abs() <= 0.02));
        let var = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64;
        // Variance of a standard normal truncated at ±1: 1 − 2φ(1)/(2Φ(1)−1) ≈ 0.2911.
        let expected = 0.2911 * 0.02f64.powi(2);
        assert!(
            (var / expected - 1.0).abs() < 0.05,
            "var {var} vs {expected}"
        );
    }

    #[test]
    fn xavier_bound_and_same_seed_same_weights() {
        let dev = Device::flex();
        let a = Init::new(7, LinearInit::Xavier, &dev).linear(64, 192, true);
        let b = Init::new(7, LinearInit::Xavier, &dev).linear(64, 192, true);
        let wa: Vec<f32> = a.weight.val().try_into_vec_as::<f32>().unwrap();
        let wb: Vec<f32> = b.weight.val().try_into_vec_as::<f32>().unwrap();
        assert_eq!(wa, wb);
        let bound = (6.0f32 / 256.0).sqrt();
        assert!(wa.iter().all(|x| x.abs() <= bound));
        assert!(wa.iter().any(|x| x.abs() > 0.8 * bound));
        let bias: Vec<f32> = a.bias.unwrap().val().try_into_vec_as::<f32>().unwrap();
        assert!(bias.iter().all(|x| *x == 0.0));
    }
}
