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
    /// An encoder file (`cae-bench pretrain` / `cae-bench import`, or a pretraining checkpoint).
    File(PathBuf),
    /// A fresh initialisation (the CAE starting point), drawn with the run's seed.
    Random,
}

/// The encoder, its config and its description: a file (with `preset` as the fallback config
/// of a file without one; a file's own config wins, with a warning), or a random
/// initialisation of `preset` drawn from `seed`. `label` names it in records [default:
/// `random-init-<preset>`, or the file's stem].
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
            if let Some(p) = &preset
                && loaded.config_from_file
                && p.encoder != loaded.config.encoder
            {
                tracing::warn!(
                    "{}: the file carries its own config ({}); --preset {} is ignored",
                    path.display(),
                    loaded.config.preset,
                    p.preset
                );
            }
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
