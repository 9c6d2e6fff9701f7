//! COCO detection metrics (bbox and segm) with pycocotools' exact semantics.
//!
//! The evaluation itself is the `hotcoco` crate's `COCOeval`, a pure-Rust port of
//! `pycocotools.cocoeval` that gives the same numbers bit for bit. What this module adds:
//!
//! * **validation before evaluation**, with typed errors that name the file and the entry:
//!   pycocotools asserts (or crashes with a `KeyError`) on some bad inputs and silently scores
//!   others, and hotcoco only warns about some of them (a detection on an image that is not in
//!   the ground truth never matches and silently lowers AP);
//! * a result struct with the 12 named summary stats, per-category AP and the full
//!   precision / recall / score arrays, for plots and reports;
//! * the standard 12-line pycocotools summary, rendered from the result ([`summary_text`]).
//!
//! ```no_run
//! use cae_bench::metrics::coco::{self, IouType};
//! # fn main() -> Result<(), coco::CocoError> {
//! let gt = coco::CocoGt::from_file("instances_val2017.json".as_ref())?;
//! let dets = coco::Detections::from_file("detections.json".as_ref())?;
//! let result = coco::evaluate(&gt, dets, IouType::Bbox)?;
//! println!("{}", coco::summary_text(&result));
//! println!("AP = {}", result.stats.ap);
//! # Ok(())
//! # }
//! ```
//!
//! Rules beyond pycocotools (each is an error here where pycocotools would crash, assert, or
//! silently give a number nobody meant): ids are unique in the ground truth; every annotation
//! refers to an image and a category of the ground truth and has a finite `area` (pycocotools
//! reads it for the area ranges); a detection names an image *and a category* of the ground
//! truth, has a finite `score`, and the geometry its file's first detection has (pycocotools
//! takes the kind of the whole file from the first entry); boxes are finite with `w, h ≥ 0`;
//! an RLE decodes and has its image's `[height, width]`; segm results are compressed RLE, as
//! `loadRes` requires.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

pub use hotcoco::types::{Annotation, Category, Dataset, Image, Segmentation};

use super::numeric;

/// Which geometry the IoU is computed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum IouType {
    /// Box IoU (`[x, y, w, h]`, continuous coordinates).
    Bbox,
    /// Mask IoU on run-length encoded masks (polygons rasterised as pycocotools does).
    Segm,
}

impl IouType {
    /// `"bbox"` or `"segm"`, as pycocotools spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            IouType::Bbox => "bbox",
            IouType::Segm => "segm",
        }
    }
}

impl fmt::Display for IouType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<IouType> for hotcoco::IouType {
    fn from(t: IouType) -> Self {
        match t {
            IouType::Bbox => hotcoco::IouType::Bbox,
            IouType::Segm => hotcoco::IouType::Segm,
        }
    }
}

/// `" in FILE"` when the input came from a file.
struct InFile<'a>(&'a Option<PathBuf>);

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, " in {}", path.display()),
            None => Ok(()),
        }
    }
}

/// Which ground-truth record a problem is about.
#[derive(Clone, Debug, PartialEq)]
pub enum GtEntry {
    /// `images[index]`, with its id.
    Image { index: usize, id: u64 },
    /// `categories[index]`, with its id.
    Category { index: usize, id: u64 },
    /// `annotations[index]`, with its id and image id.
    Annotation {
        index: usize,
        id: u64,
        image_id: u64,
    },
}

impl fmt::Display for GtEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtEntry::Image { index, id } => write!(f, "images[{index}] (id {id})"),
            GtEntry::Category { index, id } => write!(f, "categories[{index}] (id {id})"),
            GtEntry::Annotation {
                index,
                id,
                image_id,
            } => write!(f, "annotations[{index}] (id {id}, image_id {image_id})"),
        }
    }
}

/// What is wrong with a ground-truth record or a detection.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// Another record of the same kind has this id.
    DuplicateId,
    /// The image id is not among the ground truth's images.
    UnknownImage,
    /// The category id is not among the ground truth's categories.
    UnknownCategory(u64),
    /// No `area` (pycocotools reads the ground-truth area for the area ranges).
    MissingArea,
    /// A NaN, infinite or negative `area`.
    InvalidArea(f64),
    /// No `bbox` where the evaluation (or the file's first detection) needs one.
    MissingBbox,
    /// A box with a non-finite value or a negative width or height.
    InvalidBbox([f64; 4]),
    /// No `segmentation` where the evaluation (or the file's first detection) needs one.
    MissingSegmentation,
    /// A segm result that is not a compressed RLE (`{"size": [h, w], "counts": "…"}`).
    NotCompressedRle,
    /// An RLE whose runs do not decode or overrun its size.
    InvalidRle(String),
    /// An RLE whose `size` is not its image's `[height, width]`.
    MaskSizeMismatch {
        /// The RLE's `[h, w]`.
        mask: [u32; 2],
        /// The image's `[height, width]`.
        image: [u32; 2],
    },
    /// A polygon needs its image's size to be rasterised, and the image has none.
    MissingImageSize,
    /// No `score`.
    MissingScore,
    /// A NaN or infinite score.
    InvalidScore(f64),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::DuplicateId => f.write_str("its id is used by an earlier record"),
            Problem::UnknownImage => f.write_str("its image_id is not in the ground truth"),
            Problem::UnknownCategory(id) => {
                write!(
                    f,
                    "category_id {id} is not in the ground truth's categories"
                )
            }
            Problem::MissingArea => f.write_str("it has no `area`"),
            Problem::InvalidArea(a) => write!(f, "its area {a} is not a finite value ≥ 0"),
            Problem::MissingBbox => f.write_str("it has no `bbox`"),
            Problem::InvalidBbox(b) => write!(
                f,
                "its bbox {b:?} is not [x, y, w, h] with finite values and w, h ≥ 0"
            ),
            Problem::MissingSegmentation => f.write_str("it has no `segmentation`"),
            Problem::NotCompressedRle => f.write_str(
                "segm results must be compressed RLE ({\"size\": [h, w], \"counts\": \"…\"}), \
                 as pycocotools' loadRes requires",
            ),
            Problem::InvalidRle(why) => write!(f, "its RLE does not decode: {why}"),
            Problem::MaskSizeMismatch { mask, image } => write!(
                f,
                "its mask size [h, w] = {mask:?} differs from its image's size {image:?}"
            ),
            Problem::MissingImageSize => {
                f.write_str("its polygon needs the image's height and width, which are missing")
            }
            Problem::MissingScore => f.write_str("it has no `score`"),
            Problem::InvalidScore(s) => write!(f, "its score {s} is not finite"),
        }
    }
}

