//! COCO object detection and instance segmentation with Mask R-CNN (protocols.md §3.1):
//! `cae-bench detect`.
//!
//! Model: [`MaskRcnn`] — the encoder fine-tuned under the 4-scale neck, mmdet's FPN, RPN,
//! 4conv1fc box head with GIoU, FCN mask head. Optimiser: AdamW with layer-wise lr decay
//! ([`seg_param_group`]: patch embedding / cls / position at layer 0, blocks 1..L, every head
//! at L + 1), no weight decay on biases and 1-D parameters; mmdet's step schedule after linear
//! warmup ([`StepSchedule`]); drop path.
//!
//! Data: `COCO_ROOT/{train2017,val2017}` and `COCO_ROOT/annotations/instances_{train,val}2017
//! .json`, read by [`CocoDataset`] (`filter_empty_gt`: images without annotations dropped
//! before the epoch is counted). Training ([`DetTrainTransform`]): flip 0.5, resize keeping the
//! ratio to a short side drawn from the recipe's list (bounded by `max_size`) or CAE's DETR-style
//! crop branch, normalise, objects moved with the image; crowd regions are not objects (mmdet's
//! `gt_bboxes_ignore`: left out of the targets). `pad = batch` (mmdet, CAE): each image padded
//! to a multiple of 32, each group of `images_per_group` images of one orientation (mmdet's
//! `GroupSampler`) to its largest, the position table resampled to each group's grid, BatchNorm
//! over the whole batch; `pad = canvas`: every image on one square canvas (ViTDet's
//! `square_pad`). Test: resize to the test short side, pad, detect (proposals and detections
//! clipped to the image), boxes scaled back to the original image, masks pasted into it and
//! thresholded at 0.5, encoded as COCO RLE.
//!
//! The sampler and random streams are those of `segment`: sample `k` of the run comes from a
//! permutation per pass drawn from `(seed, pass)`, its augmentation from `(seed, k)`, drop path
//! and the RPN / RoI samplers of iteration `i` from `(seed, i)`; a checkpoint (model, BatchNorm
//! statistics, AdamW state, iteration) is all a resume needs.
//!
//! Output: `RUN/detections_bbox.json` and `RUN/detections_segm.json` in the COCO results format;
//! the record's numbers are [`evaluate_files`] on those files (the code of `cae-bench
//! coco-eval`): the 12 bbox and 12 segm stats as fractions (`bbox_AP`, …, `segm_ARl`) and each
//! category's AP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use cae_datasets::loader::derive_seed;
use cae_datasets::transforms::det::{
    DetSample, DetTestTransform, DetTrainTransform, DetrCropBranch,
};
use cae_datasets::{CocoDataset, CocoSplit};
use cae_heads::classification::finetune::prepare_finetune_backbone;
use cae_heads::detection::assign::GtProposalOrder;
use cae_heads::detection::mask_rcnn::{ClipTo, DetGroup, ImageMeta, MaskRcnn, MaskRcnnConfig};
use cae_heads::detection::paste::{MaskPaste, binarize};
use cae_heads::detection::roi_head::BoxLoss;
use cae_heads::detection::rpn::GtInstances;
use cae_heads::error::to_vec;
use cae_heads::optim::{Optimizer, Rule};
use cae_heads::schedule::StepSchedule;
use cae_heads::segmentation::SEG_IGNORED_KEYS;
use cae_heads::segmentation::layer_decay::seg_param_group;
use cae_pretrain::autocast::{Precision, autocast};
use cae_pretrain::config::PosResize;
use cae_pretrain::model::ForwardCtx;
use cae_pretrain::model::init::{Init, LinearInit};
use cae_pretrain::train::step::salted_step_rng;
use cae_pretrain::weights::{LoadOptions, collect_tensors, load_safetensors_bytes};
use cae_reports::record::{
    ClassResult, DatasetInfo, EncoderInfo, EpochMetrics, MachineInfo, ProtocolInfo, RecordWriter,
    RunRecord,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointState};
use super::encoder::{EncoderSource, resolve_encoder};
use super::error::{ProtocolError, Result};
use super::recipe::{encoder_name, images_tensor};
use crate::metrics::coco::{CocoEval, CocoStats, IouType, evaluate_files};

/// A resolved recipe: every setting of a run but the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetRecipe {
    /// Preset name (`coco-1x-paper`, `mini`, `test`).
    pub preset: String,
    /// Encoder preset of `--encoder random`.
    pub encoder_preset: String,
    /// Detector preset ([`MaskRcnnConfig::preset`]); the widths follow the encoder, the
    /// classes the data.
    pub heads: String,
    /// Short sides drawn from in training.
    pub train_short_sides: Vec<u32>,
    /// Short side at test time.
    pub test_short_side: u32,
    /// Bound on the long side.
    pub max_size: u32,
    /// How a batch is padded: `batch` (mmdet's `Pad(size_divisor)` then the collate: each
    /// group padded to its largest image) or `canvas` (every image on one square canvas).
    #[serde(default = "pad_canvas")]
    pub pad: PadMode,
    /// Each image is padded to a multiple of this (32).
    #[serde(default = "divisor_32")]
    pub size_divisor: u32,
    /// Side of the square canvas of `pad = canvas` (a multiple of the patch).
    pub canvas: usize,
    /// Images per padding group (mmdet's `samples_per_gpu`: 2): a batch is `batch /
    /// images_per_group` groups of one orientation each (mmdet's `GroupSampler`), each padded
    /// to its largest image, their losses averaged as data-parallel training does, BatchNorm
    /// over the whole batch (SyncBN).
    #[serde(default = "one_group")]
    pub images_per_group: usize,
    /// Images per forward pass at test time (CAE: 1).
    #[serde(default = "one_image")]
    pub test_batch: usize,
    /// Size `[H, W]` the pretrained position table is resampled to at load (CAE's backbone
    /// `img_size = [672, 1092]`, floored to whole patches as its `PatchEmbed` does: 42×68 at
    /// 16 px), from which each batch's table is resampled again (`pad = batch`); `None` keeps
    /// the encoder's own grid.
    #[serde(default)]
    pub pos_load_size: Option<[usize; 2]>,
    /// The DETR-style branch of CAE's `AutoAugment` (resize to 400/500/600, random crop
    /// 384–600, resize to the training scales), drawn with probability ½.
    #[serde(default)]
    pub crop_branch: bool,
    /// Drop training images without annotations (mmdet's `filter_empty_gt`) before the epoch
    /// is counted.
    #[serde(default)]
    pub filter_empty_gt: bool,
    /// Drop training images whose shorter side is below this (mmdet's `_filter_imgs`: 32).
    #[serde(default)]
    pub min_size: u32,
    /// What proposals and detections are clipped to before NMS.
    #[serde(default = "clip_input")]
    pub clip: ClipTo,
    /// Assign and sample only the anchors inside each image's own padded size (mmdet's
    /// `valid_flags`).
    #[serde(default)]
    pub anchor_valid_flags: bool,
    /// Where the ground truths join the proposals of the RoI head.
    #[serde(default = "gt_joint")]
    pub gt_proposal_order: GtProposalOrder,
    /// How mask probabilities are pasted into the image at test time.
    #[serde(default = "paste_torchvision")]
    pub mask_paste: MaskPaste,
    /// Horizontal flip probability.
    pub flip_prob: f64,
    /// Training iterations (used when `epochs` is `None`).
    pub iters: u64,
    /// Training epochs (iterations = ⌈epochs · train images / batch⌉).
    pub epochs: Option<f64>,
    /// Images per iteration.
    pub batch: usize,
    /// Base learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Layer-wise lr decay.
    pub layer_decay: f64,
    /// Linear warmup iterations.
    pub warmup_iters: u64,
    /// Starting fraction of the warmup.
    pub warmup_ratio: f64,
    /// Where the lr drops by `gamma`, as fractions of the schedule (CAE: epochs 9 and 11 of 12).
    pub lr_steps: Vec<f64>,
    /// Decay factor at each step.
    pub gamma: f64,
    /// Stochastic depth of the last block.
    pub drop_path: f64,
    /// Per-block zero-initialised relative position bias (BEiT's detection backbone; CAE's
    /// uses the absolute sin-cos table only).
    pub rel_pos_bias: bool,
    /// How the pretrained sin-cos position table moves to the input's patch grid:
    /// `interpolate` (CAE's downstream code: bicubic, cls kept, frozen) or `rebuild`.
    #[serde(default)]
    pub pos_embed_resize: PosResize,
    /// Box head: `4conv1fc` (BEiT / CAE) or `2fc` (mmdet's base `Shared2FCBBoxHead`); widths
    /// from the detector preset.
    #[serde(default = "four_conv_one_fc")]
    pub box_head: String,
    /// Box regression loss.
    pub box_loss: BoxLoss,
    /// Evaluate every this many iterations (0: only at the end).
    pub eval_every: u64,
    /// Write a checkpoint every this many iterations (and at the end).
    pub checkpoint_every: u64,
    /// Precision of the matrix products and convolutions (`--set precision=bf16`: bf16
    /// autocast on f32 master weights, `cae_pretrain::autocast`); f32 where unset, as every
    /// record before it.
    #[serde(default)]
    pub precision: Precision,
}

