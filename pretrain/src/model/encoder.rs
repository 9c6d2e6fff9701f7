//! The ViT encoder (`VisionTransformerEncoder` in `models/modeling_cae_helper.py`).
//!
//! CAE runs it on `[cls] + visible patches` only (gathered in ascending patch order, each plus its
//! position embedding); the alignment branch runs the same weights on `[cls] + masked patches`;
//! downstream protocols run it on all patches. A final LayerNorm is applied to every output token.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::block::{Block, BlockDims};
use super::drop_path::{ForwardCtx, drop_path_schedule};
use super::init::Init;
use super::patch_embed::PatchEmbed;
use super::pos_embed::sincos_2d_with_cls;
use super::rel_pos_bias::RelativePositionBias;
use crate::config::{EncoderConfig, PosEmbed, PosResize, RelPosBias};
use crate::error::PretrainError;
use crate::fused;

/// The patches each sample keeps, as gather indices (every sample keeps the same number).
#[derive(Debug, Clone)]
pub struct TokenSelection {
    /// Batch size `B`.
    pub batch: usize,
    /// Patches kept per sample `K`.
    pub per_sample: usize,
    /// `b·N + p` for each kept patch, sample-major, ascending `p`: `[B·K]`.
    pub flat: Tensor<1, Int>,
    /// `p` for each kept patch: `[B·K]`.
    pub local: Tensor<1, Int>,
}

impl TokenSelection {
    /// From per-sample ascending patch lists over a grid of `num_patches`.
    ///
    /// # Panics
    /// If the rows differ in length (callers check this: the masks are exact).
    pub fn from_rows(rows: &[Vec<usize>], num_patches: usize, device: &Device) -> Self {
        let per_sample = rows.first().map_or(0, Vec::len);
        assert!(
            rows.iter().all(|r| r.len() == per_sample),
            "every sample must keep the same number of patches"
        );
        let flat: Vec<i64> = rows
            .iter()
            .enumerate()
            .flat_map(|(b, r)| r.iter().map(move |&p| (b * num_patches + p) as i64))
            .collect();
        let local: Vec<i64> = rows.iter().flatten().map(|&p| p as i64).collect();
        let len = flat.len();
        Self {
            batch: rows.len(),
            per_sample,
            flat: Tensor::from_data(TensorData::new(flat, [len]), device),
            local: Tensor::from_data(TensorData::new(local, [len]), device),
        }
    }

    /// Gathers the selected rows of `x: [B, N, D]` → `[B, K, D]`.
    pub fn gather(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        x.reshape([b * n, d])
            .select(0, self.flat.clone())
            .reshape([self.batch, self.per_sample, d])
    }

    /// Gathers the selected rows of a shared table `t: [N, D]` → `[B, K, D]`.
    pub fn gather_shared(&self, t: Tensor<2>) -> Tensor<3> {
        let [_, d] = t.dims();
        t.select(0, self.local.clone())
            .reshape([self.batch, self.per_sample, d])
    }
}

/// The ViT encoder.
#[derive(Module, Debug)]
pub struct VisionTransformerEncoder {
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// `[1, 1, D]`.
    pub cls_token: Param<Tensor<3>>,
    /// `[1, 1+N, D]`: fixed sin-cos (not trained) or learned; absent for BEiT's default.
    pub pos_embed: Option<Param<Tensor<3>>>,
    /// A relative position bias shared by all blocks (BEiT).
    pub rel_pos_bias: Option<RelativePositionBias>,
    /// The blocks.
    pub blocks: Vec<Block>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// LayerNorm epsilon (blocks and final norm).
    pub norm_eps: f64,
}

