//! The RoI heads of Mask R-CNN (protocols.md §3.1), as mmdet builds them for the ViT configs of
//! BEiT / CAE:
//!
//! * [`ConvFcBBoxHead`] (`roi_head.bbox_head`): `num_convs` 3×3 ConvModules (conv, BatchNorm,
//!   ReLU; "4conv1fc") or none ("2fc"), flatten, `num_fcs` fully connected layers + ReLU, then
//!   `fc_cls` (K + 1 logits, background last) and `fc_reg` (4 deltas per class, coder weights
//!   (10, 10, 5, 5)). Init: xavier-uniform fcs, `fc_cls` normal(0.01), `fc_reg` normal(0.001).
//! * [`FcnMaskHead`] (`roi_head.mask_head`): 4 × (3×3 conv + ReLU), a 2×2 stride-2 transposed
//!   conv + ReLU, and a 1×1 `conv_logits` to K masks of 28×28. Init: kaiming-normal (fan-out).
//! * Losses ([`bbox_loss`], [`mask_loss`]), over the sampled RoIs of the batch: softmax CE on
//!   every sampled RoI; the regression of each positive RoI on its ground-truth class's deltas,
//!   GIoU (`1 − GIoU` of the decoded box, `reg_decoded_bbox`, weight 10) or L1 on the encoded
//!   deltas (weight 1), both divided by the number of sampled RoIs (mmdet's `avg_factor`); the
//!   mask BCE on the ground-truth class's channel of each positive, averaged over its pixels.
//! * Mask targets ([`mask_targets`]): the ground-truth mask cropped to the positive RoI and
//!   resampled to 28×28 by RoIAlign (aligned, adaptive sampling), then `≥ 0.5`, as mmdet's
//!   `BitmapMasks.crop_and_resize`.
//! * Inference ([`detect`]): softmax scores; each class's deltas decoded and clipped to the
//!   image; scores `> score_thr` kept; per-class NMS; the best `max_per_img`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::activation::{log_softmax, relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use cae_pretrain::model::init::Init;
use serde::{Deserialize, Serialize};

use super::box_coder::{BBOX_XFORM_CLIP, BoxCoder};
use super::nms::batched_nms;
use super::roi_align::{Roi, RoiAlignConfig, roi_align};
use super::rpn::bce_with_logits;
use super::{BBox, boxes_from_flat};
use crate::error::{HeadsError, Result, to_vec};
use crate::segmentation::conv_module::ConvModule;

/// The regression loss of the box head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxLoss {
    /// `weight · (1 − GIoU)` on decoded boxes (the BEiT / CAE configs: weight 10).
    Giou {
        /// Loss weight.
        weight: f64,
    },
    /// `weight · |Δ − Δ*|` on encoded deltas (mmdet's base config: weight 1).
    L1 {
        /// Loss weight.
        weight: f64,
    },
}

/// Shape of the box head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxHeadConfig {
    /// Shared 3×3 ConvModules (4 in "4conv1fc", 0 in "2fc").
    pub num_convs: usize,
    /// Their width.
    pub conv_channels: usize,
    /// Shared fully connected layers (1 in "4conv1fc", 2 in "2fc").
    pub num_fcs: usize,
    /// Their width (1024).
    pub fc_channels: usize,
    /// Pooled RoI side (7).
    pub roi_size: usize,
    /// The regression loss.
    pub loss: BoxLoss,
}

impl BoxHeadConfig {
    /// "4conv1fc" with GIoU × 10 (the BEiT / CAE setting).
    pub fn four_conv_one_fc() -> Self {
        Self {
            num_convs: 4,
            conv_channels: 256,
            num_fcs: 1,
            fc_channels: 1024,
            roi_size: 7,
            loss: BoxLoss::Giou { weight: 10.0 },
        }
    }

    /// mmdet's base "2fc" (`Shared2FCBBoxHead`) with L1.
    pub fn two_fc() -> Self {
        Self {
            num_convs: 0,
            num_fcs: 2,
            loss: BoxLoss::L1 { weight: 1.0 },
            ..Self::four_conv_one_fc()
        }
    }
}

