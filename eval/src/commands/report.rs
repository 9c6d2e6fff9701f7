//! `cae-bench report --runs DIR --out DIR`: `report.md` and a self-contained `report.html` built
//! from the run records under `DIR` alone (see [`cae_reports::document`]): pretraining curves,
//! the probe / segmentation / detection leaderboards, paired comparisons with intervals, CAE
//! against BEiT like for like, ablation tables and plots, per-class IoU, and the published
//! numbers apart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use cae_reports::document::{Document, DocumentInput, build, collect};
use cae_reports::report::Section;

/// `cae-bench report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Folder searched for `record.json` (and `ablation.json`) files, recursively.
    #[arg(long)]
    pub runs: PathBuf,
    /// Output folder: report.md, report.html, plots/, leaderboard.csv [default: --runs].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Title.
    #[arg(long, default_value = "cae-bench report")]
    pub title: String,
}

/// The environment lines every report states: versions, machines and devices of the records.
pub fn environment_of(records: &[&cae_reports::RunRecord]) -> Vec<(String, String)> {
    let set = |f: &dyn Fn(&cae_reports::RunRecord) -> Vec<String>| -> String {
        let s: BTreeSet<String> = records.iter().flat_map(|r| f(r)).collect();
        if s.is_empty() {
            "not recorded".into()
        } else {
            s.into_iter().collect::<Vec<_>>().join(", ")
        }
    };
    vec![
        (
            "versions".into(),
            set(&|r| r.versions.iter().map(|(k, v)| format!("{k} {v}")).collect()),
        ),
        (
            "device".into(),
            set(&|r| {
                vec![format!(
                    "{}, backend {}",
                    r.machine.device,
                    super::quickstart::backend_of(&r.machine.device)
                )]
            }),
        ),
        (
            "CPU".into(),
            set(&|r| r.machine.cpu.clone().into_iter().collect()),
        ),
        ("GPU".into(), {
            let g = set(&|r| r.machine.gpu.clone().into_iter().collect());
            if g == "not recorded" {
                "none used".into()
            } else {
                g
            }
        }),
        (
            "cores, threads".into(),
            set(&|r| {
                vec![format!(
                    "{} cores, {} threads",
                    r.machine.cores,
                    r.machine.threads.map_or("?".into(), |t| t.to_string())
                )]
            }),
        ),
    ]
}

/// The report of every record under `runs`, written to `out`.
pub fn document_of(
    runs: &Path,
    out: &Path,
    title: &str,
    sections: Vec<Section>,
) -> anyhow::Result<Document> {
    let (records, ablations) =
        collect(runs, out).with_context(|| format!("reading the runs under {}", runs.display()))?;
    let refs: Vec<&cae_reports::RunRecord> = records.iter().map(|r| &r.record).collect();
    let mut environment = vec![(
        "runs".to_string(),
        format!(
            "`{}` (relative to the report): {} records",
            cae_reports::document::relative_to(runs, out),
            records.len()
        ),
    )];
    environment.extend(environment_of(&refs));
    let input = DocumentInput {
        title: title.to_string(),
        environment,
        sections,
        notes: Vec::new(),
        records,
        ablations,
        out: out.to_path_buf(),
    };
    Ok(build(&input)?)
}

/// Runs the command.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| args.runs.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let doc = document_of(&args.runs, &out, &args.title, Vec::new())?;
    doc.write(&out, &args.title)?;
    cae_reports::record::write_atomic(&out.join("leaderboard.csv"), doc.csv.as_bytes())?;
    eprintln!(
        "report: {} and {} ({} images embedded)",
        out.join("report.md").display(),
        out.join("report.html").display(),
        doc.files.keys().filter(|k| k.ends_with(".png")).count()
    );
    Ok(())
}