impl VisionTransformerEncoder {
    /// A freshly initialised encoder (see [`super::init`]).
    pub fn new(cfg: &EncoderConfig, init: &mut Init) -> Self {
        let d = cfg.embed_dim;
        let g = cfg.grid_size();
        let n = cfg.num_patches();
        let patch_embed = PatchEmbed::new(cfg.in_chans, d, cfg.patch_size, init);
        let cls_token = init.trunc_normal_param([1, 1, d]);
        let pos_embed = match cfg.pos_embed {
            PosEmbed::SinCos => Some(
                init.param(sincos_2d_with_cls(g, g, d), [1, 1 + n, d])
                    .set_require_grad(false),
            ),
            PosEmbed::Learned => Some(init.trunc_normal_param([1, 1 + n, d])),
            PosEmbed::None => None,
        };
        let rel_pos_bias = (cfg.rel_pos_bias == RelPosBias::Shared)
            .then(|| RelativePositionBias::new(g, cfg.num_heads, init));
        let dims = BlockDims {
            dim: d,
            num_heads: cfg.num_heads,
            mlp_hidden: cfg.mlp_hidden(),
            qkv_bias: cfg.qkv_bias,
            eps: cfg.layer_norm_eps,
            init_values: cfg.init_values,
        };
        let blocks = drop_path_schedule(cfg.drop_path_rate, cfg.depth)
            .into_iter()
            .enumerate()
            .map(|(i, dp)| {
                let mut block = Block::new(dims, dp, i + 1, init);
                if cfg.rel_pos_bias == RelPosBias::PerBlock {
                    block.attn = block.attn.with_rel_pos_bias(g, init);
                }
                block
            })
            .collect();
        let norm = init.layer_norm(d, cfg.layer_norm_eps);
        Self {
            patch_embed,
            cls_token,
            pos_embed,
            rel_pos_bias,
            blocks,
            norm,
            norm_eps: cfg.layer_norm_eps,
        }
    }

    /// The encoder for images of `img_size` (`[H, W]`, whole patches): the position table is
    /// resampled bicubically as PyTorch does (cls slot kept;
    /// [`super::pos_embed::resample_with_cls`]), a fixed sin-cos one staying frozen, as CAE's
    /// downstream code does; with [`PosResize::Rebuild`] a sin-cos table is built afresh for the
    /// new grid instead. `cfg.img_size` is updated (square images; a non-square size keeps `cfg`
    /// as it is). Relative position bias tables are tied to their window: an encoder that has
    /// them can only keep its grid (BEiT's resampling of those tables is not implemented, so it
    /// is an error rather than a silently wrong bias). The same grid is a no-op.
    pub fn at_resolution(
        mut self,
        cfg: &mut EncoderConfig,
        img_size: [usize; 2],
        resize: PosResize,
    ) -> Result<Self, PretrainError> {
        let p = cfg.patch_size;
        let [h, w] = img_size;
        if h == 0 || w == 0 || !h.is_multiple_of(p) || !w.is_multiple_of(p) {
            return Err(PretrainError::Config(format!(
                "a {h}×{w} image is not a whole number of {p}-px patches"
            )));
        }
        let old = (cfg.grid_size(), cfg.grid_size());
        let new = (h / p, w / p);
        if old == new {
            return Ok(self);
        }
        let has_rpb = self.rel_pos_bias.is_some()
            || self
                .blocks
                .iter()
                .any(|b| b.attn.relative_position_bias_table.is_some());
        if has_rpb {
            return Err(PretrainError::Config(format!(
                "this encoder has relative position bias tables for a {}×{} grid; moving them to \
                 {}×{} (BEiT's table resampling) is not implemented",
                old.0, old.1, new.0, new.1
            )));
        }
        let d = self.embed_dim();
        if let Some(pos) = &self.pos_embed {
            // A non-square move leaves `cfg.img_size` behind: never resample from a stale grid.
            let n = pos.dims()[1] - 1;
            if n != old.0 * old.1 {
                return Err(PretrainError::Config(format!(
                    "the position table holds {n} patches but the config says a {}×{} grid; \
                     move the encoder from its original size",
                    old.0, old.1
                )));
            }
        }
        if let Some(pos) = self.pos_embed.take() {
            let device = pos.val().device();
            let values = match (cfg.pos_embed, resize) {
                (PosEmbed::SinCos, PosResize::Rebuild) => sincos_2d_with_cls(new.0, new.1, d),
                _ => {
                    let table = pos
                        .val()
                        .try_into_vec_as::<f32>()
                        .map_err(|e| PretrainError::Config(format!("reading pos_embed: {e:?}")))?;
                    super::pos_embed::resample_with_cls(&table, old, d, new)
                }
            };
            let fixed = cfg.pos_embed == PosEmbed::SinCos;
            let t = Tensor::<3>::from_data(
                burn::tensor::TensorData::new(values, [1, 1 + new.0 * new.1, d]),
                &device,
            );
            let param = Param::from_tensor(t);
            self.pos_embed = Some(if fixed {
                param.set_require_grad(false)
            } else {
                param
            });
        }
        if h == w {
            cfg.img_size = h;
        }
        Ok(self)
    }

