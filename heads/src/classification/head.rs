//! What the linear and attentive probes share: a trainable part that turns features into a
//! representation, a parameter-free BatchNorm, and a classifier.

use burn::module::Module;
use burn::tensor::Tensor;

/// A probe head: `represent` (trainable), then BatchNorm (no affine), then `classify`.
pub trait ProbeHead: Module + Clone + std::fmt::Debug {
    /// Features `[B, T, F]` → representation `[B, D]`.
    fn represent(&self, x: Tensor<3>) -> Tensor<2>;
    /// Normalised representation `[B, D]` → logits `[B, C]`.
    fn classify(&self, x: Tensor<2>) -> Tensor<2>;
}
