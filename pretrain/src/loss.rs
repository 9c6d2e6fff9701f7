//! The CAE loss (cae.md §1.6): `L = L_rec + λ · MSE(Ẑ_m, Z̄_m)`, all in f32.
//!
//! * DALL-E targets: `L_rec = CrossEntropy(logits, ids)`, the mean over all `B·M` masked tokens;
//!   `mlm_acc` is the argmax accuracy on them.
//! * Pixel targets: `L_rec = MSE(outputs, normalised pixels)`, the mean over all elements.
//! * `L_align = mean((Ẑ_m − Z̄_m)²)` over `B·M·D'` elements (`F.mse_loss`, reduction mean).

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

use crate::targets::Targets;

/// The loss terms of one step.
#[derive(Debug, Clone)]
pub struct CaeLoss {
    /// `loss_rec + λ · loss_align` (differentiable).
    pub loss: Tensor<1>,
    /// Reconstruction term.
    pub loss_rec: Tensor<1>,
    /// Alignment MSE, before λ.
    pub loss_align: Tensor<1>,
    /// Masked-token accuracy (token targets only).
    pub mlm_acc: Option<Tensor<1>>,
}

/// Mean cross-entropy of `logits: [T, V]` against ids `[T]`.
pub fn cross_entropy(logits: Tensor<2>, ids: Tensor<1, burn::tensor::Int>) -> Tensor<1> {
    let logp = log_softmax(logits, 1); // [T, V]
    let picked = logp.gather(1, ids.unsqueeze_dim::<2>(1)); // [T, 1]
    picked.mean().neg()
}

/// Argmax accuracy of `logits: [T, V]` against ids `[T]`, as a `[1]` tensor.
pub fn accuracy(logits: Tensor<2>, ids: Tensor<1, burn::tensor::Int>) -> Tensor<1> {
    let pred = logits.argmax(1).squeeze_dim::<1>(1); // [T]
    pred.equal(ids).float().mean()
}

/// Mean squared error over all elements.
pub fn mse<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<1> {
    (a - b).square().mean()
}

/// The CAE loss. Without an alignment target (λ = 0) the alignment term is 0 and
/// `loss = loss_rec`.
///
/// # Shapes
/// `logits: [B·M, outputs]`, `latent_pred, latent_target: [B, M, D']`
pub fn cae_loss(
    logits: Tensor<2>,
    targets: &Targets,
    latent_pred: Tensor<3>,
    latent_target: Option<Tensor<3>>,
    align_weight: f64,
) -> CaeLoss {
    let (loss_rec, mlm_acc) = match targets {
        Targets::Tokens(ids) => (
            cross_entropy(logits.clone(), ids.clone()),
            Some(accuracy(logits.detach(), ids.clone())),
        ),
        Targets::Pixels(px) => (mse(logits, px.clone()), None),
    };
    let (loss, loss_align) = match latent_target {
        Some(target) => {
            let loss_align = mse(latent_pred, target);
            let loss = if align_weight == 0.0 {
                loss_rec.clone()
            } else {
                loss_rec.clone() + loss_align.clone().mul_scalar(align_weight)
            };
            (loss, loss_align)
        }
        None => (loss_rec.clone(), loss_rec.zeros_like()),
    };
    CaeLoss {
        loss,
        loss_rec,
        loss_align,
        mlm_acc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Int, TensorData};

    #[test]
    fn cross_entropy_and_accuracy_by_hand() {
        let dev = Device::flex();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, 0.0, 0.0, 0.0, 1.0, 3.0], [2, 3]),
            &dev,
        );
        let ids = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &dev);
        let ce: f32 = cross_entropy(logits.clone(), ids.clone()).into_scalar();
        let l0 = -(2.0f64 - (2f64.exp() + 2.0).ln());
        let l1 = -(1.0f64 - (1.0 + 1f64.exp() + 3f64.exp()).ln());
        assert!((ce as f64 - (l0 + l1) / 2.0).abs() < 1e-6);
        let acc: f32 = accuracy(logits, ids).into_scalar();
        assert_eq!(acc, 0.5);
    }
}
