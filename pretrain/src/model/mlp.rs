//! The transformer MLP (`Mlp` in timm / `models/modeling_finetune.py`): `fc1 → GELU(erf) → fc2`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;

use super::init::Init;
use super::linear::apply;
use crate::fused;

/// `fc1 (D → hidden) → GELU → fc2 (hidden → D)`; dropout is 0 in every recipe here.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `D → hidden`.
    pub fc1: Linear,
    /// `hidden → D`.
    pub fc2: Linear,
}

impl Mlp {
    /// A new MLP.
    pub fn new(dim: usize, hidden: usize, init: &mut Init) -> Self {
        Self {
            fc1: init.linear(dim, hidden, true),
            fc2: init.linear(hidden, dim, true),
        }
    }

    /// # Shapes
    /// `x: [B, N, D] → [B, N, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        apply(&self.fc2, fused::gelu(apply(&self.fc1, x)))
    }
}
