//! Plain ViT → four scales: the "simple feature pyramid" neck of BEiT / CAE / MAE segmentation and
//! detection (mmseg `Feature2Pyramid(embed_dim, rescales=[4, 2, 1, 0.5])`, protocols.md §2.6).
//!
//! * ×4: `ConvTranspose2d(D, D, 2, stride 2)` → BatchNorm → GELU → `ConvTranspose2d(D, D, 2, 2)`
//!   (keys `upsample_4x.{0, 1, 3}.*`: the GELU is entry 2 and has no weights);
//! * ×2: `ConvTranspose2d(D, D, 2, 2)` (`upsample_2x.0.*`);
//! * ×1: identity;
//! * ×0.5: max-pool 2×2 stride 2 (×0.25: 4×4 stride 4).
//!
//! Level `i` is computed from tap `i` (the outputs of blocks 4, 6, 8, 12 of a 12-block encoder,
//! [`tap_blocks`]), the channels stay `D`. The official CAE / BEiT code keeps these layers inside
//! the backbone as `backbone.fpn1.{0,1,3}` / `backbone.fpn2.0`; [`official_neck_key`] maps those
//! keys onto this module.
//!
//! The transposed convolutions have PyTorch's default initialisation (U(−b, b) with
//! `b = 1/√(fan_in)`, `fan_in = D·2·2` as torch computes it for a transposed weight), the
//! BatchNorm 1 / 0, drawn from the seeded [`Init`] stream.

use burn::module::Module;
use burn::nn::Gelu;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::Tensor;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use cae_pretrain::model::init::Init;

use crate::batch_norm::BatchNorm2d;
use crate::error::{HeadsError, Result};

/// One entry of an upsampling branch (a `nn.Sequential` in mmseg; the variant names are not part
/// of the keys).
#[derive(Module, Debug)]
pub enum NeckLayer {
    /// `ConvTranspose2d(D, D, 2, stride 2)` with bias.
    Deconv(ConvTranspose2d),
    /// BatchNorm.
    Norm(BatchNorm2d),
    /// GELU (exact erf, PyTorch's `nn.GELU()`).
    Gelu(Gelu),
}

impl NeckLayer {
    fn forward(&mut self, x: Tensor<4>, train: bool) -> Tensor<4> {
        match self {
            Self::Deconv(d) => crate::segmentation::conv_module::conv_transpose2d(d, x),
            Self::Norm(n) => n.forward(x, train),
            Self::Gelu(g) => g.forward(x),
        }
    }
}

/// mmseg's `Feature2Pyramid`.
#[derive(Module, Debug)]
pub struct Feature2Pyramid {
    /// The ×4 branch (present when 4 is among the rescales).
    pub upsample_4x: Option<Vec<NeckLayer>>,
    /// The ×2 branch (present when 2 is among the rescales).
    pub upsample_2x: Option<Vec<NeckLayer>>,
    /// The scale factor of each level, in order (e.g. `[4, 2, 1, 0.5]`).
    pub rescales: Vec<f64>,
}

fn deconv(d: usize, init: &mut Init) -> ConvTranspose2d {
    let mut c = ConvTranspose2dConfig::new([d, d], [2, 2])
        .with_stride([2, 2])
        .init(&init.device);
    // torch's fan-in of a transposed weight [in, out, k, k] is out·k·k.
    let bound = 1.0 / ((d * 4) as f64).sqrt();
    let w = init.uniform(d * d * 4, bound);
    c.weight = init.param(w, [d, d, 2, 2]);
    let b = init.uniform(d, bound);
    c.bias = Some(init.param(b, [d]));
    c
}

impl Feature2Pyramid {
    /// The neck for width `embed_dim` and the given rescales (each of 4, 2, 1, 0.5, 0.25).
    pub fn new(embed_dim: usize, rescales: &[f64], bn_eps: f64, init: &mut Init) -> Result<Self> {
        let mut upsample_4x = None;
        let mut upsample_2x = None;
        for &s in rescales {
            if s == 4.0 {
                let first = deconv(embed_dim, init);
                let bn = BatchNorm2d::new(embed_dim, bn_eps, &init.device);
                let second = deconv(embed_dim, init);
                upsample_4x = Some(vec![
                    NeckLayer::Deconv(first),
                    NeckLayer::Norm(bn),
                    NeckLayer::Gelu(Gelu::new()),
                    NeckLayer::Deconv(second),
                ]);
            } else if s == 2.0 {
                upsample_2x = Some(vec![NeckLayer::Deconv(deconv(embed_dim, init))]);
            } else if !(s == 1.0 || s == 0.5 || s == 0.25) {
                return Err(HeadsError::Config(format!(
                    "neck rescale {s} is not one of 4, 2, 1, 0.5, 0.25"
                )));
            }
        }
        Ok(Self {
            upsample_4x,
            upsample_2x,
            rescales: rescales.to_vec(),
        })
    }

