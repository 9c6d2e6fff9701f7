//! Patch embedding (`PatchEmbed` in `models/modeling_finetune.py`): a `Conv2d(C, D, p, stride p)`
//! with bias, flattened row-major so that patch `p = row · W + col`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::Tensor;

use super::init::Init;

/// Patch embedding.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// The patchifying convolution.
    pub proj: Conv2d,
}

impl PatchEmbed {
    /// Conv weight trunc-normal(0.02, ±1σ), bias 0 (cae.md §1.7).
    pub fn new(in_chans: usize, dim: usize, patch: usize, init: &mut Init) -> Self {
        let mut proj = Conv2dConfig::new([in_chans, dim], [patch, patch])
            .with_stride([patch, patch])
            .init(&init.device);
        proj.weight = init.trunc_normal_param([dim, in_chans, patch, patch]);
        proj.bias = Some(init.zeros([dim]));
        Self { proj }
    }

    /// # Shapes
    /// `x: [B, C, H, W] → [B, (H/p)·(W/p), D]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<3> {
        let y = crate::autocast::conv2d(&self.proj, x); // [B, D, H/p, W/p]
        let [b, d, gh, gw] = y.dims();
        y.reshape([b, d, gh * gw]).swap_dims(1, 2)
    }
}
