//! Importing official checkpoints as encoder files (`cae-bench import`).
//!
//! Three layouts are read, from `.pth` / `.pt` (through burn-store's PyTorch reader, no Python) or
//! `.safetensors`:
//!
//! | `--from` | keys | what is special |
//! |---|---|---|
//! | `cae` | `encoder.*` (Atten4Vis/CAE pretraining checkpoints) | `q_bias`/`v_bias`, layer scale `gamma_1/2`, sin-cos `pos_embed`; `alignment_encoder`, `regresser`, `decoder`, … are dropped |
//! | `beit` | top level (`blocks.0.attn.qkv.weight`, microsoft/unilm BEiT and timm `beit_*`) | relative position bias, shared (`rel_pos_bias.*`) or per block; `relative_position_index` is recomputed; `mask_token` / `lm_head` dropped |
//! | `mae` | top level (facebookresearch/mae and timm `vit_*`) | fused `qkv.bias`; learned or fixed `pos_embed`; timm layer scale `ls1.gamma` → `gamma_1`; `decoder_*` / `mask_token` dropped |
//!
//! Checkpoints that wrap the weights (`{"model": …}`, `{"state_dict": …}`, DDP's `module.`) are
//! unwrapped. A `fc_norm` (mean-pooling fine-tuned checkpoints) stands in for a missing final
//! `norm`. Classification heads (`head.*`) are dropped.
//!
//! The encoder options come from the tensors: width, depth, patch size, MLP ratio, bias style,
//! layer scale, position embedding (compared with our sin-cos table: equal → `sin_cos`, else
//! `learned`), relative position bias and, through it or the position table, the image size. The
//! number of heads is not in the weights unless a relative position table gives it: it comes from
//! `--num-heads` or the preset. A preset, when given, must agree with the file.
//!
//! [`plan_import`] maps every key (mapped / dropped / unexpected / missing) without building
//! anything, so the command can print the whole picture; [`ImportPlan::build`] refuses a plan with
//! missing or unexpected keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use safetensors::SafeTensors;
use serde::Serialize;

use crate::config::{CaeConfig, EncoderConfig, MaskConfig, Method, PosEmbed, QkvBias, RelPosBias};
use crate::encoder_file::{SOURCE_METADATA_KEY, random_encoder, save_encoder};
use crate::error::PretrainError;
use crate::model::VisionTransformerEncoder;
use crate::model::pos_embed::sincos_2d_with_cls;
use crate::weights::{
    LoadOptions, expected_tensors, f32_bytes, load_safetensors_bytes, read_file, tensor_to_f32,
};

/// The checkpoint layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportSource {
    /// Atten4Vis/CAE: `encoder.*`.
    Cae,
    /// microsoft/unilm BEiT or timm `beit_*`: top-level keys, relative position bias.
    Beit,
    /// facebookresearch/mae or timm `vit_*`: top-level keys, fused qkv bias.
    Mae,
}

impl ImportSource {
    /// `cae`, `beit` or `mae`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cae => "cae",
            Self::Beit => "beit",
            Self::Mae => "mae",
        }
    }
}

/// What the caller knows beyond the file.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// A preset the file must agree with; it also gives the heads, image size and LayerNorm eps.
    pub preset: Option<CaeConfig>,
    /// Attention heads (when neither a relative position table nor the preset gives them).
    pub num_heads: Option<usize>,
    /// Image side (when the file has neither a position table nor a relative position table).
    pub img_size: Option<usize>,
    /// Drop keys that map to nothing instead of refusing the file.
    pub allow_unexpected: bool,
}

/// A float tensor read from a checkpoint, PyTorch layout.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// How every key of a checkpoint maps onto the encoder.
#[derive(Debug, Clone, Serialize)]
pub struct ImportPlan {
    /// The checkpoint.
    pub path: PathBuf,
    /// Its layout.
    pub source: ImportSource,
    /// The wrapper the weights were found under (`model`, `state_dict`, `module`), if any.
    pub unwrapped: Option<String>,
    /// The config built for the encoder.
    pub config: CaeConfig,
    /// `(checkpoint key, encoder key)` for every tensor used.
    pub mapped: Vec<(String, String)>,
    /// Checkpoint keys that are not part of an encoder (decoder, heads, buffers we recompute).
    pub dropped: Vec<String>,
    /// Checkpoint keys that map to nothing the encoder has.
    pub unexpected: Vec<String>,
    /// Encoder keys the checkpoint does not provide.
    pub missing: Vec<String>,
    /// What was inferred and how.
    pub notes: Vec<String>,
    #[serde(skip)]
    tensors: BTreeMap<String, RawTensor>,
}

