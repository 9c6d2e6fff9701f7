//! The model components, one per file, bottom-up: patch embedding, position embeddings,
//! attention, cross-attention, MLP, drop path, blocks, the encoder, the regressor, the decoder, and
//! the assembled [`ContextAutoencoder`].

pub mod attention;
pub mod beit;
pub mod block;
pub mod cae;
pub mod cross_attention;
pub mod decoder;
pub mod drop_path;
pub mod encoder;
pub mod init;
pub mod linear;
pub mod mlp;
pub mod patch_embed;
pub mod pos_embed;
pub mod regressor;
pub mod rel_pos_bias;

pub use beit::{BeitForward, BeitPretrain};
pub use cae::{CaeForward, ContextAutoencoder};
pub use drop_path::ForwardCtx;
pub use encoder::{TokenSelection, VisionTransformerEncoder};
