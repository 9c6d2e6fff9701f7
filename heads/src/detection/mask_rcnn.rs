//! Mask R-CNN on a plain ViT (protocols.md §3.1), the mmdet setting of BEiT and CAE:
//!
//! ```text
//! image ─▶ ViT (taps after blocks 4/6/8/12) ─▶ 4-scale neck (×4, ×2, ×1, ×0.5) ─▶ FPN (P2–P6, C)
//!   ─▶ RPN (anchors 32–512 × 0.5/1/2) ─▶ proposals ─▶ RoIAlign 7×7 ─▶ box head (cls + deltas)
//!                                                   └▶ RoIAlign 14×14 ─▶ mask head (28×28 / class)
//! ```
//!
//! Scale: with a patch of `p` pixels the pyramid's strides are `p/4 · 2^i`, so the paper's
//! geometry (`p = 16`: strides 4–64, anchors 32–512, RoIs of 224 px on P4) is rescaled by
//! `p / 16` for smaller patches: anchor sizes × `p/16`, the level mapper's canonical RoI
//! `14·p` px on the level of stride `p`. A `mini` encoder (`p = 4`) on 64-px images thus sees
//! the paper's setting at a quarter of the scale.
//!
//! Keys: `backbone.*` (the encoder), `simple_neck.*` (the 4-scale neck, CAE's `backbone.fpn1..4`:
//! [`crate::neck::official_neck_key`]), `neck.*` (mmdet's FPN), `rpn_head.*`,
//! `roi_head.bbox_head.*`, `roi_head.mask_head.*`.

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use cae_pretrain::model::init::{Init, LinearInit};
use cae_pretrain::model::pos_embed::{
    cae_batch_resample_with_cls, cae_batch_scales, cubic_matrix, sincos_2d_with_cls,
};
use cae_pretrain::model::{ForwardCtx, VisionTransformerEncoder};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::anchors::AnchorConfig;
use super::assign::{GtProposalOrder, MaxIouAssigner, RandomSampler, sample_rois};
use super::fpn::Fpn;
use super::level::LevelMapper;
use super::multiscale::MultiScaleRoiAlign;
use super::roi_align::Roi;
use super::roi_head::{
    BoxHeadConfig, ConvFcBBoxHead, Detections, FcnMaskHead, RcnnTestConfig, RoiTargets, bbox_loss,
    detect, mask_loss, mask_targets,
};
use super::rpn::{GtInstances, ProposalConfig, RpnHead, proposals, rpn_loss};
use crate::error::{HeadsError, Result, to_vec};
use crate::neck::{Feature2Pyramid, tap_blocks, tokens_to_map};

/// Every level's anchors in one list, with each level's `(rows, cols)` grid.
type AnchorsAndGrids = (Vec<super::BBox>, Vec<(usize, usize)>);

/// Everything that shapes the detector; presets in [`MaskRcnnConfig::preset`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskRcnnConfig {
    /// Preset name.
    pub preset: String,
    /// Encoder width `D`.
    pub in_channels: usize,
    /// Encoder patch size (sets the pyramid's strides).
    pub patch_size: usize,
    /// Tap blocks (`None`: blocks 4/6/8/12 scaled to the depth).
    pub out_indices: Option<Vec<usize>>,
    /// FPN width (256).
    pub fpn_channels: usize,
    /// Classes `K` (80 for COCO).
    pub num_classes: usize,
    /// Anchor sizes at `p = 16`, P2–P6 (32–512); scaled by `p/16`.
    pub anchor_sizes: Vec<f32>,
    /// Anchor ratios `h/w` (0.5, 1, 2).
    pub anchor_ratios: Vec<f32>,
    /// RPN assigner (0.7 / 0.3).
    pub rpn_assigner: MaxIouAssigner,
    /// RPN sampler (256, 50 %).
    pub rpn_sampler: RandomSampler,
    /// Proposals in training (2000 / 0.7 / 2000).
    pub rpn_train: ProposalConfig,
    /// Proposals at test time (1000 / 0.7 / 1000).
    pub rpn_test: ProposalConfig,
    /// RoI assigner (0.5).
    pub rcnn_assigner: MaxIouAssigner,
    /// RoI sampler (512, 25 %, ground truths added).
    pub rcnn_sampler: RandomSampler,
    /// The box head.
    pub box_head: BoxHeadConfig,
    /// Mask head convs (4) and their width (256).
    pub mask_convs: usize,
    /// Mask head width.
    pub mask_channels: usize,
    /// Pooled side of the mask RoIs (14; masks are twice that).
    pub mask_roi: usize,
    /// Test-time settings.
    pub test: RcnnTestConfig,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
    /// What proposals and detections are clipped to before NMS.
    #[serde(default)]
    pub clip: ClipTo,
    /// Assign and sample only the anchors on feature cells inside each image's own padded size
    /// (mmdet's `valid_flags`; off: every anchor of the padded input).
    #[serde(default = "yes")]
    pub anchor_valid_flags: bool,
    /// Where the ground truths join the RoI head's proposals.
    #[serde(default)]
    pub gt_proposal_order: GtProposalOrder,
}

fn yes() -> bool {
    true
}

/// What a detector clips its proposals and detections to, before NMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipTo {
    /// Each image's resized size (mmdet's `img_shape`, `rpn_head.py` / `bbox_head.py`).
    #[default]
    Image,
    /// The padded input (boxes may reach into the padding).
    Input,
}

impl ClipTo {
    /// The clip shape of an image with `meta` in an input of `input_hw`.
    pub fn shape(self, meta: &ImageMeta, input_hw: (usize, usize)) -> (usize, usize) {
        match self {
            Self::Image => meta.img_hw,
            Self::Input => input_hw,
        }
    }
}