    /// Width `D`.
    pub fn embed_dim(&self) -> usize {
        self.cls_token.dims()[2]
    }

    /// Patch tokens without position embedding.
    ///
    /// # Shapes
    /// `x: [B, C, H, W] → [B, N, D]`
    pub fn patch_tokens(&self, x: Tensor<4>) -> Tensor<3> {
        self.patch_embed.forward(x)
    }

    /// `[cls] + tokens`, each plus its position embedding (if any).
    ///
    /// # Shapes
    /// `tokens: [B, K, D]` (patches `sel`, or all `N` when `sel` is `None`) → `[B, 1+K, D]`
    pub fn with_cls_and_pos(&self, tokens: Tensor<3>, sel: Option<&TokenSelection>) -> Tensor<3> {
        self.with_cls_and_table(tokens, sel, self.pos_embed.as_ref().map(|p| p.val()))
    }

    /// [`Self::with_cls_and_pos`] with a given position table `[1, 1+N, D]` (e.g. the encoder's
    /// own one resampled to this input's grid) instead of the encoder's.
    pub fn with_cls_and_table(
        &self,
        tokens: Tensor<3>,
        sel: Option<&TokenSelection>,
        table: Option<Tensor<3>>,
    ) -> Tensor<3> {
        let [b, _, d] = tokens.dims();
        let mut cls = self.cls_token.val().expand([b, 1, d]);
        let mut tokens = tokens;
        if let Some(pos) = table {
            let [_, n1, _] = pos.dims();
            cls = cls + pos.clone().narrow(1, 0, 1);
            let patch_pos = pos.narrow(1, 1, n1 - 1);
            tokens = tokens
                + match sel {
                    Some(sel) => sel.gather_shared(patch_pos.squeeze_dim(0)),
                    None => patch_pos,
                };
        }
        Tensor::cat(vec![cls, tokens], 1)
    }

    /// Runs the blocks and the final LayerNorm on a token sequence. The relative position bias
    /// needs the full sequence (`[cls] + all N patches`).
    ///
    /// # Shapes
    /// `x: [B, 1+K, D] → [B, 1+K, D]`
    pub fn run_blocks(&self, x: Tensor<3>, ctx: &mut ForwardCtx) -> Tensor<3> {
        let x = self.run_blocks_unnormed(x, ctx, None).0;
        fused::layer_norm(&self.norm, x, self.norm_eps)
    }

    /// Runs the blocks; also returns the outputs of the blocks listed in `taps` (0-based, before
    /// the final norm), in order.
    pub fn run_blocks_unnormed(
        &self,
        mut x: Tensor<3>,
        ctx: &mut ForwardCtx,
        taps: Option<&[usize]>,
    ) -> (Tensor<3>, Vec<Tensor<3>>) {
        let shared = self.rel_pos_bias.as_ref().map(|r| r.forward());
        let mut tapped = Vec::new();
        for (i, blk) in self.blocks.iter().enumerate() {
            // BEiT adds a block's own table and the shared one when both exist.
            let bias = match (blk.attn.own_bias(), shared.clone()) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            x = blk.forward(x, bias, ctx);
            if taps.is_some_and(|t| t.contains(&i)) {
                tapped.push(x.clone());
            }
        }
        (x, tapped)
    }

