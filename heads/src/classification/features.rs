//! What a probe sees of a frozen encoder, and extracting it over a dataset.
//!
//! * The probed output is the final LayerNorm's (the default, MAE / CAE `--use_cls`), or with
//!   `layer = Some(L)` the raw output of block `L` (0-based), BEiT's `get_intermediate_layers`
//!   (no final norm).
//! * [`Pooling`] turns its tokens into one vector: the cls token, the mean of the patch tokens, or
//!   both concatenated (BEiT's linear probe). The attentive probe takes all tokens instead
//!   ([`FeatureKind::Tokens`]).
//!
//! Extraction runs the encoder without autodiff in chunks and keeps the results on the CPU
//! ([`FeatureSet`]), either once with the deterministic evaluation transform (cached features) or
//! per epoch with the seeded training augmentation ([`AugmentedFeed`], the MAE protocol).

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use cae_datasets::{ImageFolder, Loader, ProbeEvalTransform, ProbeTrainTransform};
use cae_pretrain::model::{ForwardCtx, VisionTransformerEncoder};
use serde::{Deserialize, Serialize};

use crate::error::{HeadsError, Result, to_vec};

/// How the tokens of the probed output become one feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Pooling {
    /// The cls token (MAE / CAE linear probing).
    #[default]
    #[serde(rename = "cls")]
    Cls,
    /// The mean of the patch tokens (cls excluded).
    #[serde(rename = "mean")]
    Mean,
    /// cls ++ mean of the patch tokens (`2·D` wide; BEiT's linear probe).
    #[serde(rename = "cls+mean")]
    ClsMean,
}

impl Pooling {
    /// `cls`, `mean` or `cls+mean`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Mean => "mean",
            Self::ClsMean => "cls+mean",
        }
    }

    /// Parses [`Pooling::name`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cls" => Some(Self::Cls),
            "mean" => Some(Self::Mean),
            "cls+mean" => Some(Self::ClsMean),
            _ => None,
        }
    }

    /// Feature width for an encoder of width `d`.
    pub fn width(self, d: usize) -> usize {
        match self {
            Self::ClsMean => 2 * d,
            _ => d,
        }
    }
}

/// What is kept per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// One pooled vector.
    Pooled(Pooling),
    /// Every token (cls + patches), for the attentive probe.
    Tokens,
}

/// Which output of the encoder, and in what form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureSpec {
    /// Pooled vector or all tokens.
    pub kind: FeatureKind,
    /// `None`: after the final LayerNorm; `Some(L)`: block `L`'s raw output.
    pub layer: Option<usize>,
}

impl FeatureSpec {
    /// `(tokens per image, width)` of the features of an encoder with `1+N` tokens of width `d`.
    pub fn shape(&self, tokens: usize, d: usize) -> [usize; 2] {
        match self.kind {
            FeatureKind::Pooled(p) => [1, p.width(d)],
            FeatureKind::Tokens => [tokens, d],
        }
    }
}

/// Runs the frozen encoder on `images` and returns the features.
///
/// # Shapes
/// `images: [B, C, H, W]` → `[B, T, F]` (`T = 1` for pooled features)
pub fn encode(
    encoder: &VisionTransformerEncoder,
    images: Tensor<4>,
    spec: &FeatureSpec,
) -> Tensor<3> {
    let mut ctx = ForwardCtx::eval();
    let x = encoder.with_cls_and_pos(encoder.patch_tokens(images), None); // [B, 1+N, D]
    let x = match spec.layer {
        None => encoder.run_blocks(x, &mut ctx),
        Some(l) => {
            let (_, mut taps) = encoder.run_blocks_unnormed(x, &mut ctx, Some(&[l]));
            taps.pop()
                .expect("the tapped block is within the depth (checked)")
        }
    };
    pool(x, spec.kind)
}

/// Pools `[B, 1+N, D]` tokens.
///
/// # Shapes
/// `x: [B, 1+N, D]` → `[B, 1, F]`, or `[B, 1+N, D]` for [`FeatureKind::Tokens`]
pub fn pool(x: Tensor<3>, kind: FeatureKind) -> Tensor<3> {
    let [_, t, _] = x.dims();
    let cls = || x.clone().narrow(1, 0, 1);
    let mean = || x.clone().narrow(1, 1, t - 1).mean_dim(1);
    match kind {
        FeatureKind::Tokens => x.clone(),
        FeatureKind::Pooled(Pooling::Cls) => cls(),
        FeatureKind::Pooled(Pooling::Mean) => mean(),
        FeatureKind::Pooled(Pooling::ClsMean) => Tensor::cat(vec![cls(), mean()], 2),
    }
}