/// One image's geometry in its padded input (mmdet's `img_meta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageMeta {
    /// The resized image before padding (`img_shape`), height × width.
    pub img_hw: (usize, usize),
    /// The image padded alone to the size divisor (`pad_shape`), before the batch's padding.
    pub pad_hw: (usize, usize),
}

impl ImageMeta {
    /// An image that fills its input.
    pub fn full(hw: (usize, usize)) -> Self {
        Self {
            img_hw: hw,
            pad_hw: hw,
        }
    }
}

/// Images padded to one size, with their objects and shapes: what one GPU holds in mmdet
/// (`samples_per_gpu` images padded to their largest).
#[derive(Debug, Clone)]
pub struct DetGroup {
    /// `[B, 3, H, W]`.
    pub images: Tensor<4>,
    /// Objects of each image (input pixels; masks `H × W`).
    pub gts: Vec<GtInstances>,
    /// Shapes of each image.
    pub metas: Vec<ImageMeta>,
}

impl MaskRcnnConfig {
    /// `vit_base` / `paper` (ViT-B/16, 768 wide), `vit_large`, `mini`, `test`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "vit_base" | "paper" => Ok(Self::vit(name, 768, 16)),
            "vit_large" => Ok(Self::vit(name, 1024, 16)),
            "mini" => Ok(Self::mini()),
            "test" => Ok(Self::test()),
            other => Err(HeadsError::Config(format!(
                "unknown detection preset `{other}` (vit_base, paper, vit_large, mini, test)"
            ))),
        }
    }

    /// The paper's detector on a `d`-wide encoder of patch `p` (COCO, 80 classes).
    pub fn vit(preset: &str, d: usize, p: usize) -> Self {
        Self {
            preset: preset.into(),
            in_channels: d,
            patch_size: p,
            out_indices: None,
            fpn_channels: 256,
            num_classes: 80,
            anchor_sizes: vec![32.0, 64.0, 128.0, 256.0, 512.0],
            anchor_ratios: vec![0.5, 1.0, 2.0],
            rpn_assigner: MaxIouAssigner::rpn(),
            rpn_sampler: RandomSampler::rpn(),
            rpn_train: ProposalConfig::train(),
            rpn_test: ProposalConfig::test(),
            rcnn_assigner: MaxIouAssigner::rcnn(),
            rcnn_sampler: RandomSampler::rcnn(),
            box_head: BoxHeadConfig::four_conv_one_fc(),
            mask_convs: 4,
            mask_channels: 256,
            mask_roi: 14,
            test: RcnnTestConfig::coco(),
            bn_eps: 1e-5,
            clip: ClipTo::Image,
            anchor_valid_flags: true,
            gt_proposal_order: GtProposalOrder::AfterAssign,
        }
    }

    /// For the `mini` encoder (128 wide, patch 4) on the synthetic world (8 classes, two or
    /// three objects per image): heads 64 wide, fc 256, 500 / 300 training proposals, 64 RoIs
    /// per image (the paper samples 512 for COCO's seven objects per image).
    pub fn mini() -> Self {
        let base = Self::vit("mini", 128, 4);
        Self {
            fpn_channels: 64,
            num_classes: 8,
            rpn_train: ProposalConfig {
                nms_pre: 500,
                nms_iou: 0.7,
                max_per_img: 300,
            },
            rpn_test: ProposalConfig {
                nms_pre: 300,
                nms_iou: 0.7,
                max_per_img: 200,
            },
            rcnn_sampler: RandomSampler {
                num: 64,
                ..RandomSampler::rcnn()
            },
            box_head: BoxHeadConfig {
                conv_channels: 64,
                fc_channels: 256,
                ..BoxHeadConfig::four_conv_one_fc()
            },
            mask_channels: 64,
            ..base
        }
    }

    /// A tiny detector for unit tests (the `test` encoder: 32 wide, patch 4; 4 classes).
    pub fn test() -> Self {
        let mini = Self::mini();
        Self {
            preset: "test".into(),
            in_channels: 32,
            fpn_channels: 16,
            num_classes: 4,
            box_head: BoxHeadConfig {
                num_convs: 1,
                conv_channels: 16,
                fc_channels: 32,
                ..BoxHeadConfig::four_conv_one_fc()
            },
            mask_convs: 1,
            mask_channels: 16,
            rcnn_sampler: RandomSampler {
                num: 32,
                ..RandomSampler::rcnn()
            },
            rpn_sampler: RandomSampler {
                num: 64,
                ..RandomSampler::rpn()
            },
            ..mini
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(HeadsError::Config(m));
        if self.in_channels == 0 || self.fpn_channels == 0 || self.num_classes == 0 {
            return bad("detector widths and the number of classes must be ≥ 1".into());
        }
        if self.patch_size < 4 || !self.patch_size.is_power_of_two() {
            return bad(format!(
                "patch size {} must be a power of two ≥ 4 (the pyramid's strides are p/4·2^i)",
                self.patch_size
            ));
        }
        if self.anchor_sizes.len() != 5 {
            return bad(format!(
                "{} anchor sizes for the 5 levels P2–P6",
                self.anchor_sizes.len()
            ));
        }
        if self.mask_roi == 0 || self.box_head.roi_size == 0 {
            return bad("RoI sizes must be ≥ 1".into());
        }
        if let Some(t) = &self.out_indices
            && t.len() != 4
        {
            return bad(format!("{} tap blocks for the 4-scale neck", t.len()));
        }
        Ok(())
    }

    /// The anchors, scaled to the patch size.
    pub fn anchors(&self) -> Result<AnchorConfig> {
        Ok(AnchorConfig {
            sizes: self.anchor_sizes.clone(),
            ratios: self.anchor_ratios.clone(),
        }
        .scaled(self.patch_size as f32 / 16.0)?)
    }

    /// The level mapper of P2–P5 at this scale (levels are `log2(stride)`).
    pub fn level_mapper(&self) -> LevelMapper {
        let lp = self.patch_size.trailing_zeros() as usize;
        LevelMapper {
            min_level: lp - 2,
            max_level: lp + 1,
            canonical_scale: 14.0 * self.patch_size as f32,
            canonical_level: lp as f32,
            eps: 1e-6,
        }
    }

    /// Tap blocks for an encoder of `depth` blocks.
    pub fn taps(&self, depth: usize) -> Result<Vec<usize>> {
        let taps = self
            .out_indices
            .clone()
            .unwrap_or_else(|| tap_blocks(depth));
        if let Some(t) = taps.iter().find(|&&t| t >= depth) {
            return Err(HeadsError::Config(format!(
                "tap block {t} is past the encoder's {depth} blocks"
            )));
        }
        Ok(taps)
    }

    /// The RoIAlign over P2–P5 of the box head (`roi_size`) and of the mask head (`mask_roi`).
    pub fn poolers(&self) -> (MultiScaleRoiAlign, MultiScaleRoiAlign) {
        let mapper = self.level_mapper();
        let pool = |size| MultiScaleRoiAlign {
            mapper,
            align: super::roi_align::RoiAlignConfig::new(size, 1.0),
        };
        (pool(self.box_head.roi_size), pool(self.mask_roi))
    }

    /// Side of the predicted masks (`2 · mask_roi`).
    pub fn mask_size(&self) -> usize {
        2 * self.mask_roi
    }
}

