//! The decoder (`Decoder` in `models/modeling_cae_helper.py`, cae.md §1.5): the position embeddings
//! are re-added to the regressor's predictions, pre-norm self-attention blocks run over the masked
//! tokens only, then a LayerNorm and the head (vocabulary logits or patch pixels).

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use super::block::{Block, BlockDims};
use super::drop_path::{ForwardCtx, drop_path_schedule};
use super::init::Init;
use super::linear;
use crate::fused;

/// The decoder.
#[derive(Module, Debug)]
pub struct Decoder {
    /// Self-attention blocks over the masked tokens.
    pub decoder_blocks: Vec<Block>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// `D' → outputs` (with bias).
    pub head: Linear,
    /// Epsilon of the final LayerNorm.
    pub norm_eps: f64,
}

impl Decoder {
    /// A new decoder.
    pub fn new(
        dims: BlockDims,
        depth: usize,
        outputs: usize,
        drop_path_rate: f64,
        init: &mut Init,
    ) -> Self {
        let decoder_blocks = drop_path_schedule(drop_path_rate, depth)
            .into_iter()
            .enumerate()
            .map(|(i, dp)| Block::new(dims, dp, i + 1, init))
            .collect();
        let norm = init.layer_norm(dims.dim, dims.eps);
        let head = init.linear(dims.dim, outputs, true);
        Self {
            decoder_blocks,
            norm,
            head,
            norm_eps: dims.eps,
        }
    }

    /// # Shapes
    /// `x_masked, pos_masked: [B, M, D']` → `[B, M, outputs]`
    pub fn forward(
        &self,
        x_masked: Tensor<3>,
        pos_masked: Tensor<3>,
        ctx: &mut ForwardCtx,
    ) -> Tensor<3> {
        let mut x = x_masked + pos_masked;
        for blk in &self.decoder_blocks {
            x = blk.forward(x, None, ctx);
        }
        linear::apply(&self.head, fused::layer_norm(&self.norm, x, self.norm_eps))
    }
}
