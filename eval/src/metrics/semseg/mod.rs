//! Semantic-segmentation metrics with mmsegmentation's `IoUMetric` semantics.
//!
//! Per image, on the pixels whose label is not the ignore index (255), mmseg counts the
//! intersection `I_c` (pixels predicted `c` and labelled `c`), the predicted area `P_c` and the
//! label area `L_c`; a prediction outside `0..C` is counted in no `P_c` (`torch.histc` drops
//! it). Here a prediction equal to the ignore index (or, in the raw ADE encoding, 0) is such a
//! "no class" pixel, and any other value outside the classes is an error, in labels too. These
//! **areas are summed over the whole dataset** and only then divided:
//!
//! * `aAcc = ΣI / ΣL`, `IoU_c = I_c / (P_c + L_c − I_c)`, `Acc_c = I_c / L_c`;
//! * `mIoU = nanmean(IoU)`, `mAcc = nanmean(Acc)`: a class whose union (IoU) or label area
//!   (Acc) is zero is NaN and left out of the mean.
//!
//! [`SegConfusion`] is the streaming accumulator (a `C × (C+1)` confusion matrix: label class
//! by predicted class, plus a column for "no class predicted"), fed label maps one at a time or
//! from several threads and merged. [`evaluate_folders`] evaluates two folders of PNG label
//! maps in the raw ADE20K encoding in parallel; [`LabelEncoding::ReduceZeroLabel`] is mmseg's
//! `reduce_zero_label` (0 → ignored, `v` → `v − 1`).
//!
//! Values are fractions here; mmseg prints them ×100 (and `ade-eval --json` reports percent).

mod folder;
mod png;

use std::fmt;
use std::path::PathBuf;

pub use folder::{FolderEval, FolderEvalConfig, evaluate_folders};

use super::numeric;

/// mmseg's ignore index.
pub const IGNORE_INDEX: u8 = 255;

/// Which map a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// The ground-truth label map.
    Label,
    /// The prediction.
    Prediction,
}

impl fmt::Display for MapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapKind::Label => "label",
            MapKind::Prediction => "prediction",
        })
    }
}

/// How the values stored in a label map (and a prediction) are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelEncoding {
    /// Values are class indices `0..C`; the ignore index marks unlabelled pixels (in a
    /// prediction: no class). What mmseg's metric sees after loading.
    Direct,
    /// The raw ADE20K encoding with mmseg's `reduce_zero_label`: 0 ("other") is ignored, `1..=C`
    /// are classes `0..C`, and 255 is ignored. In a prediction, 0 and 255 count as no class.
    ReduceZeroLabel,
}

impl LabelEncoding {
    /// A human description of the values allowed under this encoding.
    fn allowed(self, num_classes: usize, ignore_index: u8) -> String {
        match self {
            LabelEncoding::Direct => format!(
                "values must be classes 0..={} or the ignore index {ignore_index}",
                num_classes - 1
            ),
            LabelEncoding::ReduceZeroLabel => format!(
                "values must be classes 1..={num_classes}, 0 (other) or {ignore_index} (ignore)"
            ),
        }
    }
}

