//! Top-k classification accuracy.
//!
//! A sample is correct at `k` when its true class is among the `k` highest scores. Ties are
//! broken by class index, lowest first (what `argmax` does), so the result is deterministic:
//! the true class `t` ranks `#{j : s_j > s_t} + #{j < t : s_j = s_t}`, and the sample is
//! correct at `k` when that rank is below `k`. `k` larger than the number of classes counts
//! every sample as correct. Scores may be logits or probabilities (any monotone transform
//! gives the same ranks); NaN scores are an error.

/// Why an accuracy could not be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClassificationError {
    /// `k = 0` or no `k` at all.
    #[error("top-k needs k ≥ 1, got {0:?}")]
    InvalidK(Vec<usize>),
    /// No classes.
    #[error("the number of classes must be at least 1")]
    NoClasses,
    /// `scores.len()` is not `labels.len() × num_classes`.
    #[error("{scores} scores for {labels} labels is not {num_classes} scores per label")]
    ShapeMismatch {
        scores: usize,
        labels: usize,
        num_classes: usize,
    },
    /// A label that is not a class.
    #[error("sample {sample}: label {label} is not a class index in 0..{num_classes}")]
    LabelOutOfRange {
        sample: usize,
        label: i64,
        num_classes: usize,
    },
    /// A NaN score.
    #[error("sample {sample}: score of class {class} is NaN")]
    NanScore { sample: usize, class: usize },
    /// Accumulators for different `k`s cannot be merged.
    #[error("cannot merge top-k accumulators for {0:?} and {1:?}")]
    MergeMismatch(Vec<usize>, Vec<usize>),
}

/// A score type: `f32` or `f64` (compared exactly, as `f64`).
pub trait Score: Copy + Send + Sync {
    /// The score as `f64`.
    fn to_f64(self) -> f64;
}

impl Score for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Score for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}

/// A class-label type: any integer type.
pub trait Label: Copy + Send + Sync {
    /// The label as an index, or `None` if negative or too large.
    fn to_index(self) -> Option<usize>;
    /// The label, for error messages.
    fn to_i64(self) -> i64;
}

macro_rules! label {
    ($($t:ty),*) => {$(
        impl Label for $t {
            fn to_index(self) -> Option<usize> {
                usize::try_from(self).ok()
            }
            fn to_i64(self) -> i64 {
                i64::try_from(self).unwrap_or(i64::MAX)
            }
        }
    )*};
}
label!(u8, u16, u32, u64, usize, i32, i64);

/// The rank of the true class among one sample's scores (0 = best), ties by class index.
fn rank_of_label<S: Score>(
    row: &[S],
    label: usize,
    sample: usize,
) -> Result<usize, ClassificationError> {
    let target = row[label].to_f64();
    let mut rank = 0;
    for (j, s) in row.iter().enumerate() {
        let s = s.to_f64();
        if s.is_nan() {
            return Err(ClassificationError::NanScore { sample, class: j });
        }
        if s > target || (s == target && j < label) {
            rank += 1;
        }
    }
    Ok(rank)
}

/// Streaming top-k accuracy for several `k` at once (e.g. `[1, 5]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopKAccuracy {
    ks: Vec<usize>,
    correct: Vec<u64>,
    total: u64,
}

impl TopKAccuracy {
    /// An empty accumulator for the given `k`s.
    pub fn new(ks: &[usize]) -> Result<Self, ClassificationError> {
        if ks.is_empty() || ks.contains(&0) {
            return Err(ClassificationError::InvalidK(ks.to_vec()));
        }
        Ok(Self {
            ks: ks.to_vec(),
            correct: vec![0; ks.len()],
            total: 0,
        })
    }

    /// Top-1 and top-5.
    pub fn top1_top5() -> Self {
        Self {
            ks: vec![1, 5],
            correct: vec![0; 2],
            total: 0,
        }
    }

    /// Adds a batch: `scores` is `[N, num_classes]` row-major, `labels` has `N` entries. On
    /// error nothing is added.
    pub fn update<S: Score, L: Label>(
        &mut self,
        scores: &[S],
        num_classes: usize,
        labels: &[L],
    ) -> Result<(), ClassificationError> {
        if num_classes == 0 {
            return Err(ClassificationError::NoClasses);
        }
        if scores.len() != labels.len() * num_classes {
            return Err(ClassificationError::ShapeMismatch {
                scores: scores.len(),
                labels: labels.len(),
                num_classes,
            });
        }
        let mut correct = vec![0u64; self.ks.len()];
        for (sample, (row, &label)) in scores.chunks_exact(num_classes).zip(labels).enumerate() {
            let index = label.to_index().filter(|&l| l < num_classes).ok_or(
                ClassificationError::LabelOutOfRange {
                    sample,
                    label: label.to_i64(),
                    num_classes,
                },
            )?;
            let rank = rank_of_label(row, index, sample)?;
            for (c, &k) in correct.iter_mut().zip(&self.ks) {
                *c += u64::from(rank < k);
            }
        }
        for (a, c) in self.correct.iter_mut().zip(correct) {
            *a += c;
        }
        self.total += labels.len() as u64;
        Ok(())
    }

