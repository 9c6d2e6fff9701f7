//! `cae-bench ade-eval`: semantic-segmentation metrics of a folder of predicted label maps,
//! mmsegmentation's `IoUMetric` numbers.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::metrics::semseg::{FolderEval, FolderEvalConfig, IGNORE_INDEX, LabelEncoding};

/// Arguments of `ade-eval`.
#[derive(Debug, Args)]
pub struct AdeEvalArgs {
    /// Ground-truth label maps: a folder of PNGs in the raw ADE20K encoding (0 = other,
    /// 1..=C = classes, 255 = ignored), e.g. `annotations/validation`.
    #[arg(long, value_name = "DIR")]
    pub gt: PathBuf,
    /// Predictions: PNGs with the same file names, values 1..=C.
    #[arg(long, value_name = "DIR")]
    pub pred: PathBuf,
    /// The number of classes C (ADE20K: 150).
    #[arg(long, default_value_t = 150)]
    pub num_classes: usize,
    /// The label maps already hold 0-based classes (0..C, 255 ignored): skip mmseg's
    /// `reduce_zero_label`.
    #[arg(long)]
    pub no_reduce_zero_label: bool,
    /// Print one JSON object (aAcc, mIoU, mAcc in percent at full precision, per-class IoU and
    /// Acc with null where undefined) instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints (percent, as mmseg reports them, unrounded).
#[derive(serde::Serialize)]
struct JsonReport {
    #[serde(rename = "aAcc")]
    a_acc: Option<f64>,
    #[serde(rename = "mIoU")]
    m_iou: Option<f64>,
    #[serde(rename = "mAcc")]
    m_acc: Option<f64>,
    #[serde(rename = "IoU")]
    iou: Vec<Option<f64>>,
    #[serde(rename = "Acc")]
    acc: Vec<Option<f64>>,
    classes: Vec<String>,
    num_classes: usize,
    num_images: usize,
    reduce_zero_label: bool,
}

/// Percent, or `None` (JSON null) for NaN.
fn percent(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v * 100.0)
}

/// The class names: ADE20K's when there are 150 classes, `class_<i>` otherwise.
pub(crate) fn class_names(num_classes: usize) -> Vec<String> {
    if num_classes == cae_datasets::ADE20K_CLASSES.len() {
        cae_datasets::ADE20K_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..num_classes).map(|i| format!("class_{i}")).collect()
    }
}

/// Runs `ade-eval`. Everything is computed before anything is printed, so a failure leaves
/// stdout empty.
pub fn run(args: AdeEvalArgs) -> anyhow::Result<()> {
    let config = FolderEvalConfig {
        num_classes: args.num_classes,
        encoding: if args.no_reduce_zero_label {
            LabelEncoding::Direct
        } else {
            LabelEncoding::ReduceZeroLabel
        },
        ignore_index: IGNORE_INDEX,
    };
    let start = Instant::now();
    let out = crate::metrics::semseg::evaluate_folders(&args.gt, &args.pred, &config)
        .context("ade-eval failed")?;
    let seconds = start.elapsed().as_secs_f64();
    tracing::info!(
        images = out.num_images,
        megapixels = out.num_pixels as f64 / 1e6,
        seconds,
        mpixel_per_s = out.num_pixels as f64 / 1e6 / seconds,
        "segmentation evaluation done"
    );
    let names = class_names(args.num_classes);
    let mut text = if args.json {
        let m = &out.metrics;
        serde_json::to_string(&JsonReport {
            a_acc: percent(m.a_acc),
            m_iou: percent(m.m_iou),
            m_acc: percent(m.m_acc),
            iou: m.iou.iter().map(|&v| percent(v)).collect(),
            acc: m.acc.iter().map(|&v| percent(v)).collect(),
            classes: names,
            num_classes: args.num_classes,
            num_images: out.num_images,
            reduce_zero_label: !args.no_reduce_zero_label,
        })?
    } else {
        table(&out, &names)
    };
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// mmseg's per-class table (percent, 2 decimals, `nan` where undefined) and the summary line.
fn table(out: &FolderEval, names: &[String]) -> String {
    let m = &out.metrics;
    let fmt = |v: f64| {
        if v.is_nan() {
            "nan".to_owned()
        } else {
            format!("{:.2}", v * 100.0)
        }
    };
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max("Class".len());
    let mut s = String::new();
    let _ = writeln!(s, "{:<width$}  {:>6}  {:>6}", "Class", "IoU", "Acc");
    for (k, name) in names.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:<width$}  {:>6}  {:>6}",
            name,
            fmt(m.iou[k]),
            fmt(m.acc[k])
        );
    }
    let _ = write!(
        s,
        "\naAcc: {}  mIoU: {}  mAcc: {}  ({} images, {} classes)",
        fmt(m.a_acc),
        fmt(m.m_iou),
        fmt(m.m_acc),
        out.num_images,
        names.len()
    );
    s
}