/// Why a metric computation failed.
#[derive(Debug, thiserror::Error)]
pub enum SemsegError {
    /// Settings that cannot work (no classes, more than 255, an ignore index that is a class).
    #[error("invalid segmentation metric settings: {0}")]
    Config(String),
    /// Prediction and label of different lengths.
    #[error("the prediction has {pred} pixels but the label has {label}")]
    LengthMismatch { pred: usize, label: usize },
    /// A value that is neither a class nor ignored.
    #[error(
        "{}{which} value {value} is out of range ({allowed}): {count} pixel(s){}",
        file.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default(),
        first_at.map(|(x, y)| format!(", the first at x={x}, y={y}")).unwrap_or_default()
    )]
    InvalidValue {
        /// The file it was read from, if any.
        file: Option<PathBuf>,
        /// Label or prediction.
        which: MapKind,
        /// The offending value.
        value: i64,
        /// How many pixels have it.
        count: u64,
        /// The first such pixel (column, row), when the map's width is known.
        first_at: Option<(usize, usize)>,
        /// What would have been allowed.
        allowed: String,
    },
    /// Accumulators with different settings cannot be merged.
    #[error(
        "cannot merge accumulators with {a_classes} and {b_classes} classes (ignore {a_ignore} / {b_ignore})"
    )]
    MergeMismatch {
        a_classes: usize,
        b_classes: usize,
        a_ignore: u8,
        b_ignore: u8,
    },
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The ground-truth folder has no PNG files.
    #[error("{} has no .png label maps", dir.display())]
    NoLabelMaps { dir: PathBuf },
    /// Ground-truth files without a prediction of the same name.
    #[error(
        "{} lacks {total} prediction(s) for ground-truth files in {}: {}",
        pred_dir.display(), gt_dir.display(), list_names(names, *total)
    )]
    MissingPredictions {
        gt_dir: PathBuf,
        pred_dir: PathBuf,
        names: Vec<String>,
        total: usize,
    },
    /// Files in the prediction folder without a ground truth of the same name.
    #[error(
        "{} has {total} file(s) with no ground truth of the same name in {}: {}",
        pred_dir.display(), gt_dir.display(), list_names(names, *total)
    )]
    ExtraPredictions {
        gt_dir: PathBuf,
        pred_dir: PathBuf,
        names: Vec<String>,
        total: usize,
    },
    /// A file that is not a PNG the evaluator can read.
    #[error("{}: cannot decode PNG: {message}", path.display())]
    Decode { path: PathBuf, message: String },
    /// A PNG that does not hold one 8-bit (or 16-bit) value per pixel.
    #[error(
        "{}: unsupported PNG pixel format {format}; label maps must be 8-bit grayscale, 16-bit grayscale or palette images",
        path.display()
    )]
    UnsupportedFormat { path: PathBuf, format: String },
    /// A prediction whose size differs from its ground truth's.
    #[error(
        "{}: the prediction is {}x{} (w x h) but its ground truth {} is {}x{}",
        pred.display(), pred_size.0, pred_size.1, gt.display(), gt_size.0, gt_size.1
    )]
    SizeMismatch {
        gt: PathBuf,
        pred: PathBuf,
        gt_size: (u32, u32),
        pred_size: (u32, u32),
    },
}

/// At most 10 names, and how many more there are.
fn list_names(names: &[String], total: usize) -> String {
    let mut s = names.join(", ");
    if total > names.len() {
        s.push_str(&format!(", … ({} more)", total - names.len()));
    }
    s
}

/// A prediction value type [`SegConfusion::update`] accepts: any integer type (argmax indices
/// from a tensor). Values that do not fit `u8` are out of range for every class count.
pub trait PredValue: Copy + Send + Sync {
    /// The value as `u8`, or `None` if it does not fit.
    fn to_u8(self) -> Option<u8>;
    /// The value, for error messages.
    fn to_i64(self) -> i64;
    /// The slice itself when `Self` is `u8` (no copy on the common path).
    fn as_bytes(values: &[Self]) -> Option<&[u8]> {
        let _ = values;
        None
    }
}

impl PredValue for u8 {
    #[inline]
    fn to_u8(self) -> Option<u8> {
        Some(self)
    }
    #[inline]
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
    fn as_bytes(values: &[u8]) -> Option<&[u8]> {
        Some(values)
    }
}

macro_rules! pred_value {
    ($($t:ty),*) => {$(
        impl PredValue for $t {
            #[inline]
            fn to_u8(self) -> Option<u8> {
                u8::try_from(self).ok()
            }
            #[inline]
            fn to_i64(self) -> i64 {
                i64::try_from(self).unwrap_or(i64::MAX)
            }
        }
    )*};
}
pred_value!(u16, u32, u64, usize, i8, i16, i32, i64);

/// What a stored value means for the accumulator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A class index `0..C`.
    Class(u8),
    /// Ignored (label) / no class (prediction).
    Skip,
    /// Out of range: an error.
    Invalid,
}

/// The per-value meaning of labels and predictions under one encoding.
struct ValueMap {
    label: [Slot; 256],
    pred: [Slot; 256],
}

impl ValueMap {
    fn new(encoding: LabelEncoding, num_classes: usize, ignore_index: u8) -> Self {
        let mut label = [Slot::Invalid; 256];
        let mut pred = [Slot::Invalid; 256];
        for v in 0..256usize {
            let slot = match encoding {
                LabelEncoding::Direct if v < num_classes => Slot::Class(v as u8),
                LabelEncoding::Direct if v == usize::from(ignore_index) => Slot::Skip,
                LabelEncoding::ReduceZeroLabel if (1..=num_classes).contains(&v) => {
                    Slot::Class((v - 1) as u8)
                }
                LabelEncoding::ReduceZeroLabel if v == 0 || v == usize::from(ignore_index) => {
                    Slot::Skip
                }
                _ => Slot::Invalid,
            };
            label[v] = slot;
            pred[v] = slot;
        }
        Self { label, pred }
    }
}

