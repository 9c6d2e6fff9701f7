//! The pre-norm ViT block (`Block` in `models/modeling_cae_helper.py`):
//!
//! `x = x + DropPath(γ1 ⊙ Attn(LN1(x)))`, then `x = x + DropPath(γ2 ⊙ MLP(LN2(x)))`; the layer
//! scales γ exist only when `init_values > 0`.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::Tensor;

use super::attention::Attention;
use super::drop_path::ForwardCtx;
use super::init::{Init, LinearInit, rescale_linear};
use super::mlp::Mlp;
use crate::config::QkvBias;
use crate::fused;

/// Sizes of a block.
#[derive(Debug, Clone, Copy)]
pub struct BlockDims {
    /// Width.
    pub dim: usize,
    /// Heads.
    pub num_heads: usize,
    /// MLP hidden width.
    pub mlp_hidden: usize,
    /// Attention bias style.
    pub qkv_bias: QkvBias,
    /// LayerNorm epsilon.
    pub eps: f64,
    /// Layer-scale init (0 = none).
    pub init_values: f64,
}

/// A transformer block.
#[derive(Module, Debug)]
pub struct Block {
    /// Pre-attention LayerNorm.
    pub norm1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Pre-MLP LayerNorm.
    pub norm2: LayerNorm,
    /// MLP.
    pub mlp: Mlp,
    /// Layer scale of the attention branch.
    pub gamma_1: Option<Param<Tensor<1>>>,
    /// Layer scale of the MLP branch.
    pub gamma_2: Option<Param<Tensor<1>>>,
    /// Drop-path rate of this block.
    pub drop_path: f64,
    /// Epsilon of both LayerNorms.
    pub norm_eps: f64,
}

impl Block {
    /// A block; `layer_id` is 1-based and only used by the `fix_init_weight` rescale.
    pub fn new(dims: BlockDims, drop_path: f64, layer_id: usize, init: &mut Init) -> Self {
        let norm1 = init.layer_norm(dims.dim, dims.eps);
        let mut attn = Attention::new(dims.dim, dims.num_heads, dims.qkv_bias, init);
        let norm2 = init.layer_norm(dims.dim, dims.eps);
        let mut mlp = Mlp::new(dims.dim, dims.mlp_hidden, init);
        if init.linear == LinearInit::TruncNormal {
            attn.proj = rescale_linear(attn.proj, layer_id);
            mlp.fc2 = rescale_linear(mlp.fc2, layer_id);
        }
        let (gamma_1, gamma_2) = if dims.init_values > 0.0 {
            (
                Some(init.constant([dims.dim], dims.init_values)),
                Some(init.constant([dims.dim], dims.init_values)),
            )
        } else {
            (None, None)
        };
        Self {
            norm1,
            attn,
            norm2,
            mlp,
            gamma_1,
            gamma_2,
            drop_path,
            norm_eps: dims.eps,
        }
    }

    /// # Shapes
    /// `x: [B, N, D]`, `bias: [H, N, N]` → `[B, N, D]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        bias: Option<Tensor<3>>,
        ctx: &mut ForwardCtx,
    ) -> Tensor<3> {
        let eps = self.norm_eps;
        let a = self
            .attn
            .forward(fused::layer_norm(&self.norm1, x.clone(), eps), bias);
        let a = scale(a, &self.gamma_1);
        let x = x + ctx.drop_path(a, self.drop_path);
        let m = self
            .mlp
            .forward(fused::layer_norm(&self.norm2, x.clone(), eps));
        let m = scale(m, &self.gamma_2);
        x + ctx.drop_path(m, self.drop_path)
    }
}

/// `γ ⊙ x` when a layer scale is present.
pub fn scale(x: Tensor<3>, gamma: &Option<Param<Tensor<1>>>) -> Tensor<3> {
    match gamma {
        Some(g) => x * g.val().unsqueeze::<3>(),
        None => x,
    }
}
