//! Run records, leaderboards and reports.
//!
//! This crate will hold the `record.json` schema written by every command that produces a number, the
//! leaderboard (mean ± std over seeds) and the comparison reports against the published baselines. It
//! reads result files only and does not depend on burn.