fn four_conv_one_fc() -> String {
    "4conv1fc".into()
}

// Defaults for records written before these settings existed: what the code did then.
fn pad_canvas() -> PadMode {
    PadMode::Canvas
}
fn divisor_32() -> u32 {
    32
}
fn one_group() -> usize {
    usize::MAX
}
fn one_image() -> usize {
    usize::MAX
}
fn clip_input() -> ClipTo {
    ClipTo::Input
}
fn gt_joint() -> GtProposalOrder {
    GtProposalOrder::Joint
}
fn paste_torchvision() -> MaskPaste {
    MaskPaste::Torchvision
}

/// How the images of a batch are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// Each padding group to its largest image (each image first to a multiple of
    /// `size_divisor`): mmdet's `Pad(size_divisor=32)` and collate.
    Batch,
    /// Every image on one `canvas × canvas` input (ViTDet's `square_pad`).
    Canvas,
}

/// Changes to a preset from the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetOverrides {
    /// Iterations (clears `epochs`).
    pub iters: Option<u64>,
    /// Epochs.
    pub epochs: Option<f64>,
    /// Batch.
    pub batch: Option<usize>,
    /// Base learning rate.
    pub lr: Option<f64>,
    /// Evaluation interval.
    pub eval_every: Option<u64>,
    /// Any other field, `(name, JSON value)`.
    pub set: Vec<(String, String)>,
}

/// The preset names.
pub const DET_PRESETS: &[&str] = &["coco-1x-paper", "mini", "test"];

impl DetRecipe {
    /// The paper's recipe (CAE's `vit_base_giou_4conv1f_coco_maskrcnn_1x_cae_sincos_init0.1_
    /// lr00003`): 12 epochs, batch 32 (16 GPUs × 2), AdamW lr 3e-4, wd 0.05, layer decay 0.75,
    /// warmup 500 iterations from 0.001, ×0.1 at epochs 9 and 11, drop path 0.2, GIoU × 10,
    /// flip, then `AutoAugment` (multi-scale resize, short side 480–800, max 1333, or the
    /// DETR-style crop branch), training images without annotations dropped, each batch 16
    /// groups of 2 images of one orientation padded to their largest (multiple of 32), the
    /// position table resampled to 672×1092 at load and to each batch's grid, proposals and
    /// detections clipped to the image, test at 800 / 1333 one image per forward, masks pasted
    /// with `grid_sample`. What still differs from CAE's code is listed in the README.
    pub fn paper() -> Self {
        Self {
            preset: "coco-1x-paper".into(),
            encoder_preset: "vit_base_patch16".into(),
            heads: "paper".into(),
            train_short_sides: (0..11).map(|i| 480 + 32 * i).collect(),
            test_short_side: 800,
            max_size: 1333,
            pad: PadMode::Batch,
            size_divisor: 32,
            canvas: 1344,
            images_per_group: 2,
            test_batch: 1,
            pos_load_size: Some([672, 1092]),
            crop_branch: true,
            filter_empty_gt: true,
            min_size: 32,
            clip: ClipTo::Image,
            anchor_valid_flags: true,
            gt_proposal_order: GtProposalOrder::AfterAssign,
            mask_paste: MaskPaste::GridSample,
            flip_prob: 0.5,
            iters: 0,
            epochs: Some(12.0),
            batch: 32,
            lr: 3e-4,
            weight_decay: 0.05,
            layer_decay: 0.75,
            warmup_iters: 500,
            warmup_ratio: 0.001,
            lr_steps: vec![9.0 / 12.0, 11.0 / 12.0],
            gamma: 0.1,
            drop_path: 0.2,
            rel_pos_bias: false,
            pos_embed_resize: PosResize::Interpolate,
            box_head: "4conv1fc".into(),
            box_loss: BoxLoss::Giou { weight: 10.0 },
            eval_every: 0,
            checkpoint_every: 1000,
            precision: Precision::F32,
        }
    }

    /// The paper's recipe scaled to the `mini` encoder (patch 4, width 128) and the synthetic
    /// world (32-px images, 8 classes) on 2 CPU cores: the images at their native 32 px (the
    /// detector's geometry is the paper's at a quarter of the scale: see [`MaskRcnnConfig`]),
    /// batch 4 (two groups of 2), a fixed number of iterations, lr 1e-3 for heads that start
    /// from scratch in a few hundred steps, warmup 20 iterations, the encoder's own position
    /// grid, no crop branch (its 384–600 px crops have no counterpart on 32-px scenes).
    pub fn mini() -> Self {
        Self {
            preset: "mini".into(),
            encoder_preset: "mini".into(),
            heads: "mini".into(),
            train_short_sides: vec![32],
            test_short_side: 32,
            max_size: 32,
            canvas: 32,
            pos_load_size: None,
            crop_branch: false,
            iters: 300,
            epochs: None,
            batch: 4,
            lr: 1e-3,
            warmup_iters: 20,
            drop_path: 0.1,
            eval_every: 0,
            checkpoint_every: 50,
            ..Self::paper()
        }
    }

    /// For tests: the `test` encoder, 32-px canvas, 4 iterations of 2 images.
    pub fn test() -> Self {
        Self {
            preset: "test".into(),
            encoder_preset: "test".into(),
            heads: "test".into(),
            train_short_sides: vec![32],
            test_short_side: 32,
            max_size: 32,
            canvas: 32,
            iters: 4,
            batch: 2,
            warmup_iters: 1,
            checkpoint_every: 2,
            eval_every: 0,
            ..Self::mini()
        }
    }

    /// A preset with overrides applied, checked.
    pub fn resolve(preset: &str, o: &DetOverrides) -> Result<Self> {
        let mut r = match preset {
            "coco-1x-paper" | "paper" => Self::paper(),
            "mini" => Self::mini(),
            "test" => Self::test(),
            other => {
                return Err(ProtocolError::Config(format!(
                    "unknown detection preset `{other}` ({})",
                    DET_PRESETS.join(", ")
                )));
            }
        };
        if let Some(v) = o.iters {
            r.iters = v;
            r.epochs = None;
        }
        if let Some(v) = o.epochs {
            r.epochs = Some(v);
        }
        if let Some(v) = o.batch {
            r.batch = v;
        }
        if let Some(v) = o.lr {
            r.lr = v;
        }
        if let Some(v) = o.eval_every {
            r.eval_every = v;
        }
        let r = super::recipe::apply_set(r, &o.set)?;
        r.validate()?;
        Ok(r)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ProtocolError::Config(m));
        if self.batch < 2 {
            return bad("BatchNorm needs a batch of at least 2 images".into());
        }
        if self.epochs.is_none() && self.iters == 0 {
            return bad("iterations (or epochs) must be ≥ 1".into());
        }
        if let Some(e) = self.epochs
            && !(e > 0.0 && e.is_finite())
        {
            return bad(format!("epochs {e} must be > 0"));
        }
        if self.train_short_sides.is_empty() || self.train_short_sides.contains(&0) {
            return bad("training short sides must be ≥ 1 and at least one".into());
        }
        if self.test_short_side == 0 || self.max_size == 0 || self.canvas == 0 {
            return bad("test short side, max size and canvas must be ≥ 1".into());
        }
        if self.size_divisor == 0 || self.test_batch == 0 {
            return bad("size divisor and test batch must be ≥ 1".into());
        }
        if self.images_per_group == 0 || !self.batch.is_multiple_of(self.images_per_group) {
            return bad(format!(
                "a batch of {} is not a whole number of groups of {}",
                self.batch, self.images_per_group
            ));
        }
        if self.rel_pos_bias && self.pad == PadMode::Batch {
            return bad(
                "relative position bias tables need one input size: use `pad = canvas`".into(),
            );
        }
        if self.pad == PadMode::Canvas && (self.max_size as usize) > self.canvas {
            return bad(format!(
                "images up to {} px do not fit the {}-px canvas",
                self.max_size, self.canvas
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} is not positive", self.lr));
        }
        if self.lr_steps.iter().any(|s| !(0.0..=1.0).contains(s)) {
            return bad(format!(
                "lr steps {:?} must be fractions of the schedule",
                self.lr_steps
            ));
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint interval must be ≥ 1".into());
        }
        if !matches!(self.box_head.as_str(), "4conv1fc" | "2fc") {
            return bad(format!(
                "box head `{}` is not one of 4conv1fc, 2fc",
                self.box_head
            ));
        }
        Ok(())
    }

