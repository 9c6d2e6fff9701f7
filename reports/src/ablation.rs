//! Ablation grids (`cae-bench ablate`): the manifest `ablation.json`, and its table and plots
//! rendered from the cells' run records.
//!
//! A grid is the product of the values of one or more pretraining options (`lambda`,
//! `mask-ratio`, …) times seeds; each cell pretrains one encoder and measures it with each
//! downstream protocol. The manifest lists every planned cell with the folders of its runs; the
//! rendering reads those records, so a table can never show a number its records do not hold,
//! and a cell whose records are missing or incomplete is named, not averaged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ReportError;
use crate::leaderboard::mean_std_text;
use crate::plot::{CurvePlot, CurvePoint, CurveSeries, SeriesStyle, curves_png_bytes};
use crate::record::RunRecord;

/// One ablated option.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationParam {
    /// The `cae-bench pretrain` option, without dashes (`lambda`, `mask-ratio`).
    pub name: String,
    /// Its values, in the order given.
    pub values: Vec<String>,
    /// The paper's value, when known (marked on the plots).
    pub paper_default: Option<String>,
}

/// One cell of the grid at one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationCell {
    /// Option → value.
    pub values: BTreeMap<String, String>,
    /// Seed of pretraining and of the probes.
    pub seed: u64,
    /// The pretraining run's folder, relative to the ablation folder.
    pub pretrain: String,
    /// Protocol → the run's folder, relative to the ablation folder.
    pub runs: BTreeMap<String, String>,
}

/// `ablation.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationManifest {
    /// The command line.
    pub command: Vec<String>,
    /// The ablated options.
    pub params: Vec<AblationParam>,
    /// The downstream protocols.
    pub protocols: Vec<String>,
    /// Seeds per cell.
    pub seeds: u64,
    /// Pretraining steps per cell.
    pub steps: u64,
    /// Everything else given to pretraining (`--preset mini --batch 64 …`).
    pub pretrain_args: Vec<String>,
    /// The data: the ImageFolder root.
    pub data: String,
    /// Every cell, in run order.
    pub cells: Vec<AblationCell>,
}

impl AblationManifest {
    /// Reads `dir/ablation.json`.
    pub fn read(dir: &Path) -> Result<Self, ReportError> {
        let path = dir.join("ablation.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ReportError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            ReportError::Invalid(format!("{}: not an ablation manifest: {e}", path.display()))
        })
    }
}

/// The paper's value of a pretraining option, where the CAE paper / official code fixes one
/// (`cae.md`: λ = 2, 98 of 196 patches masked, regressor and decoder depth 4, DALL-E targets).
pub fn paper_default(option: &str) -> Option<&'static str> {
    match option {
        "lambda" => Some("2"),
        "mask-ratio" => Some("0.5"),
        "regressor-depth" => Some("4"),
        "decoder-depth" => Some("4"),
        "target" => Some("dalle"),
        _ => None,
    }
}

/// The headline metric of a downstream protocol in an ablation.
pub fn protocol_metric(protocol: &str) -> &'static str {
    match protocol {
        "segment" => "mIoU",
        "detect" => "bbox_AP",
        _ => "top1",
    }
}

