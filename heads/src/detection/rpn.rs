//! mmdet's `RPNHead` (protocols.md §3.1): a shared 3×3 conv + ReLU, then per anchor an
//! objectness logit (`rpn_cls`, sigmoid) and four deltas (`rpn_reg`, coder weights 1) on every
//! FPN level; its training loss over sampled anchors; and the proposals it makes.
//!
//! * **Layout.** `rpn_cls` gives `[B, A, H, W]`, `rpn_reg` `[B, 4A, H, W]`; both are flattened
//!   position by position (y outer), anchor by anchor, levels concatenated — the order of
//!   [`super::anchors::AnchorConfig::generate`].
//! * **Loss** (`AnchorHead.loss`, sampling on): per image the anchors are assigned
//!   ([`MaxIouAssigner::rpn`]; with valid flags only the anchors on feature cells inside the
//!   image's own padded size, mmdet's `valid_flags` with `allowed_border = -1`) and 256 sampled at 50 % positive ([`RandomSampler::rpn`]);
//!   `loss_cls` = Σ BCE-with-logits over the sampled anchors, `loss_bbox` = Σ |Δ − Δ*| over the
//!   positives' four deltas, both divided by the number of sampled anchors of the batch.
//! * **Proposals** (`_get_bboxes_single`): per level the `nms_pre` best anchors by objectness,
//!   decoded (clamped at log(1000/16)) and clipped to each image's clip shape (mmdet: the
//!   resized image, `img_shape`, not the padded input); boxes of zero width or height
//!   dropped; NMS at `nms_iou` with the level as the class (mmdet's `batched_nms`); the best
//!   `max_per_img` kept.
//!
//! Initialisation: `normal(0, 0.01)` weights, zero bias (`RPNHead.init_weights`).

use crate::segmentation::conv_module::conv2d;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Int, Tensor, TensorData};
use cae_pretrain::model::init::Init;
use rand::Rng;

use super::assign::{MaxIouAssigner, RandomSampler};
use super::box_coder::BoxCoder;
use super::nms::batched_nms;
use super::{BBox, boxes_from_flat};
use crate::error::{HeadsError, Result, to_vec};

/// Settings of proposal generation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProposalConfig {
    /// Best anchors kept per level before NMS.
    pub nms_pre: usize,
    /// NMS IoU.
    pub nms_iou: f64,
    /// Proposals kept per image.
    pub max_per_img: usize,
}

impl ProposalConfig {
    /// Training: 2000 per level, NMS 0.7, 2000 per image.
    pub fn train() -> Self {
        Self {
            nms_pre: 2000,
            nms_iou: 0.7,
            max_per_img: 2000,
        }
    }

    /// Test: 1000 per level, NMS 0.7, 1000 per image.
    pub fn test() -> Self {
        Self {
            nms_pre: 1000,
            nms_iou: 0.7,
            max_per_img: 1000,
        }
    }
}

fn conv(c_in: usize, c_out: usize, k: usize, init: &mut Init) -> Conv2d {
    let p = k / 2;
    let mut c = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(&init.device);
    let w = init.normal(c_out * c_in * k * k, 0.01);
    c.weight = init.param(w, [c_out, c_in, k, k]);
    c.bias = Some(init.zeros([c_out]));
    c
}

/// mmdet's `RPNHead`.
#[derive(Module, Debug)]
pub struct RpnHead {
    /// Shared 3×3 conv.
    pub rpn_conv: Conv2d,
    /// 1×1 objectness, one per anchor.
    pub rpn_cls: Conv2d,
    /// 1×1 deltas, four per anchor.
    pub rpn_reg: Conv2d,
}

/// The RPN's outputs on a batch, flattened in anchor order.
#[derive(Debug, Clone)]
pub struct RpnOutput {
    /// `[B, N]` objectness logits.
    pub cls: Tensor<2>,
    /// `[B, N, 4]` deltas.
    pub reg: Tensor<3>,
    /// Anchors per level (`H_l·W_l·A`).
    pub level_counts: Vec<usize>,
}

