//! Errors of `cae-heads`: each names the file, folder or setting at fault.

use std::path::PathBuf;

/// Errors of the heads, their training steps and their data.
#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    /// A setting that cannot work (batch of 1 for BatchNorm, k = 0, a layer past the depth, …).
    #[error("invalid probe config: {0}")]
    Config(String),
    /// A data folder without the expected layout.
    #[error("{path}: {message}")]
    Data {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A dataset reader error (unreadable image, empty class, …).
    #[error(transparent)]
    Dataset(#[from] cae_datasets::DatasetError),
    /// The encoder file or its config.
    #[error(transparent)]
    Encoder(#[from] cae_pretrain::PretrainError),
    /// A non-finite training loss.
    #[error("non-finite loss ({value}) at epoch {epoch}, step {step}; lower the learning rate")]
    NonFinite {
        /// Epoch (1-based).
        epoch: u64,
        /// Step within the run (1-based).
        step: u64,
        /// The loss.
        value: f64,
    },
    /// The caller's per-epoch callback failed (e.g. writing its record); its message.
    #[error("{0}")]
    Stopped(String),
    /// A detection building block refused its input.
    #[error(transparent)]
    Detection(#[from] crate::detection::DetectionError),
    /// Reading tensor data back from the backend.
    #[error("backend: {0}")]
    Backend(String),
}

impl HeadsError {
    /// A data-layout error about `path`.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Data {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// `Result` with [`HeadsError`].
pub type Result<T> = std::result::Result<T, HeadsError>;

/// Reads a float tensor back as `f32`s.
pub fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| HeadsError::Backend(format!("{e:?}")))
}
