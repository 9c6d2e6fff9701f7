//! The Context Autoencoder (`ContextAutoencoderViT` in `models/modeling_cae.py`, cae.md §1).
//!
//! ```text
//! x ─ patch-embed ─ ENCODER([cls] + visible) ─ LN ─ (Linear+LN if D ≠ D') ─ Z_v
//!   ALIGNMENT: the same encoder weights, no gradient, on [cls] + masked ─ drop cls ─ Z̄_m
//!   REGRESSOR: mask-token queries attend to [Z_v ; queries] ─ LN ─ Ẑ_m
//!   DECODER:   Ẑ_m + pos_m ─ self-attention over masked tokens ─ LN ─ head ─ logits / pixels
//!   LOSS = reconstruction (CE or pixel MSE) + λ · MSE(Ẑ_m, Z̄_m)
//! ```
//!
//! Run it as in the paper:
//! `cae-bench pretrain --preset mini --data DIR --out RUN` (see the README).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use super::block::BlockDims;
use super::decoder::Decoder;
use super::drop_path::ForwardCtx;
use super::encoder::{TokenSelection, VisionTransformerEncoder};
use super::init::{Init, LinearInit};
use super::pos_embed::sincos_2d_with_cls;
use super::regressor::LatentRegresser;
use crate::config::{CaeConfig, QkvBias};
use crate::error::PretrainError;
use crate::masking::MaskBatch;
use crate::weights::{LoadOptions, LoadReport, load_safetensors, save_safetensors};

/// Checkpoint keys of the official model that this one does not keep: the alignment encoder is the
/// encoder itself under stop-gradient (cae.md §1.3).
pub const IGNORED_OFFICIAL_KEYS: &[&str] = &[r"^alignment_encoder\."];

/// Metadata key holding the model config (JSON) in every file we write.
pub const CONFIG_METADATA_KEY: &str = "config";
/// Metadata key naming what a file holds (`cae-pretrain-model` or `cae-encoder`).
pub const FORMAT_METADATA_KEY: &str = "format";

/// The pretraining model, field names = the official checkpoint keys.
#[derive(Module, Debug)]
pub struct ContextAutoencoder {
    /// The encoder `F` (trained; also the alignment target under stop-gradient).
    pub encoder: VisionTransformerEncoder,
    /// `D → D'` projection when the widths differ.
    pub encoder_to_regresser: Option<Linear>,
    /// LayerNorm after the projection.
    pub encoder_to_regresser_norm: Option<LayerNorm>,
    /// Fixed sin-cos table at width `D'` for the regressor and decoder, `[1, 1+N, D']`.
    pub rd_pos_embed: Param<Tensor<3>>,
    /// The latent contextual regressor `H`.
    pub regresser: LatentRegresser,
    /// The shared query, `[1, 1, D']`.
    pub mask_token: Param<Tensor<3>>,
    /// The decoder `G`.
    pub decoder: Decoder,
}

/// Everything one forward pass produces.
#[derive(Debug, Clone)]
pub struct CaeForward {
    /// Encoder output on `[cls] + visible`, after the final LayerNorm: `[B, 1+V, D]`.
    pub encoder: Tensor<3>,
    /// Regressor output after its LayerNorm, `Ẑ_m`: `[B, M, D']`.
    pub latent_pred: Tensor<3>,
    /// Alignment target `Z̄_m` (no gradient): `[B, M, D']`; not computed when λ = 0.
    pub latent_target: Option<Tensor<3>>,
    /// Decoder outputs, batch-major then ascending patch index: `[B·M, outputs]`.
    pub logits: Tensor<2>,
}

