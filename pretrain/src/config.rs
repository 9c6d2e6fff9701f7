//! Model and method configurations, with the official defaults and named presets.
//!
//! The field names follow the official code's arguments (`Atten4Vis/CAE` `models/modeling_cae.py`,
//! `tools/run_pretraining.py`), so a config reads like the command line that produced a paper number.
//! Presets:
//!
//! | preset | what for |
//! |---|---|
//! | [`CaeConfig::test`] | unit tests: 16×16 images, patch 4, width 32 |
//! | [`CaeConfig::mini`] | the CPU demo and end-to-end tests: 32×32, patch 4, width 128, depth 4 |
//! | [`CaeConfig::vit_tiny_patch16`] … [`CaeConfig::vit_large_patch16`] | the paper's sizes (cae.md §1.8, §4) |
//!
//! Configs serialise to TOML ([`CaeConfig::to_toml`]) and JSON (the `config` metadata of every
//! safetensors file we write), and are checked by [`CaeConfig::validate`] before a model is built.

use serde::{Deserialize, Serialize};

use crate::error::PretrainError;

/// Which bias the fused `qkv` projection of an attention layer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QkvBias {
    /// BEiT / CAE style: learned `q_bias` and `v_bias`, no key bias (`qkv` itself has no bias).
    #[default]
    QV,
    /// timm / MAE style: one `qkv.bias` of size `3·D`.
    Fused,
    /// No bias at all.
    None,
}

/// The absolute position embedding of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PosEmbed {
    /// Fixed 2-D sin-cos table (MoCo v3 layout, zero cls slot), not trained: CAE.
    #[default]
    SinCos,
    /// A learned table `(1, 1+N, D)`: BEiT with `use_abs_pos_emb`, MAE fine-tuning, timm ViTs.
    Learned,
    /// No absolute position embedding (BEiT's pretraining default, with a relative bias instead).
    None,
}

/// How a fixed sin-cos position table moves to another patch grid (a downstream crop or canvas
/// of another size than pretraining's). A learned table is always resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PosResize {
    /// The pretrained table resampled bicubically (PyTorch's `align_corners = False`), the cls
    /// slot kept, and kept frozen: CAE's downstream code (`mmcv_custom/checkpoint.py`).
    #[default]
    Interpolate,
    /// A sin-cos table built afresh for the new grid (differs from the resampled one: the
    /// frequencies are laid over the new grid instead of stretched).
    Rebuild,
}

/// BEiT's relative position bias in the encoder's self-attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RelPosBias {
    /// None (CAE pretraining).
    #[default]
    None,
    /// One table shared by all blocks (`rel_pos_bias.relative_position_bias_table`).
    Shared,
    /// One table per block (`blocks.N.attn.relative_position_bias_table`).
    PerBlock,
}

/// The ViT encoder (`VisionTransformerEncoder` in the official code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// Input image side in pixels.
    pub img_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "default_in_chans")]
    pub in_chans: usize,
    /// Token width `D`.
    pub embed_dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP hidden width = `int(D · mlp_ratio)`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Attention bias style.
    #[serde(default)]
    pub qkv_bias: QkvBias,
    /// LayerNorm epsilon (1e-6 in CAE, BEiT and MAE).
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// Layer-scale init value; `0` disables layer scale (`gamma_1`, `gamma_2`).
    pub init_values: f64,
    /// Stochastic depth: block `i` drops with `linspace(0, drop_path_rate, depth)[i]`.
    #[serde(default)]
    pub drop_path_rate: f64,
    /// Absolute position embedding.
    #[serde(default)]
    pub pos_embed: PosEmbed,
    /// Relative position bias.
    #[serde(default)]
    pub rel_pos_bias: RelPosBias,
}

