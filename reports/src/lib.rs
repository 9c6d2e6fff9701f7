//! Run records, leaderboards and reports.
//!
//! * [`record`]: the `record.json` every command that produces a number writes (config, seed,
//!   encoder and its sha256, protocol, metrics per epoch, best / last, machine, versions), marked
//!   `complete` only at the end.
//!
//! **Architecture invariant:** this crate reads and writes result files only; it does not
//! depend on burn or on any other workspace crate.

pub mod error;
pub mod record;

pub use error::ReportError;
pub use record::{RecordWriter, RunRecord, RunStatus};