impl ContextAutoencoder {
    /// A freshly initialised model (cae.md §1.7), deterministic in `seed`.
    ///
    /// # Panics
    /// If the config does not validate; call [`CaeConfig::validate`] first on untrusted input.
    pub fn new(cfg: &CaeConfig, seed: u64, device: &burn::tensor::Device) -> Self {
        cfg.validate().expect("CaeConfig::validate");
        let linear = if cfg.fix_init_weight {
            LinearInit::TruncNormal
        } else {
            LinearInit::Xavier
        };
        let mut init = Init::new(seed, linear, device);
        let e = &cfg.encoder;
        let encoder = VisionTransformerEncoder::new(e, &mut init);
        let dd = cfg.decoder_embed_dim;
        let (encoder_to_regresser, encoder_to_regresser_norm) = if dd != e.embed_dim {
            (
                Some(init.linear(e.embed_dim, dd, true)),
                Some(init.layer_norm(dd, e.layer_norm_eps)),
            )
        } else {
            (None, None)
        };
        let g = e.grid_size();
        let n = e.num_patches();
        let rd_pos_embed = init
            .param(sincos_2d_with_cls(g, g, dd), [1, 1 + n, dd])
            .set_require_grad(false);
        let mlp_hidden = (dd as f64 * e.mlp_ratio) as usize;
        let dims = BlockDims {
            dim: dd,
            num_heads: cfg.decoder_num_heads,
            mlp_hidden,
            qkv_bias: QkvBias::QV,
            eps: e.layer_norm_eps,
            init_values: cfg.decoder_layer_scale_init_value,
        };
        let regresser =
            LatentRegresser::new(dims, cfg.regressor_depth, e.drop_path_rate, &mut init);
        let mask_token = init.trunc_normal_param([1, 1, dd]);
        let decoder = Decoder::new(
            dims,
            cfg.decoder_depth,
            cfg.head_outputs(),
            e.drop_path_rate,
            &mut init,
        );
        Self {
            encoder,
            encoder_to_regresser,
            encoder_to_regresser_norm,
            rd_pos_embed,
            regresser,
            mask_token,
            decoder,
        }
    }

    /// The `D → D'` projection (identity when absent).
    fn project(
        proj: &Option<Linear>,
        norm: &Option<LayerNorm>,
        x: Tensor<3>,
        eps: f64,
    ) -> Tensor<3> {
        match (proj, norm) {
            (Some(p), Some(n)) => crate::fused::layer_norm(n, super::linear::apply(p, x), eps),
            _ => x,
        }
    }

    /// One forward pass; the alignment branch runs only when `with_target` is set.
    ///
    /// # Shapes
    /// `images: [B, C, H, W]`; `masks`: `B` rows of exactly `M` masked patches → [`CaeForward`]
    pub fn forward(
        &self,
        images: Tensor<4>,
        masks: &MaskBatch,
        with_target: bool,
        ctx: &mut ForwardCtx,
    ) -> CaeForward {
        let device = images.device();
        let n = masks.num_patches;
        let b = masks.batch();
        let visible = TokenSelection::from_rows(&masks.visible, n, &device);
        let masked = TokenSelection::from_rows(&masks.masked, n, &device);

        // Encoder on [cls] + visible patches.
        let encoder_out = self.encoder.forward_selected(images.clone(), &visible, ctx); // [B, 1+V, D]
        let z = Self::project(
            &self.encoder_to_regresser,
            &self.encoder_to_regresser_norm,
            encoder_out.clone(),
            self.encoder.norm_eps,
        ); // [B, 1+V, D']
        let [_, v1, dd] = z.dims();
        let z_visible = z.narrow(1, 1, v1 - 1); // [B, V, D']

        // Alignment branch: the same weights under stop-gradient, on [cls] + masked patches.
        let latent_target = with_target.then(|| {
            let teacher = self.encoder.valid();
            let target = teacher.forward_selected(images.without_autodiff(), &masked, ctx);
            let [_, m1, _] = target.dims();
            let target = target.narrow(1, 1, m1 - 1);
            Self::project(
                &self.encoder_to_regresser.valid(),
                &self.encoder_to_regresser_norm.valid(),
                target,
                teacher.norm_eps,
            )
        }); // [B, M, D']

        // Regressor: mask-token queries at the masked positions.
        let rd = self.rd_pos_embed.val().squeeze_dim::<2>(0); // [1+N, D']
        let rd_patches = rd.narrow(0, 1, n);
        let pos_masked = masked.gather_shared(rd_patches.clone()); // [B, M, D']
        let pos_visible = visible.gather_shared(rd_patches); // [B, V, D']
        let m = masked.per_sample;
        let queries = self.mask_token.val().expand([b, m, dd]);
        let latent_pred =
            self.regresser
                .forward(queries, z_visible, pos_masked.clone(), pos_visible, ctx); // [B, M, D']

        // Decoder over the masked tokens only.
        let out = self.decoder.forward(latent_pred.clone(), pos_masked, ctx); // [B, M, outputs]
        let [_, _, o] = out.dims();
        CaeForward {
            encoder: encoder_out,
            latent_pred,
            latent_target,
            logits: out.reshape([b * m, o]),
        }
    }

