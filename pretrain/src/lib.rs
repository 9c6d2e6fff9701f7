//! CAE pretraining: the Context Autoencoder and the BEiT baseline on one ViT encoder.
//!
//! * [`config`]: model configs with the official defaults and named presets (`test`, `mini`,
//!   `vit_{tiny,small,base,large}_patch16`), serialised as TOML / JSON.
//! * [`model`]: one component per file (patch embedding, sin-cos table, attention, cross-attention,
//!   block, encoder, latent contextual regressor, decoder, [`model::ContextAutoencoder`]), with
//!   parameter names equal to the official checkpoint keys.
//! * [`masking`]: block-wise (exactly `N` patches) and random masking.
//! * [`targets`], [`dalle`]: pixel targets and the DALL-E dVAE tokenizer.
//! * [`loss`]: `CE + λ·MSE` and `mlm_acc`.
//! * [`autocast`]: bf16 mixed precision (products in bf16, f32 master weights and reductions).
//! * [`fused`]: fused CPU kernels (LayerNorm, GELU, attention) with their backward passes.
//! * [`weights`]: safetensors load / save with official keys, shape checks, atomic writes.
//! * [`parity`]: runs a reference file from the official PyTorch code and compares every tensor.
//!
//! Every model takes a runtime `&burn::tensor::Device`; the default backend is `flex` (pure Rust).

pub mod autocast;
pub mod config;
pub mod dalle;
pub mod device;
pub mod encoder_file;
pub mod error;
pub mod fused;
pub mod import;
pub mod loss;
pub mod masking;
pub mod model;
pub mod optim;
pub mod parity;
pub mod progress;
pub mod targets;
pub mod train;
pub mod weights;

pub use config::CaeConfig;
pub use error::PretrainError;
pub use model::ContextAutoencoder;

/// The burn version the workspace is built against: the one constant every record, report and
/// log line uses. The workspace pins burn (`=0.22.1` in the root `Cargo.toml`); the test below
/// checks this constant against the version `Cargo.lock` resolved, so the two cannot drift apart.
pub const BURN_VERSION: &str = "0.22.1";

#[cfg(test)]
mod burn_version_tests {
    /// The `version` of the `burn` package in `Cargo.lock`.
    fn locked_burn_version(lock: &str) -> Option<&str> {
        let mut lines = lock.lines();
        while let Some(line) = lines.next() {
            if line.trim() == "name = \"burn\"" {
                return lines
                    .next()?
                    .trim()
                    .strip_prefix("version = \"")?
                    .strip_suffix('"');
            }
        }
        None
    }

    #[test]
    fn burn_version_is_the_locked_one() {
        let lock = include_str!("../../Cargo.lock");
        assert_eq!(locked_burn_version(lock), Some(super::BURN_VERSION));
        let manifest = include_str!("../../Cargo.toml");
        assert!(
            manifest.contains(&format!("burn = {{ version = \"={}\"", super::BURN_VERSION)),
            "the root Cargo.toml pins another burn"
        );
    }
}
