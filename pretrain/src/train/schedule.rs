//! The learning-rate schedule of the official code (`utils.cosine_scheduler`, cae.md §4): per step,
//! linear warmup from 0 to `base` over `warmup` steps, then a half cosine from `base` to `min`.

/// Warmup + cosine schedule over `total` steps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CosineSchedule {
    /// Peak learning rate.
    pub base: f64,
    /// Final learning rate.
    pub min: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// Total steps.
    pub total: u64,
}

impl CosineSchedule {
    /// The learning rate at `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup {
            // np.linspace(0, base, warmup)[step]
            if self.warmup <= 1 {
                return 0.0;
            }
            return self.base * step as f64 / (self.warmup - 1) as f64;
        }
        let decay_steps = self.total.saturating_sub(self.warmup);
        if decay_steps == 0 {
            return self.base;
        }
        let i = (step - self.warmup).min(decay_steps) as f64;
        self.min
            + 0.5
                * (self.base - self.min)
                * (1.0 + (std::f64::consts::PI * i / decay_steps as f64).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = CosineSchedule {
            base: 1.0,
            min: 0.1,
            warmup: 5,
            total: 15,
        };
        assert_eq!(s.at(0), 0.0);
        assert_eq!(s.at(4), 1.0);
        assert!((s.at(5) - 1.0).abs() < 1e-12);
        assert!((s.at(10) - 0.55).abs() < 1e-12);
        assert!(s.at(14) > 0.1 && s.at(14) < 0.15);
        assert!((s.at(15) - 0.1).abs() < 1e-12);
    }
}
