//! Errors of the protocols.

use std::path::PathBuf;

/// Errors of a protocol run.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A setting that cannot work.
    #[error("invalid config: {0}")]
    Config(String),
    /// Bad input naming its file.
    #[error("{path}: {message}")]
    Input {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Modules and heads.
    #[error(transparent)]
    Heads(#[from] cae_heads::HeadsError),
    /// Dataset readers.
    #[error(transparent)]
    Dataset(#[from] cae_datasets::DatasetError),
    /// Encoder files, checkpoints, weights.
    #[error(transparent)]
    Pretrain(#[from] cae_pretrain::PretrainError),
    /// Records.
    #[error(transparent)]
    Record(#[from] cae_reports::ReportError),
    /// Segmentation metrics.
    #[error(transparent)]
    Semseg(#[from] crate::metrics::semseg::SemsegError),
    /// COCO evaluation of a results file.
    #[error(transparent)]
    Coco(#[from] crate::metrics::coco::CocoError),
    /// A non-finite training loss.
    #[error("non-finite loss ({value}) at iteration {iter}; lower the learning rate")]
    NonFinite {
        /// Iteration (1-based).
        iter: u64,
        /// The loss.
        value: f64,
    },
}

/// `Result` with [`ProtocolError`].
pub type Result<T> = std::result::Result<T, ProtocolError>;