fn kaiming_conv(c_in: usize, c_out: usize, k: usize, init: &mut Init) -> Conv2d {
    let p = k / 2;
    let mut c = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(&init.device);
    let std = (2.0 / (c_out * k * k) as f64).sqrt();
    let w = init.normal(c_out * c_in * k * k, std);
    c.weight = init.param(w, [c_out, c_in, k, k]);
    c.bias = Some(init.zeros([c_out]));
    c
}

fn linear_normal(d_in: usize, d_out: usize, std: f64, init: &mut Init) -> Linear {
    let mut l = init.linear(d_in, d_out, true);
    let w = init.normal(d_in * d_out, std);
    l.weight = init.param(w, [d_in, d_out]);
    l
}

/// mmdet's `ConvFCBBoxHead` (shared convs and fcs, then the classifier and the regressor).
#[derive(Module, Debug)]
pub struct ConvFcBBoxHead {
    /// 3×3 ConvModules.
    pub shared_convs: Vec<ConvModule>,
    /// Fully connected layers (ReLU after each).
    pub shared_fcs: Vec<Linear>,
    /// `K + 1` class logits (background last).
    pub fc_cls: Linear,
    /// `4K` deltas.
    pub fc_reg: Linear,
}

impl ConvFcBBoxHead {
    /// A head on `in_channels`-wide pooled RoIs for `num_classes` classes.
    pub fn new(
        cfg: &BoxHeadConfig,
        in_channels: usize,
        num_classes: usize,
        bn_eps: f64,
        init: &mut Init,
    ) -> Result<Self> {
        if cfg.num_fcs == 0 || cfg.roi_size == 0 || num_classes == 0 {
            return Err(HeadsError::Config(
                "the box head needs ≥ 1 fc layer, a RoI size and ≥ 1 class".into(),
            ));
        }
        let mut c = in_channels;
        let shared_convs = (0..cfg.num_convs)
            .map(|_| {
                let m = ConvModule::new(c, cfg.conv_channels, 3, bn_eps, init);
                c = cfg.conv_channels;
                m
            })
            .collect();
        let mut d = c * cfg.roi_size * cfg.roi_size;
        let shared_fcs = (0..cfg.num_fcs)
            .map(|_| {
                let l = init.linear(d, cfg.fc_channels, true);
                d = cfg.fc_channels;
                l
            })
            .collect();
        Ok(Self {
            shared_convs,
            shared_fcs,
            fc_cls: linear_normal(d, num_classes + 1, 0.01, init),
            fc_reg: linear_normal(d, 4 * num_classes, 0.001, init),
        })
    }

    /// # Shapes
    /// `x: [R, C, s, s]` → `(cls [R, K+1], reg [R, 4K])`
    pub fn forward(&mut self, x: Tensor<4>, train: bool) -> (Tensor<2>, Tensor<2>) {
        let mut x = x;
        for c in &mut self.shared_convs {
            x = c.forward(x, train);
        }
        let [r, ch, h, w] = x.dims();
        let mut y: Tensor<2> = x.reshape([r, ch * h * w]);
        for fc in &self.shared_fcs {
            y = relu(fully_connected(fc, y));
        }
        (
            fully_connected(&self.fc_cls, y.clone()),
            fully_connected(&self.fc_reg, y),
        )
    }
}

/// `fc.forward(x)`; under bf16 autocast the product runs in bf16
/// ([`cae_pretrain::fused::linear`]).
///
/// # Shapes
/// `x: [R, D_in] → [R, D_out]`
fn fully_connected(fc: &Linear, x: Tensor<2>) -> Tensor<2> {
    if cae_pretrain::autocast::active() {
        cae_pretrain::fused::linear(x, fc.weight.val(), fc.bias.as_ref().map(|b| b.val()))
    } else {
        fc.forward(x)
    }
}