    /// Width `D` of the maps (taken from a transposed convolution; `None` for a neck of identity
    /// and pooling only).
    pub fn embed_dim(&self) -> Option<usize> {
        let branch = self.upsample_4x.as_ref().or(self.upsample_2x.as_ref())?;
        branch.iter().find_map(|l| match l {
            NeckLayer::Deconv(d) => Some(d.channels[1]),
            _ => None,
        })
    }

    /// Level `i` from map `i`.
    ///
    /// # Shapes
    /// `maps[i]: [B, D, h, w]` → level `i`: `[B, D, h·s_i, w·s_i]`
    ///
    /// # Errors
    /// When the number of maps differs from the number of rescales.
    pub fn forward(&mut self, maps: Vec<Tensor<4>>, train: bool) -> Result<Vec<Tensor<4>>> {
        if maps.len() != self.rescales.len() {
            return Err(HeadsError::Config(format!(
                "the neck has {} levels but got {} maps",
                self.rescales.len(),
                maps.len()
            )));
        }
        let rescales = self.rescales.clone();
        let mut out = Vec::with_capacity(maps.len());
        for (x, s) in maps.into_iter().zip(rescales) {
            let branch = if s == 4.0 {
                self.upsample_4x.as_mut()
            } else if s == 2.0 {
                self.upsample_2x.as_mut()
            } else {
                None
            };
            let y = match branch {
                Some(layers) => layers.iter_mut().fold(x, |x, l| l.forward(x, train)),
                None if s == 1.0 => x,
                None if s == 0.5 || s == 0.25 => {
                    let k = if s == 0.5 { 2 } else { 4 };
                    max_pool2d(x, MaxPoolOptions::new([k, k]))
                }
                None => {
                    return Err(HeadsError::Config(format!(
                        "neck rescale {s} has no branch"
                    )));
                }
            };
            out.push(y);
        }
        Ok(out)
    }
}

impl Feature2Pyramid {
    /// [`Self::forward`] over several batches of different sizes (a data-parallel batch's
    /// padding groups): each layer runs per group, the BatchNorm in training mode over all
    /// groups together (SyncBN, [`BatchNorm2d::forward_train_sync`]). One group is
    /// [`Self::forward`].
    pub fn forward_groups(
        &mut self,
        groups: Vec<Vec<Tensor<4>>>,
        train: bool,
    ) -> Result<Vec<Vec<Tensor<4>>>> {
        if groups.len() == 1 {
            let g = groups.into_iter().next().expect("one group");
            return Ok(vec![self.forward(g, train)?]);
        }
        let levels = self.rescales.len();
        if let Some(g) = groups.iter().find(|g| g.len() != levels) {
            return Err(HeadsError::Config(format!(
                "the neck has {levels} levels but got {} maps",
                g.len()
            )));
        }
        let n = groups.len();
        let mut by_level: Vec<Vec<Tensor<4>>> =
            (0..levels).map(|_| Vec::with_capacity(n)).collect();
        for g in groups {
            for (l, x) in g.into_iter().enumerate() {
                by_level[l].push(x);
            }
        }
        let rescales = self.rescales.clone();
        let mut out: Vec<Vec<Tensor<4>>> = (0..n).map(|_| Vec::with_capacity(levels)).collect();
        for (xs, s) in by_level.into_iter().zip(rescales) {
            let branch = if s == 4.0 {
                self.upsample_4x.as_mut()
            } else if s == 2.0 {
                self.upsample_2x.as_mut()
            } else {
                None
            };
            let ys: Vec<Tensor<4>> = match branch {
                Some(layers) => {
                    let mut xs = xs;
                    for l in layers.iter_mut() {
                        xs = match l {
                            NeckLayer::Norm(bn) if train => bn.forward_train_sync(xs),
                            l => xs.into_iter().map(|x| l.forward(x, train)).collect(),
                        };
                    }
                    xs
                }
                None if s == 1.0 => xs,
                None if s == 0.5 || s == 0.25 => {
                    let k = if s == 0.5 { 2 } else { 4 };
                    xs.into_iter()
                        .map(|x| max_pool2d(x, MaxPoolOptions::new([k, k])))
                        .collect()
                }
                None => {
                    return Err(HeadsError::Config(format!(
                        "neck rescale {s} has no branch"
                    )));
                }
            };
            for (g, y) in ys.into_iter().enumerate() {
                out[g].push(y);
            }
        }
        Ok(out)
    }
}

/// The tap blocks (0-based) of an encoder of `depth` blocks: the outputs of blocks 4, 6, 8 and 12
/// of 12 (`out_indices = [3, 5, 7, 11]`), scaled to the depth: block `round(depth·m/12)` for
/// `m = 4, 6, 8, 12` (ViT-L, 24 blocks: `[7, 11, 15, 23]`, as CAE's config). At least block 1.
pub fn tap_blocks(depth: usize) -> Vec<usize> {
    [4usize, 6, 8, 12]
        .iter()
        .map(|m| ((depth * m) as f64 / 12.0).round().max(1.0) as usize - 1)
        .collect()
}

