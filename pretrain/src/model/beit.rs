//! BEiT's masked image modelling, the baseline (`VisionTransformerForMaskedImageModeling` in
//! `microsoft/unilm beit/modeling_pretrain.py`).
//!
//! The masked patch embeddings are replaced by a learned mask token *inside* the encoder
//! (`x·(1−w) + mask_token·w`), all `1+N` tokens run through the blocks (with BEiT's optional
//! relative position bias), and `lm_head` predicts the targets at the masked positions.
//!
//! The encoder is the same [`VisionTransformerEncoder`] as CAE's, so on a CAE preset `--method beit`
//! differs from CAE only in the method (same encoder, masking and targets). Official BEiT checkpoints
//! keep the encoder's parameters at the top level (`blocks.0…`, `patch_embed…`); [`beit_key`] maps
//! them onto `encoder.*` here.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};

use super::drop_path::ForwardCtx;
use super::encoder::{TokenSelection, VisionTransformerEncoder};
use super::init::{Init, LinearInit};
use crate::config::CaeConfig;
use crate::error::PretrainError;
use crate::masking::MaskBatch;
use crate::weights::{LoadOptions, LoadReport, load_safetensors, save_safetensors};

/// The BEiT pretraining model.
#[derive(Module, Debug)]
pub struct BeitPretrain {
    /// The encoder (top-level keys in official BEiT checkpoints).
    pub encoder: VisionTransformerEncoder,
    /// `[1, 1, D]`, replaces masked patch embeddings.
    pub mask_token: Param<Tensor<3>>,
    /// `D → outputs`.
    pub lm_head: Linear,
}

/// One forward pass.
#[derive(Debug, Clone)]
pub struct BeitForward {
    /// All tokens after the final LayerNorm: `[B, 1+N, D]`.
    pub features: Tensor<3>,
    /// Head outputs at the masked positions, batch-major, ascending patch: `[B·M, outputs]`.
    pub logits: Tensor<2>,
}

/// Buffers of official BEiT checkpoints that we recompute (the index of each relative bias table).
pub const BEIT_IGNORED_KEYS: &[&str] = &[r"relative_position_index$"];

/// Official BEiT key → key here: everything but `mask_token` and `lm_head.*` lives under `encoder.`.
pub fn beit_key(official: &str) -> String {
    if official == "mask_token" || official.starts_with("lm_head.") {
        official.to_string()
    } else {
        format!("encoder.{official}")
    }
}

impl BeitPretrain {
    /// A freshly initialised model (BEiT's init: trunc-normal(0.02) for Linear weights, the
    /// tokens and the learned position table; Linear weights of block `l` rescaled by `sqrt(2l)`).
    pub fn new(cfg: &CaeConfig, seed: u64, device: &burn::tensor::Device) -> Self {
        cfg.validate().expect("CaeConfig::validate");
        let mut init = Init::new(seed, LinearInit::TruncNormal, device);
        let encoder = VisionTransformerEncoder::new(&cfg.encoder, &mut init);
        let d = cfg.encoder.embed_dim;
        let mask_token = init.trunc_normal_param([1, 1, d]);
        let lm_head = init.linear(d, cfg.head_outputs(), true);
        Self {
            encoder,
            mask_token,
            lm_head,
        }
    }

    /// # Shapes
    /// `images: [B, C, H, W]`, `masks`: `B` rows of `M` masked patches → [`BeitForward`]
    pub fn forward(
        &self,
        images: Tensor<4>,
        masks: &MaskBatch,
        ctx: &mut ForwardCtx,
    ) -> BeitForward {
        let device = images.device();
        let tokens = self.encoder.patch_tokens(images); // [B, N, D]
        let [b, n, d] = tokens.dims();
        let w: Vec<f32> = masks
            .masked
            .iter()
            .flat_map(|row| {
                let mut r = vec![0.0f32; n];
                for &p in row {
                    r[p] = 1.0;
                }
                r
            })
            .collect();
        let w = Tensor::<3>::from_data(TensorData::new(w, [b, n, 1]), &device);
        let mask_token = self.mask_token.val().expand([b, n, d]);
        let x = tokens * (w.clone().neg().add_scalar(1.0)) + mask_token * w;
        let x = self.encoder.with_cls_and_pos(x, None); // [B, 1+N, D]
        let features = self.encoder.run_blocks(x, ctx);
        let masked = TokenSelection::from_rows(&masks.masked, n, &device);
        let patch_features = features.clone().narrow(1, 1, n);
        let picked = masked.gather(patch_features); // [B, M, D]
        let m = masked.per_sample;
        let out = super::linear::apply(&self.lm_head, picked); // [B, M, vocab]
        let o = out.dims()[2];
        BeitForward {
            features,
            logits: out.reshape([b * m, o]),
        }
    }

    /// Loads a whole BEiT pretraining model in the official layout (top-level encoder keys).
    pub fn load_official(
        cfg: &CaeConfig,
        path: &std::path::Path,
        prefix: Option<&str>,
        device: &burn::tensor::Device,
    ) -> Result<(Self, LoadReport), PretrainError> {
        cfg.validate()?;
        let mut model = Self::new(cfg, 0, device);
        let rename = |k: &str| beit_key(k);
        let opts = LoadOptions {
            prefix,
            ignore: BEIT_IGNORED_KEYS,
            rename: Some(&rename),
        };
        let report = load_safetensors(&mut model, path, &opts)?;
        Ok((model, report))
    }

    /// Saves the encoder alone (`encoder.*` keys, as for CAE) with the config in the metadata.
    pub fn save_encoder(
        &self,
        cfg: &CaeConfig,
        path: &std::path::Path,
    ) -> Result<(), PretrainError> {
        save_safetensors(
            self,
            path,
            Some(r"^encoder\."),
            &super::cae::metadata(cfg, "cae-encoder"),
        )
    }
}