/// A 3×3 conv + ReLU of the mask head (keys `….conv.{weight,bias}`).
#[derive(Module, Debug)]
pub struct MaskConv {
    /// The convolution (with bias).
    pub conv: Conv2d,
}

/// mmdet's `FCNMaskHead`.
#[derive(Module, Debug)]
pub struct FcnMaskHead {
    /// 3×3 convs + ReLU.
    pub convs: Vec<MaskConv>,
    /// 2×2 stride-2 transposed conv (+ ReLU).
    pub upsample: ConvTranspose2d,
    /// 1×1 conv to one mask per class.
    pub conv_logits: Conv2d,
}

impl FcnMaskHead {
    /// `num_convs` convs of `channels` on `in_channels`-wide pooled RoIs.
    pub fn new(
        in_channels: usize,
        channels: usize,
        num_convs: usize,
        num_classes: usize,
        init: &mut Init,
    ) -> Self {
        let mut c = in_channels;
        let convs = (0..num_convs)
            .map(|_| {
                let m = MaskConv {
                    conv: kaiming_conv(c, channels, 3, init),
                };
                c = channels;
                m
            })
            .collect();
        let mut upsample = ConvTranspose2dConfig::new([c, channels], [2, 2])
            .with_stride([2, 2])
            .init(&init.device);
        // kaiming fan-out of a transposed weight [in, out, k, k]: fan_out = in·k·k in torch.
        let std = (2.0 / (c * 4) as f64).sqrt();
        let w = init.normal(c * channels * 4, std);
        upsample.weight = init.param(w, [c, channels, 2, 2]);
        upsample.bias = Some(init.zeros([channels]));
        Self {
            convs,
            upsample,
            conv_logits: kaiming_conv(channels, num_classes, 1, init),
        }
    }

    /// # Shapes
    /// `x: [P, C, 14, 14]` → `[P, K, 28, 28]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = x;
        for c in &self.convs {
            x = relu(crate::segmentation::conv_module::conv2d(&c.conv, x));
        }
        let up = crate::segmentation::conv_module::conv_transpose2d(&self.upsample, x);
        crate::segmentation::conv_module::conv2d(&self.conv_logits, relu(up))
    }
}

/// The sampled RoIs of a batch with their targets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoiTargets {
    /// The RoIs (positives first within each image).
    pub rois: Vec<Roi>,
    /// Class of each RoI (`K` = background).
    pub labels: Vec<usize>,
    /// Matched ground-truth box of each RoI (meaningless for background).
    pub gt_boxes: Vec<BBox>,
    /// Rows of `rois` that are positives.
    pub pos_rows: Vec<usize>,
    /// Ground-truth index (within its image) of each positive row.
    pub pos_gt: Vec<usize>,
}

fn int_tensor<const D: usize>(v: Vec<i64>, shape: [usize; D], device: &Device) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Decodes deltas (tensor version of [`BoxCoder::decode`], differentiable).
///
/// # Shapes
/// `deltas: [P, 4]`, `boxes: [P, 4]` → `[P, 4]`
pub fn decode_tensor(deltas: Tensor<2>, boxes: Tensor<2>, weights: [f32; 4]) -> Tensor<2> {
    let [p, _] = deltas.dims();
    let col = |t: &Tensor<2>, i: usize| t.clone().slice([0..p, i..i + 1]);
    let w = col(&boxes, 2) - col(&boxes, 0);
    let h = col(&boxes, 3) - col(&boxes, 1);
    let cx = col(&boxes, 0) + w.clone() * 0.5;
    let cy = col(&boxes, 1) + h.clone() * 0.5;
    let dx = col(&deltas, 0).div_scalar(weights[0]);
    let dy = col(&deltas, 1).div_scalar(weights[1]);
    let dw = col(&deltas, 2)
        .div_scalar(weights[2])
        .clamp_max(BBOX_XFORM_CLIP);
    let dh = col(&deltas, 3)
        .div_scalar(weights[3])
        .clamp_max(BBOX_XFORM_CLIP);
    let px = dx * w.clone() + cx;
    let py = dy * h.clone() + cy;
    let pw = dw.exp() * w;
    let ph = dh.exp() * h;
    Tensor::cat(
        vec![
            px.clone() - pw.clone() * 0.5,
            py.clone() - ph.clone() * 0.5,
            px + pw * 0.5,
            py + ph * 0.5,
        ],
        1,
    )
}