fn default_in_chans() -> usize {
    3
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_ln_eps() -> f64 {
    1e-6
}

impl EncoderConfig {
    /// Patches per side.
    pub fn grid_size(&self) -> usize {
        self.img_size / self.patch_size
    }

    /// Number of patches `N`.
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// MLP hidden width.
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Checks the sizes fit together.
    pub fn validate(&self) -> Result<(), PretrainError> {
        let bad = |msg: String| Err(PretrainError::Config(msg));
        if self.patch_size == 0
            || self.img_size == 0
            || !self.img_size.is_multiple_of(self.patch_size)
        {
            return bad(format!(
                "img_size {} is not a positive multiple of patch_size {}",
                self.img_size, self.patch_size
            ));
        }
        if self.num_heads == 0 || !self.embed_dim.is_multiple_of(self.num_heads) {
            return bad(format!(
                "embed_dim {} is not divisible by num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if self.pos_embed == PosEmbed::SinCos && !self.embed_dim.is_multiple_of(4) {
            return bad(format!(
                "the 2-D sin-cos position embedding needs embed_dim divisible by 4, got {}",
                self.embed_dim
            ));
        }
        if self.depth == 0 {
            return bad("depth must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return bad(format!(
                "drop_path_rate {} is not in [0, 1)",
                self.drop_path_rate
            ));
        }
        Ok(())
    }
}

/// What the decoder predicts for each masked patch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetConfig {
    /// DALL-E dVAE token ids (cross-entropy over `vocab_size` classes), the official CAE target.
    Dalle {
        /// Vocabulary size (8192 for the released tokenizer).
        vocab_size: usize,
    },
    /// Per-patch pixels (MSE over masked patches), the Paddle release's `--target_mode rgb`.
    Pixel {
        /// How each target patch vector is normalised.
        #[serde(default)]
        norm: PixelNorm,
    },
}

/// Normalisation of a pixel target patch (`--normalized_pixel` in the Paddle release).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PixelNorm {
    /// `F.layer_norm` over each flattened patch (no affine, eps 1e-6): the default.
    #[default]
    LayerNorm,
    /// Raw (normalised-input) pixels.
    None,
    /// MAE's per-patch mean / variance normalisation (`(x - mean) / sqrt(var + 1e-6)`, unbiased var).
    Patch,
}

/// How masks are drawn (cae.md §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Block-wise (BEiT / CAE) or uniform random.
    #[serde(default)]
    pub kind: MaskKind,
    /// Exactly this many patches are masked in every image (`--num_mask_patches`).
    pub num_masked: usize,
    /// Smallest block, in patches (`--min_mask_patches_per_block`, 16 of 196 officially).
    pub min_block: usize,
    /// Largest block; `None` means `num_masked`.
    #[serde(default)]
    pub max_block: Option<usize>,
    /// Smallest aspect ratio; the largest is its inverse (0.3 officially).
    #[serde(default = "default_min_aspect")]
    pub min_aspect: f64,
}

fn default_min_aspect() -> f64 {
    0.3
}

/// Mask generator kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MaskKind {
    /// Block-wise masking, CAE's `while count != N` variant (always exactly N).
    #[default]
    Block,
    /// N patches chosen uniformly at random.
    Random,
}

impl MaskConfig {
    /// The official block minimum (16 of 196) scaled to a grid of `num_patches`, at least 1.
    pub fn scaled_min_block(num_patches: usize) -> usize {
        ((16.0 * num_patches as f64 / 196.0).round() as usize).max(1)
    }
}

/// The pretraining method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Context Autoencoder.
    #[default]
    Cae,
    /// BEiT's masked image modelling on the same encoder (the baseline).
    Beit,
}

/// The whole pretraining model: encoder, regressor, decoder, target, masking and loss weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaeConfig {
    /// Config schema version, bumped when a field changes meaning.
    #[serde(default = "default_version")]
    pub version: u32,
    /// Preset name this config started from (informational).
    #[serde(default)]
    pub preset: String,
    /// CAE or the BEiT baseline.
    #[serde(default)]
    pub method: Method,
    /// The encoder.
    pub encoder: EncoderConfig,
    /// Regressor / decoder width `D'` (a Linear+LN projection is inserted when `D' != D`).
    pub decoder_embed_dim: usize,
    /// Regressor / decoder heads.
    pub decoder_num_heads: usize,
    /// Latent contextual regressor depth.
    pub regressor_depth: usize,
    /// Decoder depth.
    pub decoder_depth: usize,
    /// Layer-scale init of regressor and decoder blocks (0 = fixed ones in the regressor, none in the decoder).
    pub decoder_layer_scale_init_value: f64,
    /// Target.
    pub target: TargetConfig,
    /// Masking.
    pub mask: MaskConfig,
    /// λ, the weight of the alignment MSE (`--align_loss_weight`).
    pub align_loss_weight: f64,
    /// Use BEiT's per-module trunc-normal + depth rescale init instead of the outer xavier pass.
    #[serde(default)]
    pub fix_init_weight: bool,
}

