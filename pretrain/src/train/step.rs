//! One optimisation step: forward, loss, backward (with gradient accumulation over micro-batches),
//! global-norm clipping and AdamW.

use burn::module::{Module, ModuleMapper, Param};
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

use super::dist::{Collective, SingleProcess, all_reduce_grads, combine_device_grads};

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
    /// Samples `start..end` of the batch.
    pub fn slice(&self, start: usize, end: usize) -> PretrainBatch {
        PretrainBatch {
            images: self.images.clone().narrow(0, start, end - start),
            masks: MaskBatch {
                num_patches: self.masks.num_patches,
                masked: self.masks.masked[start..end].to_vec(),
                visible: self.masks.visible[start..end].to_vec(),
            },
            tokens: self
                .tokens
                .as_ref()
                .map(|t| t.clone().narrow(0, start, end - start)),
        }
    }

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

/// The generator of micro-batch `index` of a step (counted over every device and rank of the
/// job, in batch order): the step's own stream for micro-batch 0, a stream of its own for each
/// other. So a micro-batch draws the same dropout whether it runs after another on one device,
/// on a second device, or in another process, and `mpirun -np 2` equals `--accum 2`.
pub fn micro_batch_rng(step: &ChaCha8Rng, index: usize) -> ChaCha8Rng {
    let mut rng = step.clone();
    rng.set_stream(rng.get_stream().wrapping_add(index as u64 * 0x1000_0000));
    rng
}

/// One micro-batch's gradients (scaled by `share`), its four loss scalars (scaled likewise) and
/// whether it has `mlm_acc`.
fn micro_batch_grads<M: Pretrainable>(
    model: &M,
    cfg: &CaeConfig,
    mb: &PretrainBatch,
    share: f64,
    mut ctx: ForwardCtx,
) -> Result<(GradientsParams, Tensor<1>, bool), PretrainError> {
    let l = model.losses(cfg, mb, &mut ctx)?;
    let grads = l.loss.clone().mul_scalar(share).backward();
    let grads = GradientsParams::from_grads(grads, model);
    let has_acc = l.mlm_acc.is_some();
    let acc = l.mlm_acc.unwrap_or_else(|| l.loss.zeros_like());
    let s = Tensor::cat(
        vec![
            l.loss.detach(),
            l.loss_rec.detach(),
            l.loss_align.detach(),
            acc,
        ],
        0,
    )
    .mul_scalar(share);
    Ok((grads, s, has_acc))
}

/// Set to `0` (or `off`), the CPU step runs each micro-batch as one piece on all threads
/// (intra-op parallelism only), for A/B runs; set to `N`, it splits into `N` pieces.
pub const CPU_SPLIT_ENV: &str = "CAE_CPU_SPLIT";

/// Into how many pieces a micro-batch of `len` samples on `device` is split, each piece's
/// forward and backward running on its own thread with single-threaded ops: on the CPU with
/// more than one worker thread, the number of threads (at most one piece per sample). Splitting
/// changes the result only by float rounding (the pieces' gradients are summed in order), never
/// the random draws: each piece draws its samples' drop path decisions from their positions in
/// the micro-batch's stream ([`ForwardCtx::train_piece`]).
fn cpu_parts(device: &Device, len: usize) -> usize {
    if device.clone().without_autodiff() != Device::flex() {
        return 1;
    }
    cpu_split_setting()
        .unwrap_or_else(rayon::current_num_threads)
        .clamp(1, len.max(1))
}

/// `CAE_CPU_SPLIT`, read once: `Some(pieces)` when set (`0` / `off`: one piece), `None` (one
/// piece per thread) when unset.
fn cpu_split_setting() -> Option<usize> {
    static SPLIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *SPLIT.get_or_init(|| {
        let v = std::env::var(CPU_SPLIT_ENV).ok()?;
        Some(match v.trim() {
            "0" | "off" => 1,
            n => n.parse::<usize>().unwrap_or(1),
        })
    })
}

/// Single-threaded rayon pools, one per piece of a split CPU step (made once).
fn piece_pools(n: usize) -> Result<Vec<std::sync::Arc<rayon::ThreadPool>>, PretrainError> {
    use std::sync::{Arc, Mutex, OnceLock};
    static POOLS: OnceLock<Mutex<Vec<Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .map_err(|_| PretrainError::Backend("the CPU piece pools were poisoned".into()))?;
    while pools.len() < n {
        let k = pools.len();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(move |_| format!("cae-step-{k}"))
            .build()
            .map_err(|e| PretrainError::Backend(format!("starting a step thread: {e}")))?;
        pools.push(Arc::new(pool));
    }
    Ok(pools[..n].to_vec())
}