/// `1 − GIoU` of matching rows (mmdet's `giou_loss`, eps 1e-6).
///
/// # Shapes
/// `pred: [P, 4]`, `target: [P, 4]` → `[P]`
pub fn giou_loss(pred: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let [p, _] = pred.dims();
    let col = |t: &Tensor<2>, i: usize| t.clone().slice([0..p, i..i + 1]);
    let eps = 1e-6;
    let area = |t: &Tensor<2>| (col(t, 2) - col(t, 0)) * (col(t, 3) - col(t, 1));
    let ap = area(&pred);
    let ag = area(&target);
    let iw = (col(&pred, 2).min_pair(col(&target, 2)) - col(&pred, 0).max_pair(col(&target, 0)))
        .clamp_min(0.0);
    let ih = (col(&pred, 3).min_pair(col(&target, 3)) - col(&pred, 1).max_pair(col(&target, 1)))
        .clamp_min(0.0);
    let inter = iw * ih;
    let union = ap + ag - inter.clone() + eps;
    let iou = inter / union.clone();
    let ew = (col(&pred, 2).max_pair(col(&target, 2)) - col(&pred, 0).min_pair(col(&target, 0)))
        .clamp_min(0.0);
    let eh = (col(&pred, 3).max_pair(col(&target, 3)) - col(&pred, 1).min_pair(col(&target, 1)))
        .clamp_min(0.0);
    let enclose = ew * eh + eps;
    let giou = iou - (enclose.clone() - union) / enclose;
    (giou.neg() + 1.0).reshape([p])
}

/// The box-head losses `(cls, bbox)`, `[1]` each (see the module docs).
pub fn bbox_loss(
    cls: Tensor<2>,
    reg: Tensor<2>,
    t: &RoiTargets,
    num_classes: usize,
    loss: BoxLoss,
) -> Result<(Tensor<1>, Tensor<1>)> {
    let [r, k1] = cls.dims();
    if r != t.rois.len() || k1 != num_classes + 1 {
        return Err(HeadsError::Config(format!(
            "box head outputs {r}×{k1} for {} RoIs and {num_classes} classes",
            t.rois.len()
        )));
    }
    let device = cls.device();
    let avg = r.max(1) as f64;
    let labels = int_tensor(
        t.labels.iter().map(|&l| l as i64).collect(),
        [r, 1],
        &device,
    );
    let loss_cls = log_softmax(cls, 1)
        .gather(1, labels)
        .sum()
        .neg()
        .div_scalar(avg);
    let p = t.pos_rows.len();
    if p == 0 {
        return Ok((loss_cls, reg.sum() * 0.0));
    }
    let rows = int_tensor(t.pos_rows.iter().map(|&i| i as i64).collect(), [p], &device);
    let cols: Vec<i64> = t
        .pos_rows
        .iter()
        .flat_map(|&i| (0..4).map(move |c| (4 * t.labels[i] + c) as i64))
        .collect();
    let picked = reg
        .select(0, rows)
        .gather(1, int_tensor(cols, [p, 4], &device));
    let props: Vec<BBox> = t.pos_rows.iter().map(|&i| t.rois[i].bbox).collect();
    let gts: Vec<BBox> = t.pos_rows.iter().map(|&i| t.gt_boxes[i]).collect();
    let coder = BoxCoder::roi_head();
    let loss_bbox = match loss {
        BoxLoss::Giou { weight } => {
            let props_t = Tensor::<2>::from_data(
                TensorData::new(props.into_iter().flatten().collect::<Vec<_>>(), [p, 4]),
                &device,
            );
            let gt_t = Tensor::<2>::from_data(
                TensorData::new(gts.into_iter().flatten().collect::<Vec<_>>(), [p, 4]),
                &device,
            );
            let pred = decode_tensor(picked, props_t, coder.weights);
            giou_loss(pred, gt_t).sum().mul_scalar(weight / avg)
        }
        BoxLoss::L1 { weight } => {
            let deltas = coder.encode(&gts, &props)?;
            let tgt = Tensor::<2>::from_data(
                TensorData::new(deltas.into_iter().flatten().collect::<Vec<_>>(), [p, 4]),
                &device,
            );
            (picked - tgt).abs().sum().mul_scalar(weight / avg)
        }
    };
    Ok((loss_cls, loss_bbox))
}