/// Joint histogram of (label value, prediction value) over raw `u8` values: `256 × 256` bins,
/// index `label << 8 | pred`. One increment per pixel, no branches; validation and the mapping
/// to classes happen once per image on the histogram.
pub(crate) struct JointHist {
    bins: Box<[u32; 65536]>,
}

impl JointHist {
    pub(crate) fn new() -> Self {
        Self {
            bins: vec![0u32; 65536]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("65536 bins")),
        }
    }

    /// Counts `pred.len()` pixels (the caller checks the lengths match). At most `u32::MAX`
    /// pixels between two [`SegConfusion::absorb`] calls.
    #[inline]
    pub(crate) fn count(&mut self, pred: &[u8], label: &[u8]) {
        let bins = &mut *self.bins;
        for (&p, &l) in pred.iter().zip(label) {
            bins[(usize::from(l) << 8) | usize::from(p)] += 1;
        }
    }
}

/// Largest slice counted into one [`JointHist`] before it is folded (keeps `u32` bins safe).
const MAX_PIXELS_PER_FOLD: usize = 1 << 30;

/// Streaming accumulator of mmseg's areas: a `C × (C+1)` confusion matrix of label class
/// (rows) by predicted class (columns), the last column counting pixels with no predicted class.
/// Pixels whose label is ignored are not counted.
#[derive(Clone, Debug, PartialEq)]
pub struct SegConfusion {
    num_classes: usize,
    ignore_index: u8,
    /// Row-major `C × (C+1)`.
    matrix: Vec<u64>,
}

