//! Training a probe head on frozen features (linear and attentive probes).
//!
//! Each step: features `[B, T, F]` → `represent` → BatchNorm with batch statistics → `classify`
//! → cross-entropy → backward through the head only → optimizer step with the scheduled
//! learning rate. The BatchNorm's running statistics are updated as in PyTorch and used at
//! evaluation, after every epoch, on the validation features.
//!
//! Batches come either from features extracted once ([`TrainFeed::Cached`]: the order of epoch
//! `e` is [`Loader::order`] for `(seed, e)`) or from fresh augmentation every epoch
//! ([`TrainFeed::Augmented`]). Both drop the last partial batch, as MAE's loader does.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use cae_datasets::Loader;
use cae_pretrain::model::VisionTransformerEncoder;

use crate::classification::features::{AugmentedFeed, FeatureSet, FeatureSpec};
use crate::classification::head::ProbeHead;
use crate::classification::norm::BatchNormStats;
use crate::error::{HeadsError, Result, to_vec};
use crate::metrics::{TopK, cross_entropy};
use crate::optim::Optimizer;
use crate::schedule::{CosineSchedule, MaeSchedule};

/// Where training batches come from.
pub enum TrainFeed<'a> {
    /// Features extracted once.
    Cached(&'a FeatureSet),
    /// Fresh augmentation every epoch, encoded by the frozen encoder.
    Augmented {
        /// The images and augmentation.
        feed: &'a AugmentedFeed,
        /// The frozen encoder (plain device).
        encoder: &'a VisionTransformerEncoder,
        /// What to extract.
        spec: FeatureSpec,
        /// Plain device of the encoder.
        device: Device,
    },
}

/// The learning-rate schedule of a head.
#[derive(Debug, Clone, Copy)]
pub enum LrSchedule {
    /// MAE's per-iteration schedule in fractional epochs.
    Mae(MaeSchedule),
    /// BEiT/CAE's per-step cosine.
    Cosine(CosineSchedule),
}

impl LrSchedule {
    /// The learning rate of step `step` of epoch `epoch` (both 0-based).
    pub fn at(&self, epoch: u64, step: usize, steps_per_epoch: usize) -> f64 {
        match self {
            Self::Mae(s) => s.at(epoch as f64 + step as f64 / steps_per_epoch as f64),
            Self::Cosine(s) => s.at(epoch * steps_per_epoch as u64 + step as u64),
        }
    }
}

/// What one epoch gave.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochResult {
    /// Epoch, 1-based.
    pub epoch: u64,
    /// Validation top-1, percent.
    pub top1: f64,
    /// Validation top-5, percent.
    pub top5: f64,
    /// Mean training loss of the epoch.
    pub loss: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Top-1 correctness of every validation sample, in the validation set's order.
    #[serde(skip)]
    pub correct: Vec<bool>,
}

/// Settings of [`train_head`].
#[derive(Debug, Clone, Copy)]
pub struct HeadTraining {
    /// Epochs.
    pub epochs: u64,
    /// Batch size.
    pub batch: usize,
    /// Order seed.
    pub seed: u64,
    /// Learning rate.
    pub schedule: LrSchedule,
    /// BatchNorm eps.
    pub bn_eps: f64,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Evaluate every this many epochs (and after the last).
    pub eval_every: u64,
}

/// Evaluates a head (with the BatchNorm's running statistics) on features.
pub fn evaluate_head<H: ProbeHead>(
    head: &H,
    bn: &BatchNormStats,
    val: &FeatureSet,
    classes: usize,
    device: &Device,
) -> Result<TopK> {
    let head = head.valid();
    let mut acc = TopK::default();
    let rows: Vec<usize> = (0..val.len()).collect();
    for chunk in rows.chunks(256) {
        let (x, labels) = val.batch(chunk, device);
        let logits = head.classify(bn.forward_eval(head.represent(x)));
        acc.update(&to_vec(logits)?, classes, &labels);
    }
    Ok(acc)
}