/// Encoder tokens `[B, 1+N, D]` (cls first) → the patch map `[B, D, gh, gw]` (cls dropped,
/// row-major patches), as the BEiT / CAE segmentation backbones reshape their taps.
///
/// # Errors
/// When `N ≠ gh·gw`.
pub fn tokens_to_map(tokens: Tensor<3>, grid: [usize; 2]) -> Result<Tensor<4>> {
    let [b, n1, d] = tokens.dims();
    let [gh, gw] = grid;
    if n1 != 1 + gh * gw {
        return Err(HeadsError::Config(format!(
            "{} tokens do not make [cls] + a {gh}×{gw} grid",
            n1
        )));
    }
    Ok(tokens
        .narrow(1, 1, gh * gw)
        .swap_dims(1, 2)
        .reshape([b, d, gh, gw]))
}

/// Maps an official CAE / BEiT segmentation-backbone key onto this neck:
/// `backbone.fpn1.{0,1,3}.*` → `neck.upsample_4x.{0,1,3}.*`, `backbone.fpn2.0.*` →
/// `neck.upsample_2x.0.*`; other keys are returned unchanged.
pub fn official_neck_key(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("backbone.fpn1.") {
        format!("neck.upsample_4x.{rest}")
    } else if let Some(rest) = key.strip_prefix("backbone.fpn2.") {
        format!("neck.upsample_2x.{rest}")
    } else {
        key.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;
    use burn::tensor::{Device, TensorData};
    use cae_pretrain::model::init::LinearInit;
    use cae_pretrain::weights::expected_tensors;

    #[test]
    fn taps_scale_with_depth() {
        assert_eq!(tap_blocks(12), vec![3, 5, 7, 11]);
        assert_eq!(tap_blocks(24), vec![7, 11, 15, 23]);
        assert_eq!(tap_blocks(4), vec![0, 1, 2, 3]);
        assert_eq!(tap_blocks(2), vec![0, 0, 0, 1]);
    }

    #[test]
    fn tokens_become_maps_without_the_cls_token() {
        let dev = Device::flex();
        // B = 1, 1 + 2·3 tokens of D = 2: token t has values (t, 10 t).
        let v: Vec<f32> = (0..7).flat_map(|t| [t as f32, 10.0 * t as f32]).collect();
        let t = Tensor::<3>::from_data(TensorData::new(v, [1, 7, 2]), &dev);
        let m = tokens_to_map(t.clone(), [2, 3]).unwrap();
        assert_eq!(m.dims(), [1, 2, 2, 3]);
        let m = to_vec(m).unwrap();
        assert_eq!(&m[..6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&m[6..], &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
        assert!(tokens_to_map(t, [2, 2]).is_err());
    }

    #[test]
    fn keys_are_mmseg_keys_and_shapes_follow_the_rescales() {
        let dev = Device::flex();
        let mut init = Init::new(0, LinearInit::Xavier, &dev);
        let mut neck = Feature2Pyramid::new(8, &[4.0, 2.0, 1.0, 0.5], 1e-5, &mut init).unwrap();
        let keys: Vec<String> = expected_tensors(&neck).into_keys().collect();
        assert_eq!(
            keys,
            [
                "upsample_2x.0.bias",
                "upsample_2x.0.weight",
                "upsample_4x.0.bias",
                "upsample_4x.0.weight",
                "upsample_4x.1.bias",
                "upsample_4x.1.running_mean",
                "upsample_4x.1.running_var",
                "upsample_4x.1.weight",
                "upsample_4x.3.bias",
                "upsample_4x.3.weight",
            ]
        );
        assert_eq!(neck.embed_dim(), Some(8));
        let maps = (0..4)
            .map(|_| Tensor::<4>::ones([2, 8, 6, 6], &dev))
            .collect();
        let out = neck.forward(maps, false).unwrap();
        let dims: Vec<[usize; 4]> = out.iter().map(|t| t.dims()).collect();
        assert_eq!(
            dims,
            vec![[2, 8, 24, 24], [2, 8, 12, 12], [2, 8, 6, 6], [2, 8, 3, 3]]
        );
        assert!(Feature2Pyramid::new(8, &[3.0], 1e-5, &mut init).is_err());
        assert!(neck.forward(vec![], false).is_err());
        assert_eq!(
            official_neck_key("backbone.fpn1.1.running_var"),
            "neck.upsample_4x.1.running_var"
        );
        assert_eq!(
            official_neck_key("backbone.fpn2.0.weight"),
            "neck.upsample_2x.0.weight"
        );
        assert_eq!(
            official_neck_key("backbone.blocks.0.attn.qkv.weight"),
            "backbone.blocks.0.attn.qkv.weight"
        );
    }
}
