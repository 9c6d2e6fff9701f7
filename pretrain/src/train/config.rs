//! Training hyper-parameters and the resolved run configuration written to `RUN/config.toml`.

use serde::{Deserialize, Serialize};

use crate::autocast::Precision;
use crate::config::CaeConfig;
use crate::error::PretrainError;

/// Optimisation hyper-parameters (cae.md §4), scaled to the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Images per optimizer step (all devices, all accumulation steps together).
    pub batch_size: usize,
    /// Micro-batches per step (gradient accumulation); `batch_size` must divide evenly.
    #[serde(default = "one")]
    pub accum_steps: usize,
    /// Base learning rate per 256 images: `lr = blr × batch_size / 256` unless `lr` is set.
    pub blr: f64,
    /// Absolute learning rate (overrides the scaling rule).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Final learning rate of the cosine.
    pub min_lr: f64,
    /// Warmup, as a fraction of all steps (10 of 300 epochs in the paper).
    pub warmup_fraction: f64,
    /// AdamW β1.
    #[serde(default = "beta1")]
    pub beta1: f64,
    /// AdamW β2.
    #[serde(default = "beta2")]
    pub beta2: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip; `None` disables it.
    pub clip_grad: Option<f64>,
    /// Optimizer steps; exactly one of `steps` / `epochs` is set.
    #[serde(default)]
    pub steps: Option<u64>,
    /// Epochs over the data.
    #[serde(default)]
    pub epochs: Option<u64>,
    /// The run's seed: model init, data order, augmentation, masks and drop path all derive from it.
    pub seed: u64,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept (the oldest are deleted).
    pub keep_checkpoints: usize,
    /// Log a metrics line every this many steps.
    pub log_every: u64,
    /// Worker threads preparing data (0 = rayon's global pool).
    #[serde(default)]
    pub loader_threads: usize,
    /// Batches prepared ahead.
    #[serde(default = "two")]
    pub prefetch: usize,
    /// The precision of the matrix products ([`crate::autocast`]): `f32` (the default, and what
    /// a config without the key means) or `bf16` (f32 master weights and reductions).
    #[serde(default)]
    pub precision: Precision,
}

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn beta1() -> f64 {
    0.9
}
fn beta2() -> f64 {
    0.999
}

impl TrainConfig {
    /// The defaults for a model preset: the paper's recipe (batch 2048, lr 1.5e-3, i.e. `blr`
    /// 1.875e-4) for the ViT presets; a CPU-sized recipe for `mini` / `test` (batch 64, lr 1.5e-3).
    pub fn for_preset(preset: &str) -> Self {
        let small = matches!(preset, "mini" | "test");
        Self {
            batch_size: if small { 64 } else { 2048 },
            accum_steps: 1,
            blr: if small { 6e-3 } else { 1.5e-3 * 256.0 / 2048.0 },
            lr: None,
            min_lr: 1e-5,
            warmup_fraction: 10.0 / 300.0,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.05,
            clip_grad: Some(3.0),
            steps: None,
            epochs: None,
            seed: 0,
            checkpoint_every: if small { 50 } else { 1000 },
            keep_checkpoints: 3,
            log_every: 1,
            loader_threads: 0,
            prefetch: 2,
            precision: Precision::F32,
        }
    }

    /// The learning rate after the scaling rule.
    pub fn effective_lr(&self) -> f64 {
        self.lr.unwrap_or(self.blr * self.batch_size as f64 / 256.0)
    }

    /// One line saying how the learning rate was derived.
    pub fn scaling_rule(&self) -> String {
        match self.lr {
            Some(lr) => format!(
                "lr = {lr:e} (absolute, set explicitly); batch {}",
                self.batch_size
            ),
            None => format!(
                "lr = blr × batch / 256 = {:e} × {} / 256 = {:e}",
                self.blr,
                self.batch_size,
                self.effective_lr()
            ),
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), PretrainError> {
        let bad = |m: String| Err(PretrainError::Config(m));
        if self.batch_size == 0 || self.accum_steps == 0 {
            return bad("batch_size and accum_steps must be at least 1".into());
        }
        if !self.batch_size.is_multiple_of(self.accum_steps) {
            return bad(format!(
                "batch_size {} is not divisible by accum_steps {}",
                self.batch_size, self.accum_steps
            ));
        }
        match (self.steps, self.epochs) {
            (Some(0), _) | (_, Some(0)) => return bad("steps / epochs must be at least 1".into()),
            (Some(_), Some(_)) => return bad("set steps or epochs, not both".into()),
            (None, None) => return bad("set steps or epochs".into()),
            _ => {}
        }
        if !(self.effective_lr() > 0.0 && self.effective_lr().is_finite()) {
            return bad(format!(
                "the learning rate must be positive, got {}",
                self.effective_lr()
            ));
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return bad(format!(
                "warmup_fraction {} is not in [0, 1)",
                self.warmup_fraction
            ));
        }
        if self.checkpoint_every == 0 || self.log_every == 0 || self.keep_checkpoints == 0 {
            return bad(
                "checkpoint_every, log_every and keep_checkpoints must be at least 1".into(),
            );
        }
        if self.prefetch == 0 {
            return bad("prefetch must be at least 1".into());
        }
        Ok(())
    }
}

/// Everything that defines a run, as written to `RUN/config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Format version of this file.
    pub version: u32,
    /// The model, method, masking and target.
    pub model: CaeConfig,
    /// The optimisation.
    pub train: TrainConfig,
    /// The image folder trained on.
    pub data: String,
    /// The DALL-E tokenizer file (DALL-E targets only).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Devices, in order (`cpu`, `cuda:0`, …); data parallel over them when more than one.
    pub devices: Vec<String>,
    /// Processes of the job (MPI ranks), each on `devices`; data parallel over them when more
    /// than one. Absent from the file for one process.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub processes: usize,
    /// Derived quantities, recorded for the reader.
    pub derived: Derived,
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Quantities derived from the rest of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derived {
    /// Images per optimizer step.
    pub effective_batch: usize,
    /// The learning rate used at the peak of the schedule.
    pub lr: f64,
    /// How it was derived.
    pub lr_rule: String,
    /// Optimizer steps of the whole run.
    pub total_steps: u64,
    /// Warmup steps.
    pub warmup_steps: u64,
    /// Steps per pass over the data (`len / batch`, last partial batch dropped).
    pub steps_per_epoch: u64,
    /// Images in the training folder.
    pub images: usize,
}

impl RunConfig {
    /// TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises to TOML")
    }

    /// Parses and validates.
    pub fn from_toml(text: &str) -> Result<Self, PretrainError> {
        let cfg: Self = toml::from_str(text).map_err(|e| PretrainError::Config(e.to_string()))?;
        cfg.model.validate()?;
        cfg.train.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_scaling_and_validation() {
        let mut t = TrainConfig::for_preset("vit_base_patch16");
        t.epochs = Some(300);
        t.validate().unwrap();
        assert!((t.effective_lr() - 1.5e-3).abs() < 1e-12);
        assert!(t.scaling_rule().contains("blr × batch / 256"));
        t.lr = Some(1e-3);
        assert_eq!(t.effective_lr(), 1e-3);
        t.steps = Some(10);
        assert!(t.validate().is_err());
        let mut m = TrainConfig::for_preset("mini");
        m.steps = Some(5);
        m.accum_steps = 3;
        assert!(m.validate().unwrap_err().to_string().contains("divisible"));
    }
}
