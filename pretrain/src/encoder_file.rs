//! Encoder-only files: what `cae-bench pretrain` and `cae-bench import` write and what every
//! downstream protocol reads.
//!
//! An encoder file is a safetensors file whose tensors are the encoder's, under the official CAE
//! names with an `encoder.` prefix (`encoder.blocks.0.attn.qkv.weight`, PyTorch layout), and whose
//! metadata holds:
//!
//! * `config`: the full [`CaeConfig`] as JSON (the encoder part is what matters here);
//! * `format`: `cae-encoder`;
//! * optionally `source` (`cae`, `beit`, `mae`: who trained it, for imported files) and
//!   `imported_from` / `imported_sha256` (the checkpoint an import read).
//!
//! [`load_encoder`] also reads a whole pretraining-model file (`cae-pretrain-model`): only the
//! `encoder.*` keys are used. A file without `config` metadata needs a fallback config (a preset).

use std::collections::HashMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use crate::config::CaeConfig;
use crate::error::PretrainError;
use crate::model::VisionTransformerEncoder;
use crate::model::cae::{CONFIG_METADATA_KEY, FORMAT_METADATA_KEY};
use crate::model::init::{Init, LinearInit};
use crate::weights::{LoadOptions, load_safetensors_bytes, read_file, save_safetensors};

/// The `format` metadata of an encoder-only file.
pub const ENCODER_FORMAT: &str = "cae-encoder";
/// Metadata key naming who trained an imported encoder (`cae`, `beit`, `mae`).
pub const SOURCE_METADATA_KEY: &str = "source";

/// The encoder alone, under an `encoder` field so that its keys are `encoder.*` as in the
/// official checkpoints.
#[derive(Module, Debug)]
pub struct EncoderOnly {
    /// The encoder.
    pub encoder: VisionTransformerEncoder,
}

/// An encoder read from a file.
#[derive(Debug)]
pub struct LoadedEncoder {
    /// The encoder with the file's weights.
    pub encoder: VisionTransformerEncoder,
    /// Its config: the file's `config` metadata, or the fallback.
    pub config: CaeConfig,
    /// Whether the config came from the file (false: from the fallback).
    pub config_from_file: bool,
    /// All metadata of the file.
    pub metadata: HashMap<String, String>,
    /// Number of tensors applied.
    pub tensors: usize,
}

impl LoadedEncoder {
    /// Who trained it: the `source` metadata, else the config's method (`cae` or `beit`).
    pub fn method(&self) -> String {
        self.metadata
            .get(SOURCE_METADATA_KEY)
            .cloned()
            .unwrap_or_else(|| method_name(&self.config))
    }
}

/// `cae` or `beit`.
pub fn method_name(cfg: &CaeConfig) -> String {
    match cfg.method {
        crate::config::Method::Cae => "cae".into(),
        crate::config::Method::Beit => "beit".into(),
    }
}

/// A freshly initialised encoder, drawn exactly as the encoder of
/// [`crate::ContextAutoencoder::new`] with the same seed (xavier Linear weights, or BEiT's
/// trunc-normal with `fix_init_weight`): the "random init" baseline is the CAE starting point.
pub fn random_encoder(cfg: &CaeConfig, seed: u64, device: &Device) -> VisionTransformerEncoder {
    let linear = if cfg.fix_init_weight {
        LinearInit::TruncNormal
    } else {
        LinearInit::Xavier
    };
    let mut init = Init::new(seed, linear, device);
    VisionTransformerEncoder::new(&cfg.encoder, &mut init)
}

