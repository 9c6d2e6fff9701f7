//! Run records, leaderboards, plots and reports.
//!
//! * [`record`]: the `record.json` every command that produces a number writes (config, seed,
//!   encoder and its sha256, protocol, metrics per epoch, best / last, machine, versions), marked
//!   `complete` only at the end.
//! * [`leaderboard`]: every `record.json` under a folder, complete runs grouped by everything but
//!   the seed (polars), mean ± sample std over seeds, as Markdown or CSV; incomplete and failed
//!   runs listed apart, never as results.
//! * [`baselines`]: published numbers (`data/baselines.csv`, bundled) with source and provenance
//!   (`verified`, `secondary`, `unverified`), as Markdown.
//! * [`plot`]: metric against pretraining steps with mean ± std error bars (PNG, plus the data
//!   as CSV next to it); no system fonts needed.
//! * [`report`]: `report.md`, measured here next to published, with a provenance legend.
//!
//! **Architecture invariant:** this crate reads and writes result files only; it does not
//! depend on burn or on any other workspace crate.

pub mod ablation;
pub mod baselines;
pub mod calibration;
pub mod csv;
pub mod document;
pub mod error;
pub mod html;
pub mod leaderboard;
pub mod plot;
pub mod record;
pub mod report;
pub mod stats;

pub use error::ReportError;
pub use leaderboard::{Leaderboard, LeaderboardOptions, Malformed};
pub use record::{RecordWriter, RunRecord, RunStatus};
