//! End-to-end fine-tuning (cae.md §5a-3; Atten4Vis/CAE `tools/run_class_finetuning.py`,
//! `models/modeling_finetune.py`, `furnace/optim_factory.py`), used for low-label evaluation.
//!
//! * Model: the encoder, then the **mean of the patch tokens** (cls excluded) through `fc_norm`, a
//!   LayerNorm initialised from the encoder's final `norm` (the official `norm.* → fc_norm.*`
//!   rename; the final norm itself is unused), then `Linear(D, classes)` with weight
//!   trunc-normal(0.02) × `init_scale` 0.001 and bias 0. `Pooling::Cls` instead keeps the final
//!   norm and takes the cls token.
//! * Per-block relative position bias: zero-initialised, learned tables are added when the
//!   encoder has none (`rel_pos_bias` defaults to True in the official fine-tuning).
//! * Stochastic depth `linspace(0, drop_path, depth)`.
//! * AdamW (0.9, 0.999), wd 0.05 except 1-D / bias / `pos_embed` / `cls_token`, layer-wise lr
//!   decay ([`crate::optim::layer_decay_group`]), per-step cosine with linear warmup from 0 to
//!   `min_lr`. Label smoothing 0.1.
//! * Augmentation: RandomResizedCrop + flip ([`cae_datasets::ProbeTrainTransform`]). Not
//!   reproduced: RandAugment, random erasing, mixup / cutmix (the soft-target loss becomes
//!   plain label smoothing).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};
use cae_pretrain::model::drop_path::drop_path_schedule;
use cae_pretrain::model::init::{Init, LinearInit};
use cae_pretrain::model::{ForwardCtx, VisionTransformerEncoder};

use crate::classification::features::Pooling;

/// The fine-tuning model.
#[derive(Module, Debug)]
pub struct FinetuneModel {
    /// The encoder (trained).
    pub encoder: VisionTransformerEncoder,
    /// LayerNorm after mean pooling (`None` for cls pooling, which uses `encoder.norm`).
    pub fc_norm: Option<LayerNorm>,
    /// The classifier.
    pub head: Linear,
}

/// How the fine-tuning model is built around a pretrained encoder.
#[derive(Debug, Clone, Copy)]
pub struct FinetuneBuild {
    /// Mean (official) or cls pooling.
    pub pooling: Pooling,
    /// Stochastic depth rate.
    pub drop_path: f64,
    /// Add learned per-block relative position tables when the encoder has none.
    pub rel_pos_bias: bool,
    /// Head init scale (0.001).
    pub init_scale: f64,
    /// Classes.
    pub classes: usize,
    /// Seed of the new parameters.
    pub seed: u64,
    /// LayerNorm eps of `fc_norm` (the encoder's).
    pub ln_eps: f64,
}

impl FinetuneModel {
    /// Wraps a pretrained encoder (already on the training device).
    pub fn new(mut encoder: VisionTransformerEncoder, b: &FinetuneBuild, device: &Device) -> Self {
        let mut init = Init::new(b.seed ^ 0xf17e_7a9e, LinearInit::TruncNormal, device);
        let grid = grid_of(&encoder);
        prepare_finetune_backbone(
            &mut encoder,
            b.drop_path,
            b.rel_pos_bias.then_some(grid),
            &init,
        );
        let d = encoder.embed_dim();
        // A copy with fresh parameter ids: a clone would share the final norm's ids, and its
        // gradients would be credited to the (unused) final norm.
        let fc_norm = (b.pooling == Pooling::Mean).then(|| {
            let norm = &encoder.norm;
            let mut n = LayerNormConfig::new(d).with_epsilon(b.ln_eps).init(device);
            n.gamma = Param::from_tensor(norm.gamma.val().detach());
            n.beta = norm
                .beta
                .as_ref()
                .map(|p| Param::from_tensor(p.val().detach()));
            n
        });
        let mut head = init.linear(d, b.classes, true);
        head.weight = head
            .weight
            .map(|w| w.mul_scalar(b.init_scale).detach().require_grad());
        Self {
            encoder,
            fc_norm,
            head,
        }
    }

