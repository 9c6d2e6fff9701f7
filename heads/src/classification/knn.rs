//! Weighted k-nearest-neighbour classification (DINO `eval_knn.py::knn_classifier`, as
//! solo-learn and lightly run it): features are L2-normalised, the `k` training features with
//! the highest cosine similarity vote for their class with weight `exp(sim / T)`, and the classes
//! are ranked by their summed votes (k = 20, T = 0.07).
//!
//! Neighbours with equal similarity are taken in training-index order, and classes with equal
//! votes rank by class index, so the result does not depend on threads.

use burn::tensor::{Device, Tensor, TensorData};

use crate::classification::features::FeatureSet;
use crate::error::{HeadsError, Result, to_vec};
use crate::metrics::TopK;

/// Settings of the kNN classifier.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KnnConfig {
    /// Neighbours (20).
    pub k: usize,
    /// Temperature of the vote weights (0.07).
    pub temperature: f64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: 20,
            temperature: 0.07,
        }
    }
}

/// L2-normalises each `dim`-wide row in place (`F.normalize`, eps 1e-12).
pub fn l2_normalize(values: &mut [f32], dim: usize) {
    for row in values.chunks_exact_mut(dim) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= n);
    }
}

/// The class votes of each query: `[queries, classes]` row-major.
pub fn knn_votes(
    train: &FeatureSet,
    queries: &FeatureSet,
    classes: usize,
    cfg: &KnnConfig,
    device: &Device,
) -> Result<Vec<f32>> {
    if cfg.k == 0 || cfg.temperature.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(HeadsError::Config(format!(
            "kNN needs k ≥ 1 and a positive temperature, got k = {}, T = {}",
            cfg.k, cfg.temperature
        )));
    }
    let dim = train.row_len();
    let n = train.len();
    let k = cfg.k.min(n);
    let mut bank = train.values.clone();
    l2_normalize(&mut bank, dim);
    let bank_t = Tensor::<2>::from_data(TensorData::new(bank, [n, dim]), device).transpose();
    let mut q = queries.values.clone();
    l2_normalize(&mut q, dim);
    let mut votes = Vec::with_capacity(queries.len() * classes);
    let chunk = 256;
    for rows in q.chunks(chunk * dim) {
        let m = rows.len() / dim;
        let qt = Tensor::<2>::from_data(TensorData::new(rows.to_vec(), [m, dim]), device);
        let sim = to_vec(qt.matmul(bank_t.clone()))?; // [m, n]
        for row in sim.chunks_exact(n) {
            let mut idx: Vec<usize> = (0..n).collect();
            let by = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
            if k < n {
                idx.select_nth_unstable_by(k - 1, by);
                idx.truncate(k);
            }
            idx.sort_unstable_by(by);
            let mut v = vec![0.0f32; classes];
            for &j in &idx {
                v[train.labels[j]] += ((row[j] as f64) / cfg.temperature).exp() as f32;
            }
            votes.extend(v);
        }
    }
    Ok(votes)
}

/// Top-1 / top-5 of the kNN classifier on `val`.
pub fn knn_accuracy(
    train: &FeatureSet,
    val: &FeatureSet,
    classes: usize,
    cfg: &KnnConfig,
    device: &Device,
) -> Result<TopK> {
    let votes = knn_votes(train, val, classes, cfg, device)?;
    let mut acc = TopK::default();
    acc.update(&votes, classes, &val.labels);
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rows: &[[f32; 2]], labels: &[usize]) -> FeatureSet {
        FeatureSet {
            values: rows.iter().flatten().copied().collect(),
            labels: labels.to_vec(),
            shape: [1, 2],
        }
    }

    #[test]
    fn votes_are_exp_similarity_over_t_of_the_k_nearest() {
        let dev = Device::flex();
        // Three training points at angles 0°, 90°, 180° (classes 0, 1, 1).
        let train = set(&[[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], &[0, 1, 1]);
        let q = set(&[[1.0, 1.0]], &[0]);
        let cfg = KnnConfig {
            k: 2,
            temperature: 0.5,
        };
        let v = knn_votes(&train, &q, 2, &cfg, &dev).unwrap();
        let s = std::f64::consts::FRAC_1_SQRT_2;
        // The two nearest are 0° and 90° (cos 0.707 each); 180° is left out.
        assert!((v[0] as f64 - (s / 0.5).exp()).abs() < 1e-4, "{v:?}");
        assert!((v[1] as f64 - (s / 0.5).exp()).abs() < 1e-4, "{v:?}");
        // A tie in votes ranks the lower class first: label 0 is top-1.
        let acc = knn_accuracy(&train, &q, 2, &cfg, &dev).unwrap();
        assert_eq!(acc.top1, 1);
        // k larger than the bank uses every point.
        let all = knn_votes(
            &train,
            &q,
            2,
            &KnnConfig {
                k: 50,
                temperature: 0.5,
            },
            &dev,
        )
        .unwrap();
        assert!((all[1] as f64 - (s / 0.5).exp() - (-s / 0.5).exp()).abs() < 1e-4);
        assert!(
            knn_votes(
                &train,
                &q,
                2,
                &KnnConfig {
                    k: 0,
                    temperature: 1.0
                },
                &dev
            )
            .is_err()
        );
    }
}
