//! The DALL-E dVAE encoder, the CAE tokenizer (cae.md §3; `openai/DALL-E dall_e/encoder.py`).
//!
//! A 7×7 input conv to `n_hid` channels; four groups of `n_blk_per_group` bottleneck residual
//! blocks at widths `n_hid, 2·n_hid, 4·n_hid, 8·n_hid`, a 2×2 max-pool after groups 1–3 (total
//! stride 8); ReLU; a 1×1 conv to `vocab_size` logits. Each block computes
//! `id_path(x) + post_gain · res_path(x)` with `post_gain = 1 / n_layers²`,
//! `n_layers = group_count · n_blk_per_group`; `res_path` is `relu → conv3×3 (n_out/4) → relu →
//! conv3×3 → relu → conv3×3 → relu → conv1×1 (n_out)`, and `id_path` a 1×1 conv when the width
//! changes. The input is mapped `x ↦ 0.8·x + 0.1` (logit-Laplace eps 0.1) from `[0, 1]` pixels.
//! Token ids are the argmax over the vocabulary, row-major.
//!
//! Weights load from safetensors with the official keys (`blocks.input.w`,
//! `blocks.group_1.block_1.res_path.conv_1.w`, …, `blocks.output.conv.w`); convert the released
//! `encoder.pkl` with `scripts/convert_dalle.py`.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::PretrainError;
use crate::model::init::Init;
use crate::weights::{LoadOptions, load_safetensors};

/// dVAE encoder sizes (`dall_e.encoder.Encoder`'s attributes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DalleConfig {
    /// Groups (4).
    pub group_count: usize,
    /// Base width (256 in the released model).
    pub n_hid: usize,
    /// Blocks per group (2 in the released model).
    pub n_blk_per_group: usize,
    /// Vocabulary (8192).
    pub vocab_size: usize,
}

impl Default for DalleConfig {
    fn default() -> Self {
        Self {
            group_count: 4,
            n_hid: 256,
            n_blk_per_group: 2,
            vocab_size: 8192,
        }
    }
}

/// A conv with the DALL-E parameter names `w` `[out, in, k, k]` and `b` `[out]`, same padding.
#[derive(Module, Debug)]
pub struct DalleConv {
    /// Weight.
    pub w: Param<Tensor<4>>,
    /// Bias.
    pub b: Param<Tensor<1>>,
}