    /// Logits.
    ///
    /// # Shapes
    /// `images: [B, C, H, W]` → `[B, classes]`
    pub fn forward(&self, images: Tensor<4>, ctx: &mut ForwardCtx) -> Tensor<2> {
        let enc = &self.encoder;
        let x = enc.with_cls_and_pos(enc.patch_tokens(images), None);
        let (x, _) = enc.run_blocks_unnormed(x, ctx, None); // [B, 1+N, D]
        let [b, t, d] = x.dims();
        let pooled = match &self.fc_norm {
            Some(norm) => norm.forward(x.narrow(1, 1, t - 1).mean_dim(1)), // [B, 1, D]
            None => enc.norm.forward(x.narrow(1, 0, 1)),
        };
        self.head.forward(pooled.reshape([b, d]))
    }
}

/// Prepares an encoder for end-to-end fine-tuning as the official fine-tunes do (classification
/// and segmentation alike): stochastic depth rising linearly to `drop_path` over the blocks, and,
/// with `rel_pos_grid = Some(g)` and no relative position bias yet, a zero-initialised per-block
/// table for a `g × g` patch grid.
pub fn prepare_finetune_backbone(
    encoder: &mut VisionTransformerEncoder,
    drop_path: f64,
    rel_pos_grid: Option<usize>,
    init: &Init,
) {
    let depth = encoder.blocks.len();
    for (block, dp) in encoder
        .blocks
        .iter_mut()
        .zip(drop_path_schedule(drop_path, depth))
    {
        block.drop_path = dp;
    }
    let has_rpb = encoder.rel_pos_bias.is_some()
        || encoder
            .blocks
            .first()
            .is_some_and(|blk| blk.attn.relative_position_bias_table.is_some());
    if let Some(grid) = rel_pos_grid
        && !has_rpb
    {
        for block in encoder.blocks.iter_mut() {
            block.attn = block.attn.clone().with_rel_pos_bias(grid, init);
        }
    }
}

/// Patches per side of the encoder's input.
fn grid_of(encoder: &VisionTransformerEncoder) -> usize {
    match &encoder.pos_embed {
        Some(p) => ((p.dims()[1] - 1) as f64).sqrt().round() as usize,
        None => {
            // A shared or per-block table has (2g − 1)² + 3 rows.
            let rows = encoder
                .rel_pos_bias
                .as_ref()
                .map(|r| r.relative_position_bias_table.dims()[0])
                .unwrap_or(3);
            (((rows - 3) as f64).sqrt().round() as usize).div_ceil(2)
        }
    }
}

