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
use cae_pretrain::model::{ForwardCtx, VisionTransformerEncoder};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::anchors::AnchorConfig;
use super::assign::{MaxIouAssigner, RandomSampler, sample_rois};
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
}

/// The five losses of a batch, `[1]` each, and their sum.
#[derive(Debug, Clone)]
pub struct DetLoss {
    /// The sum (what is minimised).
    pub total: Tensor<1>,
    /// RPN objectness, RPN deltas, RoI class, RoI box, mask.
    pub parts: [(&'static str, Tensor<1>); 5],
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
        })
    }

    /// The FPN levels P2–P6.
    ///
    /// # Shapes
    /// `images: [B, 3, H, W]` (the encoder's image size) → 5 maps `[B, C, H·4/p / 2^i, …]`
    pub fn features(&mut self, images: Tensor<4>, ctx: &mut ForwardCtx) -> Result<Vec<Tensor<4>>> {
        let [_, _, h, w] = images.dims();
        let p = self.backbone.patch_embed.proj.kernel_size[0];
        if h % p != 0 || w % p != 0 {
            return Err(HeadsError::Config(format!(
                "a {h}×{w} image is not a whole number of {p}-px patches"
            )));
        }
        let grid = [h / p, w / p];
        if let Some(pos) = &self.backbone.pos_embed {
            let n = pos.dims()[1] - 1;
            if n != grid[0] * grid[1] {
                return Err(HeadsError::Config(format!(
                    "the encoder's position table holds {n} patches, a {h}×{w} image has {}",
                    grid[0] * grid[1]
                )));
            }
        }
        let taps = self.backbone.forward_taps(images, &self.out_indices, ctx);
        let maps = taps
            .into_iter()
            .map(|t| tokens_to_map(t, grid))
            .collect::<Result<Vec<_>>>()?;
        let levels = self.simple_neck.forward(maps, ctx.train)?;
        self.neck.forward(levels)
    }

    fn anchors_for(
        cfg: &MaskRcnnConfig,
        hw: (usize, usize),
        feats: &[Tensor<4>],
    ) -> Result<Vec<super::BBox>> {
        let grids: Vec<(usize, usize)> = feats.iter().map(|f| (f.dims()[2], f.dims()[3])).collect();
        Ok(cfg.anchors()?.generate(hw, &grids)?)
    }

    /// The training losses of a batch (BatchNorm in training mode, drop path from `ctx`).
    /// `gts[i]` holds image `i`'s objects in input pixels, masks at the input size.
    pub fn loss(
        &mut self,
        cfg: &MaskRcnnConfig,
        images: Tensor<4>,
        gts: &[GtInstances],
        ctx: &mut ForwardCtx,
        rng: &mut impl Rng,
    ) -> Result<DetLoss> {
        let [b, _, h, w] = images.dims();
        if gts.len() != b {
            return Err(HeadsError::Config(format!(
                "{} ground-truth sets for {b} images",
                gts.len()
            )));
        }
        let feats = self.features(images, ctx)?;
        let anchors = Self::anchors_for(cfg, (h, w), &feats)?;
        let rpn_out = self.rpn_head.forward(&feats);
        let rpn = rpn_loss(
            &rpn_out,
            &anchors,
            gts,
            &cfg.rpn_assigner,
            &cfg.rpn_sampler,
            rng,
        )?;
        let props = proposals(&rpn_out, &anchors, (h, w), &cfg.rpn_train)?;
        let k = cfg.num_classes;
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
                (h, w),
                &pos_boxes,
                &s.pos_gt,
                cfg.mask_size(),
            )?);
            mask_labels.extend(s.pos_gt.iter().map(|&g| gt.labels[g]));
            mask_rois.extend(pos_boxes.iter().map(|&bbox| Roi { batch: i, bbox }));
        }
        let (box_pool, mask_pool) = cfg.poolers();
        let p2p5 = &feats[..4];
        let pooled = box_pool.forward(p2p5, &t.rois)?;
        let (cls, reg) = self.roi_head.bbox_head.forward(pooled, ctx.train);
        let (loss_cls, loss_bbox) = bbox_loss(cls, reg, &t, k, cfg.box_head.loss)?;
        let loss_mask = if mask_rois.is_empty() {
            // Keep the mask head in the graph with a zero loss.
            p2p5[0].clone().sum() * 0.0
        } else {
            let pooled = mask_pool.forward(p2p5, &mask_rois)?;
            mask_loss(
                self.roi_head.mask_head.forward(pooled),
                &mask_labels,
                mask_t,
            )?
        };
        let total = rpn.cls.clone()
            + rpn.bbox.clone()
            + loss_cls.clone()
            + loss_bbox.clone()
            + loss_mask.clone();
        Ok(DetLoss {
            total,
            parts: [
                ("loss_rpn_cls", rpn.cls),
                ("loss_rpn_bbox", rpn.bbox),
                ("loss_cls", loss_cls),
                ("loss_bbox", loss_bbox),
                ("loss_mask", loss_mask),
            ],
        })
    }

    /// Detections (input pixels) and mask probabilities of each image (BatchNorm in eval mode).
    pub fn predict(
        &mut self,
        cfg: &MaskRcnnConfig,
        images: Tensor<4>,
    ) -> Result<Vec<DetectionsWithMasks>> {
        let [_, _, h, w] = images.dims();
        let mut ctx = ForwardCtx::eval();
        let feats = self.features(images, &mut ctx)?;
        let anchors = Self::anchors_for(cfg, (h, w), &feats)?;
        let rpn_out = self.rpn_head.forward(&feats);
        let props = proposals(&rpn_out, &anchors, (h, w), &cfg.rpn_test)?;
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
            let det = detect(cls, reg, pboxes, (h, w), &cfg.test)?;
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
        let out = eval_model.predict(&cfg, plain).unwrap();
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
}
