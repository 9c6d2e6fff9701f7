//! ADE20K as published: `ADEChallengeData2016/images/{training,validation}/*.jpg` with
//! `annotations/{training,validation}/*.png` (8-bit, 0 = other, 1..=150 = classes).
//!
//! Images and annotations are paired by file stem; a missing partner, a label map of another
//! size than its image, or a value above the class count that is not 255 is a typed error
//! naming the file. [`reduce_zero_label`] is mmseg's `LoadAnnotations(reduce_zero_label=True)`:
//! 0 → 255 (ignored), `v` → `v − 1`. The 150 class names are [`crate::ADE20K_CLASSES`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{DatasetError, Result};
use crate::imagefolder::read_dir_sorted;
use crate::io::{LabelMap, is_image_file, load_label_map, load_rgb};
pub use crate::transforms::seg::{SegSample, SegTestSample, SegTestTransform, SegTrainTransform};

/// The two published splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdeSplit {
    /// `training` (20,210 images).
    Training,
    /// `validation` (2,000 images).
    Validation,
}

impl AdeSplit {
    /// The folder name.
    pub fn name(self) -> &'static str {
        match self {
            AdeSplit::Training => "training",
            AdeSplit::Validation => "validation",
        }
    }
}

/// An image and its annotation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdePair {
    /// `images/<split>/<stem>.jpg`.
    pub image: PathBuf,
    /// `annotations/<split>/<stem>.png`.
    pub annotation: PathBuf,
}

/// One split of an ADE20K-format dataset.
#[derive(Debug, Clone)]
pub struct AdeDataset {
    /// The `ADEChallengeData2016` folder.
    pub root: PathBuf,
    /// The split.
    pub split: AdeSplit,
    /// Pairs sorted by stem.
    pub samples: Vec<AdePair>,
    /// Largest class value allowed in annotations (150 for ADE20K).
    pub num_classes: u8,
    /// Apply [`reduce_zero_label`] in [`AdeDataset::load`] (mmseg's ADE20K default: true).
    pub reduce_zero_label: bool,
}