    /// The detector of this recipe on a `d`-wide encoder of `p`-px patches for `classes`
    /// classes: the `heads` preset with the recipe's box head, box loss, clipping, anchor valid
    /// flags and ground-truth order (what `detect` trains and `bench detect` times).
    pub fn detector(&self, d: usize, p: usize, classes: usize) -> Result<MaskRcnnConfig> {
        let mut cfg = MaskRcnnConfig::preset(&self.heads)?;
        cfg.in_channels = d;
        cfg.patch_size = p;
        cfg.num_classes = classes;
        if self.box_head == "2fc" {
            cfg.box_head.num_convs = 0;
            cfg.box_head.num_fcs = 2;
        }
        cfg.box_head.loss = self.box_loss;
        cfg.clip = self.clip;
        cfg.anchor_valid_flags = self.anchor_valid_flags;
        cfg.gt_proposal_order = self.gt_proposal_order;
        Ok(cfg)
    }

    /// Iterations of a run on `train_images` images.
    pub fn total_iters(&self, train_images: usize) -> u64 {
        match self.epochs {
            Some(e) => ((e * train_images as f64) / self.batch as f64)
                .ceil()
                .max(1.0) as u64,
            None => self.iters,
        }
    }

    /// The lr schedule over `total` iterations.
    pub fn schedule(&self, total: u64) -> StepSchedule {
        StepSchedule {
            lr: self.lr,
            steps: self
                .lr_steps
                .iter()
                .map(|f| (f * total as f64).round() as u64)
                .collect(),
            gamma: self.gamma,
            warmup: self.warmup_iters.min(total),
            warmup_ratio: self.warmup_ratio,
        }
    }

    /// The settings a leaderboard row is keyed by.
    pub fn settings(&self) -> BTreeMap<String, serde_json::Value> {
        super::recipe::settings(self)
    }
}

/// Everything a detection run needs.
#[derive(Debug, Clone)]
pub struct DetRequest {
    /// The encoder.
    pub encoder: EncoderSource,
    /// `COCO_ROOT`.
    pub data: PathBuf,
    /// Preset name.
    pub preset: String,
    /// Changes to the preset.
    pub overrides: DetOverrides,
    /// Seed.
    pub seed: u64,
    /// Continue from the newest checkpoint in `out`.
    pub resume: bool,
    /// Device.
    pub device: String,
    /// Run folder.
    pub out: PathBuf,
    /// Progress bar on stderr.
    pub progress: bool,
    /// The command line, for the record.
    pub command: Vec<String>,
    /// Encoder label in records.
    pub label: Option<String>,
    /// Stop (as a kill would) after this iteration's checkpoint; for tests of resume.
    pub stop_after: Option<u64>,
}

impl DetRequest {
    /// A request with defaults: `mini`, seed 0, CPU, no progress bar.
    pub fn new(encoder: EncoderSource, data: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        Self {
            encoder,
            data: data.into(),
            preset: "mini".into(),
            overrides: DetOverrides::default(),
            seed: 0,
            resume: false,
            device: "cpu".into(),
            out: out.into(),
            progress: false,
            command: Vec::new(),
            label: None,
            stop_after: None,
        }
    }
}

/// What a run gave.
#[derive(Debug, Clone, Serialize)]
pub struct DetOutcome {
    /// Box stats (fractions; `None` when stopped early).
    pub bbox: Option<CocoStats>,
    /// Mask stats.
    pub segm: Option<CocoStats>,
    /// Iterations done.
    pub iters: u64,
    /// Iteration the run resumed from (0: fresh).
    pub resumed_from: u64,
    /// The run finished.
    pub complete: bool,
    /// The record.
    pub record: PathBuf,
    /// The two results files.
    pub results: [PathBuf; 2],
    /// Wall time of this invocation, seconds.
    pub seconds: f64,
}

/// The checkpoint format tag.
pub const DET_CHECKPOINT_FORMAT: &str = "cae-bench-det-checkpoint-v1";
const SALT_AUG: u64 = 0xde7_a06;
const SALT_STEP: u64 = 0xde7_57e9;
const SALT_SAMPLE: u64 = 0xde7_5a3;

/// The two splits.
struct Data {
    train: CocoDataset,
    val: CocoDataset,
    val_json: PathBuf,
    /// The training images kept ([`training_images`]).
    train_idx: Vec<usize>,
    /// Orientation of each kept image (1: wider than high), for the group sampler.
    flags: Vec<u8>,
}

fn open_data(root: &Path, recipe: &DetRecipe) -> Result<Data> {
    let open = |split: CocoSplit| -> Result<CocoDataset> {
        let ds = CocoDataset::open(root, split)?;
        if ds.is_empty() {
            return Err(ProtocolError::Input {
                path: ds.annotation_file.clone(),
                message: format!("the {} split has no images", split.name()),
            });
        }
        Ok(ds)
    };
    let train = open(CocoSplit::Train2017)?;
    let val = open(CocoSplit::Val2017)?;
    if train.cat_ids != val.cat_ids {
        return Err(ProtocolError::Input {
            path: val.annotation_file.clone(),
            message: format!(
                "its categories {:?} differ from the training split's {:?}",
                val.cat_ids, train.cat_ids
            ),
        });
    }
    let val_json = val.annotation_file.clone();
    let train_idx = training_images(&train, recipe.filter_empty_gt, recipe.min_size);
    if train_idx.is_empty() {
        return Err(ProtocolError::Input {
            path: train.annotation_file.clone(),
            message: format!(
                "no training image is left after dropping those without annotations{} or with \
                 a side under {} px",
                if recipe.filter_empty_gt { "" } else { " (off)" },
                recipe.min_size
            ),
        });
    }
    let flags = train_idx
        .iter()
        .map(|&i| {
            let im = train.image(i);
            u8::from(im.width > im.height)
        })
        .collect();
    Ok(Data {
        train,
        val,
        val_json,
        train_idx,
        flags,
    })
}

/// The input size of a padding group of images whose own padded sizes are `sizes` (height,
/// width): the canvas, or the largest of each side (each already a multiple of the size
/// divisor, mmdet's collate).
fn group_input_size(recipe: &DetRecipe, sizes: &[(usize, usize)]) -> Result<(usize, usize)> {
    let h = sizes.iter().map(|s| s.0).max().unwrap_or(0);
    let w = sizes.iter().map(|s| s.1).max().unwrap_or(0);
    match recipe.pad {
        PadMode::Batch => Ok((h, w)),
        PadMode::Canvas => {
            let c = recipe.canvas;
            if w > c || h > c {
                return Err(ProtocolError::Config(format!(
                    "a {w}×{h} input does not fit the {c}-px canvas (raise `canvas` or lower                      `max_size`)"
                )));
            }
            Ok((c, c))
        }
    }
}

/// Pads transformed samples into one group input `[B, 3, H, W]` (zeros after normalisation,
/// bottom and right), with each image's non-crowd objects as targets (masks at `H × W`, crowd
/// boxes apart) and its shapes (resized, and padded alone).
fn pad_group(
    samples: &[DetSample],
    recipe: &DetRecipe,
    device: &Device,
) -> Result<(DetGroup, (usize, usize))> {
    let sizes: Vec<(usize, usize)> = samples
        .iter()
        .map(|s| (s.height as usize, s.width as usize))
        .collect();
    let (ih, iw) = group_input_size(recipe, &sizes)?;
    let mut images = Vec::with_capacity(samples.len());
    let mut gts = Vec::with_capacity(samples.len());
    let mut metas = Vec::with_capacity(samples.len());
    for s in samples {
        let (w, h) = (s.width as usize, s.height as usize);
        let mut image = vec![0f32; 3 * ih * iw];
        for c in 0..3 {
            for y in 0..h {
                let src = &s.image[(c * h + y) * w..(c * h + y) * w + w];
                image[(c * ih + y) * iw..(c * ih + y) * iw + w].copy_from_slice(src);
            }
        }
        let mut gt = GtInstances {
            boxes: Vec::new(),
            labels: Vec::new(),
            crowds: Vec::new(),
            masks: Vec::new(),
        };
        let (vw, vh) = (s.valid_width as usize, s.valid_height as usize);
        for inst in &s.instances {
            if inst.crowd {
                gt.crowds.push(inst.bbox);
                continue;
            }
            let mut m = vec![0u8; ih * iw];
            for y in 0..vh {
                m[y * iw..y * iw + vw].copy_from_slice(&inst.mask[y * vw..(y + 1) * vw]);
            }
            gt.boxes.push(inst.bbox);
            gt.labels.push(inst.label);
            gt.masks.push(m);
        }
        images.push(image);
        gts.push(gt);
        metas.push(ImageMeta {
            img_hw: (vh, vw),
            pad_hw: (h, w),
        });
    }
    Ok((
        DetGroup {
            images: images_tensor(images, [ih, iw], device),
            gts,
            metas,
        },
        (ih, iw),
    ))
}

/// The training images mmdet keeps (`CocoDataset._filter_imgs`): with `filter_empty_gt` only
/// those with at least one annotation (crowd ones count), and only those whose shorter side is
/// at least `min_size`; in file order.
pub fn training_images(ds: &CocoDataset, filter_empty_gt: bool, min_size: u32) -> Vec<usize> {
    (0..ds.len())
        .filter(|&i| {
            let im = ds.image(i);
            (!filter_empty_gt || !ds.annotations(i).is_empty())
                && im.width.min(im.height) >= min_size
        })
        .collect()
}