/// The two RPN losses, `[1]` each.
#[derive(Debug, Clone)]
pub struct RpnLoss {
    /// Objectness BCE.
    pub cls: Tensor<1>,
    /// L1 on the positives' deltas.
    pub bbox: Tensor<1>,
}

impl RpnHead {
    /// A head on `channels`-wide levels with `anchors` anchors per position.
    pub fn new(channels: usize, anchors: usize, init: &mut Init) -> Self {
        Self {
            rpn_conv: conv(channels, channels, 3, init),
            rpn_cls: conv(channels, anchors, 1, init),
            rpn_reg: conv(channels, 4 * anchors, 1, init),
        }
    }

    /// # Shapes
    /// `levels[l]: [B, C, H_l, W_l]` → `cls [B, N]`, `reg [B, N, 4]`, `N = Σ H_l·W_l·A`
    pub fn forward(&self, levels: &[Tensor<4>]) -> RpnOutput {
        let mut cls = Vec::new();
        let mut reg = Vec::new();
        let mut level_counts = Vec::new();
        for x in levels {
            let h = relu(conv2d(&self.rpn_conv, x.clone()));
            let c = conv2d(&self.rpn_cls, h.clone());
            let r = conv2d(&self.rpn_reg, h);
            let [b, a, hh, ww] = c.dims();
            level_counts.push(hh * ww * a);
            cls.push(c.permute([0, 2, 3, 1]).reshape([b, hh * ww * a]));
            reg.push(r.permute([0, 2, 3, 1]).reshape([b, hh * ww * a, 4]));
        }
        RpnOutput {
            cls: Tensor::cat(cls, 1),
            reg: Tensor::cat(reg, 1),
            level_counts,
        }
    }
}

/// Per-image ground truth for the detection losses.
#[derive(Debug, Clone, PartialEq)]
pub struct GtInstances {
    /// Boxes `[x1, y1, x2, y2]` in input pixels.
    pub boxes: Vec<BBox>,
    /// Contiguous labels.
    pub labels: Vec<usize>,
    /// Crowd regions (not objects; see [`MaxIouAssigner`]).
    pub crowds: Vec<BBox>,
    /// Binary masks `H × W` (the padded input size), one per box.
    pub masks: Vec<Vec<u8>>,
}

/// Numerically stable BCE with logits, elementwise.
pub fn bce_with_logits<const D: usize>(x: Tensor<D>, target: Tensor<D>) -> Tensor<D> {
    x.clone().clamp_min(0.0) - x.clone() * target + (x.abs().neg().exp() + 1.0).log()
}