/// Reads an encoder file (or the `encoder.*` part of a whole-model file) onto `device`.
///
/// The config comes from the file's `config` metadata; `fallback` is used only when the file has
/// none, and without either the error says to pass a preset. Shapes, missing and unexpected
/// `encoder.*` keys are checked as in [`crate::weights::load_safetensors`].
pub fn load_encoder(
    path: &Path,
    fallback: Option<&CaeConfig>,
    device: &Device,
) -> Result<LoadedEncoder, PretrainError> {
    let bytes = read_file(path)?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        PretrainError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    let mut metadata = meta.metadata().clone().unwrap_or_default();
    // A training checkpoint (`RUN/checkpoints/ckpt-*.safetensors`) carries the whole run config
    // and the model under `model.`.
    let checkpoint_config = match metadata.get(crate::train::checkpoint::RUN_CONFIG_KEY) {
        Some(text) => Some(crate::train::RunConfig::from_toml(text).map_err(|e| {
            PretrainError::Config(format!(
                "{}: the checkpoint's `run_config` metadata is not a valid run config: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    if checkpoint_config.is_some()
        && !metadata.contains_key("steps")
        && let Some(step) = metadata
            .get(crate::train::checkpoint::STATE_KEY)
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
    {
        metadata.insert("steps".into(), step.to_string());
    }
    let prefix = if checkpoint_config.is_some() {
        "model.encoder."
    } else {
        "encoder."
    };
    let (config, config_from_file) = match (metadata.get(CONFIG_METADATA_KEY), checkpoint_config) {
        (_, Some(run)) => (run.model, true),
        (Some(text), None) => {
            let cfg = CaeConfig::from_json(text).map_err(|e| {
                PretrainError::Config(format!(
                    "{}: the `config` metadata is not a valid model config: {e}",
                    path.display()
                ))
            })?;
            (cfg, true)
        }
        (None, None) => match fallback {
            Some(cfg) => {
                cfg.validate()?;
                (cfg.clone(), false)
            }
            None => {
                return Err(PretrainError::Config(format!(
                    "{}: the file has no `config` metadata, so its architecture is unknown; \
                     pass a preset (--preset) that matches it",
                    path.display()
                )));
            }
        },
    };
    if let Some(format) = metadata.get(FORMAT_METADATA_KEY)
        && format != ENCODER_FORMAT
        && format != "cae-pretrain-model"
    {
        return Err(PretrainError::Input(format!(
            "{}: format `{format}` is not an encoder or a pretraining model; \
             convert official checkpoints with `cae-bench import`",
            path.display()
        )));
    }
    let mut encoder = random_encoder(&config, 0, device);
    let report = load_safetensors_bytes(
        &mut encoder,
        &bytes,
        path,
        &LoadOptions {
            prefix: Some(prefix),
            ignore: &[],
            rename: None,
        },
    )?;
    Ok(LoadedEncoder {
        encoder,
        config,
        config_from_file,
        metadata,
        tensors: report.applied.len(),
    })
}

/// Writes an encoder file (atomically): `encoder.*` tensors, the config and `format`, plus
/// `extra` metadata.
pub fn save_encoder(
    encoder: &VisionTransformerEncoder,
    cfg: &CaeConfig,
    path: &Path,
    extra: &HashMap<String, String>,
) -> Result<(), PretrainError> {
    let mut meta = crate::model::cae::metadata(cfg, ENCODER_FORMAT);
    meta.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    let wrapper = EncoderOnly {
        encoder: encoder.clone(),
    };
    save_safetensors(&wrapper, path, None, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContextAutoencoder;
    use crate::model::ForwardCtx;
    use burn::tensor::{Distribution, Tensor};

    fn features(enc: &VisionTransformerEncoder, x: Tensor<4>) -> Vec<f32> {
        enc.forward_features(x, &mut ForwardCtx::eval())
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    #[test]
    fn random_encoder_is_the_cae_starting_point() {
        let dev = Device::flex();
        let cfg = CaeConfig::test();
        let a = random_encoder(&cfg, 5, &dev);
        let b = ContextAutoencoder::new(&cfg, 5, &dev).encoder;
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
        assert_eq!(features(&a, x.clone()), features(&b, x));
    }

    #[test]
    fn an_encoder_file_round_trips_and_whole_models_load_too() {
        let dev = Device::flex();
        let cfg = CaeConfig::test();
        let dir = tempfile::tempdir().unwrap();
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);

        let enc = random_encoder(&cfg, 3, &dev);
        let p = dir.path().join("enc.safetensors");
        let extra = HashMap::from([(SOURCE_METADATA_KEY.to_string(), "mae".to_string())]);
        save_encoder(&enc, &cfg, &p, &extra).unwrap();
        let back = load_encoder(&p, None, &dev).unwrap();
        assert!(back.config_from_file);
        assert_eq!(back.config, cfg);
        assert_eq!(back.method(), "mae");
        assert_eq!(
            features(&enc, x.clone()),
            features(&back.encoder, x.clone())
        );

        // The encoder file written by pretraining, and a whole-model file, load the same way.
        let model = ContextAutoencoder::new(&cfg, 4, &dev);
        let whole = dir.path().join("model.safetensors");
        model.save(&cfg, &whole).unwrap();
        let from_whole = load_encoder(&whole, None, &dev).unwrap();
        assert_eq!(from_whole.method(), "cae");
        assert_eq!(
            features(&model.encoder, x.clone()),
            features(&from_whole.encoder, x)
        );
    }

    #[test]
    fn a_file_without_config_needs_a_preset_and_a_wrong_preset_is_named() {
        let dev = Device::flex();
        let cfg = CaeConfig::test();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bare.safetensors");
        let wrapper = EncoderOnly {
            encoder: random_encoder(&cfg, 0, &dev),
        };
        save_safetensors(&wrapper, &p, None, &HashMap::new()).unwrap();
        let err = load_encoder(&p, None, &dev).unwrap_err().to_string();
        assert!(
            err.contains("bare.safetensors") && err.contains("--preset"),
            "{err}"
        );
        let ok = load_encoder(&p, Some(&cfg), &dev).unwrap();
        assert!(!ok.config_from_file);
        let err = load_encoder(&p, Some(&CaeConfig::mini()), &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shape mismatch"), "{err}");
    }
}
