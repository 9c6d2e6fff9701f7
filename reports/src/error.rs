//! Errors of the reports crate.

use std::path::PathBuf;

/// Errors of `cae-reports`.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file that does not parse.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Anything else that is wrong with the input.
    #[error("{0}")]
    Invalid(String),
    /// The grouping / aggregation (polars) failed.
    #[error("aggregating run records: {0}")]
    Aggregate(String),
    /// A plot could not be drawn or encoded.
    #[error("plot {path}: {message}")]
    Plot {
        /// The image being drawn.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl ReportError {
    /// Wraps an I/O error with its file.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
