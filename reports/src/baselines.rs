//! Published numbers, with where each came from (`data/baselines.csv`, bundled into the crate).
//!
//! Each row carries its source and a provenance status:
//! * `verified`: read from the primary source named in `source` (a README table of the method's
//!   official repository, a paper table);
//! * `secondary`: read from a secondary source that quotes or transcribes it (an issue thread, a
//!   transcription of a paper table);
//! * `unverified`: recalled, not checked against a source. Treat as an indication only.
//!
//! These numbers are full-scale results (ViT-B/16 and ViT-L/16 pretrained for hundreds of epochs
//! on ImageNet-1k, then ImageNet / ADE20K / COCO downstream). They are never comparable in scale
//! with the small runs measured here, and a report prints them in their own, labelled section.

use std::fmt;
use std::fmt::Write as _;

use crate::error::ReportError;
use crate::leaderboard::md_cell;

/// The bundled `data/baselines.csv`.
pub const BASELINES_CSV: &str = include_str!("../data/baselines.csv");

/// The columns of the baselines file, in order.
pub const COLUMNS: [&str; 9] = [
    "method",
    "arch",
    "pretrain_epochs",
    "task",
    "metric",
    "value",
    "protocol",
    "source",
    "status",
];

/// How far a published number was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provenance {
    /// Read from the primary source.
    Verified,
    /// Read from a source that quotes or transcribes the primary one.
    Secondary,
    /// Recalled, not checked against a source.
    Unverified,
}

impl Provenance {
    /// The word used in the file and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Secondary => "secondary",
            Self::Unverified => "unverified",
        }
    }

    /// What the word means, for legends.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Verified => {
                "read from the primary source named (the method's official README or paper table)"
            }
            Self::Secondary => {
                "read from a source that quotes or transcribes the primary one (an issue thread, a transcription of a paper table); not checked against the original"
            }
            Self::Unverified => "recalled, not checked against any source; an indication only",
        }
    }

    /// Every status, in order of trust.
    pub const ALL: [Provenance; 3] = [Self::Verified, Self::Secondary, Self::Unverified];
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Provenance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("status {s:?} is not one of verified, secondary, unverified"))
    }
}

/// One published number.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Method (`CAE`, `MAE`, `BEiT`, or an ablation such as `CAE (paper table 5: …)`).
    pub method: String,
    /// Architecture (`ViT-B/16`).
    pub arch: String,
    /// Pretraining epochs on ImageNet-1k.
    pub pretrain_epochs: u32,
    /// Downstream task (`imagenet_linear`, `ade20k_upernet`, `coco_maskrcnn_1x`, …).
    pub task: String,
    /// Metric (`top1`, `mIoU`, `AP_box`, …).
    pub metric: String,
    /// The published value (percent).
    pub value: f64,
    /// How it was measured.
    pub protocol: String,
    /// Where it was read.
    pub source: String,
    /// How far it was checked.
    pub status: Provenance,
}

impl Baseline {
    /// The dataset a task runs on, for headings (`ImageNet`, `ADE20K`, `COCO`).
    pub fn dataset(&self) -> &str {
        task_dataset(&self.task)
    }
}

/// `imagenet_linear` → `ImageNet`, `ade20k_upernet` → `ADE20K`, `coco_…` → `COCO`.
pub fn task_dataset(task: &str) -> &str {
    match task.split('_').next().unwrap_or(task) {
        "imagenet" => "ImageNet",
        "ade20k" => "ADE20K",
        "coco" => "COCO",
        other => other,
    }
}

/// Parses a baselines file (`origin` names it in errors).
pub fn parse_baselines(text: &str, origin: &str) -> Result<Vec<Baseline>, ReportError> {
    let bad = |message: String| ReportError::Parse {
        path: origin.into(),
        message,
    };
    let rows = crate::csv::parse(text).map_err(bad)?;
    let (header, body) = rows.split_first().ok_or_else(|| bad("empty file".into()))?;
    if header.iter().map(String::as_str).ne(COLUMNS) {
        return Err(bad(format!(
            "header is {:?}, expected {:?}",
            header.join(","),
            COLUMNS.join(",")
        )));
    }
    body.iter()
        .enumerate()
        .map(|(i, f)| {
            let at = |m: String| bad(format!("data row {}: {m}", i + 1));
            if f.len() != COLUMNS.len() {
                return Err(at(format!(
                    "{} fields, expected {}",
                    f.len(),
                    COLUMNS.len()
                )));
            }
            let value: f64 = f[5]
                .parse()
                .map_err(|_| at(format!("value {:?} is not a number", f[5])))?;
            if !value.is_finite() {
                return Err(at(format!("value {value} is not finite")));
            }
            Ok(Baseline {
                method: f[0].clone(),
                arch: f[1].clone(),
                pretrain_epochs: f[2]
                    .parse()
                    .map_err(|_| at(format!("pretrain_epochs {:?} is not a count", f[2])))?,
                task: f[3].clone(),
                metric: f[4].clone(),
                value,
                protocol: f[6].clone(),
                source: f[7].clone(),
                status: f[8].parse().map_err(at)?,
            })
        })
        .collect()
}

