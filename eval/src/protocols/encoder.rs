//! Which encoder a protocol measures.

use std::path::PathBuf;

use burn::tensor::Device;
use cae_pretrain::config::CaeConfig;
use cae_pretrain::encoder_file::{load_encoder, random_encoder};
use cae_pretrain::model::VisionTransformerEncoder;
use cae_reports::record::{EncoderInfo, sha256_file};

use super::error::{ProtocolError, Result};

/// Which encoder to measure.
#[derive(Debug, Clone, PartialEq)]
pub enum EncoderSource {
    /// An encoder file.
    File(PathBuf),
    /// A fresh initialisation drawn with the run's seed.
    Random,
}

/// The encoder, its config and its description.
pub fn resolve_encoder(
    source: &EncoderSource,
    preset: Option<&str>,
    label: Option<&str>,
    seed: u64,
    device: &Device,
) -> Result<(VisionTransformerEncoder, CaeConfig, EncoderInfo)> {
    let preset = preset.map(CaeConfig::preset).transpose()?;
    match source {
        EncoderSource::Random => {
            let cfg = preset
                .ok_or_else(|| ProtocolError::Config("a random encoder needs a preset".into()))?;
            let info = EncoderInfo {
                label: label
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("random-init-{}", cfg.preset)),
                path: None,
                sha256: None,
                method: "random".into(),
                arch: cfg.preset.clone(),
                pretrain_steps: None,
            };
            Ok((random_encoder(&cfg, seed, device), cfg, info))
        }
        EncoderSource::File(path) => {
            let loaded = load_encoder(path, preset.as_ref(), device)?;
            let info = EncoderInfo {
                label: label.map(str::to_string).unwrap_or_else(|| {
                    path.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                }),
                path: Some(path.display().to_string()),
                sha256: Some(sha256_file(path)?),
                method: loaded.method(),
                arch: loaded.config.preset.clone(),
                pretrain_steps: loaded.metadata.get("steps").and_then(|s| s.parse().ok()),
            };
            Ok((loaded.encoder, loaded.config, info))
        }
    }
}
