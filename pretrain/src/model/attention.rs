//! Multi-head self-attention with a fused `qkv` projection (`Attention` in
//! `models/modeling_cae_helper.py`, the same as BEiT's).
//!
//! The `qkv` weight `(3D × D)` has no bias parameter. With [`QkvBias::QV`] the bias applied is
//! `concat(q_bias, 0, v_bias)`: queries and values have learned biases, keys none. With
//! [`QkvBias::Fused`] (timm / MAE) `qkv` carries its own `3D` bias. Scale `head_dim^-0.5`;
//! attention and projection dropout are 0. An additive bias `[H, N, N]` (BEiT's relative position
//! bias) can be passed in.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Int, Tensor};

use super::init::Init;
use super::linear::{apply, linear_rows};
use super::rel_pos_bias::{RelativePositionBias, bias_from_table};
use crate::config::QkvBias;
use crate::fused;

/// Self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    /// Fused `D → 3D` projection (no bias unless the style is fused).
    pub qkv: Linear,
    /// Query bias (BEiT / CAE style).
    pub q_bias: Option<Param<Tensor<1>>>,
    /// Value bias (BEiT / CAE style).
    pub v_bias: Option<Param<Tensor<1>>>,
    /// Output projection `D → D`.
    pub proj: Linear,
    /// BEiT's per-block relative position bias table, when used.
    pub relative_position_bias_table: Option<Param<Tensor<2>>>,
    /// Its official index (flattened `(1+N)²`), a constant.
    pub relative_position_index: Option<Tensor<1, Int>>,
    /// Heads.
    pub num_heads: usize,
}

impl Attention {
    /// A new attention layer.
    pub fn new(dim: usize, num_heads: usize, bias: QkvBias, init: &mut Init) -> Self {
        let qkv = init.linear(dim, 3 * dim, bias == QkvBias::Fused);
        let (q_bias, v_bias) = match bias {
            QkvBias::QV => (Some(init.zeros([dim])), Some(init.zeros([dim]))),
            _ => (None, None),
        };
        let proj = init.linear(dim, dim, true);
        Self {
            qkv,
            q_bias,
            v_bias,
            proj,
            relative_position_bias_table: None,
            relative_position_index: None,
            num_heads,
        }
    }

    /// Gives this layer its own zero-initialised relative position bias for a `grid × grid` patch grid.
    pub fn with_rel_pos_bias(mut self, grid: usize, init: &Init) -> Self {
        let rpb = RelativePositionBias::new(grid, self.num_heads, init);
        self.relative_position_bias_table = Some(rpb.relative_position_bias_table);
        self.relative_position_index = Some(rpb.index);
        self
    }

    /// This layer's own relative position bias, if it has one.
    ///
    /// # Shapes
    /// `→ [H, 1+N, 1+N]`
    pub fn own_bias(&self) -> Option<Tensor<3>> {
        match (
            &self.relative_position_bias_table,
            &self.relative_position_index,
        ) {
            (Some(table), Some(index)) => Some(bias_from_table(table.val(), index.clone())),
            _ => None,
        }
    }

    /// The bias of the fused projection, if any: `concat(q_bias, 0, v_bias)` or `qkv.bias`.
    fn qkv_bias(&self) -> Option<Tensor<1>> {
        match (&self.q_bias, &self.v_bias, &self.qkv.bias) {
            (Some(q), Some(v), _) => {
                let q = q.val();
                let zeros = q.zeros_like();
                Some(Tensor::cat(vec![q, zeros, v.val()], 0))
            }
            (_, _, Some(b)) => Some(b.val()),
            _ => None,
        }
    }

    /// # Shapes
    /// `x: [B, N, D]`, `bias: [H, N, N]` → `[B, N, D]`
    pub fn forward(&self, x: Tensor<3>, bias: Option<Tensor<3>>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.num_heads;
        let hd = d / h;
        let qkv = linear_rows(x, self.qkv.weight.val(), self.qkv_bias()); // [B, N, 3D]
        let out = match bias {
            // The fused kernel (or its reference) reads q, k, v straight from `qkv`.
            None => fused::attention_packed(qkv, h),
            Some(bias) => {
                let qkv = qkv.reshape([b, n, 3 * h, hd]).swap_dims(1, 2); // [B, 3H, N, hd]
                let q = qkv.clone().narrow(1, 0, h); // [B, H, N, hd]
                let k = qkv.clone().narrow(1, h, h);
                let v = qkv.narrow(1, 2 * h, h);
                fused::reference::merge_heads(scaled_dot_product(q, k, v, Some(bias)))
            }
        };
        apply(&self.proj, out)
    }
}

/// `softmax(q·scale @ kᵀ + bias) @ v`, as the reference computes it (scale applied to `q` first).
///
/// # Shapes
/// `q: [B, H, Nq, hd]`, `k, v: [B, H, Nk, hd]`, `bias: [H, Nq, Nk]` → `[B, H, Nq, hd]`
pub use fused::reference::scaled_dot_product;
