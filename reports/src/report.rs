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
    let mut report =
        Report::new(input.title.clone(), lb.clone()).published(input.baselines.clone());
    report.runs_dir = Some(input.runs_dir.clone());
    report.sections = input.sections.clone();
    report.render()
}

/// A `report.md` builder: measured results (this run) next to published numbers, each labelled
/// with its provenance.
///
/// ```no_run
/// use cae_reports::leaderboard::{Leaderboard, LeaderboardOptions};
/// use cae_reports::report::Report;
/// let lb = Leaderboard::from_dir("runs".as_ref(), &LeaderboardOptions::default()).unwrap();
/// Report::new("Quickstart", lb)
///     .environment("machine", "2 cores, no GPU")
///     .image("Calibration", "calibration.png", "top1 against pretraining steps")
///     .note("What this shows", "Small scale: see the README.")
///     .write("runs/report.md".as_ref())
///     .unwrap();
/// ```
///
/// The document has, in order: `# title` and a summary line; **Environment and provenance**
/// (the entries given with [`Report::environment`], then the generator); the sections given with
/// [`Report::section`] / [`Report::image`] (e.g. the calibration plot); **Measured here** (the
/// leaderboard: every number labelled `this run`, with the protocol details beside it, machine,
/// versions and seeds, and the incomplete runs listed apart, never as results); **Published
/// numbers** (bundled baselines passing the filter, each labelled `published, <source>` and with
/// its verification status); the notes given with [`Report::note`]; a **Legend**.
#[derive(Debug, Clone)]
pub struct Report {
    title: String,
    leaderboard: Leaderboard,
    runs_dir: Option<PathBuf>,
    environment: Vec<(String, String)>,
    sections: Vec<Section>,
    notes: Vec<Section>,
    baselines: Option<BaselineFilter>,
}

impl Report {
    /// A report of `leaderboard`, with the published ViT-B/16 ImageNet numbers
    /// ([`BaselineFilter::vit_b_imagenet`]) and nothing else yet.
    pub fn new(title: impl Into<String>, leaderboard: Leaderboard) -> Self {
        let runs_dir = (!leaderboard.root.as_os_str().is_empty()).then(|| leaderboard.root.clone());
        Self {
            title: title.into(),
            leaderboard,
            runs_dir,
            environment: Vec::new(),
            sections: Vec::new(),
            notes: Vec::new(),
            baselines: Some(BaselineFilter::vit_b_imagenet()),
        }
    }

    /// Adds a line `key: value` to the environment section (machine, device, threads, versions,
    /// command line, data, …), in the order given.
    pub fn environment(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.environment.push((key.into(), value.into()));
        self
    }

    /// Adds a section placed before "Measured here".
    pub fn section(mut self, heading: impl Into<String>, markdown: impl Into<String>) -> Self {
        self.sections.push(Section::new(heading, markdown));
        self
    }

    /// Adds a section embedding an image (a path relative to the report) with a caption and a
    /// link to the data next to it (same name, `.csv`, as [`crate::plot::draw_curves`] writes),
    /// before "Measured here".
    pub fn image(mut self, heading: impl Into<String>, image: &str, caption: &str) -> Self {
        self.sections.push(Section::image(heading, image, caption));
        self
    }

    /// Adds a free-form notes section, placed after the published numbers and before the legend.
    pub fn note(mut self, heading: impl Into<String>, markdown: impl Into<String>) -> Self {
        self.notes.push(Section::new(heading, markdown));
        self
    }

    /// Which published numbers to show; `None` leaves the published section out.
    pub fn published(mut self, filter: Option<BaselineFilter>) -> Self {
        self.baselines = filter;
        self
    }

    /// The Markdown text.
    pub fn render(&self) -> Result<String, ReportError> {
        let lb = &self.leaderboard;
        let mut out = format!("# {}\n\n", self.title.trim());
        let origin = match &self.runs_dir {
            Some(dir) => format!("Runs folder: `{}`.", md_code(&dir.display().to_string())),
            None => "Run records given directly.".to_string(),
        };
        let _ = writeln!(
            out,
            "{origin} {} complete run{}, {} incomplete, {} skipped. Numbers under \
             \"Measured here\" were measured by this tool from the run records (provenance: this \
             run); numbers under \"Published numbers\" were copied from the sources named \
             (provenance: published, <source>) and are not comparable in scale.\n",
            lb.complete_runs,
            if lb.complete_runs == 1 { "" } else { "s" },
            lb.incomplete.len(),
            lb.skipped.len(),
        );
        out.push_str("## Environment and provenance\n\n");
        for (k, v) in &self.environment {
            let _ = writeln!(out, "- **{}**: {}", k.trim(), v.trim());
        }
        let _ = writeln!(
            out,
            "- **report**: written by cae-reports {} from `record.json` files (schema {}); \
             machine, versions and seeds of each number are in \"Measured here\".\n",
            env!("CARGO_PKG_VERSION"),
            crate::record::SCHEMA_VERSION,
        );
        for s in &self.sections {
            push_section(&mut out, s);
        }
        out.push_str("## Measured here (this run)\n\n");
        out.push_str(&lb.markdown_body(3));
        out.push('\n');
        if let Some(filter) = &self.baselines {
            let all = baselines()?;
            let rows = filter.select(&all);
            let _ = writeln!(
                out,
                "## Published numbers (published, {}, not comparable in scale)\n",
                scope_text(&rows)
            );
            out.push_str(
                "These are published results of full-scale pretraining (hundreds of ImageNet-1k \
                 epochs, ViT-B/16 or larger), copied with their source. They are not comparable \
                 in scale with the runs measured here (small models, small data, few steps): \
                 they show what the methods reach at scale, not a target for these runs. The \
                 provenance column says how far each number was checked (see the legend).\n\n",
            );
            if rows.is_empty() {
                out.push_str("No published number matches the filter.\n\n");
            } else {
                out.push_str(&baselines_markdown(&rows));
                out.push('\n');
            }
        }
        for s in &self.notes {
            push_section(&mut out, s);
        }
        out.push_str("## Legend and provenance\n\n");
        out.push_str(
            "- **this run** (measured here): computed by this tool from `record.json` files whose \
             status is `complete`; each record holds the command, the resolved config, the \
             seed, the encoder file and its sha256, the protocol, the per-epoch metrics, the \
             machine and the versions. Mean ± sample std over seeds, n shown; a protocol whose \
             seed draws nothing (kNN on an encoder file) is one measurement, n=1.\n",
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

    /// Renders and writes to `path` atomically (a temporary file in the same folder, renamed);
    /// nothing is written if rendering fails.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let text = self.render()?;
        write_atomic(path, text.as_bytes())
    }
}

fn push_section(out: &mut String, s: &Section) {
    let _ = writeln!(out, "## {}\n", s.heading.trim());
    out.push_str(s.markdown.trim_end());
    out.push_str("\n\n");
}

/// Renders the report and writes it to `path` atomically.
pub fn write_report(input: &ReportInput, path: &Path) -> Result<(), ReportError> {
    let text = render_markdown(input)?;
    write_atomic(path, text.as_bytes())
}