impl SegConfusion {
    /// An empty accumulator for `num_classes` classes (1..=255) and an ignore index that is not
    /// a class (mmseg: 255).
    pub fn new(num_classes: usize, ignore_index: u8) -> Result<Self, SemsegError> {
        if num_classes == 0 || num_classes > 255 {
            return Err(SemsegError::Config(format!(
                "num_classes must be in 1..=255 (label maps hold u8 values), got {num_classes}"
            )));
        }
        if usize::from(ignore_index) < num_classes {
            return Err(SemsegError::Config(format!(
                "the ignore index {ignore_index} is one of the {num_classes} classes"
            )));
        }
        Ok(Self {
            num_classes,
            ignore_index,
            matrix: vec![0; num_classes * (num_classes + 1)],
        })
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The ignore index.
    pub fn ignore_index(&self) -> u8 {
        self.ignore_index
    }

    /// Pixels labelled `label` and predicted `pred` (`pred == C`: no class predicted).
    pub fn count(&self, label: usize, pred: usize) -> u64 {
        assert!(label < self.num_classes && pred <= self.num_classes);
        self.matrix[label * (self.num_classes + 1) + pred]
    }

    /// Adds one map (any length, e.g. `H·W` row-major): labels are class indices `0..C` or the
    /// ignore index (after `reduce_zero_label`), predictions class indices `0..C` (the ignore
    /// index counts as no prediction). On error nothing is added.
    pub fn update<P: PredValue>(&mut self, pred: &[P], label: &[u8]) -> Result<(), SemsegError> {
        self.update_encoded(pred, label, LabelEncoding::Direct)
    }

    /// Like [`Self::update`], with both maps in the given encoding (e.g. raw ADE20K values with
    /// [`LabelEncoding::ReduceZeroLabel`]).
    pub fn update_encoded<P: PredValue>(
        &mut self,
        pred: &[P],
        label: &[u8],
        encoding: LabelEncoding,
    ) -> Result<(), SemsegError> {
        if pred.len() != label.len() {
            return Err(SemsegError::LengthMismatch {
                pred: pred.len(),
                label: label.len(),
            });
        }
        let map = ValueMap::new(encoding, self.num_classes, self.ignore_index);
        let mut hist = JointHist::new();
        // A map longer than one fold is added in steps; stage them so that an error in a later
        // step leaves `self` unchanged. One fold validates before it adds anything.
        let mut staged = (pred.len() > MAX_PIXELS_PER_FOLD).then(|| self.clone());
        let mut narrow = Vec::new();
        for (p_chunk, l_chunk) in pred
            .chunks(MAX_PIXELS_PER_FOLD)
            .zip(label.chunks(MAX_PIXELS_PER_FOLD))
        {
            let p_u8: &[u8] = match P::as_bytes(p_chunk) {
                Some(s) => s,
                None => {
                    narrow.clear();
                    narrow.reserve(p_chunk.len());
                    for &v in p_chunk {
                        match v.to_u8() {
                            Some(b) => narrow.push(b),
                            None => {
                                return Err(SemsegError::InvalidValue {
                                    file: None,
                                    which: MapKind::Prediction,
                                    value: v.to_i64(),
                                    count: p_chunk.iter().filter(|x| x.to_u8().is_none()).count()
                                        as u64,
                                    first_at: None,
                                    allowed: encoding.allowed(self.num_classes, self.ignore_index),
                                });
                            }
                        }
                    }
                    &narrow
                }
            };
            hist.count(p_u8, l_chunk);
            staged
                .as_mut()
                .unwrap_or(self)
                .absorb(&mut hist, &map, encoding)?;
        }
        if let Some(staged) = staged {
            *self = staged;
        }
        Ok(())
    }

    /// Folds a joint histogram into the matrix and zeroes it. Validates first: on error the
    /// matrix is unchanged (the histogram is zeroed either way).
    fn absorb(
        &mut self,
        hist: &mut JointHist,
        map: &ValueMap,
        encoding: LabelEncoding,
    ) -> Result<(), SemsegError> {
        let bins = &mut *hist.bins;
        let mut row_total = [0u64; 256];
        let mut col_total = [0u64; 256];
        for (l, row) in bins.chunks_exact(256).enumerate() {
            let mut sum = 0u64;
            for (p, &n) in row.iter().enumerate() {
                sum += u64::from(n);
                col_total[p] += u64::from(n);
            }
            row_total[l] = sum;
        }
        let invalid = |totals: &[u64; 256], slots: &[Slot; 256], which| {
            (0..256).find_map(|v| {
                (totals[v] > 0 && slots[v] == Slot::Invalid).then(|| SemsegError::InvalidValue {
                    file: None,
                    which,
                    value: v as i64,
                    count: totals[v],
                    first_at: None,
                    allowed: encoding.allowed(self.num_classes, self.ignore_index),
                })
            })
        };
        let err = invalid(&row_total, &map.label, MapKind::Label)
            .or_else(|| invalid(&col_total, &map.pred, MapKind::Prediction));
        if let Some(err) = err {
            bins.fill(0);
            return Err(err);
        }
        let stride = self.num_classes + 1;
        for l in 0..256 {
            if row_total[l] == 0 {
                continue;
            }
            let row = &mut bins[l * 256..(l + 1) * 256];
            if let Slot::Class(lc) = map.label[l] {
                let out = &mut self.matrix[usize::from(lc) * stride..][..stride];
                for (p, &n) in row.iter().enumerate() {
                    if n == 0 {
                        continue;
                    }
                    let col = match map.pred[p] {
                        Slot::Class(pc) => usize::from(pc),
                        _ => self.num_classes,
                    };
                    out[col] += u64::from(n);
                }
            }
            row.fill(0);
        }
        Ok(())
    }

    /// Adds another accumulator's counts (e.g. from another thread).
    pub fn merge(&mut self, other: &SegConfusion) -> Result<(), SemsegError> {
        if self.num_classes != other.num_classes || self.ignore_index != other.ignore_index {
            return Err(SemsegError::MergeMismatch {
                a_classes: self.num_classes,
                b_classes: other.num_classes,
                a_ignore: self.ignore_index,
                b_ignore: other.ignore_index,
            });
        }
        for (a, b) in self.matrix.iter_mut().zip(&other.matrix) {
            *a += b;
        }
        Ok(())
    }

    /// The dataset-level areas per class: `(intersect, union, pred, label)`.
    pub fn areas(&self) -> SegAreas {
        let c = self.num_classes;
        let stride = c + 1;
        let mut areas = SegAreas {
            intersect: vec![0; c],
            union: vec![0; c],
            pred: vec![0; c],
            label: vec![0; c],
        };
        for l in 0..c {
            let row = &self.matrix[l * stride..(l + 1) * stride];
            areas.label[l] = row.iter().sum();
            areas.intersect[l] = row[l];
            for (p, &n) in row[..c].iter().enumerate() {
                areas.pred[p] += n;
            }
        }
        for k in 0..c {
            areas.union[k] = areas.pred[k] + areas.label[k] - areas.intersect[k];
        }
        areas
    }

    /// The metrics over everything added so far.
    pub fn compute(&self) -> SegMetrics {
        let areas = self.areas();
        let ratio = |num: u64, den: u64| {
            if den == 0 {
                f64::NAN
            } else {
                num as f64 / den as f64
            }
        };
        let iou: Vec<f64> = (0..self.num_classes)
            .map(|k| ratio(areas.intersect[k], areas.union[k]))
            .collect();
        let acc: Vec<f64> = (0..self.num_classes)
            .map(|k| ratio(areas.intersect[k], areas.label[k]))
            .collect();
        let a_acc = ratio(
            areas.intersect.iter().sum::<u64>(),
            areas.label.iter().sum::<u64>(),
        );
        SegMetrics {
            a_acc,
            m_iou: numeric::nanmean(&iou),
            m_acc: numeric::nanmean(&acc),
            iou,
            acc,
            areas,
        }
    }
}

/// Per-class pixel areas summed over a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegAreas {
    /// Pixels predicted `c` and labelled `c`.
    pub intersect: Vec<u64>,
    /// `pred + label − intersect`.
    pub union: Vec<u64>,
    /// Pixels predicted `c` (among non-ignored labels).
    pub pred: Vec<u64>,
    /// Pixels labelled `c`.
    pub label: Vec<u64>,
}