fn default_version() -> u32 {
    1
}

/// Names of the built-in presets.
pub const PRESETS: &[&str] = &[
    "test",
    "mini",
    "vit_tiny_patch16",
    "vit_small_patch16",
    "vit_base_patch16",
    "vit_large_patch16",
];

impl CaeConfig {
    /// A preset by name (see [`PRESETS`]).
    pub fn preset(name: &str) -> Result<Self, PretrainError> {
        let cfg = match name {
            "test" => Self::test(),
            "mini" => Self::mini(),
            "vit_tiny_patch16" => Self::vit_tiny_patch16(),
            "vit_small_patch16" => Self::vit_small_patch16(),
            "vit_base_patch16" => Self::vit_base_patch16(),
            "vit_large_patch16" => Self::vit_large_patch16(),
            other => {
                return Err(PretrainError::Config(format!(
                    "unknown preset `{other}`; known presets: {}",
                    PRESETS.join(", ")
                )));
            }
        };
        Ok(cfg)
    }

    /// The smallest model, for unit tests: 16×16 images, patch 4 (16 patches), width 32.
    pub fn test() -> Self {
        Self {
            version: 1,
            preset: "test".into(),
            method: Method::Cae,
            encoder: EncoderConfig {
                img_size: 16,
                patch_size: 4,
                in_chans: 3,
                embed_dim: 32,
                depth: 2,
                num_heads: 2,
                mlp_ratio: 4.0,
                qkv_bias: QkvBias::QV,
                layer_norm_eps: 1e-6,
                init_values: 0.1,
                drop_path_rate: 0.0,
                pos_embed: PosEmbed::SinCos,
                rel_pos_bias: RelPosBias::None,
            },
            decoder_embed_dim: 32,
            decoder_num_heads: 2,
            regressor_depth: 1,
            decoder_depth: 1,
            decoder_layer_scale_init_value: 0.1,
            target: TargetConfig::Pixel {
                norm: PixelNorm::LayerNorm,
            },
            mask: MaskConfig {
                kind: MaskKind::Block,
                num_masked: 8,
                min_block: 2,
                max_block: None,
                min_aspect: 0.3,
            },
            align_loss_weight: 2.0,
            fix_init_weight: false,
        }
    }

    /// The CPU demo: 32×32 images, patch 4 (64 patches), width 128, depth 4, 4 heads, regressor and
    /// decoder depth 2 at width 128, 32 of 64 patches masked in blocks of at least 4, λ = 2, layer
    /// scale 0.1, pixel targets. No drop path: short CPU runs gain nothing from it.
    pub fn mini() -> Self {
        Self {
            version: 1,
            preset: "mini".into(),
            method: Method::Cae,
            encoder: EncoderConfig {
                img_size: 32,
                patch_size: 4,
                in_chans: 3,
                embed_dim: 128,
                depth: 4,
                num_heads: 4,
                mlp_ratio: 4.0,
                qkv_bias: QkvBias::QV,
                layer_norm_eps: 1e-6,
                init_values: 0.1,
                drop_path_rate: 0.0,
                pos_embed: PosEmbed::SinCos,
                rel_pos_bias: RelPosBias::None,
            },
            decoder_embed_dim: 128,
            decoder_num_heads: 4,
            regressor_depth: 2,
            decoder_depth: 2,
            decoder_layer_scale_init_value: 0.1,
            target: TargetConfig::Pixel {
                norm: PixelNorm::LayerNorm,
            },
            mask: MaskConfig {
                kind: MaskKind::Block,
                num_masked: 32,
                min_block: 4,
                max_block: None,
                min_aspect: 0.3,
            },
            align_loss_weight: 2.0,
            fix_init_weight: false,
        }
    }