/// Why an evaluation could not run. Every variant names the file (when the input came from
/// one) and the entry.
#[derive(Debug, thiserror::Error)]
pub enum CocoError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("{} is not valid COCO JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The detections file is JSON, but not a list of detections.
    #[error("{}: {what}", path.display())]
    Shape { path: PathBuf, what: String },
    /// A ground-truth record is unusable.
    #[error("ground truth{}: {entry}: {problem}", InFile(file))]
    GroundTruth {
        file: Option<PathBuf>,
        entry: GtEntry,
        problem: Problem,
    },
    /// A detection is unusable. `index` is its 0-based position in the list.
    #[error(
        "detections{}: detection #{index} (image_id {image_id}, category_id {category_id}): {problem}",
        InFile(file)
    )]
    Detection {
        file: Option<PathBuf>,
        index: usize,
        image_id: u64,
        category_id: u64,
        problem: Problem,
    },
    /// hotcoco refused the inputs or the evaluation (should not happen after validation).
    #[error("COCO evaluation failed: {0}")]
    Eval(#[from] hotcoco::Error),
}

/// A validated COCO ground truth, shared between evaluations (bbox and segm on the same file
/// load it once).
#[derive(Clone)]
pub struct CocoGt {
    coco: Arc<hotcoco::COCO>,
    source: Option<PathBuf>,
}

impl fmt::Debug for CocoGt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CocoGt")
            .field("source", &self.source)
            .field("images", &self.coco.dataset.images.len())
            .field("annotations", &self.coco.dataset.annotations.len())
            .field("categories", &self.coco.dataset.categories.len())
            .finish()
    }
}

impl CocoGt {
    /// Reads and validates a COCO instances file.
    pub fn from_file(path: &Path) -> Result<Self, CocoError> {
        // Read it ourselves first: a missing file and malformed JSON get our messages (with the
        // path), and hotcoco's streaming reader is only handed files that parse.
        let bytes = std::fs::read(path).map_err(|source| CocoError::Io {
            path: path.to_owned(),
            source,
        })?;
        let dataset: Dataset =
            serde_json::from_slice(&bytes).map_err(|source| CocoError::Json {
                path: path.to_owned(),
                source,
            })?;
        drop(bytes);
        Self::build(dataset, Some(path.to_owned()))
    }

    /// Validates an in-memory ground truth.
    pub fn from_dataset(dataset: Dataset) -> Result<Self, CocoError> {
        Self::build(dataset, None)
    }

    fn build(dataset: Dataset, source: Option<PathBuf>) -> Result<Self, CocoError> {
        validate_gt(&dataset).map_err(|(entry, problem)| CocoError::GroundTruth {
            file: source.clone(),
            entry,
            problem,
        })?;
        Ok(Self {
            coco: Arc::new(hotcoco::COCO::from_dataset(dataset)),
            source,
        })
    }

    /// The ground-truth records.
    pub fn dataset(&self) -> &Dataset {
        &self.coco.dataset
    }

    /// The file it was read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    fn gt_error(&self, entry: GtEntry, problem: Problem) -> CocoError {
        CocoError::GroundTruth {
            file: self.source.clone(),
            entry,
            problem,
        }
    }

    /// The checks that depend on the IoU type: every annotation has the geometry it is
    /// evaluated on (pycocotools raises a `KeyError` otherwise).
    fn check_for(&self, iou_type: IouType) -> Result<(), CocoError> {
        let coco = &self.coco;
        let bad = coco
            .dataset
            .annotations
            .par_iter()
            .enumerate()
            .find_map_first(|(index, ann)| {
                let problem = match iou_type {
                    IouType::Bbox => ann.bbox.is_none().then_some(Problem::MissingBbox),
                    IouType::Segm => match &ann.segmentation {
                        None => Some(Problem::MissingSegmentation),
                        Some(Segmentation::Polygon(_) | Segmentation::Rect(_)) => coco
                            .get_img(ann.image_id)
                            .filter(|img| img.height == 0 || img.width == 0)
                            .map(|_| Problem::MissingImageSize),
                        Some(_) => None,
                    },
                };
                problem.map(|p| (index, ann, p))
            });
        match bad {
            Some((index, ann, problem)) => Err(self.gt_error(
                GtEntry::Annotation {
                    index,
                    id: ann.id,
                    image_id: ann.image_id,
                },
                problem,
            )),
            None => Ok(()),
        }
    }
}

