//! One optimisation step: forward, loss, backward (with gradient accumulation over micro-batches),
//! global-norm clipping and AdamW.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::store::ModuleSnapshot;
use burn::tensor::{Device, Int, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{CaeConfig, TargetConfig};
use crate::error::PretrainError;
use crate::loss::{CaeLoss, accuracy, cae_loss, cross_entropy, mse};
use crate::masking::MaskBatch;
use crate::model::{BeitPretrain, ContextAutoencoder, ForwardCtx, TokenSelection};
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
        let with_target = cfg.align_loss_weight > 0.0;
        let out = self.forward(batch.images.clone(), &batch.masks, with_target, ctx);
        Ok(cae_loss(
            out.logits,
            &targets,
            out.latent_pred,
            out.latent_target,
            cfg.align_loss_weight,
        ))
    }
}

/// The salt of pretraining's per-step streams (see [`salted_step_rng`]).
pub const PRETRAIN_STEP_SALT: u64 = 0x5eed_cafe_f00d_d00d;

/// The generator of step `step` of a run seeded `seed`, in the family of streams named by `salt`
/// (pretraining's drop path, fine-tuning's drop path, …): a pure function of the three, so a run
/// resumed at any step draws what the uninterrupted run drew. The one implementation of per-step
/// streams in the workspace; each user has its own salt so that their streams differ.
pub fn salted_step_rng(seed: u64, salt: u64, step: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ salt);
    rng.set_stream(step.wrapping_add(1));
    rng
}

/// The generator of pretraining step `step` of a run seeded `seed` (drop path).
pub fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    salted_step_rng(seed, PRETRAIN_STEP_SALT, step)
}

/// A worker's result; a worker that panicked (a backend failure such as running out of device
/// memory surfaces as a panic inside burn) becomes an error naming its device and the message,
/// instead of taking the whole process down.
fn worker_result<T>(
    joined: std::thread::Result<Result<T, PretrainError>>,
    device: &Device,
) -> Result<T, PretrainError> {
    joined.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(PretrainError::Backend(format!(
            "the training worker on device {device:?} failed: {message}"
        )))
    })
}

/// One micro-batch's result: its index, gradients, loss scalars and whether it has `mlm_acc`.
type ShardGrads = (usize, GradientsParams, Tensor<1>, bool);

