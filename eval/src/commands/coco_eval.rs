//! `cae-bench coco-eval`: COCO bbox / segm AP of a results file, pycocotools' numbers.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::metrics::coco::{self, CategoryAp, CocoStats, IouType};

/// Arguments of `coco-eval`.
#[derive(Debug, Args)]
pub struct CocoEvalArgs {
    /// Ground truth: a COCO instances JSON file.
    #[arg(long, value_name = "GT.json")]
    pub gt: PathBuf,
    /// Detections: a JSON array of results, as pycocotools' `loadRes` takes them.
    #[arg(long, value_name = "DT.json")]
    pub dt: PathBuf,
    /// What the IoU is computed on.
    #[arg(long, value_enum)]
    pub iou_type: IouType,
    /// Print one JSON object (the 12 stats as fractions, full precision, and per-category AP)
    /// instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Also print a per-category AP table after the 12-line summary.
    #[arg(long, conflicts_with = "json")]
    pub per_category: bool,
}

/// What `--json` prints.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    stats: &'a CocoStats,
    per_category: &'a [CategoryAp],
    iou_type: &'static str,
    num_images: usize,
    num_detections: usize,
}

/// Runs `coco-eval`. Everything is computed before anything is printed, so a failure leaves
/// stdout empty.
pub fn run(args: CocoEvalArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let result = coco::evaluate_files(&args.gt, &args.dt, args.iou_type)
        .with_context(|| format!("coco-eval --iou-type {} failed", args.iou_type))?;
    tracing::info!(
        images = result.num_images,
        detections = result.num_detections,
        seconds = start.elapsed().as_secs_f64(),
        "COCO {} evaluation done",
        args.iou_type
    );
    let mut text = if args.json {
        serde_json::to_string(&JsonReport {
            stats: &result.stats,
            per_category: &result.per_category,
            iou_type: args.iou_type.as_str(),
            num_images: result.num_images,
            num_detections: result.num_detections,
        })?
    } else {
        let mut text = coco::summary_text(&result);
        if args.per_category {
            text.push_str("\n\n");
            text.push_str(&per_category_table(&result.per_category));
        }
        text
    };
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// `id  name  AP` rows; `-` where a category has no ground truth.
fn per_category_table(cats: &[CategoryAp]) -> String {
    let width = cats
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("category".len());
    let mut out = format!("{:>6}  {:<width$}  {:>6}\n", "id", "category", "AP");
    for c in cats {
        let ap =
            c.ap.map_or_else(|| "-".to_owned(), |ap| format!("{:.3}", ap));
        out.push_str(&format!("{:>6}  {:<width$}  {:>6}\n", c.id, c.name, ap));
    }
    out.pop();
    out
}