/// The RPN loss of a batch (see the module docs).
pub fn rpn_loss(
    out: &RpnOutput,
    anchors: &[BBox],
    gts: &[GtInstances],
    assigner: &MaxIouAssigner,
    sampler: &RandomSampler,
    valid: Option<&[Vec<bool>]>,
    rng: &mut impl Rng,
) -> Result<RpnLoss> {
    let [b, n] = out.cls.dims();
    if let Some(v) = valid
        && (v.len() != b || v.iter().any(|f| f.len() != n))
    {
        return Err(HeadsError::Config(format!(
            "valid flags for {} images, RPN outputs of {b} images × {n} anchors",
            v.len()
        )));
    }
    if anchors.len() != n || gts.len() != b {
        return Err(HeadsError::Config(format!(
            "{} anchors and {} ground-truth sets for RPN outputs of {b} images × {n} anchors",
            anchors.len(),
            gts.len()
        )));
    }
    let device = out.cls.device();
    let coder = BoxCoder::rpn();
    let mut idx = Vec::new();
    let mut target = Vec::new();
    let mut pos_idx = Vec::new();
    let mut deltas = Vec::new();
    for (i, gt) in gts.iter().enumerate() {
        // mmdet assigns and samples the valid anchors only (`allowed_border = -1`): the others
        // are neither positives nor negatives.
        let inside: Option<Vec<usize>> =
            valid.map(|v| (0..n).filter(|&a| v[i][a]).collect::<Vec<_>>());
        let s = match &inside {
            None => sampler.sample(&assigner.assign(anchors, &gt.boxes, &gt.crowds)?, rng)?,
            Some(keep) => {
                let sub: Vec<BBox> = keep.iter().map(|&a| anchors[a]).collect();
                let mut s = sampler.sample(&assigner.assign(&sub, &gt.boxes, &gt.crowds)?, rng)?;
                for a in s.pos.iter_mut().chain(s.neg.iter_mut()) {
                    *a = keep[*a];
                }
                s
            }
        };
        for &p in &s.pos {
            idx.push((i * n + p) as i64);
            target.push(1f32);
            pos_idx.push((i * n + p) as i64);
        }
        for &q in &s.neg {
            idx.push((i * n + q) as i64);
            target.push(0f32);
        }
        let matched: Vec<BBox> = s.pos_gt.iter().map(|&g| gt.boxes[g]).collect();
        let pos_anchors: Vec<BBox> = s.pos.iter().map(|&p| anchors[p]).collect();
        deltas.extend(coder.encode(&matched, &pos_anchors)?);
    }
    let total = idx.len().max(1) as f64;
    let logits = out.cls.clone().reshape([b * n]);
    let cls = if idx.is_empty() {
        logits.sum() * 0.0
    } else {
        let k = idx.len();
        let picked = logits.select(
            0,
            Tensor::<1, Int>::from_data(TensorData::new(idx, [k]), &device),
        );
        let t = Tensor::<1>::from_data(TensorData::new(target, [k]), &device);
        bce_with_logits(picked, t).sum().div_scalar(total)
    };
    let reg = out.reg.clone().reshape([b * n, 4]);
    let bbox = if pos_idx.is_empty() {
        reg.sum() * 0.0
    } else {
        let k = pos_idx.len();
        let picked = reg.select(
            0,
            Tensor::<1, Int>::from_data(TensorData::new(pos_idx, [k]), &device),
        );
        let flat: Vec<f32> = deltas.into_iter().flatten().collect();
        let t = Tensor::<2>::from_data(TensorData::new(flat, [k, 4]), &device);
        (picked - t).abs().sum().div_scalar(total)
    };
    Ok(RpnLoss { cls, bbox })
}

