//! The UperNet training loss: `CE(main) + aux_weight · CE(aux)` (protocols.md §2.5).
//!
//! Each head's logits are resized bilinearly (`align_corners = False`) to the label size, then
//! cross-entropy with `ignore_index` (255) is taken per pixel. The mean has two conventions:
//!
//! * `avg_non_ignore = false` — mmseg's `CrossEntropyLoss` default (0.x, as CAE / BEiT ran it,
//!   and 1.x): `F.cross_entropy(reduction='none')` then `.mean()` over **all** pixels, the
//!   ignored ones counting as 0;
//! * `avg_non_ignore = true` — PyTorch's `F.cross_entropy(ignore_index=255)`: the mean over the
//!   non-ignored pixels only (what the reference file `upernet_*.safetensors` uses). With no
//!   valid pixel the loss is 0 (PyTorch gives NaN; mmseg divides by ε).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::conv_module::resize_bilinear;
use crate::error::{HeadsError, Result};

/// The label maps of a batch as a tensor, checked: every value is a class `< num_classes` or
/// `ignore_index`.
///
/// # Shapes
/// `labels`: `B·H·W` values, row-major → `[B, H, W]`
pub fn label_tensor(
    labels: &[u8],
    shape: [usize; 3],
    num_classes: usize,
    ignore_index: u8,
    device: &Device,
) -> Result<Tensor<3, Int>> {
    let n: usize = shape.iter().product();
    if labels.len() != n {
        return Err(HeadsError::Config(format!(
            "{} label values for a batch of shape {shape:?}",
            labels.len()
        )));
    }
    if let Some(bad) = labels
        .iter()
        .find(|&&v| v != ignore_index && v as usize >= num_classes)
    {
        return Err(HeadsError::Config(format!(
            "label value {bad} is neither a class (< {num_classes}) nor the ignore index \
             {ignore_index}"
        )));
    }
    let v: Vec<i64> = labels.iter().map(|&v| v as i64).collect();
    Ok(Tensor::from_data(TensorData::new(v, shape), device))
}

/// Per-pixel cross-entropy of `logits` resized to the labels' size, reduced to a mean (see the
/// module docs for `avg_non_ignore`). Labels must be classes `< K` or `ignore_index`
/// ([`label_tensor`] checks this).
///
/// # Shapes
/// `logits: [B, K, h, w]`, `labels: [B, H, W]` → `[1]`
pub fn seg_cross_entropy(
    logits: Tensor<4>,
    labels: Tensor<3, Int>,
    ignore_index: i64,
    avg_non_ignore: bool,
) -> Tensor<1> {
    let [b, h, w] = labels.dims();
    let logits = resize_bilinear(logits, [h, w]);
    let logp = log_softmax(logits, 1);
    let valid = labels.clone().not_equal_elem(ignore_index);
    let safe = labels.mask_fill(valid.clone().bool_not(), 0);
    let picked = logp
        .gather(1, safe.unsqueeze_dim::<4>(1))
        .squeeze_dim::<3>(1);
    let valid = valid.float();
    let total = (picked * valid.clone()).sum().neg();
    if avg_non_ignore {
        total / valid.sum().clamp_min(1.0)
    } else {
        total.div_scalar((b * h * w) as f64)
    }
}

/// The parts of the UperNet loss.
#[derive(Debug, Clone)]
pub struct SegLoss {
    /// `decode + aux_weight · aux` (what is minimised), `[1]`.
    pub loss: Tensor<1>,
    /// Cross-entropy of the main (UPerHead) logits, `[1]`.
    pub decode: Tensor<1>,
    /// Cross-entropy of the auxiliary logits (unweighted), `[1]`; `None` without the head.
    pub aux: Option<Tensor<1>>,
}

/// `CE(logits) + aux_weight · CE(aux_logits)` against `labels`.
///
/// # Shapes
/// `logits: [B, K, h, w]`, `aux_logits: [B, K, h', w']`, `labels: [B, H, W]`
pub fn upernet_loss(
    logits: Tensor<4>,
    aux_logits: Option<Tensor<4>>,
    labels: Tensor<3, Int>,
    aux_weight: f64,
    ignore_index: i64,
    avg_non_ignore: bool,
) -> SegLoss {
    let decode = seg_cross_entropy(logits, labels.clone(), ignore_index, avg_non_ignore);
    let aux = aux_logits.map(|a| seg_cross_entropy(a, labels, ignore_index, avg_non_ignore));
    let loss = match &aux {
        Some(a) => decode.clone() + a.clone().mul_scalar(aux_weight),
        None => decode.clone(),
    };
    SegLoss { loss, decode, aux }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;

    fn scalar(t: Tensor<1>) -> f32 {
        to_vec(t).unwrap()[0]
    }

    #[test]
    fn cross_entropy_by_hand_with_both_means() {
        let dev = Device::flex();
        // B = 1, K = 2, 1×2 pixels: logits (0, ln 3) and (0, 0); labels 1 and 255.
        let l3 = 3.0f32.ln();
        let logits =
            Tensor::<4>::from_data(TensorData::new(vec![0.0, 0.0, l3, 0.0], [1, 2, 1, 2]), &dev);
        let labels = label_tensor(&[1, 255], [1, 1, 2], 2, 255, &dev).unwrap();
        // Pixel 0: −log(3/4); pixel 1 ignored.
        let ce = -(0.75f32.ln());
        let non_ignore = scalar(seg_cross_entropy(logits.clone(), labels.clone(), 255, true));
        assert!((non_ignore - ce).abs() < 1e-6);
        let all = scalar(seg_cross_entropy(
            logits.clone(),
            labels.clone(),
            255,
            false,
        ));
        assert!((all - ce / 2.0).abs() < 1e-6);
        // Everything ignored: 0, not NaN.
        let none = label_tensor(&[255, 255], [1, 1, 2], 2, 255, &dev).unwrap();
        assert_eq!(
            scalar(seg_cross_entropy(logits.clone(), none, 255, true)),
            0.0
        );
        // Total = main + 0.4 · aux.
        let parts = upernet_loss(logits.clone(), Some(logits), labels, 0.4, 255, true);
        assert!((scalar(parts.loss) - 1.4 * ce).abs() < 1e-6);
    }

    #[test]
    fn logits_are_upsampled_to_the_labels() {
        let dev = Device::flex();
        // Constant logits at 1×1 upsample to constants: CE = log K everywhere.
        let logits = Tensor::<4>::zeros([2, 4, 1, 1], &dev);
        let labels = label_tensor(&[0, 1, 2, 3, 0, 1, 2, 3], [2, 2, 2], 4, 255, &dev).unwrap();
        let ce = scalar(seg_cross_entropy(logits, labels, 255, false));
        assert!((ce - 4.0f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn bad_labels_are_refused() {
        let dev = Device::flex();
        assert!(label_tensor(&[0, 7], [1, 1, 2], 4, 255, &dev).is_err());
        assert!(label_tensor(&[0], [1, 1, 2], 4, 255, &dev).is_err());
    }
}