impl AdeDataset {
    /// Opens a split. `root` is the `ADEChallengeData2016` folder or the folder containing it.
    pub fn open(root: impl AsRef<Path>, split: AdeSplit) -> Result<Self> {
        let given = root.as_ref();
        let root = if given.join("images").is_dir() {
            given.to_path_buf()
        } else if given.join("ADEChallengeData2016/images").is_dir() {
            given.join("ADEChallengeData2016")
        } else {
            return Err(DatasetError::NotFound {
                path: given.join("images"),
                what: "ADE20K images folder (ADEChallengeData2016/images)".into(),
            });
        };
        let img_dir = root.join("images").join(split.name());
        let ann_dir = root.join("annotations").join(split.name());
        for (d, what) in [
            (&img_dir, "ADE20K image split folder"),
            (&ann_dir, "ADE20K annotation split folder"),
        ] {
            if !d.is_dir() {
                return Err(DatasetError::NotFound {
                    path: d.clone(),
                    what: what.into(),
                });
            }
        }
        let mut samples = Vec::new();
        let mut stems = HashSet::new();
        for image in read_dir_sorted(&img_dir)? {
            if !image.is_file() || !is_image_file(&image) {
                continue;
            }
            let stem = stem(&image);
            let annotation = ann_dir.join(format!("{stem}.png"));
            if !annotation.is_file() {
                return Err(DatasetError::MissingAnnotation {
                    image,
                    expected: annotation,
                });
            }
            stems.insert(stem);
            samples.push(AdePair { image, annotation });
        }
        if samples.is_empty() {
            return Err(DatasetError::EmptyFolder { path: img_dir });
        }
        for ann in read_dir_sorted(&ann_dir)? {
            let is_png = ann
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("png"));
            if ann.is_file() && is_png && !stems.contains(&stem(&ann)) {
                return Err(DatasetError::OrphanAnnotation {
                    stem: stem(&ann),
                    annotation: ann,
                    image_dir: img_dir,
                });
            }
        }
        Ok(AdeDataset {
            root,
            split,
            samples,
            num_classes: 150,
            reduce_zero_label: true,
        })
    }

    /// Sets the class count (for datasets in ADE format with fewer classes, e.g. the synthetic
    /// world).
    pub fn with_num_classes(mut self, num_classes: u8) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the split is empty (never true for an opened split).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Decodes pair `index` with raw label values (0 = other), checked.
    pub fn load_raw(&self, index: usize) -> Result<(RgbImage, LabelMap)> {
        let pair = self.samples.get(index).ok_or_else(|| {
            DatasetError::InvalidConfig(format!(
                "sample index {index} out of range ({} samples)",
                self.samples.len()
            ))
        })?;
        let img = load_rgb(&pair.image)?;
        let label = load_label_map(&pair.annotation)?;
        if img.dimensions() != (label.width, label.height) {
            return Err(DatasetError::SizeMismatch {
                annotation: pair.annotation.clone(),
                image: pair.image.clone(),
                label_width: label.width,
                label_height: label.height,
                image_width: img.width(),
                image_height: img.height(),
            });
        }
        check_label_values(&pair.annotation, &label, self.num_classes)?;
        Ok((img, label))
    }

    /// Decodes pair `index`, with [`reduce_zero_label`] applied if enabled.
    pub fn load(&self, index: usize) -> Result<(RgbImage, LabelMap)> {
        let (img, mut label) = self.load_raw(index)?;
        if self.reduce_zero_label {
            reduce_zero_label(&mut label.data);
        }
        Ok((img, label))
    }
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks that every value is in `0..=num_classes` or is 255.
pub fn check_label_values(path: &Path, label: &LabelMap, num_classes: u8) -> Result<()> {
    if let Some(i) = label.data.iter().position(|&v| v > num_classes && v != 255) {
        let w = label.width.max(1) as usize;
        return Err(DatasetError::LabelValue {
            path: path.to_path_buf(),
            value: label.data[i],
            x: (i % w) as u32,
            y: (i / w) as u32,
            num_classes,
        });
    }
    Ok(())
}

/// mmseg's `reduce_zero_label`: `0 → 255`, `v → v − 1`, and 255 stays 255.
pub fn reduce_zero_label(labels: &mut [u8]) {
    for v in labels {
        *v = match *v {
            0 | 255 => 255,
            x => x - 1,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{save_label_png, save_rgb_png};

    #[test]
    fn reduce_zero_label_matches_mmseg() {
        let mut v = vec![0, 1, 2, 150, 255];
        reduce_zero_label(&mut v);
        assert_eq!(v, vec![255, 0, 1, 149, 255]);
    }

    #[test]
    fn pairs_by_stem_and_checks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ADEChallengeData2016");
        for (i, stem) in ["b", "a"].iter().enumerate() {
            save_rgb_png(
                &root.join(format!("images/training/{stem}.png")),
                &RgbImage::new(3, 2),
            )
            .unwrap();
            let map = LabelMap {
                width: 3,
                height: 2,
                data: vec![0, 1, 2, 3, 255, i as u8],
            };
            save_label_png(&root.join(format!("annotations/training/{stem}.png")), &map).unwrap();
        }
        let ds = AdeDataset::open(d.path(), AdeSplit::Training).unwrap();
        assert_eq!(ds.len(), 2);
        assert!(ds.samples[0].image.ends_with("a.png"));
        let (_, raw) = ds.load_raw(0).unwrap();
        assert_eq!(raw.data, vec![0, 1, 2, 3, 255, 1]);
        let (_, red) = ds.load(0).unwrap();
        assert_eq!(red.data, vec![255, 0, 1, 2, 255, 0]);
        let small = ds.clone().with_num_classes(2);
        assert!(matches!(
            small.load(0),
            Err(DatasetError::LabelValue {
                value: 3,
                x: 0,
                y: 1,
                ..
            })
        ));
        assert!(matches!(
            AdeDataset::open(d.path(), AdeSplit::Validation),
            Err(DatasetError::NotFound { .. })
        ));
    }
}