/// mmdet's `GroupSampler` for pass `pass`: the images (positions into `flags`) of each
/// orientation (`flags[i]`: 1 when wider than high) shuffled and topped up with random repeats
/// of their own to a multiple of `group`, cut into groups of `group`, the groups shuffled.
fn pass_groups(seed: u64, flags: &[u8], group: usize, pass: u64) -> Vec<Vec<usize>> {
    use rand::Rng;
    use rand::seq::SliceRandom;
    let mut rng = ChaCha8Rng::from_seed(derive_seed(&[seed, SALT_SAMPLE ^ 0x9_0u64, pass]));
    let mut chunks = Vec::new();
    for f in 0..=1u8 {
        let mut idx: Vec<usize> = (0..flags.len()).filter(|&i| flags[i] == f).collect();
        if idx.is_empty() {
            continue;
        }
        idx.shuffle(&mut rng);
        let extra = idx.len().div_ceil(group) * group - idx.len();
        for _ in 0..extra {
            let k = rng.random_range(0..idx.len());
            idx.push(idx[k]);
        }
        chunks.extend(idx.chunks(group).map(<[usize]>::to_vec));
    }
    chunks.shuffle(&mut rng);
    chunks
}

/// Groups per pass of [`pass_groups`] (the same every pass).
fn groups_per_pass(flags: &[u8], group: usize) -> u64 {
    let ones = flags.iter().filter(|&&f| f == 1).count();
    (ones.div_ceil(group) + (flags.len() - ones).div_ceil(group)) as u64
}

/// The groups of iteration `it`: groups `it·per_batch ..` of the run's stream of passes.
fn batch_groups(
    seed: u64,
    flags: &[u8],
    group: usize,
    per_batch: usize,
    it: u64,
) -> Vec<Vec<usize>> {
    let per_pass = groups_per_pass(flags, group);
    let start = it * per_batch as u64;
    let mut cached: Option<(u64, Vec<Vec<usize>>)> = None;
    (start..start + per_batch as u64)
        .map(|k| {
            let pass = k / per_pass;
            if cached.as_ref().is_none_or(|(p, _)| *p != pass) {
                cached = Some((pass, pass_groups(seed, flags, group, pass)));
            }
            cached.as_ref().expect("just drawn").1[(k % per_pass) as usize].clone()
        })
        .collect()
}

fn optimizer(model: &MaskRcnn, recipe: &DetRecipe) -> Optimizer {
    let depth = model.backbone.blocks.len();
    let (decay, wd) = (recipe.layer_decay, recipe.weight_decay);
    Optimizer::new(
        Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        Box::new(move |p, nd| seg_param_group(p, nd, depth, decay, wd)),
    )
}

fn load_model(model: &mut MaskRcnn, bytes: &[u8], path: &Path) -> Result<()> {
    let opts = LoadOptions {
        prefix: Some("model."),
        ignore: SEG_IGNORED_KEYS,
        ..Default::default()
    };
    load_safetensors_bytes(model, bytes, path, &opts)?;
    Ok(())
}

/// Runs `cae-bench detect` (see the module docs).
pub fn run_detect(req: &DetRequest) -> Result<DetOutcome> {
    let started = Instant::now();
    let recipe = DetRecipe::resolve(&req.preset, &req.overrides)?;
    let device = cae_pretrain::device::parse_device(&req.device)?;
    recipe.precision.check_device(&device)?;
    // Training and evaluation in the recipe's precision (this thread runs every model op).
    let _precision = autocast(recipe.precision);
    let record_path = req.out.join("record.json");
    let existing = super::recipe::run_folder_checkpoints(&req.out, req.resume)?;
    let data = open_data(&req.data, &recipe)?;
    let (encoder, mut model_cfg, encoder_info) = resolve_encoder(
        &req.encoder,
        Some(&recipe.encoder_preset),
        req.label.as_deref(),
        req.seed,
        &device,
    )?;
    let p = model_cfg.encoder.patch_size;
    let enc_name = || encoder_name(&req.encoder, &recipe.encoder_preset);
    let (tiles, what) = match recipe.pad {
        PadMode::Canvas => (recipe.canvas, "canvas"),
        PadMode::Batch => (recipe.size_divisor as usize, "size divisor"),
    };
    if !tiles.is_multiple_of(p) {
        return Err(ProtocolError::Config(format!(
            "{}: {p}-px patches do not tile the {} preset's {tiles}-px {what}",
            enc_name(),
            recipe.preset,
        )));
    }
    let built_for = model_cfg.encoder.img_size;
    // The size the table is resampled to at load: the canvas, or CAE's backbone `img_size`
    // (each batch's table then comes from it).
    let load = match (recipe.pad, recipe.pos_load_size) {
        (PadMode::Canvas, _) => [recipe.canvas; 2],
        (PadMode::Batch, Some(s)) => s,
        (PadMode::Batch, None) => [built_for; 2],
    };
    // CAE's `PatchEmbed` counts whole patches (`img_size // patch_size`): its 672×1092 gives a
    // 42×68 table (1092 = 68·16 + 4), so the load size is floored to whole patches the same way.
    if load[0] < p || load[1] < p {
        return Err(ProtocolError::Config(format!(
            "{}: the position table's load size {}×{} is smaller than one {p}-px patch",
            enc_name(),
            load[0],
            load[1]
        )));
    }
    let load = [load[0] / p * p, load[1] / p * p];
    let mut encoder = encoder
        .at_resolution(&mut model_cfg.encoder, load, recipe.pos_embed_resize)
        .map_err(|e| ProtocolError::Config(format!("{}: {e}", enc_name())))?;
    let fingerprint = cae_datasets::fingerprint_dir(&req.data)?.to_string();
    let key = super::recipe::identity(
        "coco-mask-rcnn",
        &recipe,
        &encoder_info,
        &fingerprint,
        &req.device,
        req.seed,
    );

    let ad = device.clone().autodiff();
    // The backbone is fine-tuned: every parameter but the frozen sin-cos table trains.
    encoder = cae_pretrain::train::on_autodiff(encoder, &ad);
    let init = Init::new(req.seed ^ 0xde7_b1a5, LinearInit::TruncNormal, &ad);
    prepare_finetune_backbone(
        &mut encoder,
        recipe.drop_path,
        recipe.rel_pos_bias.then_some(recipe.canvas / p),
        &init,
    );
    let det_cfg = recipe.detector(encoder.embed_dim(), p, data.train.num_classes())?;
    let rebuild = recipe.pos_embed_resize == PosResize::Rebuild;
    let mut model = MaskRcnn::new(&det_cfg, encoder, req.seed, &ad)
        .and_then(|m| m.with_position_grid(load[0] / p, load[1] / p, rebuild))
        .map_err(|e| ProtocolError::Config(format!("{}: {e}", enc_name())))?;
    let mut opt = optimizer(&model, &recipe);
    let total = recipe.total_iters(data.train_idx.len());
    let mut start = 0u64;
    let (mut loss_sum, mut loss_count) = (0.0f64, 0u64);
    if req.resume
        && let Some((_, path)) = existing.last()
    {
        let st = checkpoint::load(path, DET_CHECKPOINT_FORMAT, &key, &mut opt, &device, |b| {
            load_model(&mut model, b, path)
        })?;
        start = st.iter;
        (loss_sum, loss_count) = (st.loss_sum, st.loss_count);
        tracing::info!("resuming from {} (iteration {start})", path.display());
    }
    let mut writer = start_record(
        req,
        &recipe,
        &det_cfg,
        &model_cfg,
        &encoder_info,
        &data,
        &fingerprint,
        &key,
        total,
        start,
    )?;
    writer.record.trainable = super::recipe::trainable_groups(&model, &opt);
    let mut note = super::recipe::position_table_note(
        model_cfg.encoder.pos_embed,
        recipe.pos_embed_resize,
        built_for,
        load[0],
    );
    if load[0] != load[1] {
        note = format!(
            "{note} high, {} px wide (a {}×{} table)",
            load[1],
            load[0] / p,
            load[1] / p
        );
    }
    if recipe.pad == PadMode::Batch {
        note.push_str(if rebuild {
            "; a sin-cos table built for each input's grid"
        } else {
            "; resampled again to each input's grid (bicubic, scale factor (grid + 0.1) / table grid, as CAE's backbone)"
        });
    }
    writer
        .record
        .protocol
        .details
        .insert("position_table".into(), serde_json::json!(note));
    writer.update()?;
    let ctx = RunCtx {
        req,
        recipe: &recipe,
        cfg: &det_cfg,
        data: &data,
        device: &device,
        ad: &ad,
        key: &key,
        total,
    };
    match train_and_evaluate(
        &ctx,
        model,
        &mut opt,
        start,
        (loss_sum, loss_count),
        &mut writer,
    ) {
        Ok((evals, iters, complete)) => {
            let (bbox, segm) = match &evals {
                Some((b, s)) => {
                    writer.record.per_class = per_class(b, s);
                    writer.complete(headline(b, s))?;
                    (Some(b.stats), Some(s.stats))
                }
                None => {
                    writer.update()?;
                    (None, None)
                }
            };
            Ok(DetOutcome {
                bbox,
                segm,
                iters,
                resumed_from: start,
                complete,
                record: record_path,
                results: results_paths(&req.out),
                seconds: started.elapsed().as_secs_f64(),
            })
        }
        Err(e) => {
            let _ = writer.fail(&e.to_string());
            Err(e)
        }
    }
}

