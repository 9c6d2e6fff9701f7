//! Reconstruction targets of the masked patches: DALL-E token ids (see [`crate::dalle`]) or
//! per-patch pixels (the Paddle release's `--target_mode rgb`, cae.md §3).
//!
//! Pixel targets: patches are flattened as `(p1 p2 c)` — row within the patch, column, channel —
//! from the network's (ImageNet-normalised) input, gathered at the masked positions, then
//! normalised per patch: a LayerNorm without affine (default), MAE's mean/variance, or not at all.

use burn::tensor::{Int, Tensor};

use crate::config::PixelNorm;
use crate::model::TokenSelection;

/// What the decoder output is compared with.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Token ids at the masked positions, batch-major then ascending patch: `[B·M]`.
    Tokens(Tensor<1, Int>),
    /// Normalised pixels of the masked patches: `[B·M, p²·C]`.
    Pixels(Tensor<2>),
}

/// Flattens images into patches, `(p1 p2 c)` order.
///
/// # Shapes
/// `images: [B, C, H, W]` → `[B, N, p²·C]`
pub fn patchify(images: Tensor<4>, patch: usize) -> Tensor<3> {
    let [b, c, h, w] = images.dims();
    let (gh, gw) = (h / patch, w / patch);
    images
        .reshape([b, c, gh, patch, gw, patch])
        .permute([0, 2, 4, 3, 5, 1]) // [B, gh, gw, p1, p2, C]
        .reshape([b, gh * gw, patch * patch * c])
}

/// Pixel targets of the masked patches, normalised per patch.
///
/// # Shapes
/// `images: [B, C, H, W]` → `[B·M, p²·C]`
pub fn pixel_targets(
    images: Tensor<4>,
    patch: usize,
    masked: &TokenSelection,
    norm: PixelNorm,
) -> Tensor<2> {
    let patches = masked.gather(patchify(images.without_autodiff(), patch)); // [B, M, P]
    let [b, m, p] = patches.dims();
    let patches = patches.reshape([b * m, p]);
    match norm {
        PixelNorm::None => patches,
        PixelNorm::LayerNorm => {
            let mean = patches.clone().mean_dim(1);
            let centred = patches - mean;
            let var = centred.clone().square().mean_dim(1);
            centred / (var + 1e-6).sqrt()
        }
        PixelNorm::Patch => {
            let mean = patches.clone().mean_dim(1);
            let centred = patches - mean;
            let var = centred.clone().square().sum_dim(1) / ((p as f64 - 1.0).max(1.0));
            centred / (var + 1e-6).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn patchify_orders_row_column_channel() {
        let dev = Device::flex();
        // 1 image, 2 channels, 4×4, patch 2: value = c·100 + y·10 + x.
        let mut v = Vec::new();
        for c in 0..2 {
            for y in 0..4 {
                for x in 0..4 {
                    v.push((c * 100 + y * 10 + x) as f32);
                }
            }
        }
        let img = Tensor::<4>::from_data(TensorData::new(v, [1, 2, 4, 4]), &dev);
        let p: Vec<f32> = patchify(img, 2).try_into_vec_as::<f32>().unwrap();
        // patch 1 = rows 0..2, cols 2..4; first pixel (0,2) both channels, then (0,3) ...
        assert_eq!(
            &p[8..16],
            &[2.0, 102.0, 3.0, 103.0, 12.0, 112.0, 13.0, 113.0]
        );
    }
}
