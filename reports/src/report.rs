//! `report.md`: what was measured here, next to what was published, with the provenance of each.
//!
//! ```no_run
//! use cae_reports::report::{ReportInput, Section, write_report};
//! let mut input = ReportInput::new("runs");
//! input.title = "Quickstart".into();
//! input.sections.push(Section::image("Calibration", "calibration.png", "top1 against pretraining steps"));
//! write_report(&input, std::path::Path::new("runs/report.md")).unwrap();
//! ```
//!
//! The document has, in order: the title and a one-line summary; the extra sections given (e.g.
//! the calibration plot); **Measured here** (the leaderboard of the runs under the folder, with
//! machine, versions and seeds, and the incomplete runs listed); **Published numbers** (the
//! bundled baselines that pass the filter, labelled with provenance and source, in their own
//! section because they are not comparable in scale); and a **Legend**.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::baselines::{BaselineFilter, Provenance, baselines, baselines_markdown, scope_text};
use crate::error::ReportError;
use crate::leaderboard::{Leaderboard, LeaderboardOptions, md_code};
use crate::record::write_atomic;

/// An extra section of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Heading (rendered as `##`).
    pub heading: String,
    /// Markdown body.
    pub markdown: String,
}

impl Section {
    /// A section with a Markdown body.
    pub fn new(heading: impl Into<String>, markdown: impl Into<String>) -> Self {
        Self {
            heading: heading.into(),
            markdown: markdown.into(),
        }
    }

    /// A section showing an image (a path relative to the report), with a caption, and a link
    /// to the data behind it when a `.csv` of the same name is meant to sit next to it.
    pub fn image(heading: impl Into<String>, image: &str, caption: &str) -> Self {
        let data = Path::new(image).with_extension("csv");
        Self::new(
            heading,
            format!(
                "![{caption}]({image})\n\n{caption}. Data behind the plot: [`{}`]({}).\n",
                md_code(&data.display().to_string()),
                data.display()
            ),
        )
    }
}

/// What [`render_markdown`] needs.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// Title (`# …`).
    pub title: String,
    /// The runs folder: every `record.json` under it.
    pub runs_dir: PathBuf,
    /// Which metrics and what to do with malformed records.
    pub leaderboard: LeaderboardOptions,
    /// Which published numbers to show; `None` = no published section.
    pub baselines: Option<BaselineFilter>,
    /// Extra sections, placed after the summary and before "Measured here".
    pub sections: Vec<Section>,
}

impl ReportInput {
    /// Defaults: every metric, malformed records are errors, published ViT-B/16 ImageNet rows.
    pub fn new(runs_dir: impl Into<PathBuf>) -> Self {
        Self {
            title: "cae-bench report".into(),
            runs_dir: runs_dir.into(),
            leaderboard: LeaderboardOptions::default(),
            baselines: Some(BaselineFilter::vit_b_imagenet()),
            sections: Vec::new(),
        }
    }
}

/// Reads the runs and renders the report.
pub fn render_markdown(input: &ReportInput) -> Result<String, ReportError> {
    let lb = Leaderboard::from_dir(&input.runs_dir, &input.leaderboard)?;
    render_with(input, &lb)
}

/// Renders the report from a leaderboard already built (e.g. one also used for plots).
pub fn render_with(input: &ReportInput, lb: &Leaderboard) -> Result<String, ReportError> {
    let mut out = format!("# {}\n\n", input.title.trim());
    let _ = writeln!(
        out,
        "Runs folder: `{}`. {} complete run{}, {} incomplete, {} skipped. Numbers under \
         \"Measured here\" were measured by this tool from the run records; numbers under \
         \"Published numbers\" were copied from the sources named and are not comparable in \
         scale.\n",
        md_code(&input.runs_dir.display().to_string()),
        lb.complete_runs,
        if lb.complete_runs == 1 { "" } else { "s" },
        lb.incomplete.len(),
        lb.skipped.len(),
    );
    for s in &input.sections {
        let _ = writeln!(out, "## {}\n", s.heading.trim());
        out.push_str(s.markdown.trim_end());
        out.push_str("\n\n");
    }
    out.push_str("## Measured here\n\n");
    out.push_str(&lb.markdown_body(3));
    out.push('\n');
    if let Some(filter) = &input.baselines {
        let all = baselines()?;
        let rows = filter.select(&all);
        let _ = writeln!(
            out,
            "## Published numbers (published, {}, not comparable in scale)\n",
            scope_text(&rows)
        );
        out.push_str(
            "These are published results of full-scale pretraining (hundreds of ImageNet-1k \
             epochs, ViT-B/16 or larger), copied with their source. They are not comparable in \
             scale with the runs measured here (small models, small data, few steps): they show \
             what the methods reach at scale, not a target for these runs. The provenance \
             column says how far each number was checked (see the legend).\n\n",
        );
        if rows.is_empty() {
            out.push_str("No published number matches the filter.\n\n");
        } else {
            out.push_str(&baselines_markdown(&rows));
            out.push('\n');
        }
    }
    out.push_str("## Legend and provenance\n\n");
    out.push_str(
        "- **measured here**: computed by this tool from `record.json` files under the runs \
         folder whose status is `complete`; each record holds the command, the resolved config, \
         the seed, the encoder file and its sha256, the protocol, the per-epoch metrics, the \
         machine and the versions. Mean ± sample std over seeds, n shown.\n",
    );
    for p in Provenance::ALL {
        let _ = writeln!(out, "- **{}** (published): {}.", p.as_str(), p.meaning());
    }
    out.push_str(
        "- **incomplete runs**: records still `running` (unfinished, or killed) or `failed`; \
         never shown as results.\n",
    );
    Ok(out)
}

/// Renders the report and writes it to `path` atomically.
pub fn write_report(input: &ReportInput, path: &Path) -> Result<(), ReportError> {
    let text = render_markdown(input)?;
    write_atomic(path, text.as_bytes())
}