/// The RoI heads (`roi_head.*`).
#[derive(Module, Debug)]
pub struct RoiHeads {
    /// Box classification and regression.
    pub bbox_head: ConvFcBBoxHead,
    /// Masks.
    pub mask_head: FcnMaskHead,
}

/// Mask R-CNN on a ViT (see the module docs).
#[derive(Module, Debug)]
pub struct MaskRcnn {
    /// The encoder (at the detector's input resolution).
    pub backbone: VisionTransformerEncoder,
    /// The 4-scale neck.
    pub simple_neck: Feature2Pyramid,
    /// mmdet's FPN.
    pub neck: Fpn,
    /// Region proposals.
    pub rpn_head: RpnHead,
    /// Box and mask heads.
    pub roi_head: RoiHeads,
    /// Tap blocks.
    pub out_indices: Vec<usize>,
    /// Rows and columns of the encoder's position table (empty without one).
    pub pos_grid: Vec<usize>,
    /// Build a sin-cos table for each input's grid instead of resampling the encoder's.
    pub pos_rebuild: bool,
}

/// The five losses of a batch, `[1]` each, and their sum.
#[derive(Debug, Clone)]
pub struct DetLoss {
    /// The sum (what is minimised).
    pub total: Tensor<1>,
    /// RPN objectness, RPN deltas, RoI class, RoI box, mask.
    pub parts: [(&'static str, Tensor<1>); 5],
    /// Proposals kept by the RPN over the batch (before the ground truths join them).
    pub proposals: usize,
    /// RoIs the box head ran on (sampled positives and negatives, every image).
    pub box_rois: usize,
    /// Positive RoIs the mask head ran on.
    pub mask_rois: usize,
}

/// One image's detections with their mask probabilities (`D × s × s`, row-major).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectionsWithMasks {
    /// Boxes, scores, labels.
    pub det: Detections,
    /// Mask probabilities of each detection's class.
    pub masks: Vec<f32>,
}

impl MaskRcnn {
    /// A detector on `encoder` with freshly initialised neck and heads (seeded).
    pub fn new(
        cfg: &MaskRcnnConfig,
        encoder: VisionTransformerEncoder,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let d = encoder.embed_dim();
        if d != cfg.in_channels {
            return Err(HeadsError::Config(format!(
                "the encoder is {d} wide, the detector expects {}",
                cfg.in_channels
            )));
        }
        let p = encoder.patch_embed.proj.kernel_size[0];
        if p != cfg.patch_size {
            return Err(HeadsError::Config(format!(
                "the encoder's patches are {p} px, the detector expects {}",
                cfg.patch_size
            )));
        }
        let out_indices = cfg.taps(encoder.blocks.len())?;
        // A square table unless told otherwise ([`Self::with_position_grid`]).
        let pos_grid = match &encoder.pos_embed {
            Some(pos) => {
                let n = pos.dims()[1] - 1;
                let r = (n as f64).sqrt().round() as usize;
                if r * r == n { vec![r, r] } else { vec![n, 1] }
            }
            None => Vec::new(),
        };
        let mut init = Init::new(seed, LinearInit::Xavier, device);
        let simple_neck = Feature2Pyramid::new(d, &[4.0, 2.0, 1.0, 0.5], cfg.bn_eps, &mut init)?;
        let c = cfg.fpn_channels;
        let neck = Fpn::new(&[d; 4], c, 5, &mut init)?;
        let rpn_head = RpnHead::new(c, cfg.anchor_ratios.len(), &mut init);
        let bbox_head =
            ConvFcBBoxHead::new(&cfg.box_head, c, cfg.num_classes, cfg.bn_eps, &mut init)?;
        let mask_head = FcnMaskHead::new(
            c,
            cfg.mask_channels,
            cfg.mask_convs,
            cfg.num_classes,
            &mut init,
        );
        Ok(Self {
            backbone: encoder,
            simple_neck,
            neck,
            rpn_head,
            roi_head: RoiHeads {
                bbox_head,
                mask_head,
            },
            out_indices,
            pos_grid,
            pos_rebuild: false,
        })
    }

