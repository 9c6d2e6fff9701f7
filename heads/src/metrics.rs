//! The loss and the accuracy of the classification protocols.
//!
//! Top-k follows `cae_bench::metrics::classification` (which this crate cannot depend on: it sits
//! downstream): a sample is correct at `k` when fewer than `k` classes rank above its true class,
//! ties broken by class index, lowest first. `eval/tests` checks the two agree.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

/// Mean cross-entropy of `logits: [B, C]` against `labels`, with label smoothing `ε`
/// (timm's `LabelSmoothingCrossEntropy`: `(1 − ε)·NLL + ε·mean_c(−log p_c)`).
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize], smoothing: f64) -> Tensor<1> {
    let device = logits.device();
    let ids: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [labels.len(), 1]), &device);
    let logp = log_softmax(logits, 1); // [B, C]
    let nll = logp.clone().gather(1, ids).mean().neg();
    if smoothing > 0.0 {
        let smooth = logp.mean().neg();
        nll.mul_scalar(1.0 - smoothing) + smooth.mul_scalar(smoothing)
    } else {
        nll
    }
}

/// Running top-1 / top-5 counts, and which samples were right at top-1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopK {
    /// Samples with the true class first.
    pub top1: u64,
    /// Samples with the true class among the first five.
    pub top5: u64,
    /// Samples seen.
    pub total: u64,
    /// Top-1 correctness of every sample, in the order seen (what a paired comparison of two
    /// encoders on the same images needs).
    pub correct: Vec<bool>,
}

impl TopK {
    /// Adds `scores` (`[N, C]` row-major) against `labels`.
    pub fn update(&mut self, scores: &[f32], classes: usize, labels: &[usize]) {
        for (row, &label) in scores.chunks_exact(classes).zip(labels) {
            let t = row[label];
            let rank = row
                .iter()
                .enumerate()
                .filter(|&(j, &s)| s > t || (s == t && j < label))
                .count();
            self.top1 += u64::from(rank < 1);
            self.top5 += u64::from(rank < 5);
            self.total += 1;
            self.correct.push(rank < 1);
        }
    }

    /// Top-1 in percent.
    pub fn top1_pct(&self) -> f64 {
        100.0 * self.top1 as f64 / self.total.max(1) as f64
    }

    /// Top-5 in percent.
    pub fn top5_pct(&self) -> f64 {
        100.0 * self.top5 as f64 / self.total.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::to_vec;
    use burn::tensor::Device;

    #[test]
    fn smoothed_cross_entropy_by_hand() {
        let dev = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0], [1, 3]), &dev);
        let lse = (1.0f64 + 1f64.exp() + 2f64.exp()).ln();
        let logp = [-lse, 1.0 - lse, 2.0 - lse];
        let plain = to_vec(cross_entropy(logits.clone(), &[0], 0.0)).unwrap()[0] as f64;
        assert!((plain + logp[0]).abs() < 1e-6);
        let s = to_vec(cross_entropy(logits, &[0], 0.1)).unwrap()[0] as f64;
        let want = 0.9 * -logp[0] + 0.1 * -(logp.iter().sum::<f64>() / 3.0);
        assert!((s - want).abs() < 1e-6);
    }

    #[test]
    fn topk_ranks_with_ties_by_index() {
        let mut t = TopK::default();
        // Row 0: class 2 best → correct. Row 1: tie between 0 and 1, label 1 → rank 1.
        t.update(&[0.1, 0.2, 0.9, 0.5, 0.5, 0.0], 3, &[2, 1]);
        assert_eq!((t.top1, t.top5, t.total), (1, 2, 2));
        assert_eq!(t.top1_pct(), 50.0);
    }
}