/// Detections (results) to evaluate: a list of `{image_id, category_id, score, bbox |
/// segmentation}` records, as `COCO.loadRes` takes them.
#[derive(Clone, Debug, Default)]
pub struct Detections {
    annotations: Vec<Annotation>,
    source: Option<PathBuf>,
}

impl Detections {
    /// In-memory detections.
    pub fn new(annotations: Vec<Annotation>) -> Self {
        Self {
            annotations,
            source: None,
        }
    }

    /// Reads a results file: a JSON array of detections (what pycocotools' `loadRes` accepts).
    pub fn from_file(path: &Path) -> Result<Self, CocoError> {
        let bytes = std::fs::read(path).map_err(|source| CocoError::Io {
            path: path.to_owned(),
            source,
        })?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first != Some(b'[') {
            // Malformed JSON is reported as such; well-formed JSON of the wrong shape here.
            if let Err(source) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                return Err(CocoError::Json {
                    path: path.to_owned(),
                    source,
                });
            }
            return Err(CocoError::Shape {
                path: path.to_owned(),
                what: "expected a JSON array of detections ([{\"image_id\": …, \"category_id\": \
                       …, \"score\": …, \"bbox\" | \"segmentation\": …}, …])"
                    .into(),
            });
        }
        // One serial serde pass (~0.3 s for 500,000 boxes): cutting the file into pieces parsed
        // in parallel measured no faster on 2 busy cores once the pieces are joined again.
        let annotations: Vec<Annotation> =
            serde_json::from_slice(&bytes).map_err(|source| CocoError::Json {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            annotations,
            source: Some(path.to_owned()),
        })
    }

    /// The detection records.
    pub fn annotations(&self) -> &[Annotation] {
        &self.annotations
    }

    /// How many detections there are.
    pub fn len(&self) -> usize {
        self.annotations.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.annotations.is_empty()
    }
}

impl From<Vec<Annotation>> for Detections {
    fn from(annotations: Vec<Annotation>) -> Self {
        Self::new(annotations)
    }
}

/// The 12 standard COCO summary numbers (`COCOeval.stats`), as fractions. A value of `-1`
/// means what it means in pycocotools: nothing to average (no ground truth in that slice).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CocoStats {
    /// AP @ IoU 0.50:0.95, all areas, 100 detections.
    #[serde(rename = "AP")]
    pub ap: f64,
    /// AP @ IoU 0.50.
    #[serde(rename = "AP50")]
    pub ap50: f64,
    /// AP @ IoU 0.75.
    #[serde(rename = "AP75")]
    pub ap75: f64,
    /// AP for small objects (area ≤ 32²).
    #[serde(rename = "APs")]
    pub ap_small: f64,
    /// AP for medium objects (32² ≤ area ≤ 96²).
    #[serde(rename = "APm")]
    pub ap_medium: f64,
    /// AP for large objects (area ≥ 96²).
    #[serde(rename = "APl")]
    pub ap_large: f64,
    /// AR with 1 detection per image.
    #[serde(rename = "AR1")]
    pub ar1: f64,
    /// AR with 10 detections per image.
    #[serde(rename = "AR10")]
    pub ar10: f64,
    /// AR with 100 detections per image.
    #[serde(rename = "AR100")]
    pub ar100: f64,
    /// AR for small objects.
    #[serde(rename = "ARs")]
    pub ar_small: f64,
    /// AR for medium objects.
    #[serde(rename = "ARm")]
    pub ar_medium: f64,
    /// AR for large objects.
    #[serde(rename = "ARl")]
    pub ar_large: f64,
}

impl CocoStats {
    /// The stats' names in pycocotools' order (the keys of `--json`).
    pub const NAMES: [&'static str; 12] = [
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    ];

    /// The stats in pycocotools' order (`COCOeval.stats`).
    pub fn to_array(&self) -> [f64; 12] {
        [
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ar1,
            self.ar10,
            self.ar100,
            self.ar_small,
            self.ar_medium,
            self.ar_large,
        ]
    }

    /// From `COCOeval.stats` order.
    pub fn from_array(s: [f64; 12]) -> Self {
        Self {
            ap: s[0],
            ap50: s[1],
            ap75: s[2],
            ap_small: s[3],
            ap_medium: s[4],
            ap_large: s[5],
            ar1: s[6],
            ar10: s[7],
            ar100: s[8],
            ar_small: s[9],
            ar_medium: s[10],
            ar_large: s[11],
        }
    }

    /// A stat by its name in [`Self::NAMES`].
    pub fn get(&self, name: &str) -> Option<f64> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| self.to_array()[i])
    }
}

/// AP of one category: the mean of its interpolated precision over the 10 IoU thresholds and
/// 101 recall points, area "all", 100 detections (what detectron2 and mmdet report per class).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CategoryAp {
    /// The category id.
    pub id: u64,
    /// The category name from the ground truth.
    pub name: String,
    /// `None` when the category has no (non-crowd) ground truth, where pycocotools has -1.
    #[serde(rename = "AP")]
    pub ap: Option<f64>,
}