    /// Says the encoder's position table holds a `rows × cols` grid (a non-square table, e.g.
    /// CAE's 42×68 for its 672×1092 `img_size`), and whether each input's table is resampled
    /// from it (CAE) or built afresh as sin-cos (`rebuild`).
    pub fn with_position_grid(mut self, rows: usize, cols: usize, rebuild: bool) -> Result<Self> {
        if let Some(pos) = &self.backbone.pos_embed {
            let n = pos.dims()[1] - 1;
            if rows * cols != n {
                return Err(HeadsError::Config(format!(
                    "a {rows}×{cols} grid for a position table of {n} patches"
                )));
            }
            self.pos_grid = vec![rows, cols];
        }
        self.pos_rebuild = rebuild;
        Ok(self)
    }

    /// The position table for a `grid` (rows, columns) of patches: the encoder's own when the
    /// grid is its table's ([`Self::pos_grid`]); otherwise resampled as CAE's backbone does for
    /// each batch ([`cae_batch_resample_with_cls`]: bicubic with the scale factor
    /// `(grid + 0.1) / table grid`, the cls slot kept), or with `pos_rebuild` a sin-cos table
    /// built for the grid. A frozen (sin-cos) table is resampled on the CPU; a learned one by
    /// the same resample as matrix products, so its gradient reaches the table.
    pub fn position_table(&self, grid: (usize, usize)) -> Result<Option<Tensor<3>>> {
        let Some(pos) = &self.backbone.pos_embed else {
            return Ok(None);
        };
        let [_, n1, d] = pos.dims();
        let base = match self.pos_grid[..] {
            [r, c] if r * c == n1 - 1 => (r, c),
            _ => {
                return Err(HeadsError::Config(format!(
                    "the encoder's position table holds {} patches, not the {:?} grid it is said \
                     to hold",
                    n1 - 1,
                    self.pos_grid
                )));
            }
        };
        if grid == base {
            return Ok(Some(pos.val()));
        }
        let has_rpb = self.backbone.rel_pos_bias.is_some()
            || self
                .backbone
                .blocks
                .iter()
                .any(|b| b.attn.relative_position_bias_table.is_some());
        if has_rpb {
            return Err(HeadsError::Config(format!(
                "the encoder has relative position bias tables for a {}×{} grid, which cannot \
                 follow a {}×{} batch (pad to a fixed canvas instead)",
                base.0, base.1, grid.0, grid.1
            )));
        }
        let device = pos.val().device();
        let n = grid.0 * grid.1;
        if !pos.is_require_grad() {
            let values = if self.pos_rebuild {
                sincos_2d_with_cls(grid.0, grid.1, d)
            } else {
                let table = to_vec(pos.val())?;
                cae_batch_resample_with_cls(&table, base, d, grid)
            };
            return Ok(Some(Tensor::from_data(
                TensorData::new(values, [1, 1 + n, d]),
                &device,
            )));
        }
        let (sy, sx) = cae_batch_scales(base, grid);
        let my = Tensor::<2>::from_data(
            TensorData::new(cubic_matrix(base.0, grid.0, sy), [grid.0, base.0]),
            &device,
        );
        let mx = Tensor::<2>::from_data(
            TensorData::new(cubic_matrix(base.1, grid.1, sx), [grid.1, base.1]),
            &device,
        );
        let t = pos.val();
        let cls = t.clone().narrow(1, 0, 1);
        let patch: Tensor<2> = t.narrow(1, 1, n1 - 1).reshape([base.0, base.1 * d]);
        let rows: Tensor<3> = my.matmul(patch).reshape([grid.0, base.1, d]);
        let cols: Tensor<2> = rows.swap_dims(0, 1).reshape([base.1, grid.0 * d]);
        let out: Tensor<3> = mx.matmul(cols).reshape([grid.1, grid.0, d]);
        let out: Tensor<3> = out.swap_dims(0, 1).reshape([1, n, d]);
        Ok(Some(Tensor::cat(vec![cls, out], 1)))
    }

    /// The encoder's tap maps of a batch of one size.
    ///
    /// # Shapes
    /// `images: [B, 3, H, W]` (whole patches) → 4 maps `[B, D, H/p, W/p]`
    fn backbone_maps(&self, images: Tensor<4>, ctx: &mut ForwardCtx) -> Result<Vec<Tensor<4>>> {
        let [_, _, h, w] = images.dims();
        let p = self.backbone.patch_embed.proj.kernel_size[0];
        if h % p != 0 || w % p != 0 {
            return Err(HeadsError::Config(format!(
                "a {h}×{w} image is not a whole number of {p}-px patches"
            )));
        }
        let grid = [h / p, w / p];
        let table = self.position_table((grid[0], grid[1]))?;
        let taps = self
            .backbone
            .forward_taps_with_table(images, &self.out_indices, table, ctx);
        taps.into_iter().map(|t| tokens_to_map(t, grid)).collect()
    }

    /// The FPN levels P2–P6 of each group (the neck's BatchNorm in training mode normalises
    /// over every group together, as SyncBN over the GPUs does).
    ///
    /// # Shapes
    /// group `g`: `images: [B_g, 3, H_g, W_g]` → 5 maps `[B_g, C, H_g·4/p / 2^i, …]`
    pub fn features_groups(
        &mut self,
        images: Vec<Tensor<4>>,
        ctx: &mut ForwardCtx,
    ) -> Result<Vec<Vec<Tensor<4>>>> {
        let maps = images
            .into_iter()
            .map(|x| self.backbone_maps(x, ctx))
            .collect::<Result<Vec<_>>>()?;
        let levels = self.simple_neck.forward_groups(maps, ctx.train)?;
        levels.into_iter().map(|l| self.neck.forward(l)).collect()
    }