fn results_paths(out: &Path) -> [PathBuf; 2] {
    [
        out.join("detections_bbox.json"),
        out.join("detections_segm.json"),
    ]
}

fn headline(b: &CocoEval, s: &CocoEval) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for (prefix, ev) in [("bbox", b), ("segm", s)] {
        for (name, v) in CocoStats::NAMES.iter().zip(ev.stats.to_array()) {
            m.insert(format!("{prefix}_{name}"), v);
        }
    }
    m
}

fn per_class(b: &CocoEval, s: &CocoEval) -> Vec<ClassResult> {
    b.per_category
        .iter()
        .zip(&s.per_category)
        .map(|(cb, cs)| ClassResult {
            name: cb.name.clone(),
            values: BTreeMap::from([
                ("bbox_AP".to_string(), cb.ap),
                ("segm_AP".to_string(), cs.ap),
            ]),
        })
        .collect()
}

struct RunCtx<'a> {
    req: &'a DetRequest,
    recipe: &'a DetRecipe,
    cfg: &'a MaskRcnnConfig,
    data: &'a Data,
    device: &'a Device,
    ad: &'a Device,
    key: &'a str,
    total: u64,
}

type Evals = (CocoEval, CocoEval);

fn train_and_evaluate(
    c: &RunCtx,
    mut model: MaskRcnn,
    opt: &mut Optimizer,
    start: u64,
    (mut loss_sum, mut loss_count): (f64, u64),
    writer: &mut RecordWriter,
) -> Result<(Option<Evals>, u64, bool)> {
    let (req, recipe) = (c.req, c.recipe);
    let schedule = recipe.schedule(c.total);
    let tf = DetTrainTransform {
        short_sides: recipe.train_short_sides.clone(),
        max_size: recipe.max_size,
        flip_prob: recipe.flip_prob,
        size_divisor: recipe.size_divisor,
        crop_branch: recipe.crop_branch.then(DetrCropBranch::cae),
        ..DetTrainTransform::coco_1x()
    };
    let group = recipe.images_per_group;
    let per_batch = recipe.batch / group;
    let pb = cae_pretrain::progress::bar(req.progress, c.total, start, "iters");
    let ckpt_dir = req.out.join("checkpoints");
    let mut lr = schedule.at(start);
    for it in start..c.total {
        let picked: Vec<usize> = batch_groups(req.seed, &c.data.flags, group, per_batch, it)
            .into_iter()
            .flatten()
            .map(|k| c.data.train_idx[k])
            .collect();
        let first = it * recipe.batch as u64;
        let samples: Vec<DetSample> = picked
            .par_iter()
            .enumerate()
            .map(|(j, &i)| {
                let record = c.data.train.load(i)?;
                let mut rng =
                    ChaCha8Rng::from_seed(derive_seed(&[req.seed, SALT_AUG, first + j as u64]));
                Ok(tf.apply(&record, &mut rng)?)
            })
            .collect::<Result<_>>()?;
        let groups = samples
            .chunks(group)
            .map(|g| pad_group(g, recipe, c.ad).map(|(g, _)| g))
            .collect::<Result<Vec<_>>>()?;
        lr = schedule.at(it);
        let mut ctx = ForwardCtx::train(salted_step_rng(req.seed, SALT_STEP, it));
        let mut srng = ChaCha8Rng::from_seed(derive_seed(&[req.seed, SALT_SAMPLE, it]));
        let loss = model.loss_groups(c.cfg, groups, &mut ctx, &mut srng)?;
        let value = f64::from(to_vec(loss.total.clone())?[0]);
        if !value.is_finite() {
            pb.abandon();
            return Err(ProtocolError::NonFinite {
                iter: it + 1,
                value,
            });
        }
        let grads = burn::optim::GradientsParams::from_grads(loss.total.backward(), &model);
        model = opt.step(model, grads, lr);
        loss_sum += value;
        loss_count += 1;
        pb.inc(1);
        pb.set_message(format!("loss {value:.4}"));
        let done = it + 1;
        let last = done == c.total;
        if !last && recipe.eval_every > 0 && done.is_multiple_of(recipe.eval_every) {
            let evals = evaluate(c, &model, &pb)?;
            report(
                writer,
                done,
                &evals,
                loss_sum / loss_count.max(1) as f64,
                lr,
                &pb,
            )?;
            (loss_sum, loss_count) = (0.0, 0);
        }
        if last || done.is_multiple_of(recipe.checkpoint_every) {
            let state = CheckpointState {
                format: DET_CHECKPOINT_FORMAT.into(),
                iter: done,
                seed: req.seed,
                request_key: c.key.to_string(),
                optim_steps: BTreeMap::new(),
                loss_sum,
                loss_count,
            };
            checkpoint::save(
                &ckpt_dir,
                collect_tensors(&model, None, "model.")?,
                opt,
                &state,
            )?;
        }
        if req.stop_after == Some(done) && !last {
            pb.abandon();
            return Ok((None, done, false));
        }
    }
    pb.set_message("evaluating");
    let evals = evaluate(c, &model, &pb)?;
    report(
        writer,
        c.total,
        &evals,
        loss_sum / loss_count.max(1) as f64,
        lr,
        &pb,
    )?;
    pb.finish_and_clear();
    Ok((Some(evals), c.total, true))
}

fn report(
    writer: &mut RecordWriter,
    iter: u64,
    evals: &Evals,
    loss: f64,
    lr: f64,
    pb: &indicatif::ProgressBar,
) -> Result<()> {
    let mut metrics = headline(&evals.0, &evals.1);
    metrics.insert("loss".into(), loss);
    metrics.insert("lr".into(), lr);
    pb.println(format!(
        "iteration {iter}: box AP {:.1} (AP50 {:.1}), mask AP {:.1} (AP50 {:.1}), loss {loss:.4}",
        100.0 * evals.0.stats.ap,
        100.0 * evals.0.stats.ap50,
        100.0 * evals.1.stats.ap,
        100.0 * evals.1.stats.ap50,
    ));
    writer.record.per_epoch.push(EpochMetrics {
        epoch: iter,
        metrics,
    });
    writer.update()?;
    Ok(())
}

/// Row-major `h × w` → hotcoco's column-major RLE counts string.
fn rle_string(mask: &[bool], h: usize, w: usize) -> Result<String> {
    let mut col = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            col[x * h + y] = u8::from(mask[y * w + x]);
        }
    }
    let rle = hotcoco::mask::encode(&col, h as u32, w as u32)
        .map_err(|e| ProtocolError::Config(format!("RLE encoding: {e}")))?;
    Ok(hotcoco::mask::rle_to_string(&rle))
}

/// Detects on the validation split, writes both results files (atomically) and scores them.
fn evaluate(c: &RunCtx, model: &MaskRcnn, pb: &indicatif::ProgressBar) -> Result<Evals> {
    let recipe = c.recipe;
    let tf = DetTestTransform {
        short_side: recipe.test_short_side,
        max_size: recipe.max_size,
        size_divisor: recipe.size_divisor,
        ..DetTestTransform::coco()
    };
    let mut net = model.valid();
    let val = &c.data.val;
    let mut bbox_rows = Vec::new();
    let mut segm_rows = Vec::new();
    let s = c.cfg.mask_size();
    let indices: Vec<usize> = (0..val.len()).collect();
    for chunk in indices.chunks(recipe.test_batch) {
        let loaded: Vec<(u64, (u32, u32), DetSample)> = chunk
            .par_iter()
            .map(|&i| {
                let image = val.load_image(i)?;
                let id = val.image(i).id;
                let sample = tf.apply(&image)?;
                Ok((id, image.dimensions(), sample))
            })
            .collect::<Result<_>>()?;
        let samples: Vec<DetSample> = loaded.iter().map(|(_, _, s)| s.clone()).collect();
        let (group, _) = pad_group(&samples, recipe, c.device)?;
        let dets = net.predict(c.cfg, group.images, &group.metas)?;
        for ((id, (w0, h0), sample), d) in loaded.iter().zip(dets) {
            let (sx, sy) = sample.scale;
            let boxes: Vec<[f32; 4]> = d
                .det
                .boxes
                .iter()
                .map(|b| {
                    [
                        (b[0] / sx).clamp(0.0, *w0 as f32),
                        (b[1] / sy).clamp(0.0, *h0 as f32),
                        (b[2] / sx).clamp(0.0, *w0 as f32),
                        (b[3] / sy).clamp(0.0, *h0 as f32),
                    ]
                })
                .collect();
            let (h, w) = (*h0 as usize, *w0 as usize);
            let pasted = if boxes.is_empty() {
                Vec::new()
            } else {
                recipe
                    .mask_paste
                    .paste(&d.masks, s, &boxes, (h, w))
                    .map_err(cae_heads::HeadsError::from)?
            };
            for (k, b) in boxes.iter().enumerate() {
                let cat = val.category_of(d.det.labels[k]).ok_or_else(|| {
                    ProtocolError::Config(format!("label {} has no category", d.det.labels[k]))
                })?;
                let score = f64::from(d.det.scores[k]);
                let bb = [
                    f64::from(b[0]),
                    f64::from(b[1]),
                    f64::from(b[2] - b[0]),
                    f64::from(b[3] - b[1]),
                ];
                bbox_rows.push(serde_json::json!({
                    "image_id": id, "category_id": cat, "bbox": bb, "score": score,
                }));
                let m = binarize(&pasted[k * h * w..(k + 1) * h * w], c.cfg.test.mask_thr);
                segm_rows.push(serde_json::json!({
                    "image_id": id, "category_id": cat, "score": score,
                    "segmentation": {"size": [h, w], "counts": rle_string(&m, h, w)?},
                }));
            }
        }
        pb.tick();
    }
    let [bbox_path, segm_path] = results_paths(&c.req.out);
    let mut out = Vec::new();
    for (path, rows, iou) in [
        (&bbox_path, bbox_rows, IouType::Bbox),
        (&segm_path, segm_rows, IouType::Segm),
    ] {
        let text = serde_json::to_string(&rows).expect("results serialise");
        cae_reports::record::write_atomic(path, text.as_bytes())?;
        out.push(evaluate_files(&c.data.val_json, path, iou)?);
    }
    let segm = out.pop().expect("two evaluations");
    let bbox = out.pop().expect("two evaluations");
    Ok((bbox, segm))
}

