//! The comparison report (`cae-bench report`, and the quickstart's): `report.md` and a
//! self-contained `report.html`, built from run records only.
//!
//! Given a set of records (each with the folder it was read from), the document has: the
//! environment lines given; the caller's sections; **Pretraining** (every pretraining record:
//! method, steps, λ, mask ratio, target, final loss; and the loss curves, `loss`, `loss_rec`,
//! `loss_align` against the step, from each run's `metrics.jsonl`, or its per-epoch record when
//! the file is absent); **Paired comparisons** (every pair of encoders measured by the same
//! classification protocol on the same images: the difference in top-1 with a paired-bootstrap 95%
//! interval over the validation images, and Welch's interval over seeds where the seed varies
//! something, each said in words); **CAE against BEiT** (the like-for-like rows of ours; the
//! published numbers stay in their own section); **Ablations** (each `ablation.json` found:
//! table and plots, [`crate::ablation`]); **Per-class IoU** (segmentation runs); the
//! leaderboard (**Measured here**) and **Published numbers** of [`Report`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::baselines::BaselineFilter;
use crate::error::ReportError;
use crate::leaderboard::{Leaderboard, md_code};
use crate::plot::{
    Bar, CurvePlot, CurvePoint, CurveSeries, SeriesStyle, bars_png_bytes, curves_png_bytes,
};
use crate::record::{RunRecord, write_atomic};
use crate::report::{Report, Section};
use crate::stats::{BOOTSTRAP_RESAMPLES, Difference, paired_bootstrap, welch};

/// The headline metrics the leaderboard of a report shows, by kind of run.
pub const REPORT_METRICS: [&str; 9] = [
    "top1",
    "top5",
    "mIoU",
    "mAcc",
    "aAcc",
    "bbox_AP",
    "bbox_AP50",
    "segm_AP",
    "segm_AP50",
];

/// One record and the folder it was read from (relative to the report, for links).
#[derive(Debug, Clone)]
pub struct RecordAt {
    /// The folder, relative to the report's folder where it lies below it.
    pub dir: String,
    /// Absolute (or working-directory-relative) folder, to read files beside the record.
    pub path: PathBuf,
    /// The record.
    pub record: RunRecord,
}

/// What a report is built from.
#[derive(Debug, Clone)]
pub struct DocumentInput {
    /// Title.
    pub title: String,
    /// Environment lines (`command`, `machine`, …), before the generated ones.
    pub environment: Vec<(String, String)>,
    /// Sections placed first (a quickstart's plan, …).
    pub sections: Vec<Section>,
    /// Notes placed after the leaderboard.
    pub notes: Vec<Section>,
    /// The records (complete ones count; others are listed as incomplete by the leaderboard).
    pub records: Vec<RecordAt>,
    /// Ablation folders (each holding `ablation.json`), relative to the report's folder.
    pub ablations: Vec<PathBuf>,
    /// The folder the report is written to (images are written under `plots/` there).
    pub out: PathBuf,
}

/// A rendered report: the Markdown and the images it references (paths relative to `out`).
#[derive(Debug, Clone)]
pub struct Document {
    /// `report.md`.
    pub markdown: String,
    /// The leaderboard as CSV.
    pub csv: String,
    /// Images: relative path → PNG bytes (and the data behind each as CSV where there is one).
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Document {
    /// Writes the images, `report.md` and the self-contained `report.html` into `out`
    /// (atomically, images first, so the Markdown never names a missing image).
    pub fn write(&self, out: &Path, title: &str) -> Result<(), ReportError> {
        for (rel, bytes) in &self.files {
            write_atomic(&out.join(rel), bytes)?;
        }
        write_atomic(&out.join("report.md"), self.markdown.as_bytes())?;
        let html = crate::html::markdown_to_html(&self.markdown, out, title)?;
        write_atomic(&out.join("report.html"), html.as_bytes())
    }
}

/// Reads a JSON value at a `/`-separated pointer as f64.
fn num(v: &serde_json::Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(serde_json::Value::as_f64)
}

fn text(v: &serde_json::Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(|x| match x {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    })
}

/// The pretraining settings a report states, read from a pretraining record's resolved config.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainFacts {
    /// `cae`, `beit`.
    pub method: String,
    /// Preset.
    pub preset: String,
    /// Steps.
    pub steps: Option<f64>,
    /// λ (CAE only).
    pub lambda: Option<f64>,
    /// Masked share of the patches.
    pub mask_ratio: Option<f64>,
    /// Target (`pixel`, `dalle`).
    pub target: String,
    /// Seed.
    pub seed: u64,
}