/// `COCOeval.eval` after `accumulate()`: `precision[T, R, K, A, M]`, `scores[T, R, K, A, M]`
/// and `recall[T, K, A, M]`, with the parameter values along each axis. Cells with nothing to
/// measure hold -1, as in pycocotools.
#[derive(Clone, Debug)]
pub struct PrecisionRecall {
    /// T axis: the IoU thresholds 0.50, 0.55, …, 0.95.
    pub iou_thresholds: Vec<f64>,
    /// R axis: the recall points 0.00, 0.01, …, 1.00.
    pub recall_thresholds: Vec<f64>,
    /// K axis: the category ids, ascending.
    pub category_ids: Vec<u64>,
    /// A axis: `all`, `small`, `medium`, `large` with their `[min, max]` areas.
    pub area_ranges: Vec<(String, [f64; 2])>,
    /// M axis: 1, 10, 100.
    pub max_dets: Vec<usize>,
    precision: Vec<f64>,
    recall: Vec<f64>,
    scores: Vec<f64>,
}

impl PrecisionRecall {
    /// `[T, R, K, A, M]`.
    pub fn shape(&self) -> [usize; 5] {
        [
            self.iou_thresholds.len(),
            self.recall_thresholds.len(),
            self.category_ids.len(),
            self.area_ranges.len(),
            self.max_dets.len(),
        ]
    }