/// Trains `head` (on an autodiff device) and evaluates it after every epoch; `on_epoch` sees
/// each result (records, logs) and `tick` each step (progress).
#[allow(clippy::too_many_arguments)]
pub fn train_head<H: ProbeHead>(
    mut head: H,
    opt: &mut Optimizer,
    feed: TrainFeed<'_>,
    val: &FeatureSet,
    classes: usize,
    cfg: &HeadTraining,
    on_epoch: &mut dyn FnMut(&EpochResult) -> Result<()>,
    tick: &mut dyn FnMut(),
) -> Result<(H, BatchNormStats)> {
    let ad = head
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| HeadsError::Config("the probe head has no parameters".into()))?;
    let plain = ad.clone().without_autodiff();
    let width = head.represent(val.batch(&[0], &ad).0).dims()[1];
    let mut bn = BatchNormStats::new(width, cfg.bn_eps, &plain);
    let spe = cfg.steps_per_epoch;
    let mut global = 0u64;
    for epoch in 0..cfg.epochs {
        let batches: Box<dyn Iterator<Item = Result<FeatureSet>> + '_> = match &feed {
            TrainFeed::Cached(set) => {
                let bs = cfg.batch;
                let order = Loader::new(set.len(), bs, cfg.seed, true, true, 1)?.order(epoch);
                let set = *set;
                Box::new((0..spe).map(move |b| {
                    let rows = &order[b * bs..(b + 1) * bs];
                    let r = set.row_len();
                    let mut values = Vec::with_capacity(rows.len() * r);
                    for &i in rows {
                        values.extend_from_slice(&set.values[i * r..(i + 1) * r]);
                    }
                    Ok(FeatureSet {
                        values,
                        labels: rows.iter().map(|&i| set.labels[i]).collect(),
                        shape: set.shape,
                    })
                }))
            }
            TrainFeed::Augmented {
                feed,
                encoder,
                spec,
                device,
            } => Box::new(
                feed.epoch(encoder, spec, epoch, cfg.batch, device)?
                    .take(spe),
            ),
        };
        let mut loss_sum = 0.0;
        let mut lr = 0.0;
        let mut steps = 0usize;
        for (step, batch) in batches.enumerate() {
            let batch = batch?;
            lr = cfg.schedule.at(epoch, step, spe);
            let b = batch.len();
            let x = Tensor::<3>::from_data(
                TensorData::new(batch.values, [b, batch.shape[0], batch.shape[1]]),
                &ad,
            );
            let rep = head.represent(x);
            let logits = head.classify(bn.forward_train(rep));
            let loss = cross_entropy(logits, &batch.labels, 0.0);
            let value = f64::from(loss.clone().detach().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            global += 1;
            if !value.is_finite() {
                return Err(HeadsError::NonFinite {
                    epoch: epoch + 1,
                    step: global,
                    value,
                });
            }
            head = opt.step(head, grads, lr);
            loss_sum += value;
            steps += 1;
            tick();
        }
        if (epoch + 1) % cfg.eval_every.max(1) != 0 && epoch + 1 != cfg.epochs {
            continue;
        }
        let acc = evaluate_head(&head, &bn, val, classes, &plain)?;
        on_epoch(&EpochResult {
            epoch: epoch + 1,
            top1: acc.top1_pct(),
            top5: acc.top5_pct(),
            loss: loss_sum / steps.max(1) as f64,
            lr,
            correct: acc.correct,
        })?;
    }
    Ok((head, bn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classification::attentive::AttentiveProbe;
    use crate::classification::linear::LinearProbe;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n` samples of 4 Gaussian clusters in `t × f` features (class c shifts feature c by +2).
    fn clusters(n: usize, t: usize, f: usize, seed: u64) -> FeatureSet {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = i % 4;
            for _ in 0..t {
                for j in 0..f {
                    let noise: f32 = rng.random::<f32>() - 0.5;
                    values.push(noise + if j == c { 2.0 } else { 0.0 } + 5.0);
                }
            }
            labels.push(c);
        }
        FeatureSet {
            values,
            labels,
            shape: [t, f],
        }
    }

    fn run<H: ProbeHead>(
        head: H,
        opt: &mut Optimizer,
        schedule: LrSchedule,
        t: usize,
    ) -> Vec<EpochResult> {
        run_every(head, opt, schedule, t, 1)
    }

    fn run_every<H: ProbeHead>(
        head: H,
        opt: &mut Optimizer,
        schedule: LrSchedule,
        t: usize,
        eval_every: u64,
    ) -> Vec<EpochResult> {
        let train = clusters(256, t, 16, 1);
        let val = clusters(64, t, 16, 2);
        let cfg = HeadTraining {
            epochs: 15,
            batch: 32,
            seed: 0,
            schedule,
            bn_eps: 1e-6,
            steps_per_epoch: 8,
            eval_every,
        };
        let mut results = Vec::new();
        train_head(
            head,
            opt,
            TrainFeed::Cached(&train),
            &val,
            4,
            &cfg,
            &mut |r| {
                results.push(r.clone());
                Ok(())
            },
            &mut || {},
        )
        .unwrap();
        results
    }

    #[test]
    fn lars_linear_probe_separates_clusters() {
        let dev = Device::flex().autodiff();
        let head = LinearProbe::new(16, 4, 0, &dev);
        let mut opt = Optimizer::lars(0.9, 0.001, 0.0);
        let sched = LrSchedule::Mae(MaeSchedule {
            lr: 6.4,
            min_lr: 0.0,
            warmup_epochs: 2.0,
            epochs: 15.0,
        });
        let r = run(head, &mut opt, sched, 1);
        assert_eq!(r.len(), 15);
        assert!(r[14].top1 > 95.0, "{r:?}");
        assert!(r[14].loss < r[0].loss, "{r:?}");
    }

    #[test]
    fn eval_every_skips_epochs_but_always_reports_the_last() {
        let dev = Device::flex().autodiff();
        let head = LinearProbe::new(16, 4, 0, &dev);
        let mut opt = Optimizer::lars(0.9, 0.001, 0.0);
        let sched = LrSchedule::Mae(MaeSchedule {
            lr: 6.4,
            min_lr: 0.0,
            warmup_epochs: 2.0,
            epochs: 15.0,
        });
        let r = run_every(head, &mut opt, sched, 1, 4);
        let epochs: Vec<u64> = r.iter().map(|e| e.epoch).collect();
        assert_eq!(epochs, vec![4, 8, 12, 15]);
        assert!(r[3].top1 > 95.0, "{r:?}");
    }

    #[test]
    fn attentive_probe_separates_clusters() {
        let dev = Device::flex().autodiff();
        let head = AttentiveProbe::new(16, 2, 4, 0, &dev);
        let mut opt = Optimizer::sgd(0.9, true, 0.0);
        let sched = LrSchedule::Cosine(CosineSchedule {
            base: 0.4,
            min: 1e-6,
            warmup: 8,
            total: 120,
        });
        let r = run(head, &mut opt, sched, 3);
        assert!(r[14].top1 > 95.0, "{r:?}");
    }
}