impl PretrainFacts {
    /// From a pretraining record (`kind = "pretrain"`).
    pub fn of(r: &RunRecord) -> Self {
        let c = &r.config;
        let method = text(c, "/model/method")
            .unwrap_or_else(|| "?".into())
            .to_lowercase();
        let patches = num(c, "/model/encoder/img_size")
            .zip(num(c, "/model/encoder/patch_size"))
            .map(|(i, p)| (i / p).powi(2));
        // `{"kind": "pixel", …}` (serde's tagged form), `{"pixel": {…}}`, or a plain string.
        let target = text(c, "/model/target/kind")
            .or_else(|| {
                c.pointer("/model/target")
                    .and_then(|t| t.as_object())
                    .and_then(|o| o.keys().next().cloned())
            })
            .or_else(|| text(c, "/model/target"))
            .unwrap_or_else(|| "?".into())
            .to_lowercase();
        Self {
            lambda: (method == "cae")
                .then(|| num(c, "/model/align_loss_weight"))
                .flatten(),
            mask_ratio: num(c, "/model/mask/num_masked")
                .zip(patches)
                .map(|(m, p)| m / p),
            steps: num(c, "/derived/total_steps"),
            preset: text(c, "/model/preset").unwrap_or_else(|| "?".into()),
            method,
            target,
            seed: r.seed,
        }
    }
}