    /// Loads a whole pretraining model (official keys, e.g. an official CAE checkpoint converted to
    /// safetensors, or one we wrote) into a model built from `cfg`; `prefix` selects keys under a
    /// prefix such as `"state."` or `"model."`.
    pub fn load(
        cfg: &CaeConfig,
        path: &std::path::Path,
        prefix: Option<&str>,
        device: &burn::tensor::Device,
    ) -> Result<(Self, LoadReport), PretrainError> {
        cfg.validate()?;
        let mut model = Self::new(cfg, 0, device);
        let opts = LoadOptions {
            prefix,
            ignore: IGNORED_OFFICIAL_KEYS,
            rename: None,
        };
        let report = load_safetensors(&mut model, path, &opts)?;
        Ok((model, report))
    }

    /// Saves the whole model with official keys and the config in the metadata (atomically).
    pub fn save(&self, cfg: &CaeConfig, path: &std::path::Path) -> Result<(), PretrainError> {
        save_safetensors(self, path, None, &metadata(cfg, "cae-pretrain-model"))
    }

    /// Saves the encoder alone (`encoder.*` keys) with the config in the metadata (atomically).
    pub fn save_encoder(
        &self,
        cfg: &CaeConfig,
        path: &std::path::Path,
    ) -> Result<(), PretrainError> {
        save_safetensors(
            self,
            path,
            Some(r"^encoder\."),
            &metadata(cfg, "cae-encoder"),
        )
    }
}

