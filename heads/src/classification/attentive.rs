//! The attentive probe (cae.md §5a-2; Atten4Vis/CAE `models/modeling_finetune.py`
//! `linear_type='attentive'`, `tools/run_attentive.py`).
//!
//! One learned query token (zeros, `[1, 1, D]`) attends to all the frozen encoder's tokens
//! (cls + patches, after the final LayerNorm) through one `AttentiveBlock`:
//! `CrossAttention(LN_q(query), LN_k(tokens), LN_v(tokens))` (LayerNorm eps 1e-6, q/v biases, no
//! k bias, output projection), with no residual, no MLP, no layer scale and no position
//! embedding. The attended query then goes through `LP_BatchNorm(D, affine=False)` (eps 1e-5)
//! and `Linear(D, classes)` (normal std 0.01, bias 0). Trained with Nesterov SGD.
//!
//! The released code calls the block with keyword arguments it does not accept
//! (`bool_masked_pos`, `rel_pos_bias`) and raises a `TypeError`; this is the forward with those
//! two arguments dropped, which is what the code intends.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor};
use cae_pretrain::model::cross_attention::CrossAttention;
use cae_pretrain::model::init::{Init, LinearInit};

use crate::classification::head::ProbeHead;
use crate::classification::linear::classifier;

/// LayerNorm eps of the attentive block (the encoder's `norm_layer`).
pub const ATTENTIVE_LN_EPS: f64 = 1e-6;
/// BatchNorm eps of `LP_BatchNorm` (PyTorch's default).
pub const ATTENTIVE_BN_EPS: f64 = 1e-5;

/// The trainable part of the attentive probe.
#[derive(Module, Debug)]
pub struct AttentiveProbe {
    /// The learned query, `[1, 1, D]`.
    pub query_token: Param<Tensor<3>>,
    /// LayerNorm on the query.
    pub norm_q: LayerNorm,
    /// LayerNorm on the keys.
    pub norm_k: LayerNorm,
    /// LayerNorm on the values.
    pub norm_v: LayerNorm,
    /// The cross-attention.
    pub cross_attn: CrossAttention,
    /// The classifier.
    pub head: Linear,
}

impl AttentiveProbe {
    /// A new probe for a `d`-wide encoder with `num_heads` heads: linear weights trunc-normal
    /// (0.02) as the official `_init_weights`, query zeros, LayerNorms 1 / 0, classifier
    /// normal(0.01).
    pub fn new(d: usize, num_heads: usize, classes: usize, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed ^ 0xa77e_4717e, LinearInit::TruncNormal, device);
        Self {
            query_token: init.zeros([1, 1, d]),
            norm_q: init.layer_norm(d, ATTENTIVE_LN_EPS),
            norm_k: init.layer_norm(d, ATTENTIVE_LN_EPS),
            norm_v: init.layer_norm(d, ATTENTIVE_LN_EPS),
            cross_attn: CrossAttention::new(d, num_heads, true, &mut init),
            head: classifier(d, classes, 0.01, seed, device),
        }
    }
}

impl ProbeHead for AttentiveProbe {
    /// # Shapes
    /// `x: [B, 1+N, D]` → `[B, D]`
    fn represent(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = x.dims();
        let q = self
            .norm_q
            .forward(self.query_token.val().expand([b, 1, d]));
        let k = self.norm_k.forward(x.clone());
        let v = self.norm_v.forward(x);
        self.cross_attn.forward(q, k, v).reshape([b, d]) // no residual, no MLP
    }

    fn classify(&self, x: Tensor<2>) -> Tensor<2> {
        self.head.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;
    use burn::tensor::Distribution;

    #[test]
    fn the_query_attends_over_all_tokens_without_a_residual() {
        let dev = Device::flex();
        let p = AttentiveProbe::new(8, 2, 3, 0, &dev);
        let x = Tensor::<3>::random([2, 5, 8], Distribution::Normal(0.0, 1.0), &dev);
        let r = p.represent(x.clone());
        assert_eq!(r.dims(), [2, 8]);
        assert_eq!(p.classify(r.clone()).dims(), [2, 3]);
        // With a zero query every token gets the same weight: the output is proj(mean of the
        // projected values), whatever the keys; no residual means no trace of the query.
        let v = p.norm_v.forward(x.clone());
        let lin = |t: Tensor<3>, l: &Linear, bias: Option<Tensor<1>>| {
            burn::tensor::module::linear(t, l.weight.val(), bias)
        };
        let values = lin(
            v,
            &p.cross_attn.v,
            p.cross_attn.v_bias.as_ref().map(|b| b.val()),
        );
        let want = p
            .cross_attn
            .proj
            .forward(values.mean_dim(1))
            .reshape([2, 8]);
        let (a, b) = (to_vec(r).unwrap(), to_vec(want).unwrap());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }
}