#[allow(clippy::too_many_arguments)]
fn start_record(
    req: &DetRequest,
    recipe: &DetRecipe,
    det_cfg: &MaskRcnnConfig,
    model_cfg: &cae_pretrain::config::CaeConfig,
    encoder: &EncoderInfo,
    data: &Data,
    fingerprint: &str,
    key: &str,
    total: u64,
    start: u64,
) -> Result<RecordWriter> {
    let mut details = BTreeMap::new();
    let mut put = |k: &str, v: serde_json::Value| {
        details.insert(k.to_string(), v);
    };
    put("iterations", serde_json::json!(total));
    let pad = match recipe.pad {
        PadMode::Batch => format!(
            "each image to a multiple of {}, each group of {} (one orientation) to its largest",
            recipe.size_divisor, recipe.images_per_group
        ),
        PadMode::Canvas => format!("to a {}² canvas", recipe.canvas),
    };
    put(
        "train_pipeline",
        serde_json::json!(format!(
            "{}flip {} + Resize(short side in {:?}, max {}, keep ratio){} + pad {pad}; crowd regions left out of the targets",
            if recipe.filter_empty_gt {
                format!(
                    "images without annotations dropped (min side {}); ",
                    recipe.min_size
                )
            } else {
                String::new()
            },
            recipe.flip_prob,
            recipe.train_short_sides,
            recipe.max_size,
            if recipe.crop_branch {
                " or (½) the DETR-style branch: Resize(short 400/500/600) + RandomCrop(384–600) + Resize(the same scales)"
            } else {
                ""
            },
        )),
    );
    put(
        "test",
        serde_json::json!(format!(
            "Resize(short {}, max {}) + pad {}, {} image(s) per forward; clip to the {}; score > {}, per-class NMS {}, {} per image; masks pasted ({:?}) and thresholded at {}",
            recipe.test_short_side,
            recipe.max_size,
            match recipe.pad {
                PadMode::Batch => format!("to a multiple of {}", recipe.size_divisor),
                PadMode::Canvas => format!("to {}²", recipe.canvas),
            },
            recipe.test_batch,
            match recipe.clip {
                ClipTo::Image => "image",
                ClipTo::Input => "padded input",
            },
            det_cfg.test.score_thr,
            det_cfg.test.nms_iou,
            det_cfg.test.max_per_img,
            recipe.mask_paste,
            det_cfg.test.mask_thr
        )),
    );
    put(
        "batchnorm",
        serde_json::json!("batch statistics over the whole batch on one device (SyncBN's result)"),
    );
    put(
        "results",
        serde_json::json!(["detections_bbox.json", "detections_segm.json"]),
    );
    let protocol = ProtocolInfo {
        name: "coco-mask-rcnn".into(),
        pooling: None,
        layer: None,
        epochs: None,
        effective_batch: Some(recipe.batch),
        lr: Some(recipe.lr),
        lr_rule: Some("absolute (no batch scaling)".into()),
        optimizer: Some("adamw".into()),
        cached_features: Some(false),
        label_fraction: Some(1.0),
        details,
        settings: recipe.settings(),
        seed_varies: Some({
            let mut v = Vec::new();
            if matches!(req.encoder, EncoderSource::Random) {
                v.push("encoder init".to_string());
            }
            v.push(
                "head init, data order, augmentation, drop path, RPN / RoI sampling".to_string(),
            );
            v
        }),
    };
    let config = serde_json::json!({
        "detect": recipe,
        "detector": det_cfg,
        "model": model_cfg,
        "data": req.data.display().to_string(),
        "device": req.device,
    });
    let mut record = RunRecord::start(
        "detect",
        req.command.clone(),
        config,
        req.seed,
        protocol,
        MachineInfo::current(&req.device, None),
    );
    record.encoder = Some(encoder.clone());
    record.dataset = Some(DatasetInfo {
        path: req.data.display().to_string(),
        train_images: Some(data.train_idx.len()),
        val_images: Some(data.val.len()),
        classes: Some(data.train.num_classes()),
        fingerprint: Some(fingerprint.to_string()),
    });
    record.request_key = Some(key.to_string());
    super::recipe::finish_record(&mut record, &req.out, start);
    Ok(RecordWriter::create(&req.out, record)?)
}

/// The timings of [`bench_mask_rcnn_iteration`].
#[derive(Debug, Clone, Serialize)]
pub struct DetBench {
    /// Recipe preset (`mini` or `paper`).
    pub preset: String,
    /// Images per iteration.
    pub batch: usize,
    /// Images per padding group (the recipe's `images_per_group`, at most `batch`).
    pub group: usize,
    /// Input height and width in pixels.
    pub size: [usize; 2],
    /// Objects per image.
    pub objects: usize,
    /// Burn's `num_params` of the model: the trainable parameters plus the frozen position
    /// table and BatchNorm's running statistics (the PyTorch twin counts only the trainable
    /// ones).
    pub params: usize,
    /// Milliseconds of each timed iteration (forward, backward, AdamW step).
    pub ms: Vec<f64>,
    /// The loss of the last iteration.
    pub loss: f64,
    /// RPN proposals, box-head RoIs and mask-head RoIs of the last iteration.
    pub proposals: usize,
    /// See `proposals`.
    pub box_rois: usize,
    /// See `proposals`.
    pub mask_rois: usize,
}

/// The objects of image `b` of the detection benchmark's synthetic batch, the formula of
/// `benches/torch_det_twin.py`: `n` boxes side by side, object `j` in column `j` of `n`
/// (an eighth of the column's width in from each side), its top at `(0.1 + 0.15·((b + j) % 3))
/// · h`, half the image high, class `(b + 2j) % classes`; its mask the ellipse inscribed in the
/// box (pixel centres inside).
pub fn bench_objects(b: usize, h: usize, w: usize, n: usize, classes: usize) -> GtInstances {
    let mut gt = GtInstances {
        boxes: Vec::with_capacity(n),
        labels: Vec::with_capacity(n),
        crowds: Vec::new(),
        masks: Vec::with_capacity(n),
    };
    let (hf, wf) = (h as f32, w as f32);
    let cw = wf / n as f32;
    for j in 0..n {
        let x0 = j as f32 * cw + cw / 8.0;
        let x1 = (j + 1) as f32 * cw - cw / 8.0;
        let y0 = hf * (0.1 + 0.15 * ((b + j) % 3) as f32);
        let y1 = y0 + hf * 0.5;
        let (cx, cy, rx, ry) = (
            (x0 + x1) / 2.0,
            (y0 + y1) / 2.0,
            (x1 - x0) / 2.0,
            (y1 - y0) / 2.0,
        );
        let mut m = vec![0u8; h * w];
        for y in 0..h {
            let dy = (y as f32 + 0.5 - cy) / ry;
            for x in 0..w {
                let dx = (x as f32 + 0.5 - cx) / rx;
                m[y * w + x] = u8::from(dx * dx + dy * dy <= 1.0);
            }
        }
        gt.boxes.push([x0, y0, x1, y1]);
        gt.labels.push((b + 2 * j) % classes);
        gt.masks.push(m);
    }
    gt
}