/// Features of a list of images, on the CPU.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    /// `[len, T, F]` row-major.
    pub values: Vec<f32>,
    /// Class id of each image.
    pub labels: Vec<usize>,
    /// `[T, F]`.
    pub shape: [usize; 2],
}

impl FeatureSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image.
    pub fn row_len(&self) -> usize {
        self.shape[0] * self.shape[1]
    }

    /// Rows `rows` as a `[B, T, F]` tensor on `device`, with their labels.
    pub fn batch(&self, rows: &[usize], device: &Device) -> (Tensor<3>, Vec<usize>) {
        let r = self.row_len();
        let mut v = Vec::with_capacity(rows.len() * r);
        for &i in rows {
            v.extend_from_slice(&self.values[i * r..(i + 1) * r]);
        }
        let labels = rows.iter().map(|&i| self.labels[i]).collect();
        let t = Tensor::from_data(
            TensorData::new(v, [rows.len(), self.shape[0], self.shape[1]]),
            device,
        );
        (t, labels)
    }
}

/// Images per encoder forward during extraction.
pub const EXTRACT_CHUNK: usize = 128;

/// Converts a chunk of CHW images to a `[B, 3, S, S]` tensor.
pub fn images_tensor(images: &[Vec<f32>], side: usize, device: &Device) -> Tensor<4> {
    let b = images.len();
    let flat: Vec<f32> = images.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [b, 3, side, side]), device)
}

/// Extracts features of `indices` of `folder` once, with the deterministic evaluation transform.
/// `tick(n)` is called after each chunk of `n` images (progress).
pub fn extract_eval(
    encoder: &VisionTransformerEncoder,
    folder: &Arc<ImageFolder>,
    indices: &[usize],
    spec: &FeatureSpec,
    side: usize,
    device: &Device,
    tick: &mut dyn FnMut(usize),
) -> Result<FeatureSet> {
    let tf = ProbeEvalTransform::new(side as u32);
    let loader = Loader::new(indices.len(), EXTRACT_CHUNK, 0, false, false, 2)?;
    let folder = folder.clone();
    let idx: Arc<Vec<usize>> = Arc::new(indices.to_vec());
    let batches = loader.epoch(0, 0, move |i, _rng| {
        let (img, label) = folder.load(idx[i])?;
        Ok::<_, cae_datasets::DatasetError>((tf.apply(&img), label))
    });
    collect(encoder, batches, spec, side, device, tick)
}

fn collect(
    encoder: &VisionTransformerEncoder,
    batches: impl Iterator<
        Item = std::result::Result<Vec<(Vec<f32>, usize)>, cae_datasets::DatasetError>,
    >,
    spec: &FeatureSpec,
    side: usize,
    device: &Device,
    tick: &mut dyn FnMut(usize),
) -> Result<FeatureSet> {
    let d = encoder.embed_dim();
    let tokens = encoder.patch_embed_tokens(side);
    let shape = spec.shape(tokens, d);
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for batch in batches {
        let batch = batch?;
        let imgs: Vec<Vec<f32>> = batch.iter().map(|(x, _)| x.clone()).collect();
        labels.extend(batch.iter().map(|(_, l)| *l));
        let f = encode(encoder, images_tensor(&imgs, side, device), spec);
        values.extend(to_vec(f)?);
        tick(batch.len());
    }
    Ok(FeatureSet {
        values,
        labels,
        shape,
    })
}

/// Number of tokens (cls + patches) the encoder produces for `side`-pixel images.
pub(crate) trait TokenCount {
    fn patch_embed_tokens(&self, side: usize) -> usize;
}

impl TokenCount for VisionTransformerEncoder {
    fn patch_embed_tokens(&self, side: usize) -> usize {
        let p = self.patch_embed.proj.weight.dims()[2];
        let g = side / p;
        1 + g * g
    }
}

/// Training features with fresh augmentation every epoch (the MAE protocol): the images of epoch
/// `e` are shuffled and augmented exactly as [`Loader`] does for `(seed, e)`, encoded in chunks,
/// and served as training batches of `batch` (the last partial batch is dropped, as MAE's loader
/// does).
pub struct AugmentedFeed {
    /// The training images.
    pub folder: Arc<ImageFolder>,
    /// The images used (a label subset, or all).
    pub indices: Arc<Vec<usize>>,
    /// The augmentation.
    pub transform: ProbeTrainTransform,
    /// Seed of order and augmentation.
    pub seed: u64,
    /// Image side.
    pub side: usize,
}