    fn p_idx(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> usize {
        let [nt, nr, nk, na, nm] = self.shape();
        assert!(
            t < nt && r < nr && k < nk && a < na && m < nm,
            "index out of range"
        );
        (((t * nr + r) * nk + k) * na + a) * nm + m
    }

    fn r_idx(&self, t: usize, k: usize, a: usize, m: usize) -> usize {
        let [nt, _, nk, na, nm] = self.shape();
        assert!(t < nt && k < nk && a < na && m < nm, "index out of range");
        ((t * nk + k) * na + a) * nm + m
    }

    /// Interpolated precision at IoU threshold `t`, recall point `r`, category `k`, area `a`
    /// and max-dets `m` (indices along the axes). Panics out of range.
    pub fn precision(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.precision[self.p_idx(t, r, k, a, m)]
    }

    /// The detection score at the same cell as [`Self::precision`].
    pub fn score(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.scores[self.p_idx(t, r, k, a, m)]
    }

    /// The recall reached at IoU threshold `t`, category `k`, area `a`, max-dets `m`.
    pub fn recall(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        self.recall[self.r_idx(t, k, a, m)]
    }

    /// The 101-point precision curve (one value per recall point) of one category: what a
    /// PR plot draws.
    pub fn precision_curve(&self, t: usize, k: usize, a: usize, m: usize) -> Vec<f64> {
        (0..self.recall_thresholds.len())
            .map(|r| self.precision(t, r, k, a, m))
            .collect()
    }

    /// The flat precision array in `[T, R, K, A, M]` C order.
    pub fn precision_array(&self) -> &[f64] {
        &self.precision
    }

    /// The flat recall array in `[T, K, A, M]` C order.
    pub fn recall_array(&self) -> &[f64] {
        &self.recall
    }

    /// The flat score array in `[T, R, K, A, M]` C order.
    pub fn scores_array(&self) -> &[f64] {
        &self.scores
    }

    /// The index of a category id on the K axis.
    pub fn category_index(&self, id: u64) -> Option<usize> {
        self.category_ids.iter().position(|&c| c == id)
    }

    /// The index of an area range (`"all"`, `"small"`, …) on the A axis.
    pub fn area_index(&self, label: &str) -> Option<usize> {
        self.area_ranges.iter().position(|(l, _)| l == label)
    }

    /// The index of a max-dets value (1, 10, 100) on the M axis.
    pub fn max_dets_index(&self, max_dets: usize) -> Option<usize> {
        self.max_dets.iter().position(|&m| m == max_dets)
    }

    /// The index of an IoU threshold on the T axis (to 1e-9).
    pub fn iou_index(&self, iou: f64) -> Option<usize> {
        self.iou_thresholds
            .iter()
            .position(|&t| (t - iou).abs() < 1e-9)
    }
}

/// The result of one COCO evaluation.
#[derive(Clone, Debug)]
pub struct CocoEval {
    /// What the IoU was computed on.
    pub iou_type: IouType,
    /// The 12 summary numbers.
    pub stats: CocoStats,
    /// Per-category AP, in ascending category id order.
    pub per_category: Vec<CategoryAp>,
    /// The accumulated precision / recall arrays.
    pub curves: PrecisionRecall,
    /// How many images and detections were evaluated.
    pub num_images: usize,
    /// How many detections were evaluated.
    pub num_detections: usize,
}

/// Reads both files and evaluates.
pub fn evaluate_files(gt: &Path, dt: &Path, iou_type: IouType) -> Result<CocoEval, CocoError> {
    let start = Instant::now();
    let gt = CocoGt::from_file(gt)?;
    tracing::debug!(seconds = start.elapsed().as_secs_f64(), "read ground truth");
    let start = Instant::now();
    let dets = Detections::from_file(dt)?;
    tracing::debug!(seconds = start.elapsed().as_secs_f64(), "read detections");
    evaluate(&gt, dets, iou_type)
}

/// Validates the detections against the ground truth, then runs COCOeval (evaluate,
/// accumulate, summarize) and collects the results. Nothing is printed.
pub fn evaluate(gt: &CocoGt, dets: Detections, iou_type: IouType) -> Result<CocoEval, CocoError> {
    let start = Instant::now();
    gt.check_for(iou_type)?;
    validate_detections(gt, &dets, iou_type)?;
    let num_detections = dets.len();
    let dt = gt.coco.load_res_anns(dets.annotations)?;
    tracing::debug!(
        seconds = start.elapsed().as_secs_f64(),
        "validated and indexed"
    );
    let start = Instant::now();
    let mut ev = hotcoco::COCOeval::new(Arc::clone(&gt.coco), dt, iou_type.into());
    ev.evaluate()?;
    tracing::debug!(
        seconds = start.elapsed().as_secs_f64(),
        "evaluate (matching)"
    );
    let start = Instant::now();
    ev.accumulate();
    tracing::debug!(seconds = start.elapsed().as_secs_f64(), "accumulate");
    // Computes the stats without printing them (`summarize()` prints to stdout).
    let _lines = ev.summarize_lines();
    let stats = ev
        .stats()
        .ok_or_else(|| hotcoco::Error::InvalidState("summarize produced no stats".into()))?;
    let stats: [f64; 12] = stats.try_into().map_err(|_| {
        hotcoco::Error::InvalidState(format!("expected 12 stats, got {}", stats.len()))
    })?;
    let acc = ev
        .accumulated()
        .ok_or_else(|| hotcoco::Error::InvalidState("accumulate produced nothing".into()))?;
    let params = &ev.params;
    let curves = PrecisionRecall {
        iou_thresholds: params.iou_thrs.clone(),
        recall_thresholds: params.rec_thrs.clone(),
        category_ids: acc.cat_ids.clone(),
        area_ranges: params
            .area_ranges
            .iter()
            .map(|a| (a.label.clone(), a.range))
            .collect(),
        max_dets: params.max_dets.clone(),
        precision: acc.precision.clone(),
        recall: acc.recall.clone(),
        scores: acc.scores.clone(),
    };
    let shape = curves.shape();
    if curves.precision.len() != shape.iter().product::<usize>() {
        return Err(
            hotcoco::Error::InvalidState("precision array does not match its axes".into()).into(),
        );
    }
    let per_category = per_category_ap(&curves, gt);
    Ok(CocoEval {
        iou_type,
        stats: CocoStats::from_array(stats),
        per_category,
        curves,
        num_images: gt.coco.dataset.images.len(),
        num_detections,
    })
}

/// `np.mean(precision[:, :, k, all, 100][precision[...] > -1])` per category, in numpy's
/// summation order, or `None` where every cell is -1.
fn per_category_ap(curves: &PrecisionRecall, gt: &CocoGt) -> Vec<CategoryAp> {
    let [nt, nr, _, _, _] = curves.shape();
    let a = curves.area_index("all").unwrap_or(0);
    let m = curves
        .max_dets
        .iter()
        .enumerate()
        .max_by_key(|(_, v)| **v)
        .map_or(0, |(i, _)| i);
    let mut valid = Vec::with_capacity(nt * nr);
    curves
        .category_ids
        .iter()
        .enumerate()
        .map(|(k, &id)| {
            valid.clear();
            for t in 0..nt {
                for r in 0..nr {
                    let p = curves.precision(t, r, k, a, m);
                    if p > -1.0 {
                        valid.push(p);
                    }
                }
            }
            CategoryAp {
                id,
                name: gt
                    .coco
                    .get_cat(id)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                ap: (!valid.is_empty()).then(|| numeric::mean(&valid)),
            }
        })
        .collect()
}

/// The standard pycocotools summary: 12 lines, `COCOeval.summarize()`'s format.
pub fn summary_lines(result: &CocoEval) -> Vec<String> {
    let iou = &result.curves.iou_thresholds;
    let iou_range = match (iou.first(), iou.last()) {
        (Some(lo), Some(hi)) => format!("{lo:.2}:{hi:.2}"),
        _ => String::new(),
    };
    // (AP?, IoU threshold, area label, max dets) per stat, as `_summarizeDets` lists them.
    let rows: [(bool, Option<f64>, &str, usize); 12] = [
        (true, None, "all", 100),
        (true, Some(0.5), "all", 100),
        (true, Some(0.75), "all", 100),
        (true, None, "small", 100),
        (true, None, "medium", 100),
        (true, None, "large", 100),
        (false, None, "all", 1),
        (false, None, "all", 10),
        (false, None, "all", 100),
        (false, None, "small", 100),
        (false, None, "medium", 100),
        (false, None, "large", 100),
    ];
    rows.iter()
        .zip(result.stats.to_array())
        .map(|(&(ap, thr, area, max_dets), value)| {
            let (title, kind) = if ap {
                ("Average Precision", "(AP)")
            } else {
                ("Average Recall", "(AR)")
            };
            let iou_str = thr.map_or_else(|| iou_range.clone(), |t| format!("{t:.2}"));
            format!(
                " {title:<18} {kind} @[ IoU={iou_str:<9} | area={area:>6} | maxDets={max_dets:>3} ] = {value:.3}"
            )
        })
        .collect()
}

/// [`summary_lines`] joined with newlines (no trailing newline).
pub fn summary_text(result: &CocoEval) -> String {
    summary_lines(result).join("\n")
}

fn finite_box(b: &[f64; 4]) -> bool {
    b.iter().all(|v| v.is_finite()) && b[2] >= 0.0 && b[3] >= 0.0
}

/// Checks an RLE segmentation against its image's size; polygons pass.
fn check_rle(seg: &Segmentation, image: &Image) -> Option<Problem> {
    let rle = seg.rle_ref()?;
    let (h, w) = match rle {
        hotcoco::mask::RleRef::Compressed { h, w, .. }
        | hotcoco::mask::RleRef::Runs { h, w, .. } => (h, w),
    };
    if [h, w] != [image.height, image.width] {
        return Some(Problem::MaskSizeMismatch {
            mask: [h, w],
            image: [image.height, image.width],
        });
    }
    rle.area().err().map(|e| Problem::InvalidRle(e.to_string()))
}

/// The ground-truth checks that hold for any IoU type. Returns the first bad record.
fn validate_gt(ds: &Dataset) -> Result<(), (GtEntry, Problem)> {
    let mut images = HashMap::with_capacity(ds.images.len());
    for (index, img) in ds.images.iter().enumerate() {
        if images.insert(img.id, index).is_some() {
            return Err((GtEntry::Image { index, id: img.id }, Problem::DuplicateId));
        }
    }
    let mut cats = HashSet::with_capacity(ds.categories.len());
    for (index, cat) in ds.categories.iter().enumerate() {
        if !cats.insert(cat.id) {
            return Err((
                GtEntry::Category { index, id: cat.id },
                Problem::DuplicateId,
            ));
        }
    }
    let mut ann_ids = HashSet::with_capacity(ds.annotations.len());
    for (index, ann) in ds.annotations.iter().enumerate() {
        let entry = || GtEntry::Annotation {
            index,
            id: ann.id,
            image_id: ann.image_id,
        };
        if !ann_ids.insert(ann.id) {
            return Err((entry(), Problem::DuplicateId));
        }
        let Some(&img_index) = images.get(&ann.image_id) else {
            return Err((entry(), Problem::UnknownImage));
        };
        if !cats.contains(&ann.category_id) {
            return Err((entry(), Problem::UnknownCategory(ann.category_id)));
        }
        match ann.area {
            None => return Err((entry(), Problem::MissingArea)),
            Some(a) if !a.is_finite() || a < 0.0 => {
                return Err((entry(), Problem::InvalidArea(a)));
            }
            Some(_) => {}
        }
        if let Some(b) = &ann.bbox
            && !finite_box(b)
        {
            return Err((entry(), Problem::InvalidBbox(*b)));
        }
        if let Some(seg) = &ann.segmentation
            && let Some(problem) = check_rle(seg, &ds.images[img_index])
        {
            return Err((entry(), problem));
        }
    }
    Ok(())
}

/// The geometry a results file has, from its first entry (pycocotools' rule).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResultKind {
    Bbox,
    Segm,
}