/// Gradients of one batch split into micro-batches (each loss scaled by its share, so the sum is
/// the gradient of the batch mean).
pub fn accumulate(
    model: &FinetuneModel,
    parts: Vec<(Tensor<4>, Vec<usize>)>,
    smoothing: f64,
    ctx: &mut ForwardCtx,
) -> (GradientsParams, f64) {
    let total: usize = parts.iter().map(|(_, l)| l.len()).sum();
    let mut acc = GradientsAccumulator::<FinetuneModel>::new();
    let mut loss_sum = 0.0;
    for (images, labels) in parts {
        let share = labels.len() as f64 / total as f64;
        let loss = crate::metrics::cross_entropy(model.forward(images, ctx), &labels, smoothing)
            .mul_scalar(share);
        loss_sum += f64::from(loss.clone().detach().into_scalar::<f32>());
        acc.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
    }
    (acc.grads(), loss_sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;
    use crate::optim::{Optimizer, Rule, layer_decay_group};
    use burn::tensor::Distribution;
    use cae_pretrain::CaeConfig;
    use cae_pretrain::encoder_file::random_encoder;
    use rand::SeedableRng;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    fn build(pooling: Pooling) -> (FinetuneModel, Device) {
        let dev = Device::flex().autodiff();
        let cfg = CaeConfig::test();
        let enc = random_encoder(&cfg, 0, &dev);
        let b = FinetuneBuild {
            pooling,
            drop_path: 0.1,
            rel_pos_bias: true,
            init_scale: 0.001,
            classes: 3,
            seed: 0,
            ln_eps: 1e-6,
        };
        (FinetuneModel::new(enc, &b, &dev), dev)
    }

    #[test]
    fn fc_norm_starts_as_the_final_norm_and_tables_are_added() {
        let (m, _) = build(Pooling::Mean);
        let a = to_vec(m.fc_norm.as_ref().unwrap().gamma.val()).unwrap();
        assert_eq!(a, to_vec(m.encoder.norm.gamma.val()).unwrap());
        assert_ne!(
            m.fc_norm.as_ref().unwrap().gamma.id,
            m.encoder.norm.gamma.id
        );
        assert!(
            m.encoder
                .blocks
                .iter()
                .all(|b| b.attn.relative_position_bias_table.is_some())
        );
        assert_eq!(m.encoder.blocks[1].drop_path, 0.1);
        let w = to_vec(m.head.weight.val()).unwrap();
        assert!(w.iter().all(|v| v.abs() <= 0.02 * 0.001 + 1e-9));
        let (c, _) = build(Pooling::Cls);
        assert!(c.fc_norm.is_none());
    }

    #[test]
    fn a_few_steps_lower_the_loss_and_the_real_paths_get_their_layer_decay() {
        let (mut m, dev) = build(Pooling::Mean);
        let depth = m.encoder.blocks.len();
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let log = seen.clone();
        let mut opt = Optimizer::new(
            Rule::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            Box::new(move |p, nd| {
                let g = layer_decay_group(p, nd, depth, 0.5, 0.05);
                log.lock()
                    .unwrap()
                    .insert(p.to_string(), (g.lr_scale, g.weight_decay));
                g
            }),
        );
        let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
        let y = [0usize, 1, 2, 0];
        let table = |m: &FinetuneModel| {
            to_vec(
                m.encoder.blocks[0]
                    .attn
                    .relative_position_bias_table
                    .as_ref()
                    .unwrap()
                    .val(),
            )
            .unwrap()
        };
        let before = table(&m);
        let pos_before = to_vec(m.encoder.pos_embed.as_ref().unwrap().val()).unwrap();
        let mut losses = Vec::new();
        for s in 0..5 {
            let mut ctx = ForwardCtx::train(rand_chacha::ChaCha8Rng::seed_from_u64(s));
            let parts = vec![
                (x.clone().narrow(0, 0, 2), y[..2].to_vec()),
                (x.clone().narrow(0, 2, 2), y[2..].to_vec()),
            ];
            let (g, loss) = accumulate(&m, parts, 0.1, &mut ctx);
            losses.push(loss);
            m = opt.step(m, g, 1e-3);
        }
        assert!(losses[4] < losses[0], "{losses:?}");
        assert_ne!(before, table(&m), "the added tables train");
        // The fixed sin-cos table has no gradient and stays fixed.
        assert_eq!(
            pos_before,
            to_vec(m.encoder.pos_embed.as_ref().unwrap().val()).unwrap()
        );
        let seen = seen.lock().unwrap();
        let want = [
            ("encoder.cls_token", (0.125, 0.0)),
            ("encoder.patch_embed.proj.weight", (0.125, 0.05)),
            ("encoder.patch_embed.proj.bias", (0.125, 0.0)),
            ("encoder.blocks.0.attn.qkv.weight", (0.25, 0.05)),
            ("encoder.blocks.0.attn.q_bias", (0.25, 0.0)),
            (
                "encoder.blocks.0.attn.relative_position_bias_table",
                (0.25, 0.05),
            ),
            ("encoder.blocks.1.mlp.fc1.weight", (0.5, 0.05)),
            ("encoder.blocks.1.gamma_2", (0.5, 0.0)),
            ("fc_norm.gamma", (1.0, 0.0)),
            ("head.weight", (1.0, 0.05)),
            ("head.bias", (1.0, 0.0)),
        ];
        for (path, group) in want {
            assert_eq!(seen.get(path), Some(&group), "{path}: {seen:?}");
        }
        // Unused (the final norm under mean pooling) and frozen parameters get no update.
        assert!(!seen.contains_key("encoder.pos_embed"));
        assert!(!seen.contains_key("encoder.norm.gamma"));
    }
}
