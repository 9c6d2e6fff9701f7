//! The latent contextual regressor (`LatentRegresser` + `RegressorBlock`, cae.md §1.4).
//!
//! Queries are the mask token (plus the masked positions' embeddings); keys and values are the
//! visible representations `Z_v` concatenated with the current queries. One block is deliberately
//! asymmetric (post-norm after the attention):
//!
//! ```text
//! a = CrossAttn(LN_q(q + pos_m), LN_k(kv + pos_kv), LN_v(kv))      kv = [Z_v ; q]
//! x = LN_2(q + DropPath(γ1 ⊙ a))
//! x = x + DropPath(γ2 ⊙ MLP(x))
//! ```
//!
//! `Z_v` is never updated inside the regressor. A final LayerNorm follows the last block; its output
//! feeds both the alignment loss and the decoder.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::Tensor;

use super::block::{BlockDims, scale};
use super::cross_attention::CrossAttention;
use super::drop_path::{ForwardCtx, drop_path_schedule};
use super::init::{Init, LinearInit, rescale_linear};
use super::mlp::Mlp;
use crate::fused;

/// One regressor block.
#[derive(Module, Debug)]
pub struct RegressorBlock {
    /// LayerNorm on `queries + pos`.
    pub norm1_q: LayerNorm,
    /// LayerNorm on `kv + pos`.
    pub norm1_k: LayerNorm,
    /// LayerNorm on `kv` (no position).
    pub norm1_v: LayerNorm,
    /// LayerNorm on the residual stream after the attention.
    pub norm2_cross: LayerNorm,
    /// Cross-attention.
    pub cross_attn: CrossAttention,
    /// MLP.
    pub mlp_cross: Mlp,
    /// Attention-branch layer scale (fixed ones when `init_values == 0`).
    pub gamma_1_cross: Param<Tensor<1>>,
    /// MLP-branch layer scale (fixed ones when `init_values == 0`).
    pub gamma_2_cross: Param<Tensor<1>>,
    /// Drop-path rate.
    pub drop_path: f64,
    /// Epsilon of the LayerNorms.
    pub norm_eps: f64,
}

impl RegressorBlock {
    /// A block; `layer_id` is 1-based (for the `fix_init_weight` rescale). The attention bias
    /// style of `dims` is ignored: the regressor always has `q_bias` / `v_bias`.
    pub fn new(dims: BlockDims, drop_path: f64, layer_id: usize, init: &mut Init) -> Self {
        let BlockDims {
            dim,
            num_heads,
            mlp_hidden,
            eps,
            init_values,
            ..
        } = dims;
        let norm1_q = init.layer_norm(dim, eps);
        let norm1_k = init.layer_norm(dim, eps);
        let norm1_v = init.layer_norm(dim, eps);
        let norm2_cross = init.layer_norm(dim, eps);
        let mut cross_attn = CrossAttention::new(dim, num_heads, true, init);
        let mut mlp_cross = Mlp::new(dim, mlp_hidden, init);
        if init.linear == LinearInit::TruncNormal {
            cross_attn.proj = rescale_linear(cross_attn.proj, layer_id);
            mlp_cross.fc2 = rescale_linear(mlp_cross.fc2, layer_id);
        }
        let (gamma_1_cross, gamma_2_cross) = if init_values > 0.0 {
            (
                init.constant([dim], init_values),
                init.constant([dim], init_values),
            )
        } else {
            (
                init.constant([dim], 1.0).set_require_grad(false),
                init.constant([dim], 1.0).set_require_grad(false),
            )
        };
        Self {
            norm1_q,
            norm1_k,
            norm1_v,
            norm2_cross,
            cross_attn,
            mlp_cross,
            gamma_1_cross,
            gamma_2_cross,
            drop_path,
            norm_eps: eps,
        }
    }

    /// # Shapes
    /// `x_q, pos_q: [B, M, D]`, `x_kv, pos_k: [B, V+M, D]` → `[B, M, D]`
    pub fn forward(
        &self,
        x_q: Tensor<3>,
        x_kv: Tensor<3>,
        pos_q: Tensor<3>,
        pos_k: Tensor<3>,
        ctx: &mut ForwardCtx,
    ) -> Tensor<3> {
        let eps = self.norm_eps;
        let q_in = fused::layer_norm(&self.norm1_q, x_q.clone() + pos_q, eps);
        let k_in = fused::layer_norm(&self.norm1_k, x_kv.clone() + pos_k, eps);
        let v_in = fused::layer_norm(&self.norm1_v, x_kv, eps);
        let a = self.cross_attn.forward(q_in, k_in, v_in);
        let a = scale(a, &Some(self.gamma_1_cross.clone()));
        let x = fused::layer_norm(
            &self.norm2_cross,
            x_q + ctx.drop_path(a, self.drop_path),
            eps,
        );
        let m = scale(
            self.mlp_cross.forward(x.clone()),
            &Some(self.gamma_2_cross.clone()),
        );
        x + ctx.drop_path(m, self.drop_path)
    }
}

/// The regressor.
#[derive(Module, Debug)]
pub struct LatentRegresser {
    /// Blocks.
    pub regressor_blocks: Vec<RegressorBlock>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Its epsilon.
    pub norm_eps: f64,
}

impl LatentRegresser {
    /// A new regressor of `depth` blocks.
    pub fn new(dims: BlockDims, depth: usize, drop_path_rate: f64, init: &mut Init) -> Self {
        let regressor_blocks = drop_path_schedule(drop_path_rate, depth)
            .into_iter()
            .enumerate()
            .map(|(i, dp)| RegressorBlock::new(dims, dp, i + 1, init))
            .collect();
        Self {
            regressor_blocks,
            norm: init.layer_norm(dims.dim, dims.eps),
            norm_eps: dims.eps,
        }
    }

    /// # Shapes
    /// `x_masked, pos_masked: [B, M, D]`, `x_unmasked, pos_unmasked: [B, V, D]` → `[B, M, D]`
    pub fn forward(
        &self,
        mut x_masked: Tensor<3>,
        x_unmasked: Tensor<3>,
        pos_masked: Tensor<3>,
        pos_unmasked: Tensor<3>,
        ctx: &mut ForwardCtx,
    ) -> Tensor<3> {
        let pos_k = Tensor::cat(vec![pos_unmasked, pos_masked.clone()], 1);
        for blk in &self.regressor_blocks {
            let kv = Tensor::cat(vec![x_unmasked.clone(), x_masked.clone()], 1);
            x_masked = blk.forward(x_masked, kv, pos_masked.clone(), pos_k.clone(), ctx);
        }
        fused::layer_norm(&self.norm, x_masked, self.norm_eps)
    }
}