/// Reads every float tensor of a `.pth`/`.pt`/`.bin` (PyTorch) or `.safetensors` file.
/// Integer tensors (index buffers, step counters) are left out.
pub fn read_checkpoint(path: &Path) -> Result<BTreeMap<String, RawTensor>, PretrainError> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let mut out = BTreeMap::new();
    if is_safetensors {
        let bytes = read_file(path)?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| PretrainError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for name in st.names() {
            let view = st.tensor(name).map_err(|e| PretrainError::Safetensors {
                path: path.to_path_buf(),
                message: format!("{name}: {e}"),
            })?;
            if let Ok(values) = tensor_to_f32(&view) {
                out.insert(
                    name.to_string(),
                    RawTensor {
                        shape: view.shape().to_vec(),
                        values,
                    },
                );
            }
        }
        return Ok(out);
    }
    use burn::store::pytorch_reader::{DType, PytorchReader};
    let reader = PytorchReader::new(path).map_err(|e| {
        PretrainError::Input(format!(
            "{}: not a readable PyTorch checkpoint: {e}",
            path.display()
        ))
    })?;
    for (name, t) in reader.tensors() {
        let dtype = t.dtype();
        if !matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
            continue;
        }
        let bytes = t.read().map_err(|e| PretrainError::io(path, e))?;
        let values: Vec<f32> = match dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F64 => bytes
                .chunks_exact(8)
                .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_ne_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_ne_bytes([c[0], c[1]]).to_f32())
                .collect(),
        };
        out.insert(
            name.clone(),
            RawTensor {
                shape: t.shape().to_vec(),
                values,
            },
        );
    }
    Ok(out)
}

/// Strips a wrapper (`model.`, `state_dict.`, `model_ema.`… then DDP's `module.`) when the
/// weights sit under one. Returns the wrapper's name.
fn unwrap_checkpoint(
    tensors: BTreeMap<String, RawTensor>,
    source: ImportSource,
) -> (BTreeMap<String, RawTensor>, Option<String>) {
    let marker = match source {
        ImportSource::Cae => "encoder.patch_embed.proj.weight",
        _ => "patch_embed.proj.weight",
    };
    let mut best: Option<String> = None;
    for key in tensors.keys() {
        if let Some(prefix) = key.strip_suffix(marker)
            && (prefix.is_empty() || prefix.ends_with('.'))
        {
            // The shortest wrapper (an EMA copy lives under a longer one, e.g. `model_ema.`).
            if best.as_ref().is_none_or(|b| prefix.len() < b.len()) {
                best = Some(prefix.to_string());
            }
        }
    }
    match best {
        Some(prefix) if !prefix.is_empty() => {
            let inner = tensors
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|s| (s.to_string(), v)))
                .collect();
            (inner, Some(prefix.trim_end_matches('.').to_string()))
        }
        _ => (tensors, None),
    }
}

/// Where one checkpoint key goes.
enum Route {
    /// To this encoder key.
    Encoder(String),
    /// Not part of an encoder.
    Drop,
}

fn route(key: &str, source: ImportSource, has_norm: bool) -> Route {
    let local = match source {
        ImportSource::Cae => match key.strip_prefix("encoder.") {
            Some(k) => k.to_string(),
            None => return Route::Drop,
        },
        _ => key.to_string(),
    };
    if local.ends_with("relative_position_index") || local.ends_with(".k_bias") {
        return Route::Drop; // buffers we recompute / BEiT's constant zero key bias
    }
    const DROPPED: &[&str] = &[
        "mask_token",
        "lm_head.",
        "head.",
        "decoder_",
        "decoder.",
        "rd_pos_embed",
        "teacher",
    ];
    if DROPPED.iter().any(|p| local.starts_with(p)) {
        return Route::Drop;
    }
    if let Some(rest) = local.strip_prefix("fc_norm.") {
        return if has_norm {
            Route::Drop
        } else {
            Route::Encoder(format!("norm.{rest}"))
        };
    }
    // timm's LayerScale modules.
    let renamed = local
        .replace(".ls1.gamma", ".gamma_1")
        .replace(".ls2.gamma", ".gamma_2");
    Route::Encoder(renamed)
}

