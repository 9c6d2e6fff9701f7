//! Multi-head cross-attention (`CrossAttention` in `models/modeling_cae_helper.py`).
//!
//! Separate bias-free `q`, `k`, `v` projections; `q_bias` and `v_bias` are added to queries and
//! values, keys have no bias. Used by the latent contextual regressor and the attentive probe.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;

use super::init::Init;
use super::linear::{apply, linear_rows};
use crate::fused;

/// Cross-attention.
#[derive(Module, Debug)]
pub struct CrossAttention {
    /// Query projection (no bias parameter; `q_bias` is added).
    pub q: Linear,
    /// Key projection (no bias).
    pub k: Linear,
    /// Value projection (no bias parameter; `v_bias` is added).
    pub v: Linear,
    /// Query bias.
    pub q_bias: Option<Param<Tensor<1>>>,
    /// Value bias.
    pub v_bias: Option<Param<Tensor<1>>>,
    /// Output projection.
    pub proj: Linear,
    /// Heads.
    pub num_heads: usize,
}

impl CrossAttention {
    /// A new cross-attention layer (`qkv_bias` gives the `q_bias` / `v_bias` pair).
    pub fn new(dim: usize, num_heads: usize, qkv_bias: bool, init: &mut Init) -> Self {
        let q = init.linear(dim, dim, false);
        let k = init.linear(dim, dim, false);
        let v = init.linear(dim, dim, false);
        let (q_bias, v_bias) = if qkv_bias {
            (Some(init.zeros([dim])), Some(init.zeros([dim])))
        } else {
            (None, None)
        };
        let proj = init.linear(dim, dim, true);
        Self {
            q,
            k,
            v,
            q_bias,
            v_bias,
            proj,
            num_heads,
        }
    }

    /// # Shapes
    /// `x_q: [B, Nq, D]`, `x_k, x_v: [B, Nk, D]` → `[B, Nq, D]`
    pub fn forward(&self, x_q: Tensor<3>, x_k: Tensor<3>, x_v: Tensor<3>) -> Tensor<3> {
        let q = linear_rows(
            x_q,
            self.q.weight.val(),
            self.q_bias.as_ref().map(|p| p.val()),
        );
        let k = linear_rows(x_k, self.k.weight.val(), None);
        let v = linear_rows(
            x_v,
            self.v.weight.val(),
            self.v_bias.as_ref().map(|p| p.val()),
        );
        apply(&self.proj, fused::attention(q, k, v, self.num_heads))
    }
}