fn validate_detections(gt: &CocoGt, dets: &Detections, iou_type: IouType) -> Result<(), CocoError> {
    let Some(first) = dets.annotations.first() else {
        return Ok(());
    };
    // pycocotools: `'bbox' in anns[0]` makes every result a box result (a segmentation given
    // alongside is kept), otherwise `'segmentation' in anns[0]` makes them mask results.
    let kind = if first.bbox.is_some() {
        ResultKind::Bbox
    } else {
        ResultKind::Segm
    };
    let coco = &gt.coco;
    let check = |ann: &Annotation| -> Option<Problem> {
        let Some(image) = coco.get_img(ann.image_id) else {
            return Some(Problem::UnknownImage);
        };
        if coco.get_cat(ann.category_id).is_none() {
            return Some(Problem::UnknownCategory(ann.category_id));
        }
        match ann.score {
            None => return Some(Problem::MissingScore),
            Some(s) if !s.is_finite() => return Some(Problem::InvalidScore(s)),
            Some(_) => {}
        }
        match (kind, &ann.bbox, &ann.segmentation) {
            (ResultKind::Bbox, None, _) => return Some(Problem::MissingBbox),
            (_, Some(b), _) if !finite_box(b) => return Some(Problem::InvalidBbox(*b)),
            (ResultKind::Segm, _, None) => return Some(Problem::MissingSegmentation),
            (ResultKind::Segm, _, Some(Segmentation::CompressedRle { .. }))
            | (ResultKind::Bbox, ..) => {}
            (ResultKind::Segm, _, Some(_)) => return Some(Problem::NotCompressedRle),
        }
        if let Some(problem) = ann
            .segmentation
            .as_ref()
            .and_then(|seg| check_rle(seg, image))
        {
            return Some(problem);
        }
        // A polygon, or a box without a mask (pycocotools gives it the box's polygon), is
        // rasterised at the image's size for segm.
        let rasterised = ann
            .segmentation
            .as_ref()
            .is_none_or(|s| s.rle_ref().is_none());
        if iou_type == IouType::Segm && rasterised && (image.height == 0 || image.width == 0) {
            return Some(Problem::MissingImageSize);
        }
        None
    };
    let bad = dets
        .annotations
        .par_iter()
        .enumerate()
        .find_map_first(|(index, ann)| check(ann).map(|p| (index, p)));
    match bad {
        Some((index, problem)) => {
            let ann = &dets.annotations[index];
            Err(CocoError::Detection {
                file: dets.source.clone(),
                index,
                image_id: ann.image_id,
                category_id: ann.category_id,
                problem,
            })
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: u64, h: u32, w: u32) -> Image {
        Image {
            id,
            height: h,
            width: w,
            ..Default::default()
        }
    }

    fn gt_ann(id: u64, image_id: u64, category_id: u64, bbox: [f64; 4]) -> Annotation {
        Annotation {
            id,
            image_id,
            category_id,
            bbox: Some(bbox),
            area: Some(bbox[2] * bbox[3]),
            segmentation: Some(Segmentation::Polygon(vec![vec![
                bbox[0],
                bbox[1],
                bbox[0] + bbox[2],
                bbox[1],
                bbox[0] + bbox[2],
                bbox[1] + bbox[3],
                bbox[0],
                bbox[1] + bbox[3],
            ]])),
            ..Default::default()
        }
    }

    fn det(image_id: u64, category_id: u64, bbox: [f64; 4], score: f64) -> Annotation {
        Annotation {
            image_id,
            category_id,
            bbox: Some(bbox),
            score: Some(score),
            ..Default::default()
        }
    }

    fn category(id: u64, name: &str) -> Category {
        Category {
            id,
            name: name.into(),
            ..Default::default()
        }
    }

    /// One image, two boxes of category 1, one of category 2.
    fn small_gt() -> CocoGt {
        CocoGt::from_dataset(Dataset {
            images: vec![image(1, 100, 100)],
            annotations: vec![
                gt_ann(1, 1, 1, [0.0, 0.0, 10.0, 10.0]),
                gt_ann(2, 1, 1, [50.0, 50.0, 40.0, 40.0]),
                gt_ann(3, 1, 2, [20.0, 60.0, 20.0, 20.0]),
            ],
            categories: vec![category(1, "a"), category(2, "b")],
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn perfect_detections_score_one() {
        let gt = small_gt();
        let dets = vec![
            det(1, 1, [0.0, 0.0, 10.0, 10.0], 0.9),
            det(1, 1, [50.0, 50.0, 40.0, 40.0], 0.8),
            det(1, 2, [20.0, 60.0, 20.0, 20.0], 0.7),
        ];
        let r = evaluate(&gt, dets.into(), IouType::Bbox).unwrap();
        assert_eq!(r.stats.ap, 1.0);
        assert_eq!(r.stats.ap50, 1.0);
        assert_eq!(r.stats.ar100, 1.0);
        // No large objects (area > 96²): -1, as pycocotools has it.
        assert_eq!(r.stats.ap_large, -1.0);
        assert_eq!(r.per_category.len(), 2);
        assert_eq!(r.per_category[0].ap, Some(1.0));
        assert_eq!(r.per_category[1].name, "b");
        assert_eq!(r.curves.shape(), [10, 101, 2, 4, 3]);
        assert_eq!(r.curves.recall(0, 0, 0, 2), 1.0);
    }

    #[test]
    fn a_missed_object_halves_recall_and_ap() {
        let gt = small_gt();
        // Category 1: one of two found; category 2: found.
        let dets = vec![
            det(1, 1, [0.0, 0.0, 10.0, 10.0], 0.9),
            det(1, 2, [20.0, 60.0, 20.0, 20.0], 0.7),
        ];
        let r = evaluate(&gt, dets.into(), IouType::Bbox).unwrap();
        let k = r.curves.category_index(1).unwrap();
        assert_eq!(r.curves.recall(0, k, 0, 2), 0.5);
        // Precision 1 up to recall 0.5 (51 of 101 points), 0 after. pycocotools divides by
        // `tp + fp + eps` (eps = 2^-52), so "1" is 1 - 2^-52 here, as it is there.
        let curve = r.curves.precision_curve(0, k, 0, 2);
        assert_eq!(curve.iter().filter(|&&p| p > 0.999_999).count(), 51);
        assert_eq!(curve.iter().filter(|&&p| p == 0.0).count(), 50);
        assert!((r.per_category[k].ap.unwrap() - 51.0 / 101.0).abs() < 1e-12);
        assert!((r.per_category[1].ap.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_category_without_ground_truth_has_no_ap() {
        let mut ds = small_gt().dataset().clone();
        ds.categories.push(category(7, "unused"));
        let gt = CocoGt::from_dataset(ds).unwrap();
        let r = evaluate(
            &gt,
            vec![det(1, 7, [0.0, 0.0, 5.0, 5.0], 0.5)].into(),
            IouType::Bbox,
        )
        .unwrap();
        let k = r.curves.category_index(7).unwrap();
        assert_eq!(r.per_category[k].ap, None);
        assert_eq!(r.per_category[0].ap, Some(0.0));
    }

    #[test]
    fn summary_matches_pycocotools_format() {
        let gt = small_gt();
        let r = evaluate(
            &gt,
            vec![det(1, 1, [0.0, 0.0, 10.0, 10.0], 0.9)].into(),
            IouType::Bbox,
        )
        .unwrap();
        let lines = summary_lines(&r);
        assert_eq!(lines.len(), 12);
        assert_eq!(
            lines[0],
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.252"
        );
        assert_eq!(
            lines[6],
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.250"
        );
        assert_eq!(
            lines[5],
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000"
        );
        assert!(lines[1].contains("IoU=0.50      |"));
    }

    fn expect_detection_problem(dets: Vec<Annotation>, want: &Problem, want_index: usize) {
        let gt = small_gt();
        match evaluate(&gt, dets.into(), IouType::Segm) {
            Err(CocoError::Detection { index, problem, .. }) => {
                assert_eq!(&problem, want);
                assert_eq!(index, want_index);
            }
            other => panic!("expected {want:?}, got {other:?}"),
        }
    }

    #[test]
    fn bad_detections_are_refused_with_their_index() {
        let ok = det(1, 1, [0.0, 0.0, 10.0, 10.0], 0.9);
        expect_detection_problem(
            vec![ok.clone(), det(5, 1, [0.0, 0.0, 1.0, 1.0], 0.1)],
            &Problem::UnknownImage,
            1,
        );
        expect_detection_problem(
            vec![ok.clone(), ok.clone(), det(1, 9, [0.0, 0.0, 1.0, 1.0], 0.1)],
            &Problem::UnknownCategory(9),
            2,
        );
        let mut no_score = ok.clone();
        no_score.score = None;
        expect_detection_problem(vec![ok.clone(), no_score], &Problem::MissingScore, 1);
        expect_detection_problem(
            vec![det(1, 1, [0.0, 0.0, -1.0, 1.0], 0.3)],
            &Problem::InvalidBbox([0.0, 0.0, -1.0, 1.0]),
            0,
        );
        let mut no_box = ok.clone();
        no_box.bbox = None;
        expect_detection_problem(vec![ok.clone(), no_box], &Problem::MissingBbox, 1);
    }

    fn rle_det(h: u32, w: u32, counts: &str) -> Annotation {
        Annotation {
            image_id: 1,
            category_id: 1,
            score: Some(0.5),
            segmentation: Some(Segmentation::CompressedRle {
                size: [h, w],
                counts: counts.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn masks_must_have_their_image_size() {
        // A valid 4x5 RLE ("5220003", the pycocotools docstring mask) on a 100x100 image.
        expect_detection_problem(
            vec![rle_det(4, 5, "5220003")],
            &Problem::MaskSizeMismatch {
                mask: [4, 5],
                image: [100, 100],
            },
            0,
        );
        // Right size, but the runs overrun 100 x 100 pixels.
        let overrun = hotcoco::mask::rle_to_string(&hotcoco::Rle {
            h: 100,
            w: 200,
            counts: vec![15000, 10],
        });
        match evaluate(
            &small_gt(),
            vec![rle_det(100, 100, &overrun)].into(),
            IouType::Segm,
        ) {
            Err(CocoError::Detection {
                problem: Problem::InvalidRle(_),
                ..
            }) => {}
            other => panic!("expected an RLE error, got {other:?}"),
        }
        // Polygons are not segm results.
        let mut poly = rle_det(100, 100, "");
        poly.segmentation = Some(Segmentation::Polygon(vec![vec![
            0.0, 0.0, 5.0, 0.0, 5.0, 5.0,
        ]]));
        expect_detection_problem(vec![poly], &Problem::NotCompressedRle, 0);
    }

    #[test]
    fn boxes_need_an_image_size_to_be_rasterised_for_segm() {
        let mut ds = small_gt().dataset().clone();
        ds.images.push(image(2, 0, 0));
        let gt = CocoGt::from_dataset(ds).unwrap();
        let dets = vec![
            det(1, 1, [0.0, 0.0, 10.0, 10.0], 0.9),
            det(2, 1, [0.0, 0.0, 10.0, 10.0], 0.9),
        ];
        assert!(evaluate(&gt, dets.clone().into(), IouType::Bbox).is_ok());
        match evaluate(&gt, dets.into(), IouType::Segm) {
            Err(CocoError::Detection {
                index: 1,
                problem: Problem::MissingImageSize,
                ..
            }) => {}
            other => panic!("expected a missing image size, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_mask_result_evaluates() {
        let gt = small_gt();
        let mask: Vec<u8> = (0..100 * 100)
            .map(|i| {
                let (x, y) = (i / 100, i % 100); // column-major
                u8::from(x < 10 && y < 10)
            })
            .collect();
        let rle = hotcoco::mask::encode(&mask, 100, 100).unwrap();
        let r = evaluate(
            &gt,
            vec![rle_det(100, 100, &hotcoco::mask::rle_to_string(&rle))].into(),
            IouType::Segm,
        )
        .unwrap();
        let k = r.curves.category_index(1).unwrap();
        assert_eq!(r.curves.recall(0, k, 0, 2), 0.5);
    }

    #[test]
    fn bad_ground_truth_is_refused() {
        let base = small_gt().dataset().clone();
        let check = |ds: Dataset, want: Problem| match CocoGt::from_dataset(ds) {
            Err(CocoError::GroundTruth { problem, .. }) => assert_eq!(problem, want),
            other => panic!("expected {want:?}, got {other:?}"),
        };
        let mut ds = base.clone();
        ds.images.push(image(1, 5, 5));
        check(ds, Problem::DuplicateId);
        let mut ds = base.clone();
        ds.annotations[1].image_id = 42;
        check(ds, Problem::UnknownImage);
        let mut ds = base.clone();
        ds.annotations[2].category_id = 42;
        check(ds, Problem::UnknownCategory(42));
        let mut ds = base.clone();
        ds.annotations[0].area = None;
        check(ds, Problem::MissingArea);
        let mut ds = base.clone();
        ds.annotations[0].segmentation = Some(Segmentation::UncompressedRle {
            size: [10, 10],
            counts: vec![5, 5, 90],
        });
        check(
            ds,
            Problem::MaskSizeMismatch {
                mask: [10, 10],
                image: [100, 100],
            },
        );
        let mut ds = base;
        ds.annotations[0].segmentation = None;
        let gt = CocoGt::from_dataset(ds).unwrap();
        assert!(evaluate(&gt, Detections::default(), IouType::Bbox).is_ok());
        match evaluate(&gt, Detections::default(), IouType::Segm) {
            Err(CocoError::GroundTruth {
                problem: Problem::MissingSegmentation,
                ..
            }) => {}
            other => panic!("expected a missing segmentation, got {other:?}"),
        }
    }

    #[test]
    fn error_messages_name_file_and_entry() {
        let err = CocoError::Detection {
            file: Some(PathBuf::from("dt.json")),
            index: 3,
            image_id: 7,
            category_id: 1,
            problem: Problem::UnknownImage,
        };
        assert_eq!(
            err.to_string(),
            "detections in dt.json: detection #3 (image_id 7, category_id 1): its image_id is not in the ground truth"
        );
    }
}