impl AugmentedFeed {
    /// The training batches of `epoch`: `(features [batch, T, F] on the CPU, labels)`.
    pub fn epoch(
        &self,
        encoder: &VisionTransformerEncoder,
        spec: &FeatureSpec,
        epoch: u64,
        batch: usize,
        device: &Device,
    ) -> Result<impl Iterator<Item = Result<FeatureSet>>> {
        let chunk = EXTRACT_CHUNK.min(batch);
        let loader = Loader::new(self.indices.len(), chunk, self.seed, true, false, 2)?;
        let (folder, idx, tf) = (
            self.folder.clone(),
            self.indices.clone(),
            self.transform.clone(),
        );
        let mut chunks = loader.epoch(epoch, 0, move |i, rng| {
            let (img, label) = folder.load(idx[i])?;
            Ok::<_, cae_datasets::DatasetError>((tf.apply(&img, rng), label))
        });
        let d = encoder.embed_dim();
        let shape = spec.shape(encoder.patch_embed_tokens(self.side), d);
        let row = shape[0] * shape[1];
        let mut pending = FeatureSet {
            values: Vec::new(),
            labels: Vec::new(),
            shape,
        };
        let (side, spec, device) = (self.side, *spec, device.clone());
        let encoder = encoder.clone();
        Ok(std::iter::from_fn(move || {
            loop {
                if pending.len() >= batch {
                    let rest_v = pending.values.split_off(batch * row);
                    let rest_l = pending.labels.split_off(batch);
                    let full = FeatureSet {
                        values: std::mem::replace(&mut pending.values, rest_v),
                        labels: std::mem::replace(&mut pending.labels, rest_l),
                        shape,
                    };
                    return Some(Ok(full));
                }
                let next = chunks.next()?;
                let step = (|| -> Result<()> {
                    let items = next?;
                    let imgs: Vec<Vec<f32>> = items.iter().map(|(x, _)| x.clone()).collect();
                    let f = encode(&encoder, images_tensor(&imgs, side, &device), &spec);
                    pending.values.extend(to_vec(f)?);
                    pending.labels.extend(items.iter().map(|(_, l)| *l));
                    Ok(())
                })();
                if let Err(e) = step {
                    return Some(Err(e));
                }
            }
        }))
    }
}

/// Checks that a probed layer exists.
pub fn check_layer(layer: Option<usize>, depth: usize) -> Result<()> {
    match layer {
        Some(l) if l >= depth => Err(HeadsError::Config(format!(
            "--layer {l} is past the encoder's {depth} blocks (layers are 0-based: 0..{})",
            depth - 1
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use cae_pretrain::CaeConfig;
    use cae_pretrain::encoder_file::random_encoder;

    #[test]
    fn pooling_shapes_and_values() {
        let dev = Device::flex();
        let x = Tensor::<3>::from_data(
            TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [1, 3, 4]),
            &dev,
        );
        let cls: Vec<f32> = to_vec(pool(x.clone(), FeatureKind::Pooled(Pooling::Cls))).unwrap();
        assert_eq!(cls, vec![0.0, 1.0, 2.0, 3.0]);
        let mean: Vec<f32> = to_vec(pool(x.clone(), FeatureKind::Pooled(Pooling::Mean))).unwrap();
        assert_eq!(mean, vec![6.0, 7.0, 8.0, 9.0]);
        let both = pool(x.clone(), FeatureKind::Pooled(Pooling::ClsMean));
        assert_eq!(both.dims(), [1, 1, 8]);
        assert_eq!(pool(x, FeatureKind::Tokens).dims(), [1, 3, 4]);
        for p in [Pooling::Cls, Pooling::Mean, Pooling::ClsMean] {
            assert_eq!(Pooling::parse(p.name()), Some(p));
        }
    }

    #[test]
    fn intermediate_layers_are_raw_block_outputs() {
        let dev = Device::flex();
        let cfg = CaeConfig::test();
        let enc = random_encoder(&cfg, 0, &dev);
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
        let spec = |layer| FeatureSpec {
            kind: FeatureKind::Tokens,
            layer,
        };
        let last = to_vec(encode(&enc, x.clone(), &spec(None))).unwrap();
        let want = to_vec(enc.forward_features(x.clone(), &mut ForwardCtx::eval())).unwrap();
        assert_eq!(last, want);
        let l1 = to_vec(encode(&enc, x.clone(), &spec(Some(1)))).unwrap();
        let tokens = enc.with_cls_and_pos(enc.patch_tokens(x), None);
        let (raw, _) = enc.run_blocks_unnormed(tokens, &mut ForwardCtx::eval(), None);
        assert_eq!(l1, to_vec(raw).unwrap());
        assert!(check_layer(Some(2), 2).is_err());
        assert!(check_layer(Some(1), 2).is_ok());
    }
}
