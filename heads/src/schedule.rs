//! Learning-rate schedules of the protocols.
//!
//! * [`MaeSchedule`]: MAE's `util/lr_sched.adjust_learning_rate`, evaluated per iteration at the
//!   fractional epoch `epoch + step / steps_per_epoch`: linear warmup from 0, then a half cosine
//!   to `min_lr` (linear probing).
//! * [`CosineSchedule`] (from `cae_pretrain`): the BEiT/CAE `utils.cosine_scheduler` per step
//!   (`np.linspace` warmup from 0), used by the attentive probe and fine-tuning.
//! * [`PolySchedule`]: mmcv 1.x's `PolyLrUpdaterHook` with linear warmup, per iteration, as the
//!   BEiT / CAE segmentation fine-tunes ran it (mmseg 0.x `lr_config = dict(policy='poly',
//!   warmup='linear', warmup_iters=1500, warmup_ratio=1e-6, power=1.0, min_lr=0.0)`).

pub use cae_pretrain::train::schedule::CosineSchedule;

/// MAE's half-cycle cosine with linear warmup, in epochs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaeSchedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Warmup epochs.
    pub warmup_epochs: f64,
    /// Total epochs.
    pub epochs: f64,
}

impl MaeSchedule {
    /// The learning rate at fractional epoch `epoch`.
    pub fn at(&self, epoch: f64) -> f64 {
        if epoch < self.warmup_epochs {
            self.lr * epoch / self.warmup_epochs
        } else {
            let span = (self.epochs - self.warmup_epochs).max(f64::MIN_POSITIVE);
            self.min_lr
                + (self.lr - self.min_lr)
                    * 0.5
                    * (1.0 + (std::f64::consts::PI * (epoch - self.warmup_epochs) / span).cos())
        }
    }
}

/// mmcv's poly decay with linear warmup, in iterations (0-based: iteration `i` is the `i`-th
/// update):
///
/// * regular: `lr_i = (lr − min_lr)·(1 − i/total)^power + min_lr`;
/// * for `i < warmup`: `lr_i · (1 − (1 − i/warmup)·(1 − warmup_ratio))` (mmcv's `'linear'`
///   warmup scales the regular value, it does not ramp to the peak).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PolySchedule {
    /// Base learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Exponent (1.0).
    pub power: f64,
    /// Total iterations.
    pub total: u64,
    /// Warmup iterations (1500).
    pub warmup: u64,
    /// Starting fraction of the warmup (1e-6).
    pub warmup_ratio: f64,
}

impl PolySchedule {
    /// The learning rate of iteration `i`.
    pub fn at(&self, i: u64) -> f64 {
        let progress = (i as f64 / self.total.max(1) as f64).min(1.0);
        let regular = (self.lr - self.min_lr) * (1.0 - progress).powf(self.power) + self.min_lr;
        if i < self.warmup {
            let k = (1.0 - i as f64 / self.warmup as f64) * (1.0 - self.warmup_ratio);
            regular * (1.0 - k)
        } else {
            regular
        }
    }
}

/// mmcv's step decay with linear warmup, in iterations (mmdet's detection schedules):
/// `lr_i = lr · gamma^{#{s ∈ steps : s ≤ i}}`, scaled during warmup as [`PolySchedule`]
/// (`· (1 − (1 − i/warmup)·(1 − warmup_ratio))`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepSchedule {
    /// Base learning rate.
    pub lr: f64,
    /// Iterations at which the rate is multiplied by `gamma`.
    pub steps: Vec<u64>,
    /// Decay factor (0.1).
    pub gamma: f64,
    /// Warmup iterations (500).
    pub warmup: u64,
    /// Starting fraction of the warmup (0.001).
    pub warmup_ratio: f64,
}

impl StepSchedule {
    /// The learning rate of iteration `i`.
    pub fn at(&self, i: u64) -> f64 {
        let passed = self.steps.iter().filter(|&&s| s <= i).count();
        let regular = self.lr * self.gamma.powi(passed as i32);
        if i < self.warmup {
            let k = (1.0 - i as f64 / self.warmup as f64) * (1.0 - self.warmup_ratio);
            regular * (1.0 - k)
        } else {
            regular
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mmdet's 1x by hand: lr 0.02, warmup 500 from 0.001, ×0.1 at 60k and 80k.
    #[test]
    fn step_with_linear_warmup_by_hand() {
        let s = StepSchedule {
            lr: 0.02,
            steps: vec![60_000, 80_000],
            gamma: 0.1,
            warmup: 500,
            warmup_ratio: 0.001,
        };
        assert!((s.at(0) - 0.02 * 0.001).abs() < 1e-15);
        assert!((s.at(250) - 0.02 * (1.0 - 0.5 * 0.999)).abs() < 1e-15);
        assert!((s.at(500) - 0.02).abs() < 1e-15);
        assert!((s.at(59_999) - 0.02).abs() < 1e-15);
        assert!((s.at(60_000) - 0.002).abs() < 1e-15);
        assert!((s.at(80_000) - 0.0002).abs() < 1e-15);
    }

    /// mmcv by hand: lr 1e-4, 160k iterations, warmup 1500 from 1e-6.
    #[test]
    fn poly_with_linear_warmup_by_hand() {
        let s = PolySchedule {
            lr: 1e-4,
            min_lr: 0.0,
            power: 1.0,
            total: 160_000,
            warmup: 1500,
            warmup_ratio: 1e-6,
        };
        // i = 0: regular 1e-4, k = 1 − 1e-6 → 1e-4 · 1e-6.
        assert!((s.at(0) / 1e-10 - 1.0).abs() < 1e-9);
        // i = 750: regular 1e-4·(1 − 750/160000), k = 0.5·(1 − 1e-6).
        let want = 1e-4 * (1.0 - 750.0 / 160_000.0) * (1.0 - 0.5 * (1.0 - 1e-6));
        assert!((s.at(750) / want - 1.0).abs() < 1e-12);
        // After warmup: plain poly.
        assert!((s.at(1500) - 1e-4 * (1.0 - 1500.0 / 160_000.0)).abs() < 1e-18);
        assert!((s.at(80_000) - 0.5e-4).abs() < 1e-18);
        assert_eq!(s.at(160_000), 0.0);
    }

    #[test]
    fn mae_schedule_by_hand() {
        let s = MaeSchedule {
            lr: 6.4,
            min_lr: 0.0,
            warmup_epochs: 10.0,
            epochs: 90.0,
        };
        assert_eq!(s.at(0.0), 0.0);
        assert!((s.at(5.0) - 3.2).abs() < 1e-12);
        assert!((s.at(10.0) - 6.4).abs() < 1e-12);
        assert!((s.at(50.0) - 3.2).abs() < 1e-12);
        assert!(s.at(90.0).abs() < 1e-12);
    }
}