/// The bundled published numbers.
pub fn baselines() -> Result<Vec<Baseline>, ReportError> {
    parse_baselines(BASELINES_CSV, "reports/data/baselines.csv (bundled)")
}

/// The bundled published numbers, every row with its `source` and provenance `status`: the
/// name the quickstart and reports use (same as [`baselines`]).
pub fn published() -> Result<Vec<Baseline>, ReportError> {
    baselines()
}

/// Which published rows to show. An empty list accepts everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaselineFilter {
    /// Tasks (exact, e.g. `imagenet_linear`).
    pub tasks: Vec<String>,
    /// Methods: `CAE` matches `CAE` and its ablation rows `CAE (…)`; case-insensitive.
    pub methods: Vec<String>,
    /// Architectures (exact, e.g. `ViT-B/16`).
    pub archs: Vec<String>,
    /// Provenance statuses to keep; empty = all.
    pub statuses: Vec<Provenance>,
}

impl BaselineFilter {
    /// The rows a small-scale report puts beside its runs: ViT-B/16 on ImageNet (linear probe,
    /// attentive probe, fine-tuning), CAE, MAE and BEiT, every status.
    pub fn vit_b_imagenet() -> Self {
        Self {
            tasks: vec![
                "imagenet_linear".into(),
                "imagenet_attentive".into(),
                "imagenet_finetune".into(),
            ],
            methods: vec!["CAE".into(), "MAE".into(), "BEiT".into()],
            archs: vec!["ViT-B/16".into()],
            statuses: Vec::new(),
        }
    }

    /// Whether `b` passes.
    pub fn accepts(&self, b: &Baseline) -> bool {
        let method_ok = self.methods.is_empty()
            || self.methods.iter().any(|m| {
                let m = m.to_lowercase();
                let have = b.method.to_lowercase();
                have == m || have.starts_with(&format!("{m} ("))
            });
        method_ok
            && (self.tasks.is_empty() || self.tasks.contains(&b.task))
            && (self.archs.is_empty() || self.archs.contains(&b.arch))
            && (self.statuses.is_empty() || self.statuses.contains(&b.status))
    }

    /// The rows of `all` that pass, in file order.
    pub fn select<'a>(&self, all: &'a [Baseline]) -> Vec<&'a Baseline> {
        all.iter().filter(|b| self.accepts(b)).collect()
    }
}

/// `ViT-B/16 on ImageNet`, `ViT-B/16 and ViT-L/16 on ImageNet and COCO`, from the rows.
pub fn scope_text(rows: &[&Baseline]) -> String {
    fn list(mut v: Vec<&str>) -> String {
        v.dedup();
        match v.len() {
            0 => "-".into(),
            1 => v[0].into(),
            _ => {
                let last = v.pop().unwrap_or_default();
                format!("{} and {last}", v.join(", "))
            }
        }
    }
    let mut archs: Vec<&str> = rows.iter().map(|b| b.arch.as_str()).collect();
    archs.sort_unstable();
    let mut datasets: Vec<&str> = rows.iter().map(|b| b.dataset()).collect();
    datasets.sort_unstable();
    format!("{} on {}", list(archs), list(datasets))
}

/// The rows as a Markdown table, in the order given, each labelled with its provenance
/// (`published, <source>`) and how far the number was checked (`verified`, `secondary`,
/// `unverified`).
pub fn baselines_markdown(rows: &[&Baseline]) -> String {
    let mut out = String::from(
        "| method | arch | pretrain epochs | task | metric | value (%) | protocol | provenance | checked |\n\
         |---|---|---:|---|---|---:|---|---|---|\n",
    );
    for b in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.1} | {} | published, {} | {} |",
            md_cell(&b.method),
            md_cell(&b.arch),
            b.pretrain_epochs,
            md_cell(&b.task),
            md_cell(&b.metric),
            b.value,
            md_cell(&b.protocol),
            md_cell(&b.source),
            b.status,
        );
    }
    out
}

/// The bundled rows that pass `filter`, as a Markdown table (see [`baselines_markdown`]).
pub fn render_baselines(filter: &BaselineFilter) -> Result<String, ReportError> {
    let all = baselines()?;
    Ok(baselines_markdown(&filter.select(&all)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_name_the_row() {
        let head = COLUMNS.join(",");
        let e = parse_baselines(
            &format!("{head}\nCAE,ViT-B/16,300,t,top1,x,p,s,verified\n"),
            "f.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("f.csv") && e.contains("data row 1") && e.contains("\"x\""));
        let e = parse_baselines(
            &format!("{head}\nCAE,ViT-B/16,300,t,top1,1,p,s,maybe\n"),
            "f.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("maybe"), "{e}");
        assert!(parse_baselines("a,b\n", "f.csv").is_err());
    }
}
