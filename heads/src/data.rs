//! The classification data of a probe: `DIR/train` and `DIR/val` ImageFolder splits with the same
//! classes, and the fixed, seeded label subsets of low-label protocols.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cae_datasets::ImageFolder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{HeadsError, Result};

/// The two splits of a probe dataset.
#[derive(Debug, Clone)]
pub struct Splits {
    /// The dataset folder (holding `train/` and `val/`).
    pub root: PathBuf,
    /// Training split.
    pub train: Arc<ImageFolder>,
    /// Evaluation split.
    pub val: Arc<ImageFolder>,
}

impl Splits {
    /// Opens `root/train` and `root/val` and checks that they have the same classes.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(HeadsError::data(root, "no such data folder"));
        }
        let split = |name: &str| -> Result<Arc<ImageFolder>> {
            let dir = root.join(name);
            if !dir.is_dir() {
                return Err(HeadsError::data(
                    root,
                    format!(
                        "no `{name}/` split; a probe dataset holds `train/` and `val/`, \
                         each with one folder of images per class"
                    ),
                ));
            }
            Ok(Arc::new(ImageFolder::open(&dir)?))
        };
        let train = split("train")?;
        let val = split("val")?;
        if train.classes != val.classes {
            let only_train: Vec<&str> = train
                .classes
                .iter()
                .filter(|c| !val.classes.contains(c))
                .map(String::as_str)
                .collect();
            let only_val: Vec<&str> = val
                .classes
                .iter()
                .filter(|c| !train.classes.contains(c))
                .map(String::as_str)
                .collect();
            return Err(HeadsError::data(
                root,
                format!(
                    "`train/` and `val/` have different classes (only in train: [{}]; only in val: [{}])",
                    only_train.join(", "),
                    only_val.join(", ")
                ),
            ));
        }
        if train.num_classes() < 2 {
            return Err(HeadsError::data(
                root,
                "a classification probe needs at least 2 classes",
            ));
        }
        Ok(Self {
            root: root.to_path_buf(),
            train,
            val,
        })
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.train.num_classes()
    }
}

/// A fixed, stratified label subset: for each class, `max(1, round(fraction · n_c))` of its
/// samples, drawn without replacement from a ChaCha8 stream seeded by `seed` (independent of the
/// run seed, so every run of a low-label protocol sees the same images). Returns sorted indices
/// into `labels`.
pub fn label_subset(labels: &[usize], fraction: f64, seed: u64) -> Vec<usize> {
    if fraction >= 1.0 {
        return (0..labels.len()).collect();
    }
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1abe_15ab_5e75);
    let mut chosen = Vec::new();
    for c in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        if members.is_empty() {
            continue;
        }
        let keep = ((fraction * members.len() as f64).round() as usize).clamp(1, members.len());
        // Partial Fisher–Yates: the first `keep` slots are a uniform draw.
        for i in 0..keep {
            let j = rng.random_range(i..members.len());
            members.swap(i, j);
        }
        chosen.extend_from_slice(&members[..keep]);
    }
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_stratified_fixed_and_nested_in_size() {
        let labels: Vec<usize> = (0..100).map(|i| i % 4).collect();
        let a = label_subset(&labels, 0.1, 0);
        let b = label_subset(&labels, 0.1, 0);
        assert_eq!(a, b);
        assert_eq!(a.len(), 12); // round(2.5) = 3 per class
        for c in 0..4 {
            assert_eq!(a.iter().filter(|&&i| labels[i] == c).count(), 3);
        }
        assert_ne!(a, label_subset(&labels, 0.1, 1));
        // Every class keeps at least one sample.
        assert_eq!(label_subset(&labels, 0.001, 0).len(), 4);
        assert_eq!(label_subset(&labels, 1.0, 0).len(), 100);
    }

    fn write_split(root: &Path, split: &str, classes: &[&str]) {
        for c in classes {
            let dir = root.join(split).join(c);
            std::fs::create_dir_all(&dir).unwrap();
            image::RgbImage::new(4, 4).save(dir.join("a.png")).unwrap();
        }
    }

    #[test]
    fn bad_layouts_name_the_folder_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let err = Splits::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no `train/` split"), "{err}");
        write_split(dir.path(), "train", &["cat", "dog"]);
        let err = Splits::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no `val/` split"), "{err}");
        write_split(dir.path(), "val", &["cat", "eel"]);
        let err = Splits::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("only in train: [dog]") && err.contains("only in val: [eel]"),
            "{err}"
        );
        write_split(dir.path(), "val", &["dog"]);
        std::fs::remove_dir_all(dir.path().join("val/eel")).unwrap();
        let s = Splits::open(dir.path()).unwrap();
        assert_eq!(s.num_classes(), 2);
    }
}