/// Proposals of every image (see the module docs), boxes with their objectness (sigmoid).
/// `clip_hw[i]` (height, width) is what image `i`'s boxes are clipped to before NMS: its own
/// resized size (mmdet's `img_shape`) or the padded input.
pub fn proposals(
    out: &RpnOutput,
    anchors: &[BBox],
    clip_hw: &[(usize, usize)],
    cfg: &ProposalConfig,
) -> Result<Vec<(Vec<BBox>, Vec<f32>)>> {
    let [b, n] = out.cls.dims();
    if anchors.len() != n {
        return Err(HeadsError::Config(format!(
            "{} anchors for {n} RPN outputs",
            anchors.len()
        )));
    }
    if clip_hw.len() != b {
        return Err(HeadsError::Config(format!(
            "{} clip shapes for {b} images",
            clip_hw.len()
        )));
    }
    let scores = to_vec(out.cls.clone())?;
    let reg = boxes_from_flat("rpn deltas", &to_vec(out.reg.clone())?)?;
    let coder = BoxCoder::rpn();
    let mut result = Vec::with_capacity(b);
    for (i, &(h, w)) in clip_hw.iter().enumerate() {
        let (h, w) = (h as f32, w as f32);
        let mut sel = Vec::new();
        let mut level_of = Vec::new();
        let mut start = 0;
        for (l, &count) in out.level_counts.iter().enumerate() {
            let mut order: Vec<usize> = (start..start + count).collect();
            // Stable sort by descending score: ties keep anchor order, as torch.topk on CPU.
            order.sort_by(|&x, &y| scores[i * n + y].total_cmp(&scores[i * n + x]));
            order.truncate(cfg.nms_pre);
            level_of.extend(std::iter::repeat_n(l as i64, order.len()));
            sel.extend(order);
            start += count;
        }
        let d: Vec<[f32; 4]> = sel.iter().map(|&a| reg[i * n + a]).collect();
        let base: Vec<BBox> = sel.iter().map(|&a| anchors[a]).collect();
        let decoded = coder.decode(&d, &base)?;
        let mut boxes = Vec::new();
        let mut s = Vec::new();
        let mut lv = Vec::new();
        for ((bx, &a), &l) in decoded.iter().zip(&sel).zip(&level_of) {
            let c = [
                bx[0].clamp(0.0, w),
                bx[1].clamp(0.0, h),
                bx[2].clamp(0.0, w),
                bx[3].clamp(0.0, h),
            ];
            if c[2] - c[0] > 0.0 && c[3] - c[1] > 0.0 {
                boxes.push(c);
                s.push(1.0 / (1.0 + (-scores[i * n + a]).exp()));
                lv.push(l);
            }
        }
        let mut keep = batched_nms(&boxes, &s, &lv, cfg.nms_iou)?;
        keep.truncate(cfg.max_per_img);
        result.push((
            keep.iter().map(|&k| boxes[k]).collect(),
            keep.iter().map(|&k| s[k]).collect(),
        ));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use cae_pretrain::model::init::LinearInit;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn bce_matches_the_formula() {
        let dev = Device::flex();
        let x = Tensor::<1>::from_floats([-30.0, -1.0, 0.0, 2.0, 30.0], &dev);
        let t = Tensor::<1>::from_floats([0.0, 1.0, 1.0, 0.0, 1.0], &dev);
        let got = to_vec(bce_with_logits(x, t)).unwrap();
        let want = |x: f64, t: f64| {
            let p = 1.0 / (1.0 + (-x).exp());
            -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
        };
        for (g, (x, t)) in got.iter().zip([
            (-30.0, 0.0),
            (-1.0, 1.0),
            (0.0, 1.0),
            (2.0, 0.0),
            (30.0, 1.0),
        ]) {
            assert!(
                (f64::from(*g) - want(x, t)).abs() < 1e-5,
                "{g} vs {}",
                want(x, t)
            );
        }
    }

    #[test]
    fn loss_on_a_hand_computed_case() {
        // One level, one anchor per position, a 1×2 map: anchors [0,0,10,10] and [20,0,30,10];
        // the ground truth is the first anchor shifted by 1 px → IoU 9·10/(2·100−90) = 0.818.
        let dev = Device::flex();
        let cls = Tensor::<2>::from_floats([[1.0, -2.0]], &dev);
        let reg = Tensor::<3>::from_floats([[[0.1, 0.0, 0.0, -0.1], [5.0, 5.0, 5.0, 5.0]]], &dev);
        let out = RpnOutput {
            cls,
            reg,
            level_counts: vec![2],
        };
        let anchors = [[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]];
        let gt = GtInstances {
            boxes: vec![[1.0, 0.0, 11.0, 10.0]],
            labels: vec![0],
            crowds: vec![],
            masks: vec![],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let l = rpn_loss(
            &out,
            &anchors,
            &[gt],
            &MaxIouAssigner::rpn(),
            &RandomSampler::rpn(),
            None,
            &mut rng,
        )
        .unwrap();
        // Anchor 0 positive (target 1), anchor 1 negative (target 0); 2 sampled.
        let bce = |x: f64, t: f64| x.max(0.0) - x * t + (1.0 + (-x.abs()).exp()).ln();
        let want_cls = (bce(1.0, 1.0) + bce(-2.0, 0.0)) / 2.0;
        // Target deltas of anchor 0: (0.1, 0, 0, 0); |0.1−0.1| + 0 + 0 + |−0.1−0| = 0.1.
        let want_bbox = 0.1 / 2.0;
        let got_cls = f64::from(to_vec(l.cls).unwrap()[0]);
        let got_bbox = f64::from(to_vec(l.bbox).unwrap()[0]);
        assert!((got_cls - want_cls).abs() < 1e-6, "{got_cls} vs {want_cls}");
        assert!(
            (got_bbox - want_bbox).abs() < 1e-6,
            "{got_bbox} vs {want_bbox}"
        );
        // Anchor 1 outside the image's own padded size: only anchor 0 is sampled.
        let gt = GtInstances {
            boxes: vec![[1.0, 0.0, 11.0, 10.0]],
            labels: vec![0],
            crowds: vec![],
            masks: vec![],
        };
        let l = rpn_loss(
            &out,
            &anchors,
            &[gt],
            &MaxIouAssigner::rpn(),
            &RandomSampler::rpn(),
            Some(&[vec![true, false]]),
            &mut rng,
        )
        .unwrap();
        let got_cls = f64::from(to_vec(l.cls).unwrap()[0]);
        let got_bbox = f64::from(to_vec(l.bbox).unwrap()[0]);
        assert!((got_cls - bce(1.0, 1.0)).abs() < 1e-6, "{got_cls}");
        assert!((got_bbox - 0.1).abs() < 1e-6, "{got_bbox}");
    }

    #[test]
    fn proposals_keep_the_best_clip_and_suppress() {
        let dev = Device::flex();
        let mut init = Init::new(0, LinearInit::Xavier, &dev);
        let head = RpnHead::new(4, 3, &mut init);
        let levels = vec![
            Tensor::<4>::ones([1, 4, 4, 4], &dev),
            Tensor::<4>::ones([1, 4, 2, 2], &dev),
        ];
        let out = head.forward(&levels);
        assert_eq!(out.cls.dims(), [1, 60]);
        assert_eq!(out.reg.dims(), [1, 60, 4]);
        assert_eq!(out.level_counts, vec![48, 12]);
        // Hand-made outputs: two overlapping anchors, the second scored higher.
        let cls = Tensor::<2>::from_floats([[0.0, 2.0, -1.0]], &dev);
        let reg = Tensor::<3>::zeros([1, 3, 4], &dev);
        let out = RpnOutput {
            cls,
            reg,
            level_counts: vec![3],
        };
        let anchors = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 0.0, 11.0, 10.0],
            [-5.0, 20.0, 5.0, 40.0],
        ];
        let cfg = ProposalConfig {
            nms_pre: 3,
            nms_iou: 0.7,
            max_per_img: 10,
        };
        let p = proposals(&out, &anchors, &[(32, 32)], &cfg).unwrap();
        let (boxes, scores) = &p[0];
        assert_eq!(boxes, &vec![[1.0, 0.0, 11.0, 10.0], [0.0, 20.0, 5.0, 32.0]]);
        assert!((scores[0] - 1.0 / (1.0 + (-2f32).exp())).abs() < 1e-6);
        let few = ProposalConfig { nms_pre: 1, ..cfg };
        assert_eq!(
            proposals(&out, &anchors, &[(32, 32)], &few).unwrap()[0]
                .0
                .len(),
            1
        );
        assert!(proposals(&out, &anchors, &[], &cfg).is_err());
    }

    #[test]
    fn proposals_are_clipped_to_the_image_before_nms() {
        let dev = Device::flex();
        // A tall box reaching into the padding and a short one inside the image, scored lower.
        let out = RpnOutput {
            cls: Tensor::<2>::from_floats([[2.0, 1.0, 0.0]], &dev),
            reg: Tensor::<3>::zeros([1, 3, 4], &dev),
            level_counts: vec![3],
        };
        let anchors = [
            [0.0, 0.0, 10.0, 40.0],
            [0.0, 0.0, 10.0, 12.0],
            [0.0, 14.0, 10.0, 30.0],
        ];
        let cfg = ProposalConfig {
            nms_pre: 3,
            nms_iou: 0.7,
            max_per_img: 10,
        };
        // Clipped to the 32-px input: IoU 120/320 = 0.375, both kept; the third box too.
        let input = proposals(&out, &anchors, &[(32, 32)], &cfg).unwrap();
        assert_eq!(input[0].0.len(), 3);
        // Clipped to the 12-px-high image first: the tall box becomes the short one (IoU 1),
        // which NMS removes, and the third box, wholly in the padding, has no height left.
        let image = proposals(&out, &anchors, &[(12, 32)], &cfg).unwrap();
        assert_eq!(image[0].0, vec![[0.0, 0.0, 10.0, 12.0]]);
    }
}