impl DalleConv {
    fn new(n_in: usize, n_out: usize, k: usize, init: &mut Init) -> Self {
        // The released code draws normal(0, 1/sqrt(n_in·k²)); only loaded weights matter here.
        let std = 1.0 / ((n_in * k * k) as f64).sqrt();
        let v = init.trunc_normal(n_out * n_in * k * k, 1.0);
        let v = v.into_iter().map(|x| x * std as f32).collect();
        Self {
            w: init.param(v, [n_out, n_in, k, k]),
            b: init.zeros([n_out]),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let k = self.w.dims()[2];
        let pad = (k - 1) / 2;
        conv2d(
            x,
            self.w.val(),
            Some(self.b.val()),
            ConvOptions::new([1, 1], [pad, pad], [1, 1], 1),
        )
    }
}

/// The residual path of a block.
#[derive(Module, Debug)]
pub struct ResPath {
    /// 3×3, `n_in → n_out/4`.
    pub conv_1: DalleConv,
    /// 3×3.
    pub conv_2: DalleConv,
    /// 3×3.
    pub conv_3: DalleConv,
    /// 1×1, `n_out/4 → n_out`.
    pub conv_4: DalleConv,
}

/// `EncoderBlock`.
#[derive(Module, Debug)]
pub struct DalleBlock {
    /// 1×1 conv when the width changes, identity otherwise.
    pub id_path: Option<DalleConv>,
    /// Bottleneck.
    pub res_path: ResPath,
    /// `1 / n_layers²`.
    pub post_gain: f64,
}

impl DalleBlock {
    fn new(n_in: usize, n_out: usize, n_layers: usize, init: &mut Init) -> Self {
        let hid = n_out / 4;
        let id_path = (n_in != n_out).then(|| DalleConv::new(n_in, n_out, 1, init));
        let res_path = ResPath {
            conv_1: DalleConv::new(n_in, hid, 3, init),
            conv_2: DalleConv::new(hid, hid, 3, init),
            conv_3: DalleConv::new(hid, hid, 3, init),
            conv_4: DalleConv::new(hid, n_out, 1, init),
        };
        Self {
            id_path,
            res_path,
            post_gain: 1.0 / (n_layers * n_layers) as f64,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let id = match &self.id_path {
            Some(c) => c.forward(x.clone()),
            None => x.clone(),
        };
        let r = &self.res_path;
        let h = r.conv_1.forward(relu(x));
        let h = r.conv_2.forward(relu(h));
        let h = r.conv_3.forward(relu(h));
        let h = r.conv_4.forward(relu(h));
        id + h.mul_scalar(self.post_gain)
    }
}

/// A group of blocks (`block_1`, `block_2`, … in the checkpoint; `block.0`, … here).
#[derive(Module, Debug)]
pub struct DalleGroup {
    /// The blocks.
    pub block: Vec<DalleBlock>,
    /// Max-pool 2×2 after the blocks (groups 1–3).
    pub pool: bool,
}

/// The named stages (`blocks.*` in the checkpoint).
#[derive(Module, Debug)]
pub struct DalleBlocks {
    /// 7×7 input conv.
    pub input: DalleConv,
    /// Width `n_hid`.
    pub group_1: DalleGroup,
    /// Width `2·n_hid`.
    pub group_2: DalleGroup,
    /// Width `4·n_hid`.
    pub group_3: DalleGroup,
    /// Width `8·n_hid`.
    pub group_4: DalleGroup,
    /// ReLU + 1×1 conv to the vocabulary.
    pub output: DalleOutput,
}

/// The output stage.
#[derive(Module, Debug)]
pub struct DalleOutput {
    /// `8·n_hid → vocab_size`.
    pub conv: DalleConv,
}

/// The dVAE encoder.
#[derive(Module, Debug)]
pub struct DalleEncoder {
    /// All stages.
    pub blocks: DalleBlocks,
}

impl DalleConfig {
    /// Checks that an encoder can be built with these sizes (they may come from a file's
    /// `dalle_config` metadata): 4 groups (the architecture has exactly four), a width divisible
    /// by 4 (the bottleneck is `n_out / 4`), at least one block per group and one token.
    pub fn validate(&self) -> Result<(), PretrainError> {
        let mut problems = Vec::new();
        if self.group_count != 4 {
            problems.push(format!(
                "group_count is {}, the DALL-E encoder has exactly 4 groups",
                self.group_count
            ));
        }
        if self.n_hid == 0 || !self.n_hid.is_multiple_of(4) {
            problems.push(format!(
                "n_hid is {}, it must be a positive multiple of 4",
                self.n_hid
            ));
        }
        if self.n_blk_per_group == 0 {
            problems.push("n_blk_per_group is 0, each group needs a block".to_string());
        }
        if self.vocab_size == 0 {
            problems.push("vocab_size is 0".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PretrainError::Config(format!(
                "DALL-E encoder sizes: {}",
                problems.join("; ")
            )))
        }
    }
}

impl DalleEncoder {
    /// An encoder with random weights (load real ones with [`DalleEncoder::load`]); sizes that
    /// cannot be built are an error ([`DalleConfig::validate`]).
    pub fn new(cfg: &DalleConfig, device: &Device) -> Result<Self, PretrainError> {
        cfg.validate()?;
        let mut init = Init::new(0, crate::model::init::LinearInit::Xavier, device);
        let n_layers = cfg.group_count * cfg.n_blk_per_group;
        let h = cfg.n_hid;
        let group = |n_in: usize, n_out: usize, pool: bool, init: &mut Init| DalleGroup {
            block: (0..cfg.n_blk_per_group)
                .map(|i| DalleBlock::new(if i == 0 { n_in } else { n_out }, n_out, n_layers, init))
                .collect(),
            pool,
        };
        let input = DalleConv::new(3, h, 7, &mut init);
        let group_1 = group(h, h, true, &mut init);
        let group_2 = group(h, 2 * h, true, &mut init);
        let group_3 = group(2 * h, 4 * h, true, &mut init);
        let group_4 = group(4 * h, 8 * h, false, &mut init);
        let output = DalleOutput {
            conv: DalleConv::new(8 * h, cfg.vocab_size, 1, &mut init),
        };
        Ok(Self {
            blocks: DalleBlocks {
                input,
                group_1,
                group_2,
                group_3,
                group_4,
                output,
            },
        })
    }