/// mmseg's `IoUMetric` numbers, as fractions (mmseg reports them ×100).
#[derive(Clone, Debug)]
pub struct SegMetrics {
    /// Overall pixel accuracy `ΣI / ΣL` (NaN with no labelled pixel).
    pub a_acc: f64,
    /// Mean IoU over the classes whose IoU is defined.
    pub m_iou: f64,
    /// Mean accuracy over the classes whose accuracy is defined.
    pub m_acc: f64,
    /// Per-class IoU; NaN where the union is 0.
    pub iou: Vec<f64>,
    /// Per-class accuracy; NaN where the label area is 0.
    pub acc: Vec<f64>,
    /// The areas they come from.
    pub areas: SegAreas,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mmseg's `intersect_and_union` + `total_area_to_metrics`, restated naively per pixel.
    fn reference(preds: &[Vec<u8>], labels: &[Vec<u8>], c: usize) -> (Vec<f64>, Vec<f64>, f64) {
        let mut i = vec![0u64; c];
        let mut p = vec![0u64; c];
        let mut l = vec![0u64; c];
        for (pred, label) in preds.iter().zip(labels) {
            for (&pv, &lv) in pred.iter().zip(label) {
                if lv == 255 {
                    continue;
                }
                let (pv, lv) = (usize::from(pv), usize::from(lv));
                if pv < c {
                    p[pv] += 1;
                }
                l[lv] += 1;
                if pv == lv {
                    i[lv] += 1;
                }
            }
        }
        let iou = (0..c)
            .map(|k| i[k] as f64 / (p[k] + l[k] - i[k]) as f64)
            .collect();
        let acc = (0..c).map(|k| i[k] as f64 / l[k] as f64).collect();
        let a_acc = i.iter().sum::<u64>() as f64 / l.iter().sum::<u64>() as f64;
        (iou, acc, a_acc)
    }

    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b
    }

    #[test]
    fn matches_a_naive_restatement() {
        // 3 classes; class 2 never labelled (Acc NaN) but predicted (IoU 0).
        let labels = vec![vec![0u8, 0, 1, 1, 255, 255], vec![1u8, 1, 0, 255]];
        let preds = vec![vec![0u8, 1, 1, 1, 2, 0], vec![2u8, 1, 0, 2]];
        let mut conf = SegConfusion::new(3, 255).unwrap();
        for (p, l) in preds.iter().zip(&labels) {
            conf.update(p, l).unwrap();
        }
        let m = conf.compute();
        let (iou, acc, a_acc) = reference(&preds, &labels, 3);
        for k in 0..3 {
            assert!(
                same(m.iou[k], iou[k]),
                "IoU {k}: {} vs {}",
                m.iou[k],
                iou[k]
            );
            assert!(same(m.acc[k], acc[k]));
        }
        assert_eq!(m.a_acc, a_acc);
        assert!(m.acc[2].is_nan());
        assert_eq!(m.iou[2], 0.0);
        // Areas: intersect 0: 2 (img1 px0, img2 px2), label 0: 3.
        assert_eq!(m.areas.intersect, vec![2, 3, 0]);
        assert_eq!(m.areas.label, vec![3, 4, 0]);
        // mIoU over all three (IoU 2 is 0, not NaN), mAcc over the first two.
        assert_eq!(m.m_acc, (2.0 / 3.0 + 3.0 / 4.0) / 2.0);
        assert_eq!(m.m_iou, (iou[0] + iou[1] + iou[2]) / 3.0);
    }

    #[test]
    fn dataset_level_not_per_image_mean() {
        // Image 1: class 0 perfect on 1 pixel; image 2: class 0 IoU 1/3 on many pixels.
        let mut conf = SegConfusion::new(2, 255).unwrap();
        conf.update(&[0u8], &[0]).unwrap();
        conf.update(&[0u8, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 1, 1])
            .unwrap();
        let m = conf.compute();
        // Σ: I0 = 3, P0 = 4, L0 = 3 → IoU0 = 3/4 (a per-image mean would give (1 + 2/3) / 2).
        assert_eq!(m.iou[0], 3.0 / 4.0);
    }

    #[test]
    fn reduce_zero_label_matches_mmseg() {
        // Raw ADE values: 0 other, 1..=3 classes, 255 ignored; a 0 in the prediction is no class.
        let label = [0u8, 1, 2, 3, 255, 3];
        let pred = [1u8, 1, 0, 3, 2, 2];
        let mut raw = SegConfusion::new(3, 255).unwrap();
        raw.update_encoded(&pred, &label, LabelEncoding::ReduceZeroLabel)
            .unwrap();
        // The same after reducing by hand: seg[seg==0]=255; seg-=1; seg[seg==254]=255.
        let reduce = |v: u8| if v == 0 || v == 255 { 255 } else { v - 1 };
        let l2: Vec<u8> = label.iter().map(|&v| reduce(v)).collect();
        let p2: Vec<u8> = pred.iter().map(|&v| reduce(v)).collect();
        let mut direct = SegConfusion::new(3, 255).unwrap();
        direct.update(&p2, &l2).unwrap();
        assert_eq!(raw, direct);
        // The label-2 pixel predicted 0 is a miss with no predicted class.
        assert_eq!(raw.count(1, 3), 1);
        assert_eq!(raw.areas().label, vec![1, 1, 2]);
    }

    #[test]
    fn wide_prediction_types_and_merge() {
        let label = [0u8, 1, 1, 2];
        let mut a = SegConfusion::new(3, 255).unwrap();
        a.update(&[0i64, 1, 2, 2], &label).unwrap();
        let mut b = SegConfusion::new(3, 255).unwrap();
        b.update(&[0u16, 1, 2, 2], &label).unwrap();
        assert_eq!(a, b);
        let mut c = SegConfusion::new(3, 255).unwrap();
        c.update(&[0u8, 1, 2, 2], &label).unwrap();
        assert_eq!(a, c);
        a.merge(&b).unwrap();
        assert_eq!(a.areas().intersect, vec![2, 2, 2]);
        assert!(a.merge(&SegConfusion::new(4, 255).unwrap()).is_err());
    }

    #[test]
    fn out_of_range_values_are_errors_and_change_nothing() {
        let mut conf = SegConfusion::new(3, 255).unwrap();
        conf.update(&[0u8], &[0]).unwrap();
        let before = conf.clone();
        match conf.update(&[0u8, 1], &[0, 7]) {
            Err(SemsegError::InvalidValue {
                which: MapKind::Label,
                value: 7,
                count: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // An invalid prediction is an error even where the label is ignored.
        match conf.update(&[0u8, 9, 9], &[0, 255, 1]) {
            Err(SemsegError::InvalidValue {
                which: MapKind::Prediction,
                value: 9,
                count: 2,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match conf.update(&[0i32, 300], &[0, 1]) {
            Err(SemsegError::InvalidValue {
                which: MapKind::Prediction,
                value: 300,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            conf.update(&[0u8], &[0, 1]),
            Err(SemsegError::LengthMismatch { pred: 1, label: 2 })
        ));
        assert_eq!(conf, before);
        // The ignore index in a prediction counts as no class.
        conf.update(&[255u8], &[1]).unwrap();
        assert_eq!(conf.count(1, 3), 1);
        assert!(conf.compute().iou[1] == 0.0);
    }

    #[test]
    fn settings_are_checked() {
        assert!(SegConfusion::new(0, 255).is_err());
        assert!(SegConfusion::new(256, 255).is_err());
        assert!(SegConfusion::new(151, 150).is_err());
        assert!(SegConfusion::new(150, 150).is_ok());
    }

    #[test]
    fn empty_accumulator_is_all_nan() {
        let m = SegConfusion::new(2, 255).unwrap().compute();
        assert!(m.a_acc.is_nan() && m.m_iou.is_nan() && m.m_acc.is_nan());
    }
}