    /// The shared ViT-B/16 recipe of cae.md §1.8 / §4, resized by the other presets.
    fn paper(preset: &str, embed_dim: usize, depth: usize, num_heads: usize) -> Self {
        Self {
            version: 1,
            preset: preset.into(),
            method: Method::Cae,
            encoder: EncoderConfig {
                img_size: 224,
                patch_size: 16,
                in_chans: 3,
                embed_dim,
                depth,
                num_heads,
                mlp_ratio: 4.0,
                qkv_bias: QkvBias::QV,
                layer_norm_eps: 1e-6,
                init_values: 0.1,
                drop_path_rate: 0.1,
                pos_embed: PosEmbed::SinCos,
                rel_pos_bias: RelPosBias::None,
            },
            decoder_embed_dim: 768,
            decoder_num_heads: 12,
            regressor_depth: 4,
            decoder_depth: 4,
            decoder_layer_scale_init_value: 0.1,
            target: TargetConfig::Dalle { vocab_size: 8192 },
            mask: MaskConfig {
                kind: MaskKind::Block,
                num_masked: 98,
                min_block: 16,
                max_block: None,
                min_aspect: 0.3,
            },
            align_loss_weight: 2.0,
            fix_init_weight: false,
        }
    }

    /// ViT-T/16 (`cae_tiny_patch16_224_8k_vocab`: 192 wide, 12 blocks, 12 heads). No official
    /// script exists; the regressor/decoder keep the encoder's width (192, 12 heads) so no
    /// projection is needed.
    pub fn vit_tiny_patch16() -> Self {
        let mut cfg = Self::paper("vit_tiny_patch16", 192, 12, 12);
        cfg.decoder_embed_dim = 192;
        cfg.decoder_num_heads = 12;
        cfg
    }

    /// ViT-S/16 (`cae_small_patch16_224_8k_vocab`: 384 wide, 12 blocks, 12 heads). The code
    /// defaults (decoder width 768, 12 heads, hence a 384→768 projection) are kept; what the paper
    /// used is unverified (cae.md §1.8).
    pub fn vit_small_patch16() -> Self {
        Self::paper("vit_small_patch16", 384, 12, 12)
    }

    /// ViT-B/16, the official recipe (`scripts/cae_base_800e.sh`).
    pub fn vit_base_patch16() -> Self {
        Self::paper("vit_base_patch16", 768, 12, 12)
    }

    /// ViT-L/16 as `scripts/cae_large_1600e.sh` intends it: regressor/decoder 1024 wide with 16
    /// heads, layer scale 1e-5, `--fix_init_weight` (the script's missing backslash drops these
    /// three flags; cae.md §1.8).
    pub fn vit_large_patch16() -> Self {
        let mut cfg = Self::paper("vit_large_patch16", 1024, 24, 16);
        cfg.encoder.init_values = 1e-5;
        cfg.decoder_embed_dim = 1024;
        cfg.decoder_num_heads = 16;
        cfg.decoder_layer_scale_init_value = 1e-5;
        cfg.fix_init_weight = true;
        cfg
    }