    /// The FPN levels P2–P6 of one batch.
    ///
    /// # Shapes
    /// `images: [B, 3, H, W]` → 5 maps `[B, C, H·4/p / 2^i, …]`
    pub fn features(&mut self, images: Tensor<4>, ctx: &mut ForwardCtx) -> Result<Vec<Tensor<4>>> {
        Ok(self
            .features_groups(vec![images], ctx)?
            .pop()
            .expect("one group"))
    }

    fn anchors_for(
        cfg: &MaskRcnnConfig,
        hw: (usize, usize),
        feats: &[Tensor<4>],
    ) -> Result<AnchorsAndGrids> {
        let grids: Vec<(usize, usize)> = feats.iter().map(|f| (f.dims()[2], f.dims()[3])).collect();
        Ok((cfg.anchors()?.generate(hw, &grids)?, grids))
    }

    /// The training losses of a batch of one size (one group; every image's shape is the
    /// input's). `gts[i]` holds image `i`'s objects in input pixels, masks at the input size.
    pub fn loss(
        &mut self,
        cfg: &MaskRcnnConfig,
        images: Tensor<4>,
        gts: &[GtInstances],
        ctx: &mut ForwardCtx,
        rng: &mut impl Rng,
    ) -> Result<DetLoss> {
        let [b, _, h, w] = images.dims();
        let group = DetGroup {
            images,
            gts: gts.to_vec(),
            metas: vec![ImageMeta::full((h, w)); b],
        };
        self.loss_groups(cfg, vec![group], ctx, rng)
    }

    /// The training losses of a batch split into padding groups (BatchNorm in training mode
    /// over the whole batch, drop path from `ctx`): each group's losses as mmdet computes them
    /// on one GPU (normalised within the group), averaged over the groups as data-parallel
    /// training averages the GPUs' gradients. `gts` in input pixels, masks at the group's
    /// input size; `metas` give each image's shapes for the anchors' valid flags and the
    /// proposals' clipping.
    pub fn loss_groups(
        &mut self,
        cfg: &MaskRcnnConfig,
        groups: Vec<DetGroup>,
        ctx: &mut ForwardCtx,
        rng: &mut impl Rng,
    ) -> Result<DetLoss> {
        if groups.is_empty() {
            return Err(HeadsError::Config("a batch of no images".into()));
        }
        let mut inputs = Vec::with_capacity(groups.len());
        let mut meta = Vec::with_capacity(groups.len());
        for (g, grp) in groups.into_iter().enumerate() {
            let [b, _, h, w] = grp.images.dims();
            if grp.gts.len() != b || grp.metas.len() != b {
                return Err(HeadsError::Config(format!(
                    "group {g}: {} ground-truth sets and {} image shapes for {b} images",
                    grp.gts.len(),
                    grp.metas.len()
                )));
            }
            inputs.push(grp.images);
            meta.push((grp.gts, grp.metas, (h, w)));
        }
        let feats = self.features_groups(inputs, ctx)?;
        let k = cfg.num_classes;
        let anchor_cfg = cfg.anchors()?;
        let (box_pool, mask_pool) = cfg.poolers();
        let mut rpn_parts = Vec::new();
        let mut targets = Vec::new();
        let mut mask_parts = Vec::new();
        let mut pooled_boxes = Vec::new();
        let mut pooled_masks = Vec::new();
        let mut n_props = 0usize;
        for (f, (gts, metas, hw)) in feats.iter().zip(&meta) {
            let (anchors, grids) = Self::anchors_for(cfg, *hw, f)?;
            let valid = if cfg.anchor_valid_flags {
                Some(
                    metas
                        .iter()
                        .map(|m| anchor_cfg.valid_flags(*hw, &grids, m.pad_hw))
                        .collect::<std::result::Result<Vec<_>, _>>()?,
                )
            } else {
                None
            };
            let rpn_out = self.rpn_head.forward(f);
            let rpn = rpn_loss(
                &rpn_out,
                &anchors,
                gts,
                &cfg.rpn_assigner,
                &cfg.rpn_sampler,
                valid.as_deref(),
                rng,
            )?;
            let clip: Vec<(usize, usize)> = metas.iter().map(|m| cfg.clip.shape(m, *hw)).collect();
            let props = proposals(&rpn_out, &anchors, &clip, &cfg.rpn_train)?;
            n_props += props.iter().map(|(b, _)| b.len()).sum::<usize>();
            let mut t = RoiTargets::default();
            let mut mask_t = Vec::new();
            let mut mask_labels = Vec::new();
            let mut mask_rois = Vec::new();
            for (i, (gt, (pboxes, _))) in gts.iter().zip(&props).enumerate() {
                if let Some(&l) = gt.labels.iter().find(|&&l| l >= k) {
                    return Err(HeadsError::Config(format!(
                        "label {l} of image {i} is not one of the {k} classes"
                    )));
                }
                let (boxes, s) = sample_rois(
                    &cfg.rcnn_assigner,
                    &cfg.rcnn_sampler,
                    cfg.gt_proposal_order,
                    pboxes,
                    &gt.boxes,
                    &gt.crowds,
                    rng,
                )?;
                for (&pi, &g) in s.pos.iter().zip(&s.pos_gt) {
                    t.pos_rows.push(t.rois.len());
                    t.pos_gt.push(g);
                    t.rois.push(Roi {
                        batch: i,
                        bbox: boxes[pi],
                    });
                    t.labels.push(gt.labels[g]);
                    t.gt_boxes.push(gt.boxes[g]);
                }
                for &ni in &s.neg {
                    t.rois.push(Roi {
                        batch: i,
                        bbox: boxes[ni],
                    });
                    t.labels.push(k);
                    t.gt_boxes.push([0.0; 4]);
                }
                let pos_boxes: Vec<super::BBox> = s.pos.iter().map(|&pi| boxes[pi]).collect();
                mask_t.extend(mask_targets(
                    &gt.masks,
                    *hw,
                    &pos_boxes,
                    &s.pos_gt,
                    cfg.mask_size(),
                )?);
                mask_labels.extend(s.pos_gt.iter().map(|&g| gt.labels[g]));
                mask_rois.extend(pos_boxes.iter().map(|&bbox| Roi { batch: i, bbox }));
            }
            let p2p5 = &f[..4];
            if !t.rois.is_empty() {
                pooled_boxes.push(box_pool.forward(p2p5, &t.rois)?);
            }
            if !mask_rois.is_empty() {
                pooled_masks.push(mask_pool.forward(p2p5, &mask_rois)?);
            }
            rpn_parts.push(rpn);
            targets.push(t);
            mask_parts.push((mask_labels, mask_t));
        }
        // One pass of the box and mask heads over every group's RoIs: the box head's
        // BatchNorm sees the whole batch (SyncBN).
        let zero = || feats[0][0].clone().sum() * 0.0;
        let heads_out = if pooled_boxes.is_empty() {
            None
        } else {
            Some(
                self.roi_head
                    .bbox_head
                    .forward(Tensor::cat(pooled_boxes, 0), ctx.train),
            )
        };
        let mask_logits = if pooled_masks.is_empty() {
            None
        } else {
            Some(
                self.roi_head
                    .mask_head
                    .forward(Tensor::cat(pooled_masks, 0)),
            )
        };
        let groups_n = meta.len() as f64;
        let mut sums: [Option<Tensor<1>>; 5] = Default::default();
        let mut add = |i: usize, v: Tensor<1>| {
            sums[i] = Some(match sums[i].take() {
                Some(a) => a + v,
                None => v,
            });
        };
        let (mut row, mut mrow) = (0usize, 0usize);
        for ((rpn, t), (mask_labels, mask_t)) in rpn_parts.into_iter().zip(&targets).zip(mask_parts)
        {
            add(0, rpn.cls);
            add(1, rpn.bbox);
            let r = t.rois.len();
            let (loss_cls, loss_bbox) = match &heads_out {
                Some((cls, reg)) if r > 0 => {
                    let c = cls.clone().narrow(0, row, r);
                    let g = reg.clone().narrow(0, row, r);
                    row += r;
                    bbox_loss(c, g, t, k, cfg.box_head.loss)?
                }
                _ => (zero(), zero()),
            };
            add(2, loss_cls);
            add(3, loss_bbox);
            let m = mask_labels.len();
            let loss_mask = match &mask_logits {
                Some(logits) if m > 0 => {
                    let l = logits.clone().narrow(0, mrow, m);
                    mrow += m;
                    mask_loss(l, &mask_labels, mask_t)?
                }
                // Keep the mask head in the graph with a zero loss.
                _ => match &mask_logits {
                    Some(l) => l.clone().sum() * 0.0,
                    None => zero(),
                },
            };
            add(4, loss_mask);
        }
        let box_rois = targets.iter().map(|t| t.rois.len()).sum();
        let [a, b, c, d, e] = sums.map(|s| s.expect("one group at least").div_scalar(groups_n));
        let total = a.clone() + b.clone() + c.clone() + d.clone() + e.clone();
        Ok(DetLoss {
            total,
            parts: [
                ("loss_rpn_cls", a),
                ("loss_rpn_bbox", b),
                ("loss_cls", c),
                ("loss_bbox", d),
                ("loss_mask", e),
            ],
            proposals: n_props,
            box_rois,
            mask_rois: mrow,
        })
    }