fn shape_of<'a>(t: &'a BTreeMap<String, RawTensor>, key: &str) -> Option<&'a [usize]> {
    t.get(key).map(|r| r.shape.as_slice())
}

/// Infers the encoder config from the (unwrapped, routed) tensors.
fn infer_config(
    t: &BTreeMap<String, RawTensor>,
    source: ImportSource,
    opts: &ImportOptions,
    notes: &mut Vec<String>,
) -> Result<EncoderConfig, String> {
    let base = opts.preset.as_ref().map(|c| &c.encoder);
    let cls = shape_of(t, "cls_token").ok_or("the checkpoint has no cls_token")?;
    let d = *cls.last().ok_or("cls_token has no dimensions")?;
    let pe = shape_of(t, "patch_embed.proj.weight").ok_or("no patch_embed.proj.weight")?;
    if pe.len() != 4 || pe[0] != d || pe[2] != pe[3] {
        return Err(format!(
            "patch_embed.proj.weight has shape {pe:?}, expected [{d}, C, p, p]"
        ));
    }
    let (in_chans, patch) = (pe[1], pe[2]);
    let depth = t
        .keys()
        .filter_map(|k| k.strip_prefix("blocks."))
        .filter_map(|k| k.split('.').next()?.parse::<usize>().ok())
        .max()
        .map(|m| m + 1)
        .ok_or("the checkpoint has no blocks.N.* keys")?;
    let hidden = shape_of(t, "blocks.0.mlp.fc1.weight").ok_or("no blocks.0.mlp.fc1.weight")?[0];
    let mlp_ratio = hidden as f64 / d as f64;
    let qkv_bias = if t.contains_key("blocks.0.attn.q_bias") {
        QkvBias::QV
    } else if t.contains_key("blocks.0.attn.qkv.bias") {
        QkvBias::Fused
    } else {
        QkvBias::None
    };
    let layer_scale = t.contains_key("blocks.0.gamma_1");
    let (rel_pos_bias, rel_table) =
        if let Some(s) = shape_of(t, "rel_pos_bias.relative_position_bias_table") {
            (RelPosBias::Shared, Some(s))
        } else if let Some(s) = shape_of(t, "blocks.0.attn.relative_position_bias_table") {
            (RelPosBias::PerBlock, Some(s))
        } else {
            (RelPosBias::None, None)
        };
    // Grid side from a relative position table: rows = (2g − 1)² + 3.
    let rel_grid = rel_table.and_then(|s| {
        let side = ((s[0].checked_sub(3)?) as f64).sqrt().round() as usize;
        ((side * side + 3 == s[0]) && side % 2 == 1).then_some(side.div_ceil(2))
    });
    let pos_grid = match shape_of(t, "pos_embed") {
        Some(s) => {
            let n = s.get(1).copied().unwrap_or(0).saturating_sub(1);
            let g = (n as f64).sqrt().round() as usize;
            if g * g != n || s.len() != 3 || s[2] != d {
                return Err(format!(
                    "pos_embed has shape {s:?}; expected [1, 1 + g², {d}] (a cls slot and a square grid)"
                ));
            }
            Some(g)
        }
        None => None,
    };
    let grid = pos_grid.or(rel_grid);
    let img_size = match (grid, opts.img_size, base) {
        (Some(g), _, _) => g * patch,
        (None, Some(s), _) => s,
        (None, None, Some(b)) => b.img_size,
        (None, None, None) => {
            return Err(
                "the image size is not in the weights (no position tables); \
                        pass --img-size or --preset"
                    .into(),
            );
        }
    };
    if let (Some(g), Some(s)) = (grid, opts.img_size)
        && g * patch != s
    {
        return Err(format!(
            "--img-size {s} disagrees with the checkpoint's position tables ({g}×{g} patches of {patch} px = {})",
            g * patch
        ));
    }
    let num_heads = match (rel_table, opts.num_heads, base) {
        (_, Some(h), _) => h,
        (Some(s), None, _) => s[1],
        (None, None, Some(b)) => b.num_heads,
        (None, None, None) => {
            return Err("the number of attention heads is not in the weights; \
                        pass --num-heads or --preset"
                .into());
        }
    };
    if let Some(s) = rel_table
        && s[1] != num_heads
    {
        return Err(format!(
            "the relative position table has {} heads, but {num_heads} were asked for",
            s[1]
        ));
    }
    let pos_embed = match t.get("pos_embed") {
        None => PosEmbed::None,
        Some(p) => {
            let g = img_size / patch;
            let ours = d.is_multiple_of(4).then(|| sincos_2d_with_cls(g, g, d));
            let same = ours.is_some_and(|o| {
                o.len() == p.values.len()
                    && o.iter().zip(&p.values).all(|(a, b)| (a - b).abs() <= 1e-4)
            });
            if same {
                notes.push("pos_embed equals the fixed 2-D sin-cos table: sin_cos".into());
                PosEmbed::SinCos
            } else {
                notes.push(
                    "pos_embed differs from our sin-cos table (learned, or another layout): learned"
                        .into(),
                );
                PosEmbed::Learned
            }
        }
    };
    let init_values = match (layer_scale, base) {
        (false, _) => 0.0,
        (true, Some(b)) if b.init_values > 0.0 => b.init_values,
        (true, _) => 0.1,
    };
    let cfg = EncoderConfig {
        img_size,
        patch_size: patch,
        in_chans,
        embed_dim: d,
        depth,
        num_heads,
        mlp_ratio,
        qkv_bias,
        layer_norm_eps: base.map_or(1e-6, |b| b.layer_norm_eps),
        init_values,
        drop_path_rate: 0.0,
        pos_embed,
        rel_pos_bias,
    };
    if cfg.mlp_hidden() != hidden {
        return Err(format!(
            "MLP width {hidden} is not an integer ratio of the width {d}"
        ));
    }
    if let Some(b) = base {
        let mut bad = Vec::new();
        for (what, ours, theirs) in [
            ("embed_dim", b.embed_dim, d),
            ("depth", b.depth, depth),
            ("patch_size", b.patch_size, patch),
            ("in_chans", b.in_chans, in_chans),
            ("mlp hidden", b.mlp_hidden(), hidden),
            ("img_size", b.img_size, img_size),
        ] {
            if ours != theirs {
                bad.push(format!("{what}: preset {ours}, file {theirs}"));
            }
        }
        if !bad.is_empty() {
            return Err(format!(
                "the preset does not match the checkpoint ({})",
                bad.join("; ")
            ));
        }
    }
    notes.push(format!(
        "{}: {d} wide, {depth} blocks, {num_heads} heads, patch {patch}, image {img_size}, \
         qkv bias {qkv_bias:?}, layer scale {layer_scale}, pos_embed {pos_embed:?}, \
         relative position bias {rel_pos_bias:?}",
        source.name()
    ));
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// A whole config around an imported encoder: the preset's, or a consistent skeleton.
fn model_config(encoder: EncoderConfig, source: ImportSource, opts: &ImportOptions) -> CaeConfig {
    let mut cfg = match &opts.preset {
        Some(p) => p.clone(),
        None => {
            let mut c = CaeConfig::test();
            c.preset = format!("imported-{}", source.name());
            c.decoder_embed_dim = encoder.embed_dim;
            c.decoder_num_heads = encoder.num_heads;
            let n = encoder.num_patches();
            c.mask = MaskConfig {
                num_masked: (n / 2).max(1),
                min_block: MaskConfig::scaled_min_block(n),
                ..c.mask
            };
            c
        }
    };
    cfg.method = match source {
        ImportSource::Beit => Method::Beit,
        _ => Method::Cae,
    };
    cfg.encoder = encoder;
    cfg
}

/// Reads `path` and maps its keys onto an encoder (see the module docs).
pub fn plan_import(
    path: &Path,
    source: ImportSource,
    opts: &ImportOptions,
) -> Result<ImportPlan, PretrainError> {
    let raw = read_checkpoint(path)?;
    if raw.is_empty() {
        return Err(PretrainError::Input(format!(
            "{}: no float tensors in the file",
            path.display()
        )));
    }
    let (tensors, unwrapped) = unwrap_checkpoint(raw, source);
    let has_norm = tensors.contains_key(match source {
        ImportSource::Cae => "encoder.norm.weight",
        _ => "norm.weight",
    });
    let mut routed: BTreeMap<String, RawTensor> = BTreeMap::new();
    let mut origin: HashMap<String, String> = HashMap::new();
    let mut dropped = Vec::new();
    for (key, t) in tensors {
        match route(&key, source, has_norm) {
            Route::Drop => dropped.push(key),
            Route::Encoder(ours) => {
                origin.insert(ours.clone(), key);
                routed.insert(ours, t);
            }
        }
    }
    let mut notes = Vec::new();
    if !has_norm && routed.contains_key("norm.weight") {
        notes.push("no final `norm`: the fine-tuning `fc_norm` stands in for it".into());
    }
    let encoder_cfg = infer_config(&routed, source, opts, &mut notes).map_err(|e| {
        PretrainError::Config(format!(
            "{} (read as {}): {e}",
            path.display(),
            source.name()
        ))
    })?;
    let config = model_config(encoder_cfg, source, opts);
    config.validate()?;
    let skeleton = random_encoder(&config, 0, &Device::flex());
    let expected = expected_tensors(&skeleton);
    let mut mapped = Vec::new();
    let mut unexpected = Vec::new();
    let mut used = BTreeMap::new();
    for (ours, t) in routed {
        let from = origin.remove(&ours).unwrap_or_else(|| ours.clone());
        if expected.contains_key(&ours) {
            mapped.push((from, ours.clone()));
            used.insert(ours, t);
        } else {
            unexpected.push(from);
        }
    }
    let have: BTreeSet<&String> = used.keys().collect();
    let missing = expected
        .keys()
        .filter(|k| !have.contains(k))
        .cloned()
        .collect();
    Ok(ImportPlan {
        path: path.to_path_buf(),
        source,
        unwrapped,
        config,
        mapped,
        dropped,
        unexpected,
        missing,
        notes,
        tensors: used,
    })
}

impl ImportPlan {
    /// Builds the encoder on `device`. Refuses a plan with missing keys, or with unexpected ones
    /// unless `allow_unexpected`; shapes are checked against the model.
    pub fn build(
        &self,
        allow_unexpected: bool,
        device: &Device,
    ) -> Result<VisionTransformerEncoder, PretrainError> {
        if !self.missing.is_empty() || (!allow_unexpected && !self.unexpected.is_empty()) {
            let mismatch = crate::error::CheckpointMismatch {
                missing: self.missing.clone(),
                unexpected: if allow_unexpected {
                    Vec::new()
                } else {
                    self.unexpected.clone()
                },
                ..Default::default()
            };
            return Err(PretrainError::CheckpointMismatch {
                path: self.path.clone(),
                mismatch: Box::new(mismatch),
            });
        }
        let views: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.clone(), f32_bytes(&t.values)))
            .collect();
        let st_views: Vec<(String, safetensors::tensor::TensorView<'_>)> = views
            .iter()
            .map(|(n, s, b)| {
                let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("shape and bytes agree by construction");
                (n.clone(), v)
            })
            .collect();
        let bytes =
            safetensors::serialize(st_views, None).map_err(|e| PretrainError::Safetensors {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        let mut encoder = random_encoder(&self.config, 0, device);
        load_safetensors_bytes(&mut encoder, &bytes, &self.path, &LoadOptions::default())?;
        Ok(encoder)
    }

    /// The metadata an encoder file written from this plan carries besides the config.
    pub fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            (
                SOURCE_METADATA_KEY.to_string(),
                self.source.name().to_string(),
            ),
            (
                "imported_from".to_string(),
                self.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        ])
    }

    /// Builds the encoder and writes it as an encoder file at `out`, with [`Self::metadata`]
    /// and `extra` (e.g. the checkpoint's sha256) in the header.
    pub fn write(
        &self,
        out: &Path,
        allow_unexpected: bool,
        extra: &HashMap<String, String>,
    ) -> Result<(), PretrainError> {
        let encoder = self.build(allow_unexpected, &Device::flex())?;
        let mut meta = self.metadata();
        meta.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        save_encoder(&encoder, &self.config, out, &meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder_file::load_encoder;
    use crate::model::ForwardCtx;
    use crate::weights::collect_tensors;
    use burn::tensor::{Distribution, Tensor};

    /// Writes `enc`'s tensors under official names rewritten by `rename` (None = drop) plus
    /// `extra` keys, as a safetensors "checkpoint".
    fn checkpoint(
        enc: &VisionTransformerEncoder,
        path: &Path,
        rename: impl Fn(&str) -> Option<String>,
        extra: &[(&str, Vec<usize>)],
    ) {
        let mut named = Vec::new();
        for (name, shape, bytes) in collect_tensors(enc, None, "").unwrap() {
            if let Some(n) = rename(&name) {
                named.push((n, shape, bytes));
            }
        }
        for (name, shape) in extra {
            let n: usize = shape.iter().product();
            named.push((name.to_string(), shape.clone(), f32_bytes(&vec![0.5; n])));
        }
        crate::weights::write_safetensors_atomic(path, &named, &HashMap::new()).unwrap();
    }

    fn feats(enc: &VisionTransformerEncoder, x: Tensor<4>) -> Vec<f32> {
        enc.forward_features(x, &mut ForwardCtx::eval())
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    #[test]
    fn cae_layout_is_unwrapped_and_its_extras_dropped() {
        let dev = Device::flex();
        let cfg = CaeConfig::test();
        let enc = random_encoder(&cfg, 9, &dev);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cae.safetensors");
        checkpoint(
            &enc,
            &p,
            |n| Some(format!("model.encoder.{n}")),
            &[
                ("model.regresser.norm.weight", vec![32]),
                ("model.mask_token", vec![1, 1, 32]),
                ("model_ema.encoder.cls_token", vec![1, 1, 32]),
            ],
        );
        let plan = plan_import(
            &p,
            ImportSource::Cae,
            &ImportOptions {
                num_heads: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(plan.unwrapped.as_deref(), Some("model"));
        assert!(
            plan.missing.is_empty() && plan.unexpected.is_empty(),
            "{plan:?}"
        );
        assert_eq!(plan.dropped.len(), 2);
        assert_eq!(plan.config.encoder, cfg.encoder);
        let out = dir.path().join("enc.safetensors");
        plan.write(&out, false, &HashMap::new()).unwrap();
        let back = load_encoder(&out, None, &dev).unwrap();
        assert_eq!(back.method(), "cae");
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
        assert_eq!(feats(&enc, x.clone()), feats(&back.encoder, x));
    }

    #[test]
    fn mae_layout_with_timm_layer_scale_and_fc_norm() {
        let dev = Device::flex();
        let mut cfg = CaeConfig::test();
        cfg.encoder.qkv_bias = QkvBias::Fused;
        cfg.encoder.pos_embed = PosEmbed::Learned;
        let enc = random_encoder(&cfg, 2, &dev);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mae.safetensors");
        checkpoint(
            &enc,
            &p,
            |n| {
                Some(match n {
                    "norm.weight" => "fc_norm.weight".to_string(),
                    "norm.bias" => "fc_norm.bias".to_string(),
                    _ => n
                        .replace(".gamma_1", ".ls1.gamma")
                        .replace(".gamma_2", ".ls2.gamma"),
                })
            },
            &[
                ("decoder_embed.weight", vec![16, 32]),
                ("head.weight", vec![10, 32]),
            ],
        );
        let plan = plan_import(
            &p,
            ImportSource::Mae,
            &ImportOptions {
                preset: Some(CaeConfig::test()),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            plan.missing.is_empty() && plan.unexpected.is_empty(),
            "{plan:?}"
        );
        assert_eq!(plan.config.encoder.qkv_bias, QkvBias::Fused);
        assert_eq!(plan.config.encoder.pos_embed, PosEmbed::Learned);
        assert!(plan.notes.iter().any(|n| n.contains("fc_norm")));
        let built = plan.build(false, &dev).unwrap();
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
        assert_eq!(feats(&enc, x.clone()), feats(&built, x));
    }

    #[test]
    fn missing_unexpected_and_disagreeing_presets_are_refused_with_names() {
        let dev = Device::flex();
        let cfg = CaeConfig::test();
        let enc = random_encoder(&cfg, 1, &dev);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("beit.safetensors");
        checkpoint(
            &enc,
            &p,
            |n| (n != "blocks.1.mlp.fc2.bias").then(|| n.to_string()),
            &[("blocks.0.attn.mystery", vec![3])],
        );
        let opts = ImportOptions {
            num_heads: Some(2),
            ..Default::default()
        };
        let plan = plan_import(&p, ImportSource::Beit, &opts).unwrap();
        assert_eq!(plan.missing, vec!["blocks.1.mlp.fc2.bias".to_string()]);
        assert_eq!(plan.unexpected, vec!["blocks.0.attn.mystery".to_string()]);
        let err = plan.build(true, &dev).unwrap_err().to_string();
        assert!(err.contains("blocks.1.mlp.fc2.bias"), "{err}");

        let err = plan_import(
            &p,
            ImportSource::Beit,
            &ImportOptions {
                preset: Some(CaeConfig::mini()),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("embed_dim: preset 128, file 32"), "{err}");
        let err = plan_import(&p, ImportSource::Beit, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--num-heads"), "{err}");
    }
}
