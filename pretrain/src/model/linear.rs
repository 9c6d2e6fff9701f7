//! Linear layers applied to token sequences as one matrix product.
//!
//! burn's `linear` on a `[B, N, D]` input keeps the batch dimension when `N` is a multiple of 32
//! (the regressor's and decoder's 32 masked tokens on `mini`), so the forward pass runs `B` small
//! products and the weight gradient `B` more followed by a sum over the batch. Folding the tokens
//! into the rows first always gives one `[B·N, D] @ [D, D_out]` product, which `gemm` splits over
//! the threads. On `flex` the product is the fused Linear layer ([`crate::fused::linear`]).

use burn::nn::Linear;
use burn::tensor::Tensor;

/// `x @ weight + bias` on the rows of `x`.
///
/// # Shapes
/// `x: [B, N, D_in]`, `weight: [D_in, D_out]`, `bias: [D_out]` → `[B, N, D_out]`
pub fn linear_rows(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let y = crate::fused::linear(x.reshape([b * n, d]), weight, bias);
    let [_, o] = y.dims();
    y.reshape([b, n, o])
}

/// A `Linear` layer applied with [`linear_rows`].
pub fn apply(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    linear_rows(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}