fn stat(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd =
        (v.len() > 1).then(|| (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (m, sd)
}

/// A file-name-safe form of an option name.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Renders the ablation in `report_dir/dir`: Markdown (a table per protocol, the plots, the
/// cells left out) and the plot images, keyed by their path relative to `report_dir`.
pub fn render(
    report_dir: &Path,
    dir: &Path,
) -> Result<(String, BTreeMap<String, Vec<u8>>), ReportError> {
    let root = report_dir.join(dir);
    let m = AblationManifest::read(&root)?;
    let mut files = BTreeMap::new();
    let mut md = String::new();
    let names: Vec<&str> = m.params.iter().map(|p| p.name.as_str()).collect();
    let _ = writeln!(
        md,
        "Grid: {}; {} seeds per cell (seed k pretrains with seed k and probes with seed k, so \
         the spread is over pretraining and probe seeds together); {} pretraining steps per cell \
         with `{}`; protocols: {}. Command: `{}`.\n",
        m.params
            .iter()
            .map(|p| format!("`{}` ∈ {{{}}}", p.name, p.values.join(", ")))
            .collect::<Vec<_>>()
            .join(" × "),
        m.seeds,
        m.steps,
        m.pretrain_args.join(" "),
        m.protocols.join(", "),
        m.command.join(" "),
    );
    // (protocol, values) → metric over seeds.
    let mut values: BTreeMap<(String, Vec<String>), Vec<f64>> = BTreeMap::new();
    let mut missing = Vec::new();
    for c in &m.cells {
        let key: Vec<String> = names.iter().map(|n| c.values[*n].clone()).collect();
        for p in &m.protocols {
            let metric = protocol_metric(p);
            let rec = c
                .runs
                .get(p)
                .and_then(|rel| RunRecord::read(&root.join(rel).join("record.json")).ok());
            match rec
                .filter(RunRecord::is_result)
                .and_then(|r| r.metrics.get(metric).copied())
            {
                Some(v) => values.entry((p.clone(), key.clone())).or_default().push(v),
                None => missing.push(format!(
                    "{} seed {} · {p}",
                    names
                        .iter()
                        .zip(&key)
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    c.seed
                )),
            }
        }
    }
    for p in &m.protocols {
        let metric = protocol_metric(p);
        let _ = writeln!(md, "**{p}** · {metric} (mean ± std over seeds, n):\n");
        let _ = writeln!(
            md,
            "| {} | {metric} |\n|{}---:|",
            names.join(" | "),
            "---|".repeat(names.len())
        );
        for ((proto, key), v) in &values {
            if proto != p {
                continue;
            }
            let (mean, sd) = stat(v);
            let marks: Vec<String> = key
                .iter()
                .zip(&m.params)
                .map(|(v, par)| {
                    if par.paper_default.as_deref() == Some(v.as_str()) {
                        format!("{v} (paper)")
                    } else {
                        v.clone()
                    }
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} |",
                marks.join(" | "),
                mean_std_text(mean, sd, v.len(), 2)
            );
        }
        md.push('\n');
        // One plot per option: metric against its value, a series per value of the others.
        for (pi, par) in m.params.iter().enumerate() {
            let numeric: Option<Vec<f64>> =
                par.values.iter().map(|v| v.parse::<f64>().ok()).collect();
            let x_of = |v: &str| -> f64 {
                match &numeric {
                    Some(_) => v.parse().unwrap_or(f64::NAN),
                    None => par.values.iter().position(|x| x == v).unwrap_or(0) as f64,
                }
            };
            let mut series: BTreeMap<String, Vec<CurvePoint>> = BTreeMap::new();
            for ((proto, key), v) in &values {
                if proto != p {
                    continue;
                }
                let others: Vec<String> = key
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != pi)
                    .map(|(i, v)| format!("{}={v}", names[i]))
                    .collect();
                let name = if others.is_empty() {
                    p.clone()
                } else {
                    others.join(", ")
                };
                let (mean, std) = stat(v);
                series.entry(name).or_default().push(CurvePoint {
                    x: x_of(&key[pi]),
                    mean,
                    std,
                    n: v.len(),
                });
            }
            if series.is_empty() {
                continue;
            }
            let mut all: Vec<CurveSeries> = series
                .into_iter()
                .map(|(name, points)| CurveSeries {
                    name,
                    style: SeriesStyle::Curve,
                    points,
                })
                .collect();
            if let Some(d) = &par.paper_default {
                let x = x_of(d);
                if x.is_finite() && (numeric.is_some() || par.values.contains(d)) {
                    all.push(CurveSeries {
                        name: format!("paper default {} = {d}", par.name),
                        style: SeriesStyle::Marker,
                        points: vec![CurvePoint {
                            x,
                            mean: 0.0,
                            std: None,
                            n: 0,
                        }],
                    });
                }
            }
            let plot = CurvePlot {
                title: format!("{p}: {metric} against {}", par.name),
                x_label: if numeric.is_some() {
                    par.name.clone()
                } else {
                    format!("{} (index: {})", par.name, par.values.join(", "))
                },
                y_label: format!("{metric} (mean ± std over seeds)"),
                series: all,
            };
            let prefix = match dir.display().to_string().as_str() {
                "." | "" => String::new(),
                d => format!("{}-", slug(d.trim_matches('/'))),
            };
            let stem = format!("plots/ablation-{prefix}{}-{}", slug(p), slug(&par.name));
            let png = curves_png_bytes(&plot).map_err(|message| ReportError::Plot {
                path: format!("{stem}.png").into(),
                message,
            })?;
            files.insert(format!("{stem}.png"), png);
            files.insert(format!("{stem}.csv"), plot.to_csv().into_bytes());
            let _ = writeln!(
                md,
                "![{}]({stem}.png)\n\n{}: one line per value of the other options, error bars \
                 one sample standard deviation over seeds, the paper's value dashed. Data: \
                 [`{stem}.csv`]({stem}.csv).\n",
                plot.title, plot.title
            );
        }
    }
    if !missing.is_empty() {
        let _ = writeln!(
            md,
            "Not in the tables (no complete record yet; run `cae-bench ablate` again to finish \
             them): {}.\n",
            missing.join("; ")
        );
    }
    Ok((md, files))
}
