//! Throughput of a full pretraining step (forward, backward, AdamW) on random data.
//!
//! Images are N(0, 1), masks come from the preset's generator, and DALL-E targets are uniformly
//! random ids (the tokenizer is not part of the step being measured). Used by
//! `cae-bench bench pretrain` and the criterion bench.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::step::{PretrainBatch, train_step};
use crate::autocast::{Precision, autocast};
use crate::config::{CaeConfig, TargetConfig};
use crate::error::PretrainError;
use crate::masking::{MaskBatch, MaskGenerator};
use crate::model::ContextAutoencoder;
use crate::optim::{AdamW, AdamWConfig};

/// What a benchmark run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Preset name.
    pub preset: String,
    /// Batch size.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// Mean milliseconds per step.
    pub ms_per_step: f64,
    /// Median milliseconds per step.
    pub median_ms: f64,
    /// Images per second (batch / mean step time).
    pub img_per_s: f64,
    /// Loss after the last step (a sanity check that the step really ran).
    pub last_loss: f64,
    /// The precision of the step's products (`f32`, `bf16`: [`crate::autocast`]).
    pub precision: String,
}

/// A random batch for `cfg`.
pub fn random_batch(
    cfg: &CaeConfig,
    batch: usize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<PretrainBatch, PretrainError> {
    let e = &cfg.encoder;
    let generator = MaskGenerator::new(e.grid_size(), &cfg.mask)?;
    let masks: Vec<_> = (0..batch).map(|_| generator.sample(rng)).collect();
    let images = Tensor::<4>::random(
        [batch, e.in_chans, e.img_size, e.img_size],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let tokens = match cfg.target {
        TargetConfig::Dalle { vocab_size } => {
            let n = e.num_patches();
            let ids: Vec<i64> = (0..batch * n)
                .map(|_| rng.random_range(0..vocab_size as i64))
                .collect();
            Some(Tensor::<2, Int>::from_data(
                TensorData::new(ids, [batch, n]),
                device,
            ))
        }
        TargetConfig::Pixel { .. } => None,
    };
    Ok(PretrainBatch {
        images,
        masks: MaskBatch::from_masks(&masks)?,
        tokens,
    })
}

/// A model, an optimizer and a stream of random batches, stepping on demand.
pub struct StepBench {
    cfg: CaeConfig,
    batch: usize,
    device: Device,
    model: Option<ContextAutoencoder>,
    optim: AdamW,
    rng: ChaCha8Rng,
    steps_done: u64,
    precision: Precision,
}

impl StepBench {
    /// A fresh model for `cfg` on `device` (autodiff is turned on here).
    pub fn new(cfg: &CaeConfig, batch: usize, device: &Device) -> Result<Self, PretrainError> {
        cfg.validate()?;
        if batch == 0 {
            return Err(PretrainError::Input("batch must be at least 1".into()));
        }
        let device = device.clone().autodiff();
        device.seed(0);
        Ok(Self {
            cfg: cfg.clone(),
            batch,
            model: Some(ContextAutoencoder::new(cfg, 0, &device)),
            device,
            optim: AdamW::new(AdamWConfig::default()),
            rng: ChaCha8Rng::seed_from_u64(0),
            steps_done: 0,
            precision: Precision::F32,
        })
    }

    /// Steps in `precision` from now on (an error if the device has no such tensors).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self, PretrainError> {
        precision.check_device(&self.device)?;
        self.precision = precision;
        Ok(self)
    }

    /// One full training step on a fresh random batch; returns (milliseconds of the step, loss).
    /// The batch is drawn and uploaded before the clock starts; the clock stops after a device sync.
    pub fn step(&mut self) -> Result<(f64, f64), PretrainError> {
        let b = random_batch(&self.cfg, self.batch, &mut self.rng, &self.device)?;
        let model = self.model.take().expect("the model is always put back");
        let start = Instant::now();
        let _precision = autocast(self.precision);
        let result = train_step(
            model,
            &mut self.optim,
            &self.cfg,
            &[b],
            1e-4,
            Some(3.0),
            super::step_rng(0, self.steps_done),
        );
        let (model, stats) = result?;
        self.device
            .sync()
            .map_err(|e| PretrainError::Backend(format!("{e:?}")))?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        self.model = Some(model);
        self.steps_done += 1;
        Ok((ms, stats.loss))
    }
}

/// Times `steps` training steps of `cfg` at `batch` after `warmup` untimed ones, their products
/// in `precision`.
pub fn bench_pretrain_step(
    cfg: &CaeConfig,
    batch: usize,
    steps: usize,
    warmup: usize,
    precision: Precision,
    device: &Device,
) -> Result<BenchResult, PretrainError> {
    if steps == 0 {
        return Err(PretrainError::Input("steps must be at least 1".into()));
    }
    let mut bench = StepBench::new(cfg, batch, device)?.with_precision(precision)?;
    let mut times = Vec::with_capacity(steps);
    let mut last_loss = f64::NAN;
    for i in 0..warmup + steps {
        let (ms, loss) = bench.step()?;
        last_loss = loss;
        if i >= warmup {
            times.push(ms);
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Ok(BenchResult {
        preset: cfg.preset.clone(),
        batch,
        steps,
        warmup,
        ms_per_step: mean,
        median_ms: median,
        img_per_s: batch as f64 / (mean / 1e3),
        last_loss,
        precision: precision.name().to_string(),
    })
}