    /// The outputs of the blocks listed in `taps` (0-based, before the final norm) on
    /// `[cls] + all patches`, one per entry of `taps` in its order (repeats allowed); blocks
    /// after the last tap are not run. Dense heads (segmentation, detection) read these.
    ///
    /// # Shapes
    /// `x: [B, C, H, W]` → each `[B, 1+N, D]`
    ///
    /// # Panics
    /// If a tap is not below the depth (callers check it against `blocks.len()`).
    pub fn forward_taps(
        &self,
        x: Tensor<4>,
        taps: &[usize],
        ctx: &mut ForwardCtx,
    ) -> Vec<Tensor<3>> {
        let table = self.pos_embed.as_ref().map(|p| p.val());
        self.forward_taps_with_table(x, taps, table, ctx)
    }

    /// [`Self::forward_taps`] with a given position table `[1, 1+N, D]` for this input's grid
    /// (see [`Self::with_cls_and_table`]).
    pub fn forward_taps_with_table(
        &self,
        x: Tensor<4>,
        taps: &[usize],
        table: Option<Tensor<3>>,
        ctx: &mut ForwardCtx,
    ) -> Vec<Tensor<3>> {
        let Some(&last) = taps.iter().max() else {
            return Vec::new();
        };
        assert!(
            last < self.blocks.len(),
            "tap block {last} is past the encoder's {} blocks",
            self.blocks.len()
        );
        let mut x = self.with_cls_and_table(self.patch_tokens(x), None, table);
        let shared = self.rel_pos_bias.as_ref().map(|r| r.forward());
        let mut out: Vec<Option<Tensor<3>>> = vec![None; taps.len()];
        for (i, blk) in self.blocks.iter().enumerate().take(last + 1) {
            let bias = match (blk.attn.own_bias(), shared.clone()) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            x = blk.forward(x, bias, ctx);
            for (slot, _) in out.iter_mut().zip(taps).filter(|(_, t)| **t == i) {
                *slot = Some(x.clone());
            }
        }
        out.into_iter()
            .map(|t| t.expect("every tap is at most the last block run"))
            .collect()
    }

    /// CAE's encoder pass: `[cls] + the selected patches` through the blocks and the final norm.
    ///
    /// # Shapes
    /// `x: [B, C, H, W]` → `[B, 1+K, D]`
    pub fn forward_selected(
        &self,
        x: Tensor<4>,
        sel: &TokenSelection,
        ctx: &mut ForwardCtx,
    ) -> Tensor<3> {
        let tokens = sel.gather(self.patch_tokens(x));
        self.run_blocks(self.with_cls_and_pos(tokens, Some(sel)), ctx)
    }