    /// Detections (input pixels) and mask probabilities of each image of a batch of one size
    /// (BatchNorm in eval mode); `metas[i]` gives image `i`'s shapes for the clipping.
    pub fn predict(
        &mut self,
        cfg: &MaskRcnnConfig,
        images: Tensor<4>,
        metas: &[ImageMeta],
    ) -> Result<Vec<DetectionsWithMasks>> {
        let [b, _, h, w] = images.dims();
        if metas.len() != b {
            return Err(HeadsError::Config(format!(
                "{} image shapes for {b} images",
                metas.len()
            )));
        }
        let mut ctx = ForwardCtx::eval();
        let feats = self.features(images, &mut ctx)?;
        let (anchors, _) = Self::anchors_for(cfg, (h, w), &feats)?;
        let rpn_out = self.rpn_head.forward(&feats);
        let clip: Vec<(usize, usize)> = metas.iter().map(|m| cfg.clip.shape(m, (h, w))).collect();
        let props = proposals(&rpn_out, &anchors, &clip, &cfg.rpn_test)?;
        let (box_pool, mask_pool) = cfg.poolers();
        let p2p5 = &feats[..4];
        let s = cfg.mask_size();
        let mut out = Vec::with_capacity(props.len());
        for (i, (pboxes, _)) in props.iter().enumerate() {
            if pboxes.is_empty() {
                out.push(DetectionsWithMasks::default());
                continue;
            }
            let rois: Vec<Roi> = pboxes.iter().map(|&bbox| Roi { batch: i, bbox }).collect();
            let pooled = box_pool.forward(p2p5, &rois)?;
            let (cls, reg) = self.roi_head.bbox_head.forward(pooled, false);
            let det = detect(cls, reg, pboxes, clip[i], &cfg.test)?;
            if det.boxes.is_empty() {
                out.push(DetectionsWithMasks {
                    det,
                    masks: Vec::new(),
                });
                continue;
            }
            let rois: Vec<Roi> = det
                .boxes
                .iter()
                .map(|&bbox| Roi { batch: i, bbox })
                .collect();
            let logits = self
                .roi_head
                .mask_head
                .forward(mask_pool.forward(p2p5, &rois)?);
            let n = det.labels.len();
            let device = logits.device();
            let idx: Vec<i64> = det
                .labels
                .iter()
                .flat_map(|&l| std::iter::repeat_n(l as i64, s * s))
                .collect();
            let picked = sigmoid(logits).gather(
                1,
                Tensor::<4, Int>::from_data(TensorData::new(idx, [n, 1, s, s]), &device),
            );
            let masks = to_vec(picked)?;
            out.push(DetectionsWithMasks { det, masks });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cae_pretrain::config::CaeConfig;
    use cae_pretrain::weights::expected_tensors;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn square_mask(hw: usize, b: [usize; 4]) -> Vec<u8> {
        let mut m = vec![0u8; hw * hw];
        for y in b[1]..b[3] {
            for x in b[0]..b[2] {
                m[y * hw + x] = 1;
            }
        }
        m
    }

    #[test]
    fn presets_and_scaled_geometry() {
        for name in ["vit_base", "paper", "vit_large", "mini", "test"] {
            MaskRcnnConfig::preset(name).unwrap().validate().unwrap();
        }
        let paper = MaskRcnnConfig::preset("paper").unwrap();
        assert_eq!(paper.level_mapper(), LevelMapper::fpn());
        assert_eq!(paper.anchors().unwrap(), AnchorConfig::fpn());
        assert_eq!(paper.taps(12).unwrap(), vec![3, 5, 7, 11]);
        assert_eq!((paper.rpn_sampler.num, paper.rcnn_sampler.num), (256, 512));
        assert_eq!(paper.box_head, BoxHeadConfig::four_conv_one_fc());
        let mini = MaskRcnnConfig::mini();
        assert_eq!(
            mini.anchors().unwrap().sizes,
            vec![8.0, 16.0, 32.0, 64.0, 128.0]
        );
        let m = mini.level_mapper();
        assert_eq!((m.min_level, m.max_level), (0, 3));
        // A 56-px RoI at p = 4 pools where a 224-px one does at p = 16: the level of stride p.
        assert_eq!(m.levels(&[[0.0, 0.0, 56.0, 56.0]]).unwrap(), vec![2]);
        assert!(MaskRcnnConfig::preset("nope").is_err());
        let bad = MaskRcnnConfig {
            patch_size: 6,
            ..MaskRcnnConfig::test()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn trains_end_to_end_and_predicts() {
        let dev = Device::flex().autodiff();
        let enc_cfg = CaeConfig::test();
        let encoder = cae_pretrain::model::ContextAutoencoder::new(&enc_cfg, 0, &dev).encoder;
        let cfg = MaskRcnnConfig::test();
        let mut model = MaskRcnn::new(&cfg, encoder, 0, &dev).unwrap();
        let keys = expected_tensors(&model);
        for k in [
            "backbone.blocks.0.attn.qkv.weight",
            "simple_neck.upsample_4x.0.weight",
            "neck.lateral_convs.0.conv.weight",
            "rpn_head.rpn_cls.weight",
            "roi_head.bbox_head.fc_cls.weight",
            "roi_head.mask_head.conv_logits.weight",
        ] {
            assert!(keys.contains_key(k), "{k}");
        }
        let side = enc_cfg.encoder.img_size;
        let images = Tensor::<4>::random(
            [2, 3, side, side],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let gts = vec![
            GtInstances {
                boxes: vec![[2.0, 3.0, 14.0, 12.0]],
                labels: vec![1],
                crowds: vec![],
                masks: vec![square_mask(side, [2, 3, 14, 12])],
            },
            // An image with no objects is a negative.
            GtInstances {
                boxes: vec![],
                labels: vec![],
                crowds: vec![],
                masks: vec![],
            },
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut ctx = ForwardCtx::train(ChaCha8Rng::seed_from_u64(1));
        let loss = model
            .loss(&cfg, images.clone(), &gts, &mut ctx, &mut rng)
            .unwrap();
        for (name, part) in &loss.parts {
            let v = to_vec(part.clone()).unwrap()[0];
            assert!(v.is_finite() && v >= 0.0, "{name} = {v}");
        }
        let grads = loss.total.backward();
        let has = |t: Tensor<2>| t.grad(&grads).is_some();
        let has4 = |t: Tensor<4>| t.grad(&grads).is_some();
        assert!(
            has(model.backbone.blocks[0].attn.qkv.weight.val()),
            "backbone"
        );
        assert!(
            has4(
                model
                    .simple_neck
                    .upsample_2x
                    .as_ref()
                    .map(|l| match &l[0] {
                        crate::neck::NeckLayer::Deconv(d) => d.weight.val(),
                        _ => unreachable!(),
                    })
                    .unwrap()
            ),
            "simple neck"
        );
        assert!(has4(model.neck.fpn_convs[0].conv.weight.val()), "fpn");
        assert!(has4(model.rpn_head.rpn_cls.weight.val()), "rpn cls");
        assert!(has4(model.rpn_head.rpn_reg.weight.val()), "rpn reg");
        assert!(has(model.roi_head.bbox_head.fc_cls.weight.val()), "box cls");
        assert!(has(model.roi_head.bbox_head.fc_reg.weight.val()), "box reg");
        assert!(
            has4(model.roi_head.mask_head.conv_logits.weight.val()),
            "mask"
        );
        let mut eval_model = model.valid();
        let plain = Tensor::<4>::from_data(images.clone().into_data(), &Device::flex());
        let metas = [ImageMeta::full((side, side)); 2];
        let out = eval_model.predict(&cfg, plain, &metas).unwrap();
        assert_eq!(out.len(), 2);
        for o in &out {
            let s = cfg.mask_size();
            assert_eq!(o.masks.len(), o.det.boxes.len() * s * s);
            assert!(o.det.boxes.len() <= cfg.test.max_per_img);
            assert!(o.masks.iter().all(|p| (0.0..=1.0).contains(p)));
        }
        let bad = vec![gts[0].clone()];
        assert!(model.loss(&cfg, images, &bad, &mut ctx, &mut rng).is_err());
    }

    #[test]
    fn groups_of_different_sizes_train_with_one_batchnorm_and_per_batch_positions() {
        let dev = Device::flex().autodiff();
        let enc_cfg = CaeConfig::test();
        let encoder = cae_pretrain::model::ContextAutoencoder::new(&enc_cfg, 0, &dev).encoder;
        let cfg = MaskRcnnConfig::test();
        let mut model = MaskRcnn::new(&cfg, encoder, 0, &dev).unwrap();
        let side = enc_cfg.encoder.img_size;
        let g = side / enc_cfg.encoder.patch_size;
        assert_eq!(model.pos_grid, vec![g, g]);
        // The table of another grid is CAE's resample of the encoder's own table.
        let own = to_vec(model.backbone.pos_embed.as_ref().unwrap().val()).unwrap();
        let d = enc_cfg.encoder.embed_dim;
        let t = model.position_table((g, g + 4)).unwrap().unwrap();
        assert_eq!(t.dims(), [1, 1 + g * (g + 4), d]);
        assert_eq!(
            to_vec(t).unwrap(),
            cae_batch_resample_with_cls(&own, (g, g), d, (g, g + 4))
        );
        assert_eq!(
            to_vec(model.position_table((g, g)).unwrap().unwrap()).unwrap(),
            own
        );
        // A learned (trainable) table is resampled by matrix products to the same values.
        let mut learned = MaskRcnn::new(
            &cfg,
            cae_pretrain::model::ContextAutoencoder::new(&enc_cfg, 0, &dev).encoder,
            0,
            &dev,
        )
        .unwrap();
        let pos = learned.backbone.pos_embed.take().unwrap().val();
        learned.backbone.pos_embed = Some(burn::module::Param::from_tensor(pos));
        let lt = to_vec(learned.position_table((g, g + 4)).unwrap().unwrap()).unwrap();
        let ct = cae_batch_resample_with_cls(&own, (g, g), d, (g, g + 4));
        let worst = lt
            .iter()
            .zip(&ct)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "matrix resample differs by {worst}");
        assert!(model.clone().with_position_grid(g, g + 1, false).is_err());
        // SyncBN: the neck over two groups equals the neck over their concatenation.
        let maps = |b: usize, seed: u64| -> Vec<Tensor<4>> {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            (0..4)
                .map(|_| {
                    let v: Vec<f32> = (0..b * d * g * g).map(|_| r.random::<f32>()).collect();
                    Tensor::<4>::from_data(TensorData::new(v, [b, d, g, g]), &dev)
                })
                .collect()
        };
        let (a, b) = (maps(1, 1), maps(1, 2));
        let joint: Vec<Tensor<4>> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| Tensor::cat(vec![x.clone(), y.clone()], 0))
            .collect();
        let mut neck_a = model.simple_neck.clone();
        let together = neck_a.forward(joint, true).unwrap();
        let mut neck_b = model.simple_neck.clone();
        let split = neck_b.forward_groups(vec![a, b], true).unwrap();
        let want = to_vec(together[0].clone()).unwrap();
        let mut got = to_vec(split[0][0].clone()).unwrap();
        got.extend(to_vec(split[1][0].clone()).unwrap());
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "grouped BatchNorm differs by {worst}");
        // A batch of two groups of different sizes trains end to end.
        let gt = |hw: (usize, usize)| GtInstances {
            boxes: vec![[2.0, 3.0, 14.0, 12.0]],
            labels: vec![1],
            crowds: vec![],
            masks: vec![{
                let mut m = vec![0u8; hw.0 * hw.1];
                for y in 3..12 {
                    for x in 2..14 {
                        m[y * hw.1 + x] = 1;
                    }
                }
                m
            }],
        };
        let img = |h: usize, w: usize| {
            Tensor::<4>::random(
                [1, 3, h, w],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &dev,
            )
        };
        let groups = vec![
            DetGroup {
                images: img(side, side),
                gts: vec![gt((side, side))],
                metas: vec![ImageMeta {
                    img_hw: (side - 5, side - 3),
                    pad_hw: (side, side),
                }],
            },
            DetGroup {
                images: img(side, side + 16),
                gts: vec![gt((side, side + 16))],
                metas: vec![ImageMeta::full((side, side + 16))],
            },
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut ctx = ForwardCtx::train(ChaCha8Rng::seed_from_u64(1));
        let loss = model.loss_groups(&cfg, groups, &mut ctx, &mut rng).unwrap();
        for (name, part) in &loss.parts {
            let v = to_vec(part.clone()).unwrap()[0];
            assert!(v.is_finite() && v >= 0.0, "{name} = {v}");
        }
        let grads = loss.total.backward();
        assert!(
            model.backbone.blocks[0]
                .attn
                .qkv
                .weight
                .val()
                .grad(&grads)
                .is_some()
        );
        // Test time clips to each image's own shape.
        let mut eval_model = model.valid();
        let plain = Tensor::<4>::random(
            [1, 3, side, side + 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &Device::flex(),
        );
        let meta = ImageMeta {
            img_hw: (side - 7, side + 2),
            pad_hw: (side, side + 16),
        };
        let out = eval_model.predict(&cfg, plain, &[meta]).unwrap();
        for b in &out[0].det.boxes {
            assert!(
                b[2] <= (side + 2) as f32 && b[3] <= (side - 7) as f32,
                "{b:?}"
            );
        }
    }
}