    /// Builds the encoder for `cfg` and loads official-key weights from a safetensors file
    /// (optionally under a key prefix such as `"state."`).
    pub fn load(
        cfg: &DalleConfig,
        path: &Path,
        prefix: Option<&str>,
        device: &Device,
    ) -> Result<Self, PretrainError> {
        let mut model = Self::new(cfg, device).map_err(|e| match e {
            PretrainError::Config(m) => PretrainError::Input(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let rename = |key: &str| official_to_module_key(key);
        let opts = LoadOptions {
            prefix,
            ignore: &[],
            rename: Some(&rename),
        };
        load_safetensors(&mut model, path, &opts)?;
        Ok(model.no_grad())
    }

    /// Logits of `[0, 1]` pixels (mapped `0.8·x + 0.1` here).
    ///
    /// # Shapes
    /// `pixels01: [B, 3, H, W]` → `[B, vocab, H/8, W/8]`
    pub fn logits(&self, pixels01: Tensor<4>) -> Tensor<4> {
        self.logits_of_mapped(pixels01.mul_scalar(0.8).add_scalar(0.1))
    }

    /// Logits of pixels already mapped to `0.8·x + 0.1` (what the pretraining transform makes).
    pub fn logits_of_mapped(&self, mapped: Tensor<4>) -> Tensor<4> {
        let b = &self.blocks;
        let mut x = b.input.forward(mapped);
        for g in [&b.group_1, &b.group_2, &b.group_3, &b.group_4] {
            for blk in &g.block {
                x = blk.forward(x);
            }
            if g.pool {
                x = max_pool2d(x, MaxPoolOptions::new([2, 2]));
            }
        }
        b.output.conv.forward(relu(x))
    }

    /// Token ids, row-major.
    ///
    /// # Shapes
    /// `pixels01: [B, 3, H, W]` → `[B, (H/8)·(W/8)]`
    pub fn tokens(&self, pixels01: Tensor<4>) -> Tensor<2, Int> {
        Self::argmax_ids(self.logits(pixels01))
    }

    /// Token ids of pixels already mapped to `0.8·x + 0.1`, row-major: `[B, (H/8)·(W/8)]`.
    pub fn tokens_of_mapped(&self, mapped: Tensor<4>) -> Tensor<2, Int> {
        Self::argmax_ids(self.logits_of_mapped(mapped))
    }

    fn argmax_ids(logits: Tensor<4>) -> Tensor<2, Int> {
        let [b, _, h, w] = logits.dims();
        logits.argmax(1).reshape([b, h * w])
    }
}

/// `blocks.group_1.block_2.…` (checkpoint) → `blocks.group_1.block.1.…` (this module tree).
pub fn official_to_module_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, part) in key.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        match part
            .strip_prefix("block_")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if n >= 1 => {
                out.push_str("block.");
                out.push_str(&(n - 1).to_string());
            }
            _ => out.push_str(part),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_mapping() {
        assert_eq!(
            official_to_module_key("blocks.group_2.block_1.res_path.conv_4.w"),
            "blocks.group_2.block.0.res_path.conv_4.w"
        );
        assert_eq!(official_to_module_key("blocks.input.w"), "blocks.input.w");
    }

    #[test]
    fn shapes_of_a_small_encoder() {
        let dev = Device::flex();
        let cfg = DalleConfig {
            group_count: 4,
            n_hid: 16,
            n_blk_per_group: 1,
            vocab_size: 32,
        };
        let enc = DalleEncoder::new(&cfg, &dev).unwrap();
        let x = Tensor::<4>::zeros([2, 3, 16, 16], &dev);
        assert_eq!(enc.logits(x.clone()).dims(), [2, 32, 2, 2]);
        assert_eq!(enc.tokens(x).dims(), [2, 4]);
    }

    #[test]
    fn sizes_that_cannot_be_built_are_errors_not_panics() {
        let dev = Device::flex();
        for (cfg, needle) in [
            (
                DalleConfig {
                    group_count: 3,
                    ..Default::default()
                },
                "group_count is 3",
            ),
            (
                DalleConfig {
                    n_hid: 6,
                    ..Default::default()
                },
                "n_hid is 6",
            ),
            (
                DalleConfig {
                    n_blk_per_group: 0,
                    ..Default::default()
                },
                "n_blk_per_group is 0",
            ),
            (
                DalleConfig {
                    vocab_size: 0,
                    ..Default::default()
                },
                "vocab_size is 0",
            ),
        ] {
            let err = DalleEncoder::new(&cfg, &dev).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