    /// All tokens after the final norm (downstream use).
    ///
    /// # Shapes
    /// `x: [B, C, H, W]` → `[B, 1+N, D]`
    pub fn forward_features(&self, x: Tensor<4>, ctx: &mut ForwardCtx) -> Tensor<3> {
        let tokens = self.patch_tokens(x);
        self.run_blocks(self.with_cls_and_pos(tokens, None), ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CaeConfig;
    use crate::model::init::LinearInit;

    #[test]
    fn taps_are_the_unnormed_block_outputs_in_the_order_asked() {
        let dev = Device::flex();
        let cfg = CaeConfig::test().encoder;
        let enc = VisionTransformerEncoder::new(&cfg, &mut Init::new(0, LinearInit::Xavier, &dev));
        let x = Tensor::<4>::ones([1, 3, cfg.img_size, cfg.img_size], &dev).mul_scalar(0.5);
        let depth = enc.blocks.len();
        let tokens = enc.with_cls_and_pos(enc.patch_tokens(x.clone()), None);
        let (_, all) = enc.run_blocks_unnormed(
            tokens,
            &mut ForwardCtx::eval(),
            Some(&(0..depth).collect::<Vec<_>>()),
        );
        let taps = enc.forward_taps(x, &[depth - 1, 0, 0], &mut ForwardCtx::eval());
        assert_eq!(taps.len(), 3);
        let v = |t: &Tensor<3>| t.clone().try_into_vec_as::<f32>().unwrap();
        assert_eq!(v(&taps[0]), v(&all[depth - 1]));
        assert_eq!(v(&taps[1]), v(&all[0]));
        assert_eq!(v(&taps[2]), v(&all[0]));
    }

    #[test]
    fn at_resolution_resamples_or_rebuilds_sincos_resamples_learned_and_refuses_what_it_cannot() {
        let dev = Device::flex();
        let mut cfg = CaeConfig::test().encoder; // 16 px, patch 4: a 4×4 grid, sin-cos
        let enc = VisionTransformerEncoder::new(&cfg, &mut Init::new(0, LinearInit::Xavier, &dev));
        let same = enc
            .clone()
            .at_resolution(&mut cfg, [16, 16], PosResize::Rebuild)
            .unwrap();
        let v = |t: Tensor<3>| t.try_into_vec_as::<f32>().unwrap();
        let pos = |e: &VisionTransformerEncoder| v(e.pos_embed.as_ref().unwrap().val());
        assert_eq!(pos(&same), pos(&enc), "the same grid changes nothing");
        // Sin-cos: rebuilt for 12×16, frozen, and the encoder runs on 48×64 images.
        let mut c = cfg.clone();
        let big = enc
            .clone()
            .at_resolution(&mut c, [48, 64], PosResize::Rebuild)
            .unwrap();
        assert_eq!(pos(&big), sincos_2d_with_cls(12, 16, cfg.embed_dim));
        assert!(!big.pos_embed.as_ref().unwrap().val().is_require_grad());
        let x = Tensor::<4>::ones([1, 3, 48, 64], &dev);
        let taps = big.clone().forward_taps(x, &[0], &mut ForwardCtx::eval());
        assert_eq!(taps[0].dims(), [1, 1 + 12 * 16, cfg.embed_dim]);
        // Its config still says 16 px: a second move is refused, not resampled from 4×4.
        assert!(
            big.at_resolution(&mut c, [32, 32], PosResize::Rebuild)
                .is_err()
        );
        let mut c = cfg.clone();
        let _ = enc
            .clone()
            .at_resolution(&mut c, [32, 32], PosResize::Rebuild)
            .unwrap();
        assert_eq!(c.img_size, 32);
        // Sin-cos, interpolated (CAE's downstream default): the pretrained table resampled
        // bicubically, cls slot kept, still frozen; not the rebuilt table.
        let mut c = cfg.clone();
        let interp = enc
            .clone()
            .at_resolution(&mut c, [24, 24], PosResize::Interpolate)
            .unwrap();
        let want =
            super::super::pos_embed::resample_with_cls(&pos(&enc), (4, 4), cfg.embed_dim, (6, 6));
        assert_eq!(pos(&interp), want);
        assert_ne!(pos(&interp), sincos_2d_with_cls(6, 6, cfg.embed_dim));
        assert!(!interp.pos_embed.as_ref().unwrap().val().is_require_grad());
        assert_eq!(c.img_size, 24);
        // Learned: the bicubic resampling of its own table.
        let mut lc = cfg.clone();
        lc.pos_embed = PosEmbed::Learned;
        let learned =
            VisionTransformerEncoder::new(&lc, &mut Init::new(1, LinearInit::Xavier, &dev));
        let before = pos(&learned);
        let moved = learned
            .at_resolution(&mut lc, [24, 24], PosResize::Rebuild)
            .unwrap();
        assert_eq!(
            pos(&moved),
            super::super::pos_embed::resample_with_cls(&before, (4, 4), cfg.embed_dim, (6, 6))
        );
        // Not whole patches; relative position tables tied to their window.
        assert!(
            enc.clone()
                .at_resolution(&mut cfg.clone(), [18, 16], PosResize::Interpolate)
                .is_err()
        );
        let mut rc = cfg.clone();
        rc.rel_pos_bias = RelPosBias::PerBlock;
        let rel = VisionTransformerEncoder::new(&rc, &mut Init::new(0, LinearInit::Xavier, &dev));
        let err = rel
            .at_resolution(&mut rc, [32, 32], PosResize::Interpolate)
            .unwrap_err();
        assert!(err.to_string().contains("relative position bias"), "{err}");
    }
}