/// Forward + backward over the micro-batches, then one clipped AdamW update.
///
/// Each micro-batch's loss is scaled by its share of the samples, so the accumulated gradient is
/// that of the mean loss over the whole batch. Micro-batches on other devices than the model's run
/// on replicas of the model in parallel threads (data parallel); their gradients are brought to the
/// model's device and summed in micro-batch order.
pub fn train_step<M: Pretrainable + Send + Sync>(
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
    let home = model
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| PretrainError::Input("the model has no parameters".into()))?;
    let mut devices: Vec<Device> = Vec::new();
    for mb in micro_batches {
        let d = mb.images.device();
        if !devices.contains(&d) {
            devices.push(d);
        }
    }
    // One worker per device; the home device's worker uses the model itself.
    let outputs: Vec<Result<Vec<ShardGrads>, PretrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(w, device)| {
                let replica = if *device == home {
                    model.clone()
                } else {
                    model.clone().fork(device)
                };
                let mut worker_rng = rng.clone();
                worker_rng.set_stream(worker_rng.get_stream().wrapping_add(w as u64 * 0x1000_0000));
                let home = home.clone();
                let device = device.clone();
                scope.spawn(move || -> Result<_, PretrainError> {
                    let mut ctx = ForwardCtx::train(worker_rng);
                    let mut out = Vec::new();
                    for (i, mb) in micro_batches.iter().enumerate() {
                        if mb.images.device() != device {
                            continue;
                        }
                        let share = mb.len() as f64 / total as f64;
                        let l = replica.losses(cfg, mb, &mut ctx)?;
                        let grads = l.loss.clone().mul_scalar(share).backward();
                        let mut grads = GradientsParams::from_grads(grads, &replica);
                        if device != home {
                            grads = grads.to_device(&home, &replica);
                        }
                        let has_acc = l.mlm_acc.is_some();
                        let acc = l.mlm_acc.unwrap_or_else(|| l.loss.zeros_like());
                        let scalars = Tensor::cat(
                            vec![
                                l.loss.detach(),
                                l.loss_rec.detach(),
                                l.loss_align.detach(),
                                acc,
                            ],
                            0,
                        )
                        .mul_scalar(share)
                        .to_device(&home);
                        out.push((i, grads, scalars, has_acc));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&devices)
            .map(|(h, device)| worker_result(h.join(), device))
            .collect()
    });
    let mut parts = Vec::new();
    for o in outputs {
        parts.extend(o?);
    }
    parts.sort_by_key(|p| p.0);
    let mut accumulator = GradientsAccumulator::<M>::new();
    let mut scalars = Vec::with_capacity(parts.len());
    let mut has_acc = false;
    for (_, grads, s, acc) in parts {
        accumulator.accumulate(&model, grads);
        scalars.push(s);
        has_acc |= acc;
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

impl Pretrainable for BeitPretrain {
    fn losses(
        &self,
        cfg: &CaeConfig,
        batch: &PretrainBatch,
        ctx: &mut ForwardCtx,
    ) -> Result<CaeLoss, PretrainError> {
        let targets = targets_for(cfg, batch)?;
        let out = self.forward(batch.images.clone(), &batch.masks, ctx);
        let (loss_rec, mlm_acc) = match &targets {
            Targets::Tokens(ids) => (
                cross_entropy(out.logits.clone(), ids.clone()),
                Some(accuracy(out.logits.detach(), ids.clone())),
            ),
            Targets::Pixels(px) => (mse(out.logits, px.clone()), None),
        };
        Ok(CaeLoss {
            loss: loss_rec.clone(),
            loss_align: loss_rec.zeros_like(),
            loss_rec,
            mlm_acc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_worker_is_an_error_naming_its_device() {
        let device = Device::flex();
        let joined = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<u32, PretrainError> {
                    std::panic::panic_any("out of memory: 4 GiB requested".to_string())
                })
                .join()
        });
        let err = worker_result(joined, &device).unwrap_err().to_string();
        assert!(err.contains("out of memory: 4 GiB requested"), "{err}");
        assert!(err.contains("training worker on device"), "{err}");
        let joined = std::thread::scope(|scope| scope.spawn(|| Ok::<u32, PretrainError>(3)).join());
        assert_eq!(worker_result(joined, &device).unwrap(), 3);
    }

    #[test]
    fn step_streams_are_pure_functions_of_seed_salt_and_step() {
        use rand::RngCore;
        let draw = |mut r: ChaCha8Rng| (r.next_u64(), r.next_u64());
        assert_eq!(draw(step_rng(3, 7)), draw(step_rng(3, 7)));
        assert_eq!(
            draw(step_rng(3, 7)),
            draw(salted_step_rng(3, PRETRAIN_STEP_SALT, 7))
        );
        assert_ne!(draw(step_rng(3, 7)), draw(step_rng(3, 8)));
        assert_ne!(draw(step_rng(3, 7)), draw(step_rng(4, 7)));
        assert_ne!(draw(step_rng(3, 7)), draw(salted_step_rng(3, 1, 7)));
    }
    use crate::config::Method;
    use crate::optim::AdamWConfig;
    use crate::train::bench::random_batch;
    use burn::tensor::Device;

    #[test]
    fn both_methods_take_several_steps() {
        for (method, fix_init) in [
            (Method::Cae, false),
            (Method::Cae, true),
            (Method::Beit, false),
        ] {
            let mut cfg = CaeConfig::test();
            cfg.method = method;
            cfg.fix_init_weight = fix_init;
            let dev = Device::flex().autodiff();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let mut optim = AdamW::new(AdamWConfig::default());
            let b = random_batch(&cfg, 4, &mut rng, &dev).unwrap();
            let mut losses = Vec::new();
            if method == Method::Cae {
                let mut m = ContextAutoencoder::new(&cfg, 0, &dev);
                for s in 0..3 {
                    let (m2, st) = train_step(
                        m,
                        &mut optim,
                        &cfg,
                        std::slice::from_ref(&b),
                        1e-3,
                        Some(3.0),
                        step_rng(0, s),
                    )
                    .unwrap();
                    m = m2;
                    losses.push(st.loss);
                }
            } else {
                let mut m = BeitPretrain::new(&cfg, 0, &dev);
                for s in 0..3 {
                    let (m2, st) = train_step(
                        m,
                        &mut optim,
                        &cfg,
                        std::slice::from_ref(&b),
                        1e-3,
                        Some(3.0),
                        step_rng(0, s),
                    )
                    .unwrap();
                    m = m2;
                    losses.push(st.loss);
                }
            }
            assert!(
                losses.iter().all(|l| l.is_finite()),
                "{method:?} {losses:?}"
            );
            assert!(losses[2] < losses[0], "{method:?} {losses:?}");
        }
    }
}