    /// Number of outputs of the decoder head (vocabulary or `patch²·channels`).
    pub fn head_outputs(&self) -> usize {
        match &self.target {
            TargetConfig::Dalle { vocab_size } => *vocab_size,
            TargetConfig::Pixel { .. } => {
                self.encoder.patch_size * self.encoder.patch_size * self.encoder.in_chans
            }
        }
    }

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<(), PretrainError> {
        self.encoder.validate()?;
        let bad = |msg: String| Err(PretrainError::Config(msg));
        let n = self.encoder.num_patches();
        if self.decoder_num_heads == 0
            || !self
                .decoder_embed_dim
                .is_multiple_of(self.decoder_num_heads)
        {
            return bad(format!(
                "decoder_embed_dim {} is not divisible by decoder_num_heads {}",
                self.decoder_embed_dim, self.decoder_num_heads
            ));
        }
        if !self.decoder_embed_dim.is_multiple_of(4) {
            return bad(format!(
                "the regressor's sin-cos table needs decoder_embed_dim divisible by 4, got {}",
                self.decoder_embed_dim
            ));
        }
        if self.mask.num_masked == 0 || self.mask.num_masked >= n {
            return bad(format!(
                "num_masked must be in 1..{n} (the grid has {n} patches), got {}",
                self.mask.num_masked
            ));
        }
        if self.mask.min_block == 0 {
            return bad("mask.min_block must be at least 1".into());
        }
        if !(self.mask.min_aspect > 0.0 && self.mask.min_aspect <= 1.0) {
            return bad(format!(
                "mask.min_aspect must be in (0, 1], got {}",
                self.mask.min_aspect
            ));
        }
        if let TargetConfig::Dalle { vocab_size } = self.target
            && vocab_size < 2
        {
            return bad(format!("vocab_size must be at least 2, got {vocab_size}"));
        }
        if !self.align_loss_weight.is_finite() || self.align_loss_weight < 0.0 {
            return bad(format!(
                "align_loss_weight must be a finite, non-negative number, got {}",
                self.align_loss_weight
            ));
        }
        Ok(())
    }

    /// TOML text of this config.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a CaeConfig always serialises to TOML")
    }

    /// Parses and validates a TOML config.
    pub fn from_toml(text: &str) -> Result<Self, PretrainError> {
        let cfg: Self = toml::from_str(text).map_err(|e| PretrainError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// JSON text of this config (the `config` metadata of the safetensors files we write).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a CaeConfig always serialises to JSON")
    }

    /// Parses and validates a JSON config.
    pub fn from_json(text: &str) -> Result<Self, PretrainError> {
        let cfg: Self =
            serde_json::from_str(text).map_err(|e| PretrainError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_round_trips_through_toml() {
        for name in PRESETS {
            let cfg = CaeConfig::preset(name).unwrap();
            cfg.validate().unwrap();
            let back = CaeConfig::from_toml(&cfg.to_toml()).unwrap();
            assert_eq!(cfg, back, "{name}");
            let back = CaeConfig::from_json(&cfg.to_json()).unwrap();
            assert_eq!(cfg, back, "{name}");
        }
    }

    #[test]
    fn paper_presets_have_the_paper_values() {
        let b = CaeConfig::vit_base_patch16();
        assert_eq!(
            (b.encoder.embed_dim, b.encoder.depth, b.encoder.num_heads),
            (768, 12, 12)
        );
        assert_eq!(b.encoder.num_patches(), 196);
        assert_eq!((b.mask.num_masked, b.mask.min_block), (98, 16));
        assert_eq!(b.head_outputs(), 8192);
        let l = CaeConfig::vit_large_patch16();
        assert_eq!(
            (l.encoder.embed_dim, l.encoder.depth, l.encoder.num_heads),
            (1024, 24, 16)
        );
        assert!(l.fix_init_weight);
        assert_eq!(l.encoder.init_values, 1e-5);
        let m = CaeConfig::mini();
        assert_eq!(m.encoder.num_patches(), 64);
        assert_eq!(m.head_outputs(), 48);
    }

    #[test]
    fn bad_configs_are_rejected_with_a_reason() {
        let mut c = CaeConfig::mini();
        c.encoder.num_heads = 3;
        assert!(c.validate().unwrap_err().to_string().contains("num_heads"));
        let mut c = CaeConfig::mini();
        c.mask.num_masked = 64;
        assert!(c.validate().unwrap_err().to_string().contains("num_masked"));
        assert!(CaeConfig::preset("nope").is_err());
        assert!(CaeConfig::from_toml("version = 1\nbogus = 3").is_err());
    }

    #[test]
    fn min_block_scales_with_the_grid() {
        assert_eq!(MaskConfig::scaled_min_block(196), 16);
        assert_eq!(MaskConfig::scaled_min_block(64), 5);
        assert_eq!(MaskConfig::scaled_min_block(4), 1);
    }
}
