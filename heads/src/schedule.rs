//! Learning-rate schedules of the protocols.
//!
//! * [`MaeSchedule`]: MAE's `util/lr_sched.adjust_learning_rate`, evaluated per iteration at the
//!   fractional epoch `epoch + step / steps_per_epoch`: linear warmup from 0, then a half cosine
//!   to `min_lr` (linear probing).
//! * [`CosineSchedule`] (from `cae_pretrain`): the BEiT/CAE `utils.cosine_scheduler` per step
//!   (`np.linspace` warmup from 0), used by the attentive probe and fine-tuning.

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

#[cfg(test)]
mod tests {
    use super::*;

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