/// Times whole Mask R-CNN training iterations (forward, backward, AdamW with the recipe's
/// layer-decay groups) on one fixed synthetic batch, the work of `benches/torch_det_twin.py`:
/// images N(0, 1) of `[batch, 3, H, W]` (every image fills the input: no padding), the objects
/// of [`bench_objects`] (3 per image for `mini`, 7 for `paper`, COCO's mean), a random-init
/// encoder of the recipe's preset with its position table resampled as `detect` does (to the
/// recipe's load size, then to the input's grid), the recipe's detector (proposal and RoI
/// counts, box head, GIoU loss), padding groups of the recipe's `images_per_group`. `size`
/// defaults to 32×32 (`mini`) and 800×1088 (`paper`: a 4:3 COCO image at the test scale, short
/// side 800, padded to 32).
pub fn bench_mask_rcnn_iteration(
    preset: &str,
    batch: Option<usize>,
    size: Option<[usize; 2]>,
    iters: usize,
    warmup: usize,
    device: &Device,
) -> Result<DetBench> {
    let recipe = DetRecipe::resolve(preset, &DetOverrides::default())?;
    let mini = recipe.preset == "mini" || recipe.preset == "test";
    let b = batch.unwrap_or(if mini { recipe.batch } else { 1 });
    let [h, w] = size.unwrap_or(if mini {
        [recipe.canvas; 2]
    } else {
        [800, 1088]
    });
    let objects = if mini { 3 } else { 7 };
    if b == 0 {
        return Err(ProtocolError::Config("a batch of no images".into()));
    }
    let mut model_cfg = cae_pretrain::CaeConfig::preset(&recipe.encoder_preset)
        .map_err(|e| ProtocolError::Config(e.to_string()))?;
    let p = model_cfg.encoder.patch_size;
    if h % p != 0 || w % p != 0 {
        return Err(ProtocolError::Config(format!(
            "a {h}×{w} input is not a whole number of {p}-px patches"
        )));
    }
    let encoder = cae_pretrain::encoder_file::random_encoder(&model_cfg, 0, device);
    let load = match recipe.pos_load_size {
        Some(s) => [s[0] / p * p, s[1] / p * p],
        None => [model_cfg.encoder.img_size; 2],
    };
    let encoder = encoder
        .at_resolution(&mut model_cfg.encoder, load, recipe.pos_embed_resize)
        .map_err(|e| ProtocolError::Config(e.to_string()))?;
    let ad = device.clone().autodiff();
    let mut encoder = cae_pretrain::train::on_autodiff(encoder, &ad);
    let init = Init::new(0xde7_b1a5, LinearInit::TruncNormal, &ad);
    prepare_finetune_backbone(
        &mut encoder,
        recipe.drop_path,
        recipe.rel_pos_bias.then_some(recipe.canvas / p),
        &init,
    );
    let classes = if mini { 8 } else { 80 };
    let det_cfg = recipe.detector(encoder.embed_dim(), p, classes)?;
    let rebuild = recipe.pos_embed_resize == PosResize::Rebuild;
    let mut model = MaskRcnn::new(&det_cfg, encoder, 0, &ad)
        .and_then(|m| m.with_position_grid(load[0] / p, load[1] / p, rebuild))?;
    let params = model.num_params();
    let mut opt = optimizer(&model, &recipe);
    ad.seed(0);
    let images = Tensor::<4>::random(
        [b, 3, h, w],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &ad,
    );
    let group = recipe.images_per_group.min(b);
    let gts: Vec<GtInstances> = (0..b)
        .map(|i| bench_objects(i, h, w, objects, classes))
        .collect();
    let mut ms = Vec::with_capacity(iters);
    let (mut loss, mut counts) = (f64::NAN, (0, 0, 0));
    for it in 0..warmup + iters {
        let groups: Vec<DetGroup> = (0..b)
            .step_by(group)
            .map(|s| {
                let n = group.min(b - s);
                DetGroup {
                    images: images.clone().narrow(0, s, n),
                    gts: gts[s..s + n].to_vec(),
                    metas: vec![
                        ImageMeta {
                            img_hw: (h, w),
                            pad_hw: (h, w),
                        };
                        n
                    ],
                }
            })
            .collect();
        let t0 = Instant::now();
        let mut ctx = ForwardCtx::train(salted_step_rng(0, SALT_STEP, it as u64));
        let mut srng = ChaCha8Rng::from_seed(derive_seed(&[0, SALT_SAMPLE, it as u64]));
        let l = model.loss_groups(&det_cfg, groups, &mut ctx, &mut srng)?;
        let value = f64::from(to_vec(l.total.clone())?[0]);
        let grads = burn::optim::GradientsParams::from_grads(l.total.backward(), &model);
        model = opt.step(model, grads, recipe.lr);
        if it >= warmup {
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        loss = value;
        counts = (l.proposals, l.box_rois, l.mask_rois);
    }
    Ok(DetBench {
        preset: recipe.preset,
        batch: b,
        group,
        size: [h, w],
        objects,
        params,
        ms,
        loss,
        proposals: counts.0,
        box_rois: counts.1,
        mask_rois: counts.2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_objects_are_ellipses_inside_their_boxes_with_valid_classes() {
        let (h, w) = (32, 48);
        for b in 0..3 {
            let gt = bench_objects(b, h, w, 3, 8);
            assert_eq!((gt.boxes.len(), gt.labels.len(), gt.masks.len()), (3, 3, 3));
            for (j, (bx, m)) in gt.boxes.iter().zip(&gt.masks).enumerate() {
                assert!(bx[0] >= 0.0 && bx[2] <= w as f32 && bx[1] >= 0.0 && bx[3] <= h as f32);
                assert!(bx[2] > bx[0] && bx[3] > bx[1]);
                assert_eq!(gt.labels[j], (b + 2 * j) % 8);
                let mut on = 0;
                for y in 0..h {
                    for x in 0..w {
                        if m[y * w + x] == 1 {
                            on += 1;
                            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
                            assert!(cx >= bx[0] && cx <= bx[2] && cy >= bx[1] && cy <= bx[3]);
                        }
                    }
                }
                // An ellipse fills π/4 of its box.
                let area = (bx[2] - bx[0]) * (bx[3] - bx[1]);
                let frac = on as f32 / area;
                assert!((frac - std::f32::consts::FRAC_PI_4).abs() < 0.1, "{frac}");
            }
        }
    }

    #[test]
    fn the_detection_bench_runs_whole_iterations_and_counts_the_rois() {
        let dev = Device::flex();
        let r = bench_mask_rcnn_iteration("test", Some(2), None, 2, 0, &dev).unwrap();
        assert_eq!((r.batch, r.group, r.size, r.objects), (2, 2, [32, 32], 3));
        assert_eq!(r.ms.len(), 2);
        assert!(r.loss.is_finite());
        // The `test` detector samples 32 RoIs per image, ground truths included, and masks
        // the positives: at least the 3 ground truths of each image.
        assert_eq!(r.box_rois, 2 * 32);
        assert!(
            r.mask_rois >= 2 * 3 && r.mask_rois <= r.box_rois,
            "{}",
            r.mask_rois
        );
        assert!(r.proposals > 0);
        assert!(bench_mask_rcnn_iteration("test", Some(1), Some([30, 32]), 1, 0, &dev).is_err());
    }

    #[test]
    fn paper_preset_values() {
        let r = DetRecipe::resolve("coco-1x-paper", &DetOverrides::default()).unwrap();
        assert_eq!(r.encoder_preset, "vit_base_patch16");
        assert_eq!(r.epochs, Some(12.0));
        assert_eq!(r.batch, 32);
        assert_eq!(r.lr, 3e-4);
        assert_eq!(r.weight_decay, 0.05);
        assert_eq!(r.layer_decay, 0.75);
        assert_eq!((r.warmup_iters, r.warmup_ratio), (500, 0.001));
        assert_eq!(r.lr_steps, vec![0.75, 11.0 / 12.0]);
        assert_eq!(r.gamma, 0.1);
        assert_eq!(r.drop_path, 0.2);
        assert_eq!(r.box_loss, BoxLoss::Giou { weight: 10.0 });
        assert_eq!(r.box_head, "4conv1fc");
        assert_eq!(r.train_short_sides.first(), Some(&480));
        assert_eq!(r.train_short_sides.last(), Some(&800));
        assert_eq!((r.test_short_side, r.max_size), (800, 1333));
        // COCO train2017: 117,266 images with annotations → 12 epochs at 32 = 43,975 iterations;
        // steps at epochs 9 and 11.
        let total = r.total_iters(117_266);
        assert_eq!(total, 43_975);
        let s = r.schedule(total);
        assert_eq!(s.steps, vec![32_981, 40_310]);
        let heads = MaskRcnnConfig::preset(&r.heads).unwrap();
        assert_eq!((heads.fpn_channels, heads.num_classes), (256, 80));
        assert_eq!(heads.rpn_train.max_per_img, 2000);
        assert_eq!(heads.rcnn_sampler.num, 512);
    }

    #[test]
    fn overrides_and_unknown_settings() {
        let o = DetOverrides {
            iters: Some(7),
            set: vec![("layer_decay".into(), "0.65".into())],
            ..Default::default()
        };
        let r = DetRecipe::resolve("mini", &o).unwrap();
        assert_eq!((r.iters, r.epochs, r.layer_decay), (7, None, 0.65));
        let o = DetOverrides {
            set: vec![("nope".into(), "1".into())],
            ..Default::default()
        };
        let e = DetRecipe::resolve("mini", &o).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("layer_decay"), "{e}");
        assert!(DetRecipe::resolve("coco-3x", &DetOverrides::default()).is_err());
        let o = DetOverrides {
            set: vec![
                ("box_head".into(), "2fc".into()),
                ("box_loss".into(), r#"{"l1":{"weight":1.0}}"#.into()),
            ],
            ..Default::default()
        };
        let r = DetRecipe::resolve("mini", &o).unwrap();
        assert_eq!(
            (r.box_head.as_str(), r.box_loss),
            ("2fc", BoxLoss::L1 { weight: 1.0 })
        );
        let o = DetOverrides {
            set: vec![("box_head".into(), "3fc".into())],
            ..Default::default()
        };
        assert!(DetRecipe::resolve("mini", &o).is_err());
        let o = DetOverrides {
            batch: Some(1),
            ..Default::default()
        };
        assert!(DetRecipe::resolve("mini", &o).is_err());
    }

    #[test]
    fn paper_preset_follows_cae_on_padding_positions_augmentation_filters_and_paste() {
        let r = DetRecipe::paper();
        assert_eq!(
            (r.pad, r.size_divisor, r.images_per_group),
            (PadMode::Batch, 32, 2)
        );
        assert_eq!(r.test_batch, 1);
        assert_eq!(r.pos_load_size, Some([672, 1092]));
        assert!(r.crop_branch && r.filter_empty_gt && r.anchor_valid_flags);
        assert_eq!(r.min_size, 32);
        assert_eq!(r.clip, ClipTo::Image);
        assert_eq!(r.gt_proposal_order, GtProposalOrder::AfterAssign);
        assert_eq!(r.mask_paste, MaskPaste::GridSample);
        let s = r.settings();
        for k in [
            "pad",
            "images_per_group",
            "crop_branch",
            "filter_empty_gt",
            "clip",
            "mask_paste",
        ] {
            assert!(s.contains_key(k), "{k} is recorded");
        }
        // Canvas padding and torchvision's paste stay available.
        let o = DetOverrides {
            set: vec![
                ("pad".into(), "\"canvas\"".into()),
                ("mask_paste".into(), "\"torchvision\"".into()),
            ],
            ..Default::default()
        };
        let c = DetRecipe::resolve("coco-1x-paper", &o).unwrap();
        assert_eq!(
            (c.pad, c.mask_paste),
            (PadMode::Canvas, MaskPaste::Torchvision)
        );
        let o = DetOverrides {
            batch: Some(3),
            ..Default::default()
        };
        assert!(
            DetRecipe::resolve("coco-1x-paper", &o).is_err(),
            "3 is not groups of 2"
        );
    }

    fn sample(h: u32, w: u32, vh: u32, vw: u32) -> DetSample {
        DetSample {
            image: vec![1.0; (3 * h * w) as usize],
            width: w,
            height: h,
            valid_width: vw,
            valid_height: vh,
            scale: (1.0, 1.0),
            flipped: false,
            instances: vec![cae_datasets::transforms::det::DetInstance {
                bbox: [1.0, 1.0, 3.0, 2.0],
                label: 0,
                crowd: false,
                mask: vec![1; (vh * vw) as usize],
            }],
        }
    }

    #[test]
    fn a_group_is_padded_to_its_largest_image_and_keeps_each_images_shapes() {
        let dev = Device::flex();
        let r = DetRecipe::paper();
        // 50×70 resized → padded alone to 64×96; 64×40 → 64×64. The group: 64×96.
        let ss = [sample(64, 96, 50, 70), sample(64, 64, 64, 40)];
        let (g, hw) = pad_group(&ss, &r, &dev).unwrap();
        assert_eq!(hw, (64, 96));
        assert_eq!(g.images.dims(), [2, 3, 64, 96]);
        assert_eq!(
            g.metas,
            vec![
                ImageMeta {
                    img_hw: (50, 70),
                    pad_hw: (64, 96)
                },
                ImageMeta {
                    img_hw: (64, 40),
                    pad_hw: (64, 64)
                },
            ]
        );
        // Image 1's pixels stop at column 64; its mask lies at the group's size.
        let v = cae_heads::error::to_vec(g.images.clone()).unwrap();
        let at = |b: usize, y: usize, x: usize| v[((b * 3) * 64 + y) * 96 + x];
        assert_eq!((at(1, 0, 63), at(1, 0, 64)), (1.0, 0.0));
        assert_eq!(g.gts[1].masks[0].len(), 64 * 96);
        assert_eq!(g.gts[1].masks[0][96 + 39], 1);
        assert_eq!(g.gts[1].masks[0][96 + 40], 0);
        // The canvas mode pads everything to the canvas, and refuses what does not fit.
        let canvas = DetRecipe {
            pad: PadMode::Canvas,
            canvas: 128,
            ..r.clone()
        };
        assert_eq!(pad_group(&ss, &canvas, &dev).unwrap().1, (128, 128));
        let small = DetRecipe {
            pad: PadMode::Canvas,
            canvas: 64,
            ..r
        };
        assert!(pad_group(&ss, &small, &dev).is_err());
    }

    #[test]
    fn images_without_annotations_leave_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::json!({
            "images": [
                {"id": 1, "file_name": "a.png", "width": 640, "height": 480},
                {"id": 2, "file_name": "b.png", "width": 640, "height": 480},
                {"id": 3, "file_name": "c.png", "width": 480, "height": 640},
                {"id": 4, "file_name": "d.png", "width": 20, "height": 640},
                {"id": 5, "file_name": "e.png", "width": 640, "height": 427},
            ],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0,
                 "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
                {"id": 2, "image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 1,
                 "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
                {"id": 3, "image_id": 4, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0,
                 "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
                {"id": 4, "image_id": 5, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0,
                 "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
            ],
            "categories": [{"id": 1, "name": "thing"}],
        });
        let path = dir.path().join("instances.json");
        std::fs::write(&path, json.to_string()).unwrap();
        let ds = CocoDataset::open_with(
            &path,
            dir.path(),
            cae_datasets::coco::CocoReadOptions {
                check_image_files: false,
                ..Default::default()
            },
        )
        .unwrap();
        // Image 2 has no annotation, image 4 is 20 px wide; a crowd-only image stays (mmdet
        // keeps an image with any annotation).
        assert_eq!(training_images(&ds, true, 32), vec![0, 2, 4]);
        assert_eq!(training_images(&ds, false, 32), vec![0, 1, 2, 4]);
        assert_eq!(training_images(&ds, false, 0).len(), 5);
        // 12 epochs of the 3 kept images at batch 2: ⌈18⌉ = 18 iterations, not ⌈30⌉ = 30.
        let r = DetRecipe {
            batch: 2,
            ..DetRecipe::paper()
        };
        assert_eq!(r.total_iters(training_images(&ds, true, 32).len()), 18);
        assert_eq!(r.total_iters(ds.len()), 30);
    }

    #[test]
    fn the_group_sampler_never_mixes_orientations_and_covers_each_pass() {
        let flags = [1u8, 1, 1, 0, 0, 1, 0];
        // 4 landscape images → 2 groups of 2; 3 portrait → 2 groups (one repeat).
        assert_eq!(groups_per_pass(&flags, 2), 4);
        for pass in 0..5 {
            let groups = pass_groups(3, &flags, 2, pass);
            assert_eq!(groups.len(), 4);
            let mut seen = std::collections::BTreeSet::new();
            for g in &groups {
                assert_eq!(g.len(), 2);
                assert!(g.iter().all(|&i| flags[i] == flags[g[0]]), "{g:?} mixes");
                seen.extend(g.iter().copied());
            }
            assert_eq!(seen.len(), 7, "every image of the pass appears");
        }
        // Iterations walk the stream of passes: 2 groups per batch, 4 per pass.
        assert_eq!(
            batch_groups(3, &flags, 2, 2, 2),
            pass_groups(3, &flags, 2, 1)[..2].to_vec()
        );
        assert_eq!(
            batch_groups(3, &flags, 2, 2, 0),
            batch_groups(3, &flags, 2, 2, 0)
        );
    }

    #[test]
    fn rle_is_column_major() {
        // A 2×3 mask with the top row set: column-major runs 0,1,1,1,1,1 → counts [0,1,1,1,1,1].
        let m = [true, true, true, false, false, false];
        let s = rle_string(&m, 2, 3).unwrap();
        let rle = hotcoco::mask::rle_from_string(&s, 2, 3).unwrap();
        let back = hotcoco::mask::decode(&rle);
        assert_eq!(back, vec![1, 0, 1, 0, 1, 0]);
    }
}