/// 28×28 (or `size`) binary targets of the positive RoIs of one image, row-major, `[P·s·s]`.
///
/// `masks[g]` is ground truth `g`'s `H × W` mask.
pub fn mask_targets(
    masks: &[Vec<u8>],
    image_hw: (usize, usize),
    boxes: &[BBox],
    gt_of: &[usize],
    size: usize,
) -> Result<Vec<f32>> {
    let (h, w) = image_hw;
    if boxes.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(m) = masks.iter().find(|m| m.len() != h * w) {
        return Err(HeadsError::Config(format!(
            "a ground-truth mask holds {} values for a {h}×{w} image",
            m.len()
        )));
    }
    if let Some(&g) = gt_of.iter().find(|&&g| g >= masks.len()) {
        return Err(HeadsError::Config(format!(
            "positive matched to ground truth {g} of {}",
            masks.len()
        )));
    }
    let device = Device::flex();
    let flat: Vec<f32> = masks
        .iter()
        .flat_map(|m| m.iter().map(|&v| f32::from(v.min(1))))
        .collect();
    let features = Tensor::<4>::from_data(TensorData::new(flat, [masks.len(), 1, h, w]), &device);
    let rois: Vec<Roi> = boxes
        .iter()
        .zip(gt_of)
        .map(|(b, &g)| Roi { batch: g, bbox: *b })
        .collect();
    let cfg = RoiAlignConfig::new(size, 1.0);
    let out = to_vec(roi_align(features, &rois, &cfg)?)?;
    Ok(out
        .into_iter()
        .map(|v| if v >= 0.5 { 1.0 } else { 0.0 })
        .collect())
}

/// Mask BCE on each positive's ground-truth class channel, averaged over `P·s·s`.
///
/// # Shapes
/// `logits: [P, K, s, s]`, `labels.len() = P`, `targets.len() = P·s·s` → `[1]`
pub fn mask_loss(logits: Tensor<4>, labels: &[usize], targets: Vec<f32>) -> Result<Tensor<1>> {
    let [p, _, s, _] = logits.dims();
    if labels.len() != p || targets.len() != p * s * s {
        return Err(HeadsError::Config(format!(
            "{} labels and {} target pixels for {p} masks of {s}×{s}",
            labels.len(),
            targets.len()
        )));
    }
    let device = logits.device();
    if p == 0 {
        return Ok(logits.sum() * 0.0);
    }
    let idx: Vec<i64> = labels
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l as i64, s * s))
        .collect();
    let picked = logits
        .gather(1, int_tensor(idx, [p, 1, s, s], &device))
        .reshape([p * s * s]);
    let t = Tensor::<1>::from_data(TensorData::new(targets, [p * s * s]), &device);
    Ok(bce_with_logits(picked, t).mean())
}

/// Detections of one image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detections {
    /// Boxes in input pixels.
    pub boxes: Vec<BBox>,
    /// Scores.
    pub scores: Vec<f32>,
    /// Contiguous labels.
    pub labels: Vec<usize>,
}

/// Test-time settings of the RoI head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RcnnTestConfig {
    /// Least class score (0.05).
    pub score_thr: f32,
    /// Per-class NMS IoU (0.5).
    pub nms_iou: f64,
    /// Detections per image (100).
    pub max_per_img: usize,
    /// Mask binarisation threshold (0.5).
    pub mask_thr: f32,
}