/// The metadata of a file we write.
pub fn metadata(cfg: &CaeConfig, format: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([
        (CONFIG_METADATA_KEY.to_string(), cfg.to_json()),
        (FORMAT_METADATA_KEY.to_string(), format.to_string()),
        (
            "producer".to_string(),
            format!("cae-bench {}", env!("CARGO_PKG_VERSION")),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetConfig;
    use crate::error::PretrainError;
    use crate::loss::cae_loss;
    use crate::masking::MaskGenerator;
    use crate::targets::{Targets, pixel_targets};
    use crate::weights::expected_tensors;
    use burn::tensor::{Device, Distribution};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn masks(cfg: &CaeConfig, b: usize, seed: u64) -> MaskBatch {
        let generator = MaskGenerator::new(cfg.encoder.grid_size(), &cfg.mask).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let m: Vec<_> = (0..b).map(|_| generator.sample(&mut rng)).collect();
        MaskBatch::from_masks(&m).unwrap()
    }

    #[test]
    fn forward_shapes_follow_the_config() {
        let dev = Device::flex();
        let mut cfg = CaeConfig::test();
        cfg.decoder_embed_dim = 48; // with the projection
        cfg.decoder_num_heads = 3;
        let model = ContextAutoencoder::new(&cfg, 1, &dev);
        let b = 3;
        let x = Tensor::<4>::random([b, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
        let mb = masks(&cfg, b, 0);
        let out = model.forward(x, &mb, true, &mut ForwardCtx::eval());
        let (n, m) = (16, cfg.mask.num_masked);
        assert_eq!(out.encoder.dims(), [b, 1 + n - m, 32]);
        assert_eq!(out.latent_pred.dims(), [b, m, 48]);
        assert_eq!(out.latent_target.unwrap().dims(), [b, m, 48]);
        assert_eq!(out.logits.dims(), [b * m, 48]); // patch 4 × 4 × 3 pixel outputs
    }

    #[test]
    fn parameter_names_are_the_official_keys() {
        let dev = Device::flex();
        let model = ContextAutoencoder::new(&CaeConfig::test(), 0, &dev);
        let keys = expected_tensors(&model);
        for k in [
            "encoder.patch_embed.proj.weight",
            "encoder.cls_token",
            "encoder.pos_embed",
            "encoder.blocks.0.attn.qkv.weight",
            "encoder.blocks.0.attn.q_bias",
            "encoder.blocks.1.gamma_2",
            "encoder.norm.weight",
            "rd_pos_embed",
            "mask_token",
            "regresser.regressor_blocks.0.cross_attn.k.weight",
            "regresser.regressor_blocks.0.norm1_q.bias",
            "regresser.regressor_blocks.0.gamma_1_cross",
            "regresser.norm.weight",
            "decoder.decoder_blocks.0.mlp.fc2.weight",
            "decoder.head.bias",
        ] {
            assert!(
                keys.contains_key(k),
                "missing {k}; have {:?}",
                keys.keys().collect::<Vec<_>>()
            );
        }
        // PyTorch layout: qkv is [3D, D].
        assert_eq!(keys["encoder.blocks.0.attn.qkv.weight"], vec![96, 32]);
        assert!(
            !keys
                .keys()
                .any(|k| k.contains("gamma") && k.contains("norm"))
        );
    }

    #[test]
    fn same_seed_same_init_and_different_seed_different_init() {
        let dev = Device::flex();
        let cfg = CaeConfig::test();
        let w = |seed| -> Vec<f32> {
            ContextAutoencoder::new(&cfg, seed, &dev)
                .decoder
                .head
                .weight
                .val()
                .try_into_vec_as::<f32>()
                .unwrap()
        };
        assert_eq!(w(3), w(3));
        assert_ne!(w(3), w(4));
    }

    #[test]
    fn save_load_round_trip_and_encoder_export() {
        let dev = Device::flex();
        let cfg = CaeConfig::test();
        let model = ContextAutoencoder::new(&cfg, 5, &dev);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        model.save(&cfg, &path).unwrap();
        let (loaded, report) = ContextAutoencoder::load(&cfg, &path, None, &dev).unwrap();
        assert_eq!(report.applied.len(), expected_tensors(&model).len());
        let a: Vec<f32> = model.encoder.blocks[1]
            .attn
            .qkv
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .unwrap();
        let b: Vec<f32> = loaded.encoder.blocks[1]
            .attn
            .qkv
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(a, b);
        let meta = crate::weights::read_metadata(&path).unwrap();
        assert_eq!(CaeConfig::from_json(&meta["config"]).unwrap(), cfg);

        let enc = dir.path().join("encoder.safetensors");
        model.save_encoder(&cfg, &enc).unwrap();
        let bytes = std::fs::read(&enc).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert!(st.names().iter().all(|n| n.starts_with("encoder.")));
        assert!(st.names().contains(&"encoder.blocks.1.attn.qkv.weight"));
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_names_keys_and_shapes() {
        let dev = Device::flex();
        let cfg = CaeConfig::test();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.safetensors");
        ContextAutoencoder::new(&cfg, 0, &dev)
            .save(&cfg, &path)
            .unwrap();

        let mut wider = cfg.clone();
        wider.encoder.embed_dim = 48;
        wider.encoder.num_heads = 3;
        wider.decoder_embed_dim = 48;
        wider.decoder_num_heads = 3;
        let err = ContextAutoencoder::load(&wider, &path, None, &dev).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PretrainError::CheckpointMismatch { .. }));
        assert!(msg.contains("small.safetensors"), "{msg}");
        assert!(
            msg.contains("`decoder.decoder_blocks.0.attn.qkv.weight`: the model expects [144, 48], the file has [96, 32]"),
            "{msg}"
        );

        let mut deeper = cfg.clone();
        deeper.encoder.depth = 3;
        let msg = ContextAutoencoder::load(&deeper, &path, None, &dev)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("missing key(s)") && msg.contains("encoder.blocks.2.attn.qkv.weight"),
            "{msg}"
        );

        let mut shallower = cfg.clone();
        shallower.regressor_depth = 0;
        let msg = ContextAutoencoder::load(&shallower, &path, None, &dev)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("unexpected key(s)") && msg.contains("regresser.regressor_blocks.0"),
            "{msg}"
        );
    }

    #[test]
    fn pixel_loss_backward_reaches_every_trainable_parameter() {
        let dev = Device::flex().autodiff();
        let cfg = CaeConfig::test();
        let model = ContextAutoencoder::new(&cfg, 2, &dev);
        let b = 2;
        let x = Tensor::<4>::random([b, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
        let mb = masks(&cfg, b, 1);
        let out = model.forward(x.clone(), &mb, true, &mut ForwardCtx::eval());
        let TargetConfig::Pixel { norm } = cfg.target else {
            unreachable!()
        };
        let sel = crate::model::TokenSelection::from_rows(&mb.masked, 16, &dev);
        let px = pixel_targets(x, 4, &sel, norm);
        let loss = cae_loss(
            out.logits,
            &Targets::Pixels(px),
            out.latent_pred,
            out.latent_target,
            2.0,
        );
        let v: f32 = loss.loss.clone().into_scalar();
        assert!(v.is_finite() && v > 0.0);
        let grads = loss.loss.backward();
        let by_key = crate::parity::gradients_by_key(&model, &grads).unwrap();
        // Every parameter but the two fixed position tables has a gradient.
        let all = expected_tensors(&model);
        assert_eq!(
            by_key.len(),
            all.len() - 2,
            "{:?}",
            all.keys()
                .filter(|k| !by_key.contains_key(*k))
                .collect::<Vec<_>>()
        );
        assert!(!by_key.contains_key("encoder.pos_embed") && !by_key.contains_key("rd_pos_embed"));
    }
}