/// One point of a pretraining curve.
fn curve_of(at: &RecordAt) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let keys = ["loss", "loss_rec", "loss_align"];
    if let Ok(text) = std::fs::read_to_string(at.path.join("metrics.jsonl")) {
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(step) = num(&v, "/step") else {
                continue;
            };
            for k in keys {
                if let Some(y) = num(&v, &format!("/{k}")) {
                    out.entry(k.to_string()).or_default().push((step, y));
                }
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
    for e in &at.record.per_epoch {
        for k in keys {
            if let Some(y) = e.metrics.get(k) {
                out.entry(k.to_string())
                    .or_default()
                    .push((e.epoch as f64, *y));
            }
        }
    }
    out
}

/// Averages a curve over windows of `w` points (a readable line from noisy steps).
fn smooth(points: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    points
        .chunks(w.max(1))
        .map(|c| {
            let n = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / n,
                c.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

fn pretraining_section(
    pre: &[&RecordAt],
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<Option<Section>, ReportError> {
    if pre.is_empty() {
        return Ok(None);
    }
    let mut md = String::from(
        "| run | method | preset | steps | λ | mask ratio | target | seed | final loss | wall time |\n\
         |---|---|---|---:|---:|---:|---|---:|---:|---:|\n",
    );
    let opt = |v: Option<f64>, d: usize| v.map_or("–".to_string(), |x| format!("{x:.d$}"));
    for at in pre {
        let f = PretrainFacts::of(&at.record);
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            md_code(&at.dir),
            f.method,
            f.preset,
            opt(f.steps, 0),
            opt(f.lambda, 2),
            opt(f.mask_ratio, 3),
            f.target,
            f.seed,
            opt(at.record.metrics.get("final_loss").copied(), 4),
            at.record.wall_time_s,
        );
    }
    let curves: Vec<_> = pre.iter().map(|at| (at, curve_of(at))).collect();
    for key in ["loss", "loss_rec", "loss_align"] {
        let series: Vec<CurveSeries> = curves
            .iter()
            .filter_map(|(at, c)| {
                let pts = c.get(key)?;
                let w = (pts.len() / 60).max(1);
                Some(CurveSeries {
                    name: at.dir.clone(),
                    style: SeriesStyle::Curve,
                    points: smooth(pts, w)
                        .into_iter()
                        .map(|(x, y)| CurvePoint {
                            x,
                            mean: y,
                            std: None,
                            n: 1,
                        })
                        .collect(),
                })
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        let plot = CurvePlot {
            title: format!("pretraining {key}"),
            x_label: "step".into(),
            y_label: format!("{key} (window mean)"),
            series,
        };
        let rel = format!("plots/pretrain-{key}.png");
        let png = curves_png_bytes(&plot).map_err(|message| ReportError::Plot {
            path: rel.clone().into(),
            message,
        })?;
        files.insert(rel.clone(), png);
        files.insert(
            format!("plots/pretrain-{key}.csv"),
            plot.to_csv().into_bytes(),
        );
        let _ = write!(
            md,
            "\n![pretraining {key} against the step]({rel})\n\n`{key}` against the step, each \
             point the mean of a window of steps (from each run's `metrics.jsonl`; data: \
             [`plots/pretrain-{key}.csv`](plots/pretrain-{key}.csv)).\n"
        );
    }
    Ok(Some(Section::new("Pretraining", md)))
}

/// The classification protocol of a record, as compared: name and label fraction.
fn protocol_of(r: &RunRecord) -> String {
    match r.protocol.label_fraction {
        Some(f) if f < 1.0 => format!("{} ({:.0}% of the labels)", r.protocol.name, f * 100.0),
        _ => r.protocol.name.clone(),
    }
}

/// The encoders measured by one classification protocol on one validation set.
#[derive(Debug, Default)]
struct ProtocolGroup {
    /// Encoder label → its measurements.
    encoders: BTreeMap<String, EncoderRuns>,
}

#[derive(Debug, Default)]
struct EncoderRuns {
    method: String,
    /// Pretraining steps of the encoder (`None`: random init or not recorded).
    steps: Option<u64>,
    top1: Vec<f64>,
    per_image: Vec<Vec<f64>>,
    /// Encoder files already measured by a protocol whose seed draws nothing.
    measured: Vec<String>,
    /// The distinct encoder files under this label (checksums).
    files: Vec<String>,
}

/// Order of methods in comparisons: CAE first, random init last.
fn method_rank(m: &str) -> u8 {
    match m {
        "cae" => 0,
        "beit" => 1,
        "random" => 9,
        _ => 5,
    }
}

/// One paired comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Protocol.
    pub protocol: String,
    /// Encoder A (label, method).
    pub a: (String, String),
    /// Encoder B.
    pub b: (String, String),
    /// Pretraining steps of A and of B, as their records give them (`None`: random init, or not
    /// recorded).
    pub steps: (Option<u64>, Option<u64>),
    /// Top-1 of A − B, paired bootstrap over images (seed-averaged per image).
    pub paired: Option<Difference>,
    /// Welch over seeds (where the seed varies something on both sides).
    pub seeds: Option<Difference>,
}

impl Comparison {
    /// One side random init.
    pub fn against_random(&self) -> bool {
        self.a.1 == "random" || self.b.1 == "random"
    }

    /// One CAE and one BEiT encoder of the same recorded pretraining steps.
    pub fn is_cae_beit_like_for_like(&self) -> bool {
        let m = [self.a.1.as_str(), self.b.1.as_str()];
        m.contains(&"cae")
            && m.contains(&"beit")
            && self.steps.0.is_some()
            && self.steps.0 == self.steps.1
    }
}

/// Every pair of encoders measured by the same classification protocol on the same images.
pub fn comparisons(records: &[&RunRecord]) -> Vec<Comparison> {
    let mut groups: BTreeMap<(String, String, usize), ProtocolGroup> = BTreeMap::new();
    for r in records {
        let (Some(e), Some(t)) = (&r.encoder, r.metrics.get("top1")) else {
            continue;
        };
        if r.kind != "linear-probe" {
            continue;
        }
        let per = r.per_image.as_ref().and_then(|p| p.values().ok());
        let n = per.as_ref().map_or(0, Vec::len);
        let data = r
            .dataset
            .as_ref()
            .and_then(|d| d.fingerprint.clone())
            .unwrap_or_default();
        // Everything but the seed that changes the number (epochs, k, lr, …): two settings of one
        // protocol are two groups, never pooled.
        let settings = serde_json::to_string(&r.protocol.settings).unwrap_or_default();
        let g = groups
            .entry((protocol_of(r), format!("{data}|{settings}"), n))
            .or_default();
        let runs = g.encoders.entry(e.label.clone()).or_default();
        runs.method = e.method.clone();
        runs.steps = e.pretrain_steps;
        if let Some(sha) = &e.sha256
            && !runs.files.contains(sha)
        {
            runs.files.push(sha.clone());
        }
        // A protocol whose seed draws nothing repeats one measurement of the same encoder file:
        // it counts once (another file under the same label, e.g. another pretraining seed of an
        // ablation cell, is another measurement).
        if r.seed_draws().is_empty() {
            let id = e.sha256.clone().unwrap_or_else(|| e.label.clone());
            if runs.measured.contains(&id) {
                continue;
            }
            runs.measured.push(id);
        }
        runs.top1.push(*t);
        if let Some(p) = per {
            runs.per_image.push(p);
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by_key(|((protocol, data, n), _)| {
        (protocol_rank(protocol), protocol.clone(), data.clone(), *n)
    });
    let mut out = Vec::new();
    for ((protocol, _, n), g) in groups {
        let first = out.len();
        let mut encs: Vec<(&String, &EncoderRuns)> = g.encoders.iter().collect();
        encs.sort_by_key(|(label, r)| (method_rank(&r.method), (*label).clone()));
        for i in 0..encs.len() {
            for j in i + 1..encs.len() {
                let (la, ra) = encs[i];
                let (lb, rb) = encs[j];
                let mean_img = |r: &EncoderRuns| -> Option<Vec<f64>> {
                    if n == 0 || r.per_image.len() != r.top1.len() {
                        return None;
                    }
                    let k = r.per_image.len() as f64;
                    Some(
                        (0..n)
                            .map(|i| 100.0 * r.per_image.iter().map(|p| p[i]).sum::<f64>() / k)
                            .collect(),
                    )
                };
                let paired = mean_img(ra)
                    .zip(mean_img(rb))
                    .and_then(|(a, b)| paired_bootstrap(&a, &b, BOOTSTRAP_RESAMPLES, 0));
                // `None` where a side is one measurement.
                let seeds = welch(&ra.top1, &rb.top1);
                // A label over several encoder files (an ablation cell's pretraining seeds) says
                // so: its side is their average.
                let name = |l: &String, r: &EncoderRuns| match r.files.len() {
                    0 | 1 => l.clone(),
                    n => format!("{l} ({n} encoder files)"),
                };
                out.push(Comparison {
                    protocol: protocol.clone(),
                    a: (name(la, ra), ra.method.clone()),
                    b: (name(lb, rb), rb.method.clone()),
                    steps: (ra.steps, rb.steps),
                    paired,
                    seeds,
                });
            }
        }
        // Each encoder against the random initialisation first, then the pretrained ones
        // against each other.
        out[first..].sort_by_key(|c| u8::from(c.b.1 != "random"));
    }
    out
}

/// Order of protocols in comparisons: the linear probe first.
fn protocol_rank(p: &str) -> u8 {
    match p.split(' ').next().unwrap_or(p) {
        "linear" => 0,
        "attentive" => 1,
        "knn" => 2,
        "finetune" => 3,
        _ => 4,
    }
}

/// The Markdown table of comparisons.
pub fn comparisons_markdown(cs: &[Comparison]) -> String {
    let mut md = String::from(
        "| protocol | A | B | A − B, top-1 points [95% interval], paired bootstrap over images | \
         what it says | A − B over seeds (Welch) |\n|---|---|---|---:|---|---:|\n",
    );
    for c in cs {
        let (p, says) = match &c.paired {
            Some(d) => (d.text(1), d.words(&c.a.0, &c.b.0)),
            None => (
                "n/a".to_string(),
                "no per-image results in the records".to_string(),
            ),
        };
        let s = c
            .seeds
            .as_ref()
            .map_or("n/a (one measurement on a side)".to_string(), |d| {
                format!(
                    "{} ({})",
                    d.text(1),
                    if d.excludes_zero() {
                        "excludes zero"
                    } else {
                        "includes zero"
                    }
                )
            });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {p} | {says} | {s} |",
            c.protocol, c.a.0, c.b.0
        );
    }
    md
}

const COMPARISON_METHOD: &str = "Each row compares two encoders measured by the same protocol on \
the same validation images. **Paired bootstrap**: each image's top-1 (right = 100, wrong = 0) is \
averaged over the seeds of each encoder, the per-image differences are resampled with replacement \
10,000 times (seeded, so the interval is the same on every rendering), and the interval is the \
2.5th–97.5th percentile of the resampled means: it says how much the difference could move on \
another sample of images from the same world. **Welch over seeds**: the per-seed top-1 values \
of A and B as independent samples; it says how much the difference could move with other seeds \
(of the probe, and of the encoder where the seed draws it). n/a where a side is one measurement \
(kNN on an encoder file draws nothing from the seed).";

fn segmentation_section(
    records: &[&RunRecord],
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<Option<Section>, ReportError> {
    // (protocol, encoder label) → class → IoU values over seeds.
    let mut groups: BTreeMap<(String, String), BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut order: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in records {
        if r.per_class.is_empty() || !r.metrics.contains_key("mIoU") {
            continue;
        }
        let label = r.encoder.as_ref().map_or("?".into(), |e| e.label.clone());
        let key = (r.protocol.name.clone(), label);
        let classes = groups.entry(key.clone()).or_default();
        let names = order.entry(key).or_default();
        for c in &r.per_class {
            if !names.contains(&c.name) {
                names.push(c.name.clone());
            }
            if let Some(Some(v)) = c.values.get("IoU") {
                classes.entry(c.name.clone()).or_default().push(*v);
            }
        }
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let mut md = String::from(
        "Per-class IoU (%) of each segmentation configuration, mean over its seeds, the error bar \
         one sample standard deviation (none for one seed); a class with no pixel in the \
         validation set is n/a.\n",
    );
    for (i, ((protocol, label), classes)) in groups.iter().enumerate() {
        let names = &order[&(protocol.clone(), label.clone())];
        let bars: Vec<Bar> = names
            .iter()
            .map(|n| {
                let v = classes.get(n).cloned().unwrap_or_default();
                let k = v.len() as f64;
                let mean = if v.is_empty() {
                    f64::NAN
                } else {
                    v.iter().sum::<f64>() / k
                };
                let spread = (v.len() > 1).then(|| {
                    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt()
                });
                Bar {
                    label: n.clone(),
                    value: mean,
                    spread,
                }
            })
            .collect();
        let title = format!("{protocol} · {label}: IoU per class");
        let rel = format!("plots/per-class-iou-{i}.png");
        let png =
            bars_png_bytes(&title, "IoU (%)", &bars).map_err(|message| ReportError::Plot {
                path: rel.clone().into(),
                message,
            })?;
        files.insert(rel.clone(), png);
        let _ = write!(md, "\n![{title}]({rel})\n\n{title}.\n");
    }
    Ok(Some(Section::new("Per-class IoU", md)))
}

/// Builds the report.
pub fn build(input: &DocumentInput) -> Result<Document, ReportError> {
    let mut files = BTreeMap::new();
    let records: Vec<RunRecord> = input.records.iter().map(|a| a.record.clone()).collect();
    let metrics: Vec<String> = REPORT_METRICS.iter().map(|s| s.to_string()).collect();
    let downstream: Vec<RunRecord> = records
        .iter()
        .filter(|r| r.kind != "pretrain")
        .cloned()
        .collect();
    let lb = Leaderboard::from_records(&downstream, &metrics)?;
    let csv = lb.to_csv();
    let tasks: BTreeSet<&str> = downstream
        .iter()
        .filter(|r| r.is_result())
        .map(|r| r.kind.as_str())
        .collect();
    let mut filter = BaselineFilter::vit_b_imagenet();
    if tasks.contains("segment") {
        filter.tasks.push("ade20k_upernet".into());
    }
    if tasks.contains("detect") {
        filter.tasks.push("coco_maskrcnn_1x".into());
    }
    let mut report = Report::new(input.title.clone(), lb).published(Some(filter));
    for (k, v) in &input.environment {
        report = report.environment(k.clone(), v.clone());
    }
    for s in &input.sections {
        report = report.section(s.heading.clone(), s.markdown.clone());
    }
    let complete: Vec<&RecordAt> = input
        .records
        .iter()
        .filter(|a| a.record.is_result())
        .collect();
    let pre: Vec<&RecordAt> = complete
        .iter()
        .copied()
        .filter(|a| a.record.kind == "pretrain")
        .collect();
    if let Some(s) = pretraining_section(&pre, &mut files)? {
        report = report.section(s.heading, s.markdown);
    }
    let done: Vec<&RunRecord> = complete.iter().map(|a| &a.record).collect();
    let cs = comparisons(&done);
    if !cs.is_empty() {
        report = report.section(
            "Paired comparisons",
            format!("{}\n{COMPARISON_METHOD}\n", comparisons_markdown(&cs)),
        );
        let beit: Vec<Comparison> = cs
            .iter()
            .filter(|c| c.is_cae_beit_like_for_like())
            .cloned()
            .collect();
        if !beit.is_empty() {
            report = report.section(
                "CAE against BEiT, like for like",
                format!(
                    "Ours, measured here with the same encoder size, pretraining steps, data and \
                     protocol (the rows of the table above with one CAE and one BEiT encoder of \
                     the same pretraining steps). The published numbers of both are under \"Published numbers\", apart: they \
                     are ViT-B on ImageNet / ADE20K / COCO, another scale.\n\n{}",
                    comparisons_markdown(&beit)
                ),
            );
        }
    }
    for dir in &input.ablations {
        let (md, imgs) = crate::ablation::render(&input.out, dir)?;
        files.extend(imgs);
        let heading = match dir.display().to_string().as_str() {
            "." | "" => "Ablation".to_string(),
            d => format!("Ablation `{}`", md_code(d)),
        };
        report = report.section(heading, md);
    }
    if let Some(s) = segmentation_section(&done, &mut files)? {
        report = report.section(s.heading, s.markdown);
    }
    for n in &input.notes {
        report = report.note(n.heading.clone(), n.markdown.clone());
    }
    Ok(Document {
        markdown: report.render()?,
        csv,
        files,
    })
}

/// Every `record.json` under `runs` (complete or not) with its folder relative to `out`, and
/// the folders holding an `ablation.json`.
pub fn collect(runs: &Path, out: &Path) -> Result<(Vec<RecordAt>, Vec<PathBuf>), ReportError> {
    let mut records = Vec::new();
    for path in crate::leaderboard::find_records(runs)? {
        let record = RunRecord::read(&path)?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        records.push(RecordAt {
            dir: relative_to(&dir, out),
            path: dir,
            record,
        });
    }
    let mut ablations = Vec::new();
    find_named(runs, "ablation.json", &mut ablations);
    ablations.sort();
    let ablations = ablations
        .into_iter()
        .map(|p| PathBuf::from(relative_to(p.parent().unwrap_or(Path::new(".")), out)))
        .collect();
    Ok((records, ablations))
}

fn find_named(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            find_named(&p, name, out);
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
}

/// `path` relative to `base` when both resolve and it lies below; otherwise `path` as given.
pub fn relative_to(path: &Path, base: &Path) -> String {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (p, b) = (canon(path), canon(base));
    match p.strip_prefix(&b) {
        Ok(r) if r.as_os_str().is_empty() => ".".into(),
        Ok(r) => r.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}