impl RcnnTestConfig {
    /// The COCO setting.
    pub fn coco() -> Self {
        Self {
            score_thr: 0.05,
            nms_iou: 0.5,
            max_per_img: 100,
            mask_thr: 0.5,
        }
    }
}

/// Class scores and deltas of one image's proposals → detections (see the module docs).
pub fn detect(
    cls: Tensor<2>,
    reg: Tensor<2>,
    proposals: &[BBox],
    image_hw: (usize, usize),
    cfg: &RcnnTestConfig,
) -> Result<Detections> {
    let [r, k1] = cls.dims();
    let k = k1 - 1;
    if proposals.len() != r {
        return Err(HeadsError::Config(format!(
            "{} proposals for {r} box-head rows",
            proposals.len()
        )));
    }
    let probs = to_vec(softmax(cls, 1))?;
    let deltas = boxes_from_flat("box deltas", &to_vec(reg)?)?;
    let coder = BoxCoder::roi_head();
    let (h, w) = (image_hw.0 as f32, image_hw.1 as f32);
    let mut boxes = Vec::new();
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    for (i, prop) in proposals.iter().enumerate() {
        for c in 0..k {
            let s = probs[i * k1 + c];
            if s <= cfg.score_thr {
                continue;
            }
            let b = coder.decode(&[deltas[i * k + c]], &[*prop])?[0];
            boxes.push([
                b[0].clamp(0.0, w),
                b[1].clamp(0.0, h),
                b[2].clamp(0.0, w),
                b[3].clamp(0.0, h),
            ]);
            scores.push(s);
            labels.push(c as i64);
        }
    }
    let mut keep = batched_nms(&boxes, &scores, &labels, cfg.nms_iou)?;
    keep.truncate(cfg.max_per_img);
    Ok(Detections {
        boxes: keep.iter().map(|&i| boxes[i]).collect(),
        scores: keep.iter().map(|&i| scores[i]).collect(),
        labels: keep.iter().map(|&i| labels[i] as usize).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::iou::generalized_box_iou;
    use cae_pretrain::model::init::LinearInit;
    use cae_pretrain::weights::expected_tensors;

    #[test]
    fn mmdet_keys_and_shapes() {
        let dev = Device::flex();
        let mut init = Init::new(0, LinearInit::Xavier, &dev);
        let cfg = BoxHeadConfig {
            conv_channels: 6,
            fc_channels: 10,
            ..BoxHeadConfig::four_conv_one_fc()
        };
        let mut head = ConvFcBBoxHead::new(&cfg, 5, 3, 1e-5, &mut init).unwrap();
        let keys = expected_tensors(&head);
        assert_eq!(keys["shared_convs.3.conv.weight"], vec![6, 6, 3, 3]);
        assert_eq!(keys["shared_convs.0.bn.running_var"], vec![6]);
        assert_eq!(keys["fc_cls.weight"], vec![4, 10]);
        assert_eq!(keys["fc_reg.bias"], vec![12]);
        let (c, r) = head.forward(Tensor::ones([7, 5, 7, 7], &dev), true);
        assert_eq!((c.dims(), r.dims()), ([7, 4], [7, 12]));
        let two = ConvFcBBoxHead::new(&BoxHeadConfig::two_fc(), 5, 3, 1e-5, &mut init).unwrap();
        let keys = expected_tensors(&two);
        assert!(keys.contains_key("shared_fcs.1.weight"));
        assert!(!keys.keys().any(|k| k.starts_with("shared_convs")));
        let mask = FcnMaskHead::new(5, 6, 4, 3, &mut init);
        let keys = expected_tensors(&mask);
        assert_eq!(keys["convs.3.conv.weight"], vec![6, 6, 3, 3]);
        assert_eq!(keys["upsample.weight"], vec![6, 6, 2, 2]);
        assert_eq!(keys["conv_logits.weight"], vec![3, 6, 1, 1]);
        assert_eq!(
            mask.forward(Tensor::ones([2, 5, 14, 14], &dev)).dims(),
            [2, 3, 28, 28]
        );
    }

    #[test]
    fn giou_loss_agrees_with_the_box_op_and_decode_with_the_coder() {
        let dev = Device::flex();
        let a = [
            [0.0, 0.0, 10.0, 10.0],
            [5.0, 5.0, 9.0, 20.0],
            [0.0, 0.0, 2.0, 2.0],
        ];
        let b = [
            [1.0, 2.0, 12.0, 9.0],
            [5.0, 5.0, 9.0, 20.0],
            [10.0, 10.0, 12.0, 13.0],
        ];
        let t = |x: &[BBox]| {
            Tensor::<2>::from_data(
                TensorData::new(
                    x.iter().flatten().copied().collect::<Vec<_>>(),
                    [x.len(), 4],
                ),
                &dev,
            )
        };
        let got = to_vec(giou_loss(t(&a), t(&b))).unwrap();
        for i in 0..3 {
            let g = generalized_box_iou(&a[i..=i], &b[i..=i]).unwrap()[0];
            assert!(
                (got[i] - (1.0 - g)).abs() < 1e-5,
                "{} vs {}",
                got[i],
                1.0 - g
            );
        }
        let deltas = [
            [0.5, -1.0, 0.3, -0.2],
            [0.0, 0.0, 30.0, 0.0],
            [2.0, 1.0, -1.0, 0.5],
        ];
        let coder = BoxCoder::roi_head();
        let want = coder.decode(&deltas, &a).unwrap();
        let got = to_vec(decode_tensor(t(&deltas), t(&a), coder.weights)).unwrap();
        for (g, w) in got.chunks(4).zip(&want) {
            for (x, y) in g.iter().zip(w) {
                assert!((x - y).abs() < 1e-4, "{g:?} vs {w:?}");
            }
        }
    }

    #[test]
    fn box_loss_on_a_hand_computed_case() {
        let dev = Device::flex();
        // Two RoIs, two classes (+ background): RoI 0 positive of class 1, RoI 1 background.
        let cls = Tensor::<2>::from_floats([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]], &dev);
        let reg = Tensor::<2>::zeros([2, 8], &dev);
        let t = RoiTargets {
            rois: vec![
                Roi {
                    batch: 0,
                    bbox: [0.0, 0.0, 10.0, 10.0],
                },
                Roi {
                    batch: 0,
                    bbox: [20.0, 20.0, 30.0, 30.0],
                },
            ],
            labels: vec![1, 2],
            gt_boxes: vec![[0.0, 0.0, 10.0, 20.0], [0.0; 4]],
            pos_rows: vec![0],
            pos_gt: vec![0],
        };
        let (c, b) = bbox_loss(
            cls.clone(),
            reg.clone(),
            &t,
            2,
            BoxLoss::Giou { weight: 10.0 },
        )
        .unwrap();
        let lse = |v: [f64; 3]| v.iter().map(|x| x.exp()).sum::<f64>().ln();
        let want_cls = ((lse([0.0, 1.0, 0.0]) - 1.0) + (lse([2.0, 0.0, 0.0]) - 0.0)) / 2.0;
        // Zero deltas decode to the RoI itself: IoU 100/200 = 0.5, enclosing = union → GIoU 0.5.
        let want_giou = 10.0 * (1.0 - 0.5) / 2.0;
        let c = f64::from(to_vec(c).unwrap()[0]);
        let b = f64::from(to_vec(b).unwrap()[0]);
        assert!((c - want_cls).abs() < 1e-5, "{c} vs {want_cls}");
        assert!((b - want_giou).abs() < 1e-4, "{b} vs {want_giou}");
        // L1: target deltas (0, 10·0.5·... ) = (0, 0.5·10, 5·ln 2, ...): dy = 10·(10−5)/10 = 5,
        // dh = 5·ln(20/10); |0|+|5|+|0|+|5 ln 2| over 2 RoIs.
        let (_, l1) = bbox_loss(cls, reg, &t, 2, BoxLoss::L1 { weight: 1.0 }).unwrap();
        let want_l1 = (5.0 + 5.0 * 2f64.ln()) / 2.0;
        let l1 = f64::from(to_vec(l1).unwrap()[0]);
        assert!((l1 - want_l1).abs() < 1e-4, "{l1} vs {want_l1}");
    }

    #[test]
    fn mask_targets_crop_the_ground_truth_and_the_loss_picks_the_class() {
        // A 8×8 image whose mask is the left half; the RoI is the whole image.
        let mut m = vec![0u8; 64];
        for y in 0..8 {
            for x in 0..4 {
                m[y * 8 + x] = 1;
            }
        }
        let t = mask_targets(&[m], (8, 8), &[[0.0, 0.0, 8.0, 8.0]], &[0], 4).unwrap();
        assert_eq!(t.len(), 16);
        for y in 0..4 {
            assert_eq!(&t[y * 4..y * 4 + 4], &[1.0, 1.0, 0.0, 0.0]);
        }
        // A RoI on the right half sees nothing.
        let t2 = mask_targets(
            &[vec![1; 32].into_iter().chain(vec![0; 32]).collect()],
            (8, 8),
            &[[0.0, 4.0, 8.0, 8.0]],
            &[0],
            2,
        )
        .unwrap();
        assert_eq!(t2, vec![0.0; 4]);
        let dev = Device::flex();
        // Class 1's channel is +20 where the target is 1 and −20 elsewhere: loss ≈ 0; class 0's
        // channel is the opposite, so picking the wrong channel would give ≈ 20.
        let good: Vec<f32> = t
            .iter()
            .map(|&v| if v > 0.5 { 20.0 } else { -20.0 })
            .collect();
        let bad: Vec<f32> = good.iter().map(|v| -v).collect();
        let logits = Tensor::<4>::from_data(
            TensorData::new(
                bad.into_iter().chain(good).collect::<Vec<_>>(),
                [1, 2, 4, 4],
            ),
            &dev,
        );
        let l = f64::from(to_vec(mask_loss(logits, &[1], t).unwrap()).unwrap()[0]);
        assert!(l < 1e-6, "{l}");
    }

    #[test]
    fn detect_thresholds_suppresses_per_class_and_clips() {
        let dev = Device::flex();
        // Three proposals, two classes. Softmax rows chosen so that class 0 scores 0.6, 0.5, 0.01.
        let row = |p: [f32; 3]| p.map(|v| v.ln());
        let cls = Tensor::<2>::from_floats(
            [
                row([0.6, 0.1, 0.3]),
                row([0.5, 0.45, 0.05]),
                row([0.01, 0.01, 0.98]),
            ],
            &dev,
        );
        let reg = Tensor::<2>::zeros([3, 8], &dev);
        let props = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 0.0, 11.0, 10.0],
            [0.0, 0.0, 50.0, 50.0],
        ];
        let d = detect(cls, reg, &props, (20, 40), &RcnnTestConfig::coco()).unwrap();
        // class 0: 0.6 (box 0) suppresses 0.5 (box 1, IoU 0.82); class 1: 0.1 and 0.45 → 0.45
        // suppresses 0.1; proposal 2 is below the threshold for both classes. Sorted by score.
        assert_eq!(d.labels, vec![0, 1]);
        assert!((d.scores[0] - 0.6).abs() < 1e-5 && (d.scores[1] - 0.45).abs() < 1e-5);
        assert_eq!(
            d.boxes,
            vec![[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]]
        );
        let reg = Tensor::<2>::zeros([3, 8], &dev);
        let cls = Tensor::<2>::from_floats([row([0.01, 0.01, 0.98]); 3], &dev);
        let big = [[0.0, 0.0, 50.0, 50.0]; 3];
        assert!(
            detect(cls, reg, &big, (20, 40), &RcnnTestConfig::coco())
                .unwrap()
                .boxes
                .is_empty()
        );
    }
}
