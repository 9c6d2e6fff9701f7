//! Errors of the pretraining crate.

use std::path::PathBuf;

/// One tensor whose shape does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The checkpoint key (official naming).
    pub key: String,
    /// The shape the model has (PyTorch layout).
    pub expected: Vec<usize>,
    /// The shape in the file.
    pub found: Vec<usize>,
}

impl std::fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: the model expects {:?}, the file has {:?}",
            self.key, self.expected, self.found
        )
    }
}

/// What went wrong when a checkpoint did not fit a model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointMismatch {
    /// Tensors whose shapes differ.
    pub shape_mismatches: Vec<ShapeMismatch>,
    /// Keys the model has and the file lacks.
    pub missing: Vec<String>,
    /// Keys the file has and the model lacks.
    pub unexpected: Vec<String>,
    /// Other problems (dtype, unreadable tensor).
    pub other: Vec<String>,
}

impl CheckpointMismatch {
    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.shape_mismatches.is_empty()
            && self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.other.is_empty()
    }
}

impl std::fmt::Display for CheckpointMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 20;
        let mut first = true;
        let mut sep = |f: &mut std::fmt::Formatter<'_>| {
            if first {
                first = false;
                Ok(())
            } else {
                write!(f, "; ")
            }
        };
        if !self.shape_mismatches.is_empty() {
            sep(f)?;
            write!(f, "{} shape mismatch(es): ", self.shape_mismatches.len())?;
            for (i, m) in self.shape_mismatches.iter().take(SHOW).enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{m}")?;
            }
        }
        for (label, keys) in [
            ("missing key(s)", &self.missing),
            ("unexpected key(s)", &self.unexpected),
            ("other problem(s)", &self.other),
        ] {
            if keys.is_empty() {
                continue;
            }
            sep(f)?;
            write!(f, "{} {label}: ", keys.len())?;
            let shown: Vec<&str> = keys.iter().take(SHOW).map(String::as_str).collect();
            write!(f, "{}", shown.join(", "))?;
            if keys.len() > SHOW {
                write!(f, ", …")?;
            }
        }
        Ok(())
    }
}

/// Errors of `cae-pretrain`.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    /// A configuration that cannot be built.
    #[error("invalid config: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file that cannot be parsed.
    #[error("{path}: not a readable safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A checkpoint whose tensors do not fit the model built from the config.
    #[error("{path}: the checkpoint does not fit the model: {mismatch}")]
    CheckpointMismatch {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        mismatch: Box<CheckpointMismatch>,
    },
    /// Inputs of the wrong shape or content.
    #[error("bad input: {0}")]
    Input(String),
    /// A non-finite loss during training.
    #[error("non-finite loss ({value}) at step {step}")]
    NonFinite {
        /// The step.
        step: u64,
        /// The loss value.
        value: f64,
    },
    /// A backend error while reading tensor data back.
    #[error("backend: {0}")]
    Backend(String),
}

impl PretrainError {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