/// The module with every parameter a fresh autodiff leaf (same values, same `ParamId`s, so
/// its gradients land on the same parameters). Pieces of a step running concurrently must not
/// share autodiff nodes: burn-autodiff 0.22 merges graphs that share a node, and one thread's
/// backward on a merged graph deadlocks against another's forward (its graph lock and the global
/// graph-locator lock are taken in opposite orders).
fn own_graph<M: Module>(model: M) -> M {
    struct FreshLeaves;
    impl ModuleMapper for FreshLeaves {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| {
                let require = t.is_require_grad();
                let t = t.detach();
                if require { t.require_grad() } else { t }
            })
        }
    }
    model.map(&mut FreshLeaves)
}

/// Data parallel over the CPU's threads inside one step: the micro-batch is cut into `parts`
/// contiguous pieces, each piece's forward and backward runs on its own single-threaded pool
/// (ops inside it run serially, so the threads never contend inside one op), and the pieces'
/// results come back in order. On this 2-core machine two such pieces beat one batch on two
/// threads by about 1.5× (`docs/distributed/run.log`, where two MPI ranks did the same).
fn split_on_cpu_threads<M: Pretrainable + Send + Sync>(
    model: &M,
    cfg: &CaeConfig,
    mb: &PretrainBatch,
    parts: usize,
    total: usize,
    rng: &ChaCha8Rng,
) -> Result<Vec<(GradientsParams, Tensor<1>, bool)>, PretrainError> {
    let pools = piece_pools(parts)?;
    let precision = crate::autocast::current();
    let n = mb.len();
    let pieces: Vec<(usize, PretrainBatch)> = (0..parts)
        .map(|p| (p * n / parts, mb.slice(p * n / parts, (p + 1) * n / parts)))
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = pieces
            .iter()
            .zip(&pools)
            .map(|((offset, piece), pool)| {
                let model = own_graph(model.clone());
                let ctx = ForwardCtx::train_piece(rng.clone(), n, *offset);
                scope.spawn(move || {
                    pool.install(|| {
                        let _precision = crate::autocast::autocast(precision);
                        let share = piece.len() as f64 / total as f64;
                        micro_batch_grads(&model, cfg, piece, share, ctx)
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|payload| {
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".to_string());
                    Err(PretrainError::Backend(format!(
                        "a CPU step thread failed: {message}"
                    )))
                })
            })
            .collect()
    })
}

/// Forward + backward over the micro-batches, then one clipped AdamW update (one process).
///
/// See [`train_step_parallel`].
pub fn train_step<M: Pretrainable + Send + Sync>(
    model: M,
    optim: &mut AdamW,
    cfg: &CaeConfig,
    micro_batches: &[PretrainBatch],
    lr: f64,
    clip: Option<f64>,
    rng: ChaCha8Rng,
) -> Result<(M, StepStats), PretrainError> {
    train_step_parallel(
        model,
        optim,
        cfg,
        micro_batches,
        lr,
        clip,
        rng,
        &SingleProcess,
    )
}

/// Forward + backward over this process's micro-batches, the sum of every process's gradients,
/// then one clipped AdamW update.
///
/// Each micro-batch's loss is scaled by its share of the samples of the whole step (every rank
/// holds the same number of samples), so the summed gradient is that of the mean loss over the
/// global batch. Micro-batches may sit on several devices (`--devices`): the model is forked to
/// each, each device accumulates its own micro-batches' gradients in order, and burn's
/// [`MultiGradientsParams`](burn::optim::MultiGradientsParams) sums the devices' gradients, which
/// are then moved to the model's device (burn-train's multi-device semantics). Devices are driven
/// from this thread in turn: GPU backends queue their kernels asynchronously. Across processes,
/// one all-reduce sums the gradients and the loss scalars ([`all_reduce_grads`]); the update that
/// follows is the same on every rank.
#[allow(clippy::too_many_arguments)]
pub fn train_step_parallel<M: Pretrainable + Send + Sync>(
    model: M,
    optim: &mut AdamW,
    cfg: &CaeConfig,
    micro_batches: &[PretrainBatch],
    lr: f64,
    clip: Option<f64>,
    rng: ChaCha8Rng,
    collective: &dyn Collective,
) -> Result<(M, StepStats), PretrainError> {
    let local: usize = micro_batches.iter().map(PretrainBatch::len).sum();
    if local == 0 {
        return Err(PretrainError::Input("an empty batch".into()));
    }
    let total = local * collective.size();
    let first_micro = collective.rank() * micro_batches.len();
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
    let mut per_device = Vec::with_capacity(devices.len());
    // Loss, loss_rec, loss_align and mlm_acc, each scaled by its micro-batch's share.
    let mut scalars: Vec<Tensor<1>> = Vec::with_capacity(micro_batches.len());
    let mut has_acc = false;
    for device in &devices {
        let replica = if *device == home {
            model.clone()
        } else {
            super::trainable::on_autodiff(model.clone(), device)
        };
        let mut accumulator = GradientsAccumulator::<M>::new();
        for (i, mb) in micro_batches.iter().enumerate() {
            if mb.images.device() != *device {
                continue;
            }
            let share = mb.len() as f64 / total as f64;
            let micro_rng = micro_batch_rng(&rng, first_micro + i);
            let parts = cpu_parts(device, mb.len());
            let results = if parts > 1 {
                split_on_cpu_threads(&replica, cfg, mb, parts, total, &micro_rng)?
            } else {
                vec![micro_batch_grads(
                    &replica,
                    cfg,
                    mb,
                    share,
                    ForwardCtx::train(micro_rng),
                )?]
            };
            for (grads, s, acc) in results {
                accumulator.accumulate(&replica, grads);
                has_acc |= acc;
                scalars.push(s.to_device(&home));
            }
        }
        per_device.push((accumulator.grads(), device.clone()));
    }
    let mut grads = if per_device.len() == 1 {
        per_device
            .pop()
            .map(|(g, _)| g)
            .unwrap_or_else(GradientsParams::new)
    } else {
        combine_device_grads(&model, per_device, &home)
    };
    all_reduce_grads(&model, &mut grads, collective, &home)?;
    let mut sums: Vec<f32> = Tensor::stack::<2>(scalars, 0)
        .sum_dim(0)
        .try_into_vec_as::<f32>()
        .map_err(|e| PretrainError::Backend(format!("{e:?}")))?;
    sums.push(if has_acc { 1.0 } else { 0.0 });
    collective.all_reduce_sum(&mut sums)?;
    let grad_norm = clip_grad_norm(&model, &mut grads, clip);
    let model = optim.step(model, grads, lr);
    Ok((
        model,
        StepStats {
            loss: sums[0] as f64,
            loss_rec: sums[1] as f64,
            loss_align: sums[2] as f64,
            mlm_acc: (sums[4] > 0.0).then_some(sums[3] as f64),
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
    fn a_micro_batch_split_over_threads_gives_the_gradients_of_the_whole() {
        // With drop path on: the pieces draw the whole batch's decisions for their samples.
        let mut cfg = CaeConfig::test();
        cfg.encoder.drop_path_rate = 0.3;
        let dev = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let model = ContextAutoencoder::new(&cfg, 0, &dev);
        let b = random_batch(&cfg, 6, &mut rng, &dev).unwrap();
        let step = step_rng(0, 3);
        let (whole, ws, _) =
            micro_batch_grads(&model, &cfg, &b, 1.0, ForwardCtx::train(step.clone())).unwrap();
        let pieces = split_on_cpu_threads(&model, &cfg, &b, 3, 6, &step).unwrap();
        assert_eq!(pieces.len(), 3);
        let mut acc = GradientsAccumulator::<ContextAutoencoder>::new();
        let mut loss = 0.0;
        for (g, s, _) in pieces {
            acc.accumulate(&model, g);
            loss += s.try_into_vec_as::<f32>().unwrap()[0];
        }
        let whole_loss = ws.try_into_vec_as::<f32>().unwrap()[0];
        assert!(
            (loss - whole_loss).abs() <= 1e-5 * whole_loss.abs(),
            "{loss} vs {whole_loss}"
        );
        let split = acc.grads();
        let norm = |g: &mut GradientsParams| clip_grad_norm(&model, g, None);
        let (mut whole, mut split) = (whole, split);
        let (nw, ns) = (norm(&mut whole), norm(&mut split));
        assert!((nw - ns).abs() <= 1e-4 * nw, "gradient norms {nw} vs {ns}");
        // A different drop path stream would move the loss: the check above is not vacuous.
        let (_, other, _) =
            micro_batch_grads(&model, &cfg, &b, 1.0, ForwardCtx::train(step_rng(0, 4))).unwrap();
        let other = other.try_into_vec_as::<f32>().unwrap()[0];
        assert!((other - whole_loss).abs() > 1e-4, "{other} vs {whole_loss}");
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

    /// Every float parameter of `m`: its path, dtype and values.
    fn param_values<M: Module>(m: &M) -> Vec<(String, burn::tensor::DType, Vec<f32>)> {
        struct Values(Vec<String>, Vec<(String, burn::tensor::DType, Vec<f32>)>);
        impl burn::module::ModuleVisitor for Values {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.0.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.0.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let v = param.val();
                let dtype = v.dtype();
                let values = v.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                self.1.push((self.0.join("."), dtype, values));
            }
        }
        let mut v = Values(Vec::new(), Vec::new());
        m.visit(&mut v);
        v.1
    }

    /// One step of `model` on `batch` from a fresh AdamW, in `precision`.
    fn one_step<M: Pretrainable + Send + Sync>(
        model: M,
        cfg: &CaeConfig,
        batch: &PretrainBatch,
        precision: crate::autocast::Precision,
    ) -> (M, StepStats) {
        let _precision = crate::autocast::autocast(precision);
        let mut optim = AdamW::new(AdamWConfig::default());
        train_step(
            model,
            &mut optim,
            cfg,
            std::slice::from_ref(batch),
            1e-3,
            Some(3.0),
            step_rng(0, 0),
        )
        .unwrap()
    }

    /// The bf16 step (products in bf16, `crate::autocast`) against the f32 step from the same
    /// model, batch and random streams: the losses differ (bf16 did run) by less than the bound,
    /// the gradient norms likewise, and the update lands on f32 master weights: every parameter
    /// stays f32, the same parameters move, and the frozen ones stay bit-identical.
    ///
    /// The bound: bf16 keeps 8 significant bits, so each product's operands and output carry a
    /// relative rounding of up to u = 2⁻⁹ ≈ 2e-3. The losses are smooth functions of the
    /// products (CE moves by at most twice the largest logit change; MSE by its relative change
    /// times two), and independent roundings mostly cancel, so the losses sit well within a
    /// few u of each other: 1e-2 relative (5u) leaves room for the depth of the test preset.
    #[test]
    fn a_bf16_step_stays_near_the_f32_step_and_updates_f32_master_weights() {
        use crate::autocast::Precision;
        for method in [Method::Cae, Method::Beit] {
            let mut cfg = CaeConfig::test();
            cfg.method = method;
            let dev = Device::flex().autodiff();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            // The images come from the device generator: seeded, so the figures repeat.
            dev.seed(0);
            let b = random_batch(&cfg, 4, &mut rng, &dev).unwrap();
            macro_rules! compare {
                ($m:expr) => {{
                    let m = $m;
                    let init = param_values(&m);
                    let (m32, s32) = one_step(m.clone(), &cfg, &b, Precision::F32);
                    let (m16, s16) = one_step(m, &cfg, &b, Precision::Bf16);
                    (init, param_values(&m32), param_values(&m16), s32, s16)
                }};
            }
            let (init, p32, p16, s32, s16) = match method {
                Method::Cae => compare!(ContextAutoencoder::new(&cfg, 0, &dev)),
                Method::Beit => compare!(BeitPretrain::new(&cfg, 0, &dev)),
            };
            let rel = (s16.loss - s32.loss).abs() / s32.loss.abs();
            let rel_norm = (s16.grad_norm - s32.grad_norm).abs() / s32.grad_norm;
            eprintln!(
                "{method:?}: loss f32 {} bf16 {} (rel {rel:.3e}), grad norm {} vs {} (rel {rel_norm:.3e})",
                s32.loss, s16.loss, s32.grad_norm, s16.grad_norm
            );
            assert!(
                rel > 0.0,
                "{method:?}: the bf16 step gave the f32 loss: nothing ran in bf16"
            );
            assert!(
                rel < 1e-2,
                "{method:?}: losses {} vs {}",
                s32.loss,
                s16.loss
            );
            assert!(
                rel_norm < 1e-2,
                "{method:?}: gradient norms {} vs {}",
                s32.grad_norm,
                s16.grad_norm
            );
            let mut moved = 0;
            for ((a, b), c) in init.iter().zip(&p32).zip(&p16) {
                assert_eq!((&a.0, &a.0), (&b.0, &c.0));
                assert_eq!(
                    c.1,
                    burn::tensor::DType::F32,
                    "{method:?}: {} is not f32",
                    c.0
                );
                let moved32 = a.2 != b.2;
                let moved16 = a.2 != c.2;
                assert_eq!(
                    moved32, moved16,
                    "{method:?}: {} moved in one step only",
                    a.0
                );
                moved += usize::from(moved16);
            }
            assert!(moved > 10, "{method:?}: {moved} parameters moved");
        }
    }

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