    /// Adds another accumulator's counts.
    pub fn merge(&mut self, other: &TopKAccuracy) -> Result<(), ClassificationError> {
        if self.ks != other.ks {
            return Err(ClassificationError::MergeMismatch(
                self.ks.clone(),
                other.ks.clone(),
            ));
        }
        for (a, b) in self.correct.iter_mut().zip(&other.correct) {
            *a += b;
        }
        self.total += other.total;
        Ok(())
    }

    /// How many samples were added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many samples were correct at `k`, if `k` is tracked.
    pub fn correct(&self, k: usize) -> Option<u64> {
        self.ks
            .iter()
            .position(|&x| x == k)
            .map(|i| self.correct[i])
    }

    /// Accuracy at `k` as a fraction; `None` if `k` is not tracked or nothing was added.
    pub fn accuracy(&self, k: usize) -> Option<f64> {
        let c = self.correct(k)?;
        (self.total > 0).then(|| c as f64 / self.total as f64)
    }

    /// `(k, accuracy)` for every tracked `k` (NaN when nothing was added).
    pub fn results(&self) -> Vec<(usize, f64)> {
        self.ks
            .iter()
            .map(|&k| (k, self.accuracy(k).unwrap_or(f64::NAN)))
            .collect()
    }
}

/// Top-k accuracy of one batch, as fractions in the order of `ks`.
pub fn topk_accuracy<S: Score, L: Label>(
    scores: &[S],
    num_classes: usize,
    labels: &[L],
    ks: &[usize],
) -> Result<Vec<f64>, ClassificationError> {
    let mut acc = TopKAccuracy::new(ks)?;
    acc.update(scores, num_classes, labels)?;
    Ok(acc.results().into_iter().map(|(_, a)| a).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_and_top5_count_ranks() {
        // 6 classes, 3 samples: true class ranked 0, 2 and 5.
        let scores: [f32; 18] = [
            9.0, 1.0, 2.0, 3.0, 4.0, 5.0, // label 0: best
            1.0, 9.0, 8.0, 7.0, 0.0, 0.0, // label 3: third
            1.0, 2.0, 3.0, 4.0, 5.0, 0.5, // label 5: last
        ];
        let labels = [0u32, 3, 5];
        let acc = topk_accuracy(&scores, 6, &labels, &[1, 3, 5, 6]).unwrap();
        assert_eq!(acc, vec![1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 1.0]);
    }

    #[test]
    fn ties_go_to_the_lower_class_index() {
        let scores = [1.0f64, 1.0, 1.0];
        assert_eq!(topk_accuracy(&scores, 3, &[0i64], &[1]).unwrap(), vec![1.0]);
        assert_eq!(topk_accuracy(&scores, 3, &[1i64], &[1]).unwrap(), vec![0.0]);
        assert_eq!(topk_accuracy(&scores, 3, &[1i64], &[2]).unwrap(), vec![1.0]);
        assert_eq!(topk_accuracy(&scores, 3, &[2i64], &[2]).unwrap(), vec![0.0]);
    }

    #[test]
    fn streaming_and_merging_equal_one_batch() {
        let scores: Vec<f32> = (0..40).map(|i| ((i * 7) % 11) as f32).collect();
        let labels: Vec<usize> = (0..10).map(|i| i % 4).collect();
        let mut whole = TopKAccuracy::top1_top5();
        whole.update(&scores, 4, &labels).unwrap();
        let mut a = TopKAccuracy::new(&[1, 5]).unwrap();
        let mut b = TopKAccuracy::new(&[1, 5]).unwrap();
        a.update(&scores[..24], 4, &labels[..6]).unwrap();
        b.update(&scores[24..], 4, &labels[6..]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a, whole);
        assert_eq!(a.total(), 10);
        assert_eq!(a.accuracy(5), Some(1.0));
        assert!(a.merge(&TopKAccuracy::new(&[1]).unwrap()).is_err());
    }

    #[test]
    fn bad_input_is_refused_and_adds_nothing() {
        let mut acc = TopKAccuracy::top1_top5();
        assert_eq!(
            acc.update(&[0.0f32; 5], 3, &[0u8, 1]),
            Err(ClassificationError::ShapeMismatch {
                scores: 5,
                labels: 2,
                num_classes: 3
            })
        );
        assert_eq!(
            acc.update(&[0.0f32; 6], 3, &[0i32, 3]),
            Err(ClassificationError::LabelOutOfRange {
                sample: 1,
                label: 3,
                num_classes: 3
            })
        );
        assert_eq!(
            acc.update(&[0.0f32; 6], 3, &[0i32, -1]),
            Err(ClassificationError::LabelOutOfRange {
                sample: 1,
                label: -1,
                num_classes: 3
            })
        );
        assert_eq!(
            acc.update(&[0.0, 1.0, f32::NAN], 3, &[0u8]),
            Err(ClassificationError::NanScore {
                sample: 0,
                class: 2
            })
        );
        assert_eq!(acc.total(), 0);
        assert_eq!(acc.accuracy(1), None);
        assert!(TopKAccuracy::new(&[0]).is_err());
    }
}
