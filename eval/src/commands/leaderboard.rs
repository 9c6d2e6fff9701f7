//! `cae-bench leaderboard`: mean ± std over seeds of every complete run under a folder.
//!
//! ```text
//! cae-bench leaderboard --runs runs/ [--format md|csv] [--metric top1]... [--out FILE] [--skip-malformed]
//! ```
//!
//! Reads every `record.json` under `--runs` (recursively). Complete runs are grouped by
//! everything but the seed (the encoder file's sha256 and every protocol setting included) and
//! shown as mean ± sample std (n shown; a protocol whose seed draws nothing, such as kNN on an
//! encoder file, is one measurement, n = 1); two records with the same seed in one row are
//! flagged (⚠ in the Markdown, `duplicate_seeds` in the CSV, a warning on stderr); running, killed and failed
//! runs are never results: Markdown lists them under "Incomplete runs", CSV output leaves them
//! out and names them on stderr. A record that does not parse is an error naming the file,
//! unless `--skip-malformed` (then it is left out with a warning and listed). Output goes to
//! stdout, or atomically to `--out`; everything is computed before anything is written.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use cae_reports::leaderboard::{Leaderboard, LeaderboardOptions, Malformed};
use clap::{Args, ValueEnum};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A Markdown document: how to read it, one table per protocol and metric, provenance,
    /// incomplete runs.
    Md,
    /// Machine-readable CSV, one line per configuration and metric.
    Csv,
}

/// Arguments of `leaderboard`.
#[derive(Debug, Args)]
pub struct LeaderboardArgs {
    /// Folder searched recursively for `record.json` files.
    #[arg(long, value_name = "DIR")]
    pub runs: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    pub format: Format,
    /// Headline metric to show (repeat for several); default: every metric in the records.
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// Write here (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Leave out `record.json` files that do not parse (with a warning, and listed in the
    /// Markdown) instead of stopping with an error.
    #[arg(long)]
    pub skip_malformed: bool,
}

/// Runs `leaderboard`.
pub fn run(args: LeaderboardArgs) -> anyhow::Result<()> {
    let options = LeaderboardOptions {
        metrics: args.metrics.clone(),
        malformed: if args.skip_malformed {
            Malformed::Skip
        } else {
            Malformed::Error
        },
    };
    let lb = Leaderboard::from_dir(&args.runs, &options)
        .with_context(|| format!("leaderboard of {}", args.runs.display()))?;
    let found = lb.complete_runs + lb.incomplete.len() + lb.skipped.len();
    anyhow::ensure!(
        found > 0,
        "no record.json under {} (each run writes RUN/record.json)",
        args.runs.display()
    );
    for s in &lb.skipped {
        tracing::warn!(
            "skipped malformed record {}: {}",
            s.path.display(),
            s.reason
        );
    }
    // Two records with the same seed in one row are never averaged silently: flagged in the
    // output (⚠, `duplicate_seeds`) and named here.
    for line in lb.duplicate_lines() {
        tracing::warn!("duplicate seed: {line}");
    }
    if args.format == Format::Csv {
        for line in lb.incomplete_lines() {
            tracing::warn!("incomplete run, not a result: {line}");
        }
    }
    let text = match args.format {
        Format::Md => lb.to_markdown(),
        Format::Csv => lb.to_csv(),
    };
    tracing::info!(
        complete = lb.complete_runs,
        incomplete = lb.incomplete.len(),
        rows = lb.rows.len(),
        "leaderboard built"
    );
    match &args.out {
        Some(path) => cae_reports::record::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(())
}
