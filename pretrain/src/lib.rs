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
//! * [`fused`]: fused CPU kernels (LayerNorm, GELU, attention) with their backward passes.
//! * [`weights`]: safetensors load / save with official keys, shape checks, atomic writes.
//! * [`parity`]: runs a reference file from the official PyTorch code and compares every tensor.
//!
//! Every model takes a runtime `&burn::tensor::Device`; the default backend is `flex` (pure Rust).

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
pub mod targets;
pub mod train;
pub mod weights;

pub use config::CaeConfig;
pub use error::PretrainError;
pub use model::ContextAutoencoder;
