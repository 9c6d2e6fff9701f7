//! One optimisation step: forward, loss, backward (with gradient accumulation over micro-batches),
//! global-norm clipping and AdamW.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::store::ModuleSnapshot;
use burn::tensor::{Int, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{CaeConfig, TargetConfig};
use crate::error::PretrainError;
use crate::loss::{CaeLoss, cae_loss};
use crate::masking::MaskBatch;
use crate::model::{ContextAutoencoder, ForwardCtx, TokenSelection};
use crate::optim::{AdamW, clip_grad_norm};
use crate::targets::{Targets, pixel_targets};

/// One (micro-)batch of pretraining inputs.
#[derive(Debug, Clone)]
pub struct PretrainBatch {
    /// Normalised images `[B, C, H, W]`.
    pub images: Tensor<4>,
    /// Exactly-`M` masks.
    pub masks: MaskBatch,
    /// Tokenizer ids of every patch `[B, N]` (DALL-E targets only).
    pub tokens: Option<Tensor<2, Int>>,
}

impl PretrainBatch {
    /// Batch size.
    pub fn len(&self) -> usize {
        self.masks.batch()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Scalars of one step (averaged over micro-batches).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct StepStats {
    /// Total loss.
    pub loss: f64,
    /// Reconstruction loss.
    pub loss_rec: f64,
    /// Alignment MSE (before λ).
    pub loss_align: f64,
    /// Masked-token accuracy (token targets).
    pub mlm_acc: Option<f64>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// A model that can be pretrained: CAE or the BEiT baseline.
pub trait Pretrainable: Module + ModuleSnapshot + Clone {
    /// The losses of one batch.
    fn losses(
        &self,
        cfg: &CaeConfig,
        batch: &PretrainBatch,
        ctx: &mut ForwardCtx,
    ) -> Result<CaeLoss, PretrainError>;
}

/// The reconstruction targets of a batch at its masked positions.
pub fn targets_for(cfg: &CaeConfig, batch: &PretrainBatch) -> Result<Targets, PretrainError> {
    let device = batch.images.device();
    let masked = TokenSelection::from_rows(&batch.masks.masked, batch.masks.num_patches, &device);
    match &cfg.target {
        TargetConfig::Pixel { norm } => Ok(Targets::Pixels(pixel_targets(
            batch.images.clone(),
            cfg.encoder.patch_size,
            &masked,
            *norm,
        ))),
        TargetConfig::Dalle { .. } => {
            let tokens = batch.tokens.clone().ok_or_else(|| {
                PretrainError::Input("DALL-E targets need tokenizer ids for every batch".into())
            })?;
            let [b, n] = tokens.dims();
            if b != batch.len() || n != batch.masks.num_patches {
                return Err(PretrainError::Input(format!(
                    "token ids have shape [{b}, {n}], expected [{}, {}]",
                    batch.len(),
                    batch.masks.num_patches
                )));
            }
            Ok(Targets::Tokens(
                tokens.reshape([b * n]).select(0, masked.flat),
            ))
        }
    }
}

impl Pretrainable for ContextAutoencoder {
    fn losses(
        &self,
        cfg: &CaeConfig,
        batch: &PretrainBatch,
        ctx: &mut ForwardCtx,
    ) -> Result<CaeLoss, PretrainError> {
        let targets = targets_for(cfg, batch)?;
        let out = self.forward(batch.images.clone(), &batch.masks, ctx);
        Ok(cae_loss(
            out.logits,
            &targets,
            out.latent_pred,
            out.latent_target,
            cfg.align_loss_weight,
        ))
    }
}

/// The generator of step `step` of a run seeded `seed` (drop path): a pure function of both.
pub fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_cafe_f00d_d00d);
    rng.set_stream(step.wrapping_add(1));
    rng
}

/// Forward + backward over the micro-batches, then one clipped AdamW update.
///
/// Each micro-batch's loss is scaled by its share of the samples, so the accumulated gradient is
/// that of the mean loss over the whole batch.
pub fn train_step<M: Pretrainable>(
    model: M,
    optim: &mut AdamW,
    cfg: &CaeConfig,
    micro_batches: &[PretrainBatch],
    lr: f64,
    clip: Option<f64>,
    rng: ChaCha8Rng,
) -> Result<(M, StepStats), PretrainError> {
    let total: usize = micro_batches.iter().map(PretrainBatch::len).sum();
    if total == 0 {
        return Err(PretrainError::Input("an empty batch".into()));
    }
    let mut ctx = ForwardCtx::train(rng);
    let mut accumulator = GradientsAccumulator::<M>::new();
    let mut scalars: Vec<Tensor<1>> = Vec::new();
    let mut has_acc = false;
    for mb in micro_batches {
        let share = mb.len() as f64 / total as f64;
        let l = model.losses(cfg, mb, &mut ctx)?;
        let grads = l.loss.clone().mul_scalar(share).backward();
        accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
        let acc = match l.mlm_acc {
            Some(a) => {
                has_acc = true;
                a
            }
            None => l.loss.zeros_like(),
        };
        scalars.push(
            Tensor::cat(
                vec![
                    l.loss.detach(),
                    l.loss_rec.detach(),
                    l.loss_align.detach(),
                    acc,
                ],
                0,
            )
            .mul_scalar(share),
        );
    }
    let mut grads = accumulator.grads();
    let sums: Vec<f32> = Tensor::stack::<2>(scalars, 0)
        .sum_dim(0)
        .try_into_vec_as::<f32>()
        .map_err(|e| PretrainError::Backend(format!("{e:?}")))?;
    let grad_norm = clip_grad_norm(&model, &mut grads, clip);
    let model = optim.step(model, grads, lr);
    Ok((
        model,
        StepStats {
            loss: sums[0] as f64,
            loss_rec: sums[1] as f64,
            loss_align: sums[2] as f64,
            mlm_acc: has_acc.then_some(sums[3] as f64),
            grad_norm,
        },
    ))
}
