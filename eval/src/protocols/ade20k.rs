//! ADE20K semantic segmentation (protocols.md §2, cae.md §5b): `cae-bench segment`.
//!
//! Two protocols on one data path:
//!
//! * **`upernet`** (the papers' number): the whole encoder fine-tuned under the
//!   [`Feature2Pyramid`](cae_heads::neck::Feature2Pyramid) neck, UPerHead and the auxiliary
//!   FCNHead ([`UperNet`]); AdamW with layer-wise lr decay ([`seg_param_group`]), mmcv's poly
//!   schedule after linear warmup ([`PolySchedule`]), drop path, per-block zero-initialised
//!   relative position bias (CAE's segmentation backbone).
//! * **`linear`** (DINOv2's frozen-feature evaluation): the encoder frozen, a BatchNorm + 1×1
//!   conv on the normed patch tokens of the last block (or the last four concatenated)
//!   ([`LinearSegmentor`]).
//!
//! Data: mmseg's ADE20K pipeline ([`SegTrainTransform`]: random resize 0.5–2, crop with
//! `cat_max_ratio` 0.75, flip, photometric distortion, pad with 255), `reduce_zero_label`. The
//! sampler is mmseg's infinite one: sample `k` of the run is `perm_{k / n}[k mod n]`, a fresh
//! permutation of the `n` training images per pass, drawn from `(seed, pass)`; the
//! augmentation of sample `k` draws from `(seed, k)`, and dropout / drop path of iteration `i`
//! from `(seed, i)`. So a checkpoint (model with BatchNorm statistics, AdamW moments and counts,
//! the iteration) is all a resume needs, and a resumed run writes the same bytes as one that
//! never stopped.
//!
//! Test: resize to the test scale keeping the ratio, sliding window ([`slide_logits`]), logits
//! resized bilinearly to the original size, argmax. The last evaluation writes one PNG per
//! validation image in ADE20K's encoding (class + 1) to `RUN/predictions/`, named as its
//! annotation, and the numbers in the record are those of
//! [`evaluate_folders`](crate::metrics::semseg::evaluate_folders) on that folder — the
//! code of `cae-bench ade-eval`. The in-memory count of the same pass must agree with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use cae_datasets::io::{LabelMap, save_label_png};
use cae_datasets::loader::derive_seed;
use cae_datasets::{AdeDataset, AdeSplit, SegTestTransform, SegTrainTransform, load_label_map};
use cae_heads::classification::finetune::prepare_finetune_backbone;
use cae_heads::error::to_vec;
use cae_heads::optim::{Optimizer, ParamGroup, Rule};
use cae_heads::schedule::PolySchedule;
use cae_heads::segmentation::conv_module::resize_bilinear;
use cae_heads::segmentation::layer_decay::seg_param_group;
use cae_heads::segmentation::{
    LinearSegmentor, SEG_IGNORED_KEYS, UperNet, UperNetConfig, seg_cross_entropy, slide_logits,
};
use cae_pretrain::autocast::{Precision, autocast};
use cae_pretrain::config::{CaeConfig, PosResize};
use cae_pretrain::model::init::{Init, LinearInit};
use cae_pretrain::model::{ForwardCtx, VisionTransformerEncoder};
use cae_pretrain::train::step::salted_step_rng;
use cae_pretrain::weights::{LoadOptions, collect_tensors, load_safetensors_bytes};
use cae_reports::record::{
    ClassResult, DatasetInfo, EncoderInfo, EpochMetrics, MachineInfo, ProtocolInfo, RecordWriter,
    RunRecord,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointState};
use super::encoder::{EncoderSource, resolve_encoder};
use super::error::{ProtocolError, Result};
use super::recipe::{encoder_name, images_tensor};
use crate::metrics::semseg::{FolderEvalConfig, evaluate_folders};
use crate::metrics::semseg::{LabelEncoding, SegConfusion, SegMetrics};

/// The two segmentation protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegProtocol {
    /// UperNet, whole encoder fine-tuned (BEiT / CAE / MAE).
    Upernet,
    /// BatchNorm + 1×1 conv on frozen patch tokens (DINOv2).
    Linear,
}

impl SegProtocol {
    /// `upernet` / `linear`.
    pub fn name(self) -> &'static str {
        match self {
            SegProtocol::Upernet => "upernet",
            SegProtocol::Linear => "linear",
        }
    }

    /// The protocol name in records (`ade20k-upernet`, `ade20k-linear`).
    pub fn record_name(self) -> String {
        format!("ade20k-{}", self.name())
    }
}

/// A resolved recipe: every setting of a run but the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegRecipe {
    /// Preset name (`ade20k-paper`, `mini`, `test`).
    pub preset: String,
    /// Protocol.
    pub protocol: SegProtocol,
    /// Encoder preset of `--encoder random` (and the fallback config of a file without one).
    pub encoder_preset: String,
    /// UperNet heads preset ([`UperNetConfig::preset`]); the width of the neck follows the
    /// encoder.
    pub heads: String,
    /// Classes (150 for ADE20K; after `reduce_zero_label`).
    pub num_classes: usize,
    /// Training crop side (and sliding-window crop).
    pub crop: usize,
    /// Test resize bounds `(long, short)`, keep ratio.
    pub test_scale: (u32, u32),
    /// Sliding-window stride.
    pub stride: usize,
    /// Training iterations.
    pub iters: u64,
    /// Images per iteration.
    pub batch: usize,
    /// Base learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Layer-wise lr decay (1 = none).
    pub layer_decay: f64,
    /// Linear warmup iterations.
    pub warmup_iters: u64,
    /// Starting fraction of the warmup.
    pub warmup_ratio: f64,
    /// Poly power.
    pub power: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Stochastic depth of the last block (linearly increasing).
    pub drop_path: f64,
    /// Give each block a zero-initialised relative position bias (CAE's segmentation backbone).
    pub rel_pos_bias: bool,
    /// How the pretrained sin-cos position table moves to the input's patch grid:
    /// `interpolate` (CAE's downstream code: bicubic, cls kept, frozen) or `rebuild`.
    #[serde(default)]
    pub pos_embed_resize: PosResize,
    /// `linear`: how many last blocks are concatenated (1, or 4 for DINOv2's "+ms" head input).
    pub linear_blocks: usize,
    /// Evaluate every this many iterations (0: only at the end).
    pub eval_every: u64,
    /// Write a checkpoint every this many iterations (and at the end).
    pub checkpoint_every: u64,
    /// Photometric distortion in training.
    pub photometric: bool,
    /// Range of the random resize ratio of training images (`(0.5, 2.0)`).
    pub resize_ratio: (f64, f64),
    /// Test scales as ratios of `test_scale` (`[1.0]`: single scale; mmseg's multi-scale test:
    /// `[0.5, 0.75, 1.0, 1.25, 1.5, 1.75]`).
    #[serde(default = "single_scale")]
    pub test_ratios: Vec<f64>,
    /// Also test on the horizontally flipped image.
    #[serde(default)]
    pub test_flip: bool,
    /// Precision of the matrix products and convolutions (`--set precision=bf16`: bf16
    /// autocast on f32 master weights, `cae_pretrain::autocast`); f32 where unset, as every
    /// record before it.
    #[serde(default)]
    pub precision: Precision,
}

fn single_scale() -> Vec<f64> {
    vec![1.0]
}

/// Changes to a preset from the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegOverrides {
    /// Iterations.
    pub iters: Option<u64>,
    /// Batch.
    pub batch: Option<usize>,
    /// Base learning rate.
    pub lr: Option<f64>,
    /// Evaluation interval.
    pub eval_every: Option<u64>,
    /// Number of classes.
    pub num_classes: Option<usize>,
    /// `linear`: last blocks concatenated.
    pub linear_blocks: Option<usize>,
    /// Any other field of [`SegRecipe`], as `(name, JSON value)` (`--set layer_decay=0.75`).
    pub set: Vec<(String, String)>,
}

/// The preset names.
pub const SEG_PRESETS: &[&str] = &["ade20k-paper", "mini", "test"];

impl SegRecipe {
    /// The paper's recipe: CAE ViT-B UperNet on ADE20K (`cae.md` §5b: crop 512, 160k
    /// iterations, batch 16, AdamW lr 1e-4 as for the 1600-epoch model, wd 0.05, layer decay
    /// 0.65, 1500 warmup iterations from 1e-6, poly power 1 to 0, drop path 0.1, relative
    /// position bias, slide 512 / 341); for `linear`, DINOv2's linear head (AdamW lr 1e-3, wd
    /// 1e-4 on every parameter, 40k iterations, same warmup and poly).
    pub fn paper(protocol: SegProtocol) -> Self {
        let upernet = Self {
            preset: "ade20k-paper".into(),
            protocol,
            encoder_preset: "vit_base_patch16".into(),
            heads: "paper".into(),
            num_classes: 150,
            crop: 512,
            test_scale: (2048, 512),
            stride: 341,
            iters: 160_000,
            batch: 16,
            lr: 1e-4,
            weight_decay: 0.05,
            layer_decay: 0.65,
            warmup_iters: 1500,
            warmup_ratio: 1e-6,
            power: 1.0,
            min_lr: 0.0,
            drop_path: 0.1,
            rel_pos_bias: true,
            pos_embed_resize: PosResize::Interpolate,
            linear_blocks: 1,
            eval_every: 16_000,
            checkpoint_every: 16_000,
            photometric: true,
            resize_ratio: (0.5, 2.0),
            test_ratios: single_scale(),
            test_flip: false,
            precision: Precision::F32,
        };
        match protocol {
            SegProtocol::Upernet => upernet,
            SegProtocol::Linear => Self {
                iters: 40_000,
                lr: 1e-3,
                weight_decay: 1e-4,
                layer_decay: 1.0,
                drop_path: 0.0,
                rel_pos_bias: false,
                pos_embed_resize: PosResize::Interpolate,
                eval_every: 4_000,
                checkpoint_every: 4_000,
                ..upernet
            },
        }
    }

    /// The paper's recipe scaled to the `mini` encoder (32-px images, patch 4, width 128, 4
    /// blocks) and the synthetic world (8 classes) on 2 CPU cores, changed only where size and
    /// time force it: crop 32 and test scale (128, 32) (the paper's (2048, 512) rule at 32 px),
    /// stride 21 (the paper's 2/3 of the crop), a 64-wide UPerHead and a 32-wide auxiliary head,
    /// batch 8 and 240 iterations (about 4 minutes of a 2-core CPU), warmup 10 iterations
    /// (the paper warms up for 1% of its schedule; 3 would be too few for AdamW's moments), and
    /// lr 1e-3 for UperNet: heads that start from scratch barely move at the paper's 1e-4 in a
    /// few hundred steps (the paper has 160k). The linear head keeps DINOv2's 1e-3.
    pub fn mini(protocol: SegProtocol) -> Self {
        Self {
            preset: "mini".into(),
            encoder_preset: "mini".into(),
            heads: "mini".into(),
            num_classes: 8,
            crop: 32,
            test_scale: (128, 32),
            stride: 21,
            iters: 240,
            batch: 8,
            lr: 1e-3,
            warmup_iters: 10,
            eval_every: 60,
            checkpoint_every: 60,
            ..Self::paper(protocol)
        }
    }

    /// For tests: the `test` encoder (16 px), 4 iterations of 2 images.
    pub fn test(protocol: SegProtocol) -> Self {
        Self {
            preset: "test".into(),
            encoder_preset: "test".into(),
            heads: "test".into(),
            num_classes: 8,
            crop: 16,
            test_scale: (64, 16),
            stride: 11,
            iters: 4,
            batch: 2,
            warmup_iters: 1,
            eval_every: 2,
            checkpoint_every: 2,
            ..Self::mini(protocol)
        }
    }

    /// A preset with overrides applied, checked.
    pub fn resolve(preset: &str, protocol: SegProtocol, o: &SegOverrides) -> Result<Self> {
        let mut r = match preset {
            "ade20k-paper" | "paper" => Self::paper(protocol),
            "mini" => Self::mini(protocol),
            "test" => Self::test(protocol),
            other => {
                return Err(ProtocolError::Config(format!(
                    "unknown segmentation preset `{other}` ({})",
                    SEG_PRESETS.join(", ")
                )));
            }
        };
        if let Some(v) = o.iters {
            r.iters = v;
            r.warmup_iters = r.warmup_iters.min(v);
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
        if let Some(v) = o.num_classes {
            r.num_classes = v;
        }
        if let Some(v) = o.linear_blocks {
            r.linear_blocks = v;
        }
        let r = super::recipe::apply_set(r, &o.set)?;
        r.validate()?;
        Ok(r)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ProtocolError::Config(m));
        if self.iters == 0 || self.batch == 0 || self.crop == 0 || self.stride == 0 {
            return bad("iterations, batch, crop and stride must be ≥ 1".into());
        }
        if self.batch < 2 {
            return bad("BatchNorm needs a batch of at least 2 images".into());
        }
        if self.stride > self.crop {
            return bad(format!(
                "stride {} is larger than the crop {}",
                self.stride, self.crop
            ));
        }
        if self.num_classes == 0 || self.num_classes > 254 {
            return bad(format!(
                "{} classes: ADE-format label maps hold 1..=254 classes",
                self.num_classes
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} is not positive", self.lr));
        }
        let (r0, r1) = self.resize_ratio;
        if !(r0 > 0.0 && r0 <= r1) {
            return bad(format!(
                "resize ratio range {:?} must satisfy 0 < min <= max",
                self.resize_ratio
            ));
        }
        if self.test_ratios.is_empty() || self.test_ratios.iter().any(|r| r.is_nan() || *r <= 0.0) {
            return bad(format!(
                "test ratios {:?} must be positive and at least one",
                self.test_ratios
            ));
        }
        if self.linear_blocks == 0 {
            return bad("the linear head needs at least one block".into());
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint interval must be ≥ 1".into());
        }
        Ok(())
    }

    /// The lr schedule.
    pub fn schedule(&self) -> PolySchedule {
        PolySchedule {
            lr: self.lr,
            min_lr: self.min_lr,
            power: self.power,
            total: self.iters,
            warmup: self.warmup_iters,
            warmup_ratio: self.warmup_ratio,
        }
    }

    /// The settings a leaderboard row is keyed by.
    pub fn settings(&self) -> BTreeMap<String, serde_json::Value> {
        super::recipe::settings(self)
    }
}

/// Everything a segmentation run needs.
#[derive(Debug, Clone)]
pub struct SegRequest {
    /// The encoder.
    pub encoder: EncoderSource,
    /// The `ADEChallengeData2016` folder (or the folder holding it).
    pub data: PathBuf,
    /// Preset name.
    pub preset: String,
    /// Protocol.
    pub protocol: SegProtocol,
    /// Changes to the preset.
    pub overrides: SegOverrides,
    /// Seed.
    pub seed: u64,
    /// Continue from the newest checkpoint in `out`.
    pub resume: bool,
    /// Device (`cpu`, `cuda:0`, …).
    pub device: String,
    /// Run folder: `record.json`, `checkpoints/`, `predictions/`.
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

impl SegRequest {
    /// A request with defaults: `mini`, UperNet, seed 0, CPU, no progress bar.
    pub fn new(encoder: EncoderSource, data: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        Self {
            encoder,
            data: data.into(),
            preset: "mini".into(),
            protocol: SegProtocol::Upernet,
            overrides: SegOverrides::default(),
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
pub struct SegOutcome {
    /// Mean IoU, percent (`None` when stopped early).
    #[serde(rename = "mIoU")]
    pub m_iou: Option<f64>,
    /// Mean accuracy, percent.
    #[serde(rename = "mAcc")]
    pub m_acc: Option<f64>,
    /// Pixel accuracy, percent.
    #[serde(rename = "aAcc")]
    pub a_acc: Option<f64>,
    /// mIoU of predicting the most frequent training class everywhere, percent.
    pub majority_miou: f64,
    /// Expected mIoU of a uniformly random prediction, percent ([`uniform_guess_miou`]).
    pub uniform_miou: f64,
    /// Iterations done.
    pub iters: u64,
    /// Iteration the run resumed from (0: fresh).
    pub resumed_from: u64,
    /// The run finished (false: stopped by `stop_after`).
    pub complete: bool,
    /// The record.
    pub record: PathBuf,
    /// The predictions folder.
    pub predictions: PathBuf,
    /// Wall time of this invocation, seconds.
    pub seconds: f64,
}

/// The checkpoint format tag.
pub const SEG_CHECKPOINT_FORMAT: &str = "cae-bench-seg-checkpoint-v1";
const SALT_AUG: u64 = 0x5e6_a06;
const SALT_STEP: u64 = 0x5e6_57e9;
const SALT_ORDER: u64 = 0x5e6_0d3;

/// The model of either protocol.
#[allow(clippy::large_enum_variant)]
enum SegModel {
    Upernet(UperNet, UperNetConfig),
    Linear(LinearSegmentor),
}

/// The order of pass `pass` over `n` images: a permutation drawn from `(seed, pass)`.
fn pass_order(seed: u64, n: usize, pass: u64) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut ChaCha8Rng::from_seed(derive_seed(&[
        seed, SALT_ORDER, pass,
    ])));
    perm
}

/// Sample `k` of the run's infinite sampler over `n` images.
pub fn sample_index(seed: u64, n: usize, k: u64) -> usize {
    pass_order(seed, n, k / n as u64)[(k % n as u64) as usize]
}

/// The training images of iteration `it` (one permutation drawn per pass it touches).
pub(crate) fn batch_indices(seed: u64, n: usize, batch: usize, it: u64) -> Vec<usize> {
    let start = it * batch as u64;
    let mut order: Option<(u64, Vec<usize>)> = None;
    (start..start + batch as u64)
        .map(|k| {
            let pass = k / n as u64;
            if order.as_ref().is_none_or(|(p, _)| *p != pass) {
                order = Some((pass, pass_order(seed, n, pass)));
            }
            order.as_ref().expect("just drawn").1[(k % n as u64) as usize]
        })
        .collect()
}

/// What the preflight learned about the data.
struct DataSummary {
    train: AdeDataset,
    val: AdeDataset,
    /// Most frequent training class (after `reduce_zero_label`).
    majority: usize,
    /// mIoU of predicting it everywhere on the validation split, percent.
    majority_miou: f64,
    /// Expected mIoU of a uniformly random prediction on the validation split, percent.
    uniform_miou: f64,
}

/// Opens both splits and checks every pair before anything is trained: the annotation exists,
/// has its image's size, and holds only `0..=K` or 255. Errors name the file.
fn preflight_data(root: &Path, num_classes: usize) -> Result<DataSummary> {
    let k = num_classes as u8;
    let train = AdeDataset::open(root, AdeSplit::Training)?.with_num_classes(k);
    let val = AdeDataset::open(root, AdeSplit::Validation)?.with_num_classes(k);
    let check = |pair: &cae_datasets::AdePair| -> Result<Vec<u8>> {
        let (iw, ih) = image::image_dimensions(&pair.image).map_err(|e| ProtocolError::Input {
            path: pair.image.clone(),
            message: format!("cannot read the image: {e}"),
        })?;
        let mut label = load_label_map(&pair.annotation)?;
        if (iw, ih) != (label.width, label.height) {
            return Err(cae_datasets::DatasetError::SizeMismatch {
                annotation: pair.annotation.clone(),
                image: pair.image.clone(),
                label_width: label.width,
                label_height: label.height,
                image_width: iw,
                image_height: ih,
            }
            .into());
        }
        cae_datasets::ade::check_label_values(&pair.annotation, &label, k)?;
        cae_datasets::reduce_zero_label(&mut label.data);
        Ok(label.data)
    };
    let hists: Vec<Vec<u64>> = train
        .samples
        .par_iter()
        .map(|p| {
            let data = check(p)?;
            let mut h = vec![0u64; 256];
            for v in data {
                h[v as usize] += 1;
            }
            Ok(h)
        })
        .collect::<Result<_>>()?;
    let mut hist = vec![0u64; num_classes];
    for h in &hists {
        for (c, n) in hist.iter_mut().enumerate() {
            *n += h[c];
        }
    }
    let majority = (0..num_classes)
        .max_by_key(|&c| (hist[c], std::cmp::Reverse(c)))
        .unwrap_or(0);
    let partial: Vec<SegConfusion> = val
        .samples
        .par_iter()
        .map(|p| {
            let data = check(p)?;
            let mut c = SegConfusion::new(num_classes, 255)?;
            c.update(&vec![majority as u8; data.len()], &data)?;
            Ok(c)
        })
        .collect::<Result<_>>()?;
    let mut conf = SegConfusion::new(num_classes, 255)?;
    for c in &partial {
        conf.merge(c)?;
    }
    let label_areas = conf.areas().label;
    Ok(DataSummary {
        train,
        val,
        majority,
        majority_miou: conf.compute().m_iou * 100.0,
        uniform_miou: uniform_guess_miou(&label_areas) * 100.0,
    })
}

/// The expected mIoU of predicting each labelled pixel uniformly at random among the `K`
/// classes, from the label areas `L_c` (`T = ΣL`): class `c` gets `I = L_c/K`, `P = T/K`, so
/// `IoU_c = (L_c/K) / (L_c + T/K − L_c/K)`; every class has `P > 0`, so all `K` enter the
/// mean. (Per-pixel independence; for balanced classes this is `1/(2K − 1)`.)
pub fn uniform_guess_miou(label_areas: &[u64]) -> f64 {
    let k = label_areas.len() as f64;
    let t: f64 = label_areas.iter().map(|&l| l as f64).sum();
    if k == 0.0 || t == 0.0 {
        return f64::NAN;
    }
    label_areas
        .iter()
        .map(|&l| {
            let l = l as f64;
            (l / k) / (l + t / k - l / k)
        })
        .sum::<f64>()
        / k
}

impl SegModel {
    fn build(
        recipe: &SegRecipe,
        mut encoder: VisionTransformerEncoder,
        seed: u64,
        ad: &Device,
    ) -> Result<Self> {
        match recipe.protocol {
            SegProtocol::Upernet => {
                let p = encoder.patch_embed.proj.kernel_size[0];
                let init = Init::new(seed ^ 0x5e6_b1a5, LinearInit::TruncNormal, ad);
                prepare_finetune_backbone(
                    &mut encoder,
                    recipe.drop_path,
                    recipe.rel_pos_bias.then_some(recipe.crop / p),
                    &init,
                );
                let d = encoder.embed_dim();
                let mut cfg = UperNetConfig::preset(&recipe.heads)?;
                if cfg.channels == cfg.in_channels {
                    // The paper's heads are as wide as the encoder.
                    cfg.channels = d;
                }
                cfg.in_channels = d;
                cfg.num_classes = recipe.num_classes;
                // The backbone is fine-tuned: every parameter but the frozen sin-cos table trains.
                let model = UperNet::new(&cfg, seed, ad)?
                    .with_backbone(&cfg, cae_pretrain::train::on_autodiff(encoder, ad))?;
                Ok(SegModel::Upernet(model, cfg))
            }
            SegProtocol::Linear => {
                let depth = encoder.blocks.len();
                if recipe.linear_blocks > depth {
                    return Err(ProtocolError::Config(format!(
                        "{} blocks asked for the linear head; the encoder has {depth}",
                        recipe.linear_blocks
                    )));
                }
                let blocks = (depth - recipe.linear_blocks..depth).collect();
                Ok(SegModel::Linear(LinearSegmentor::new(
                    encoder,
                    blocks,
                    recipe.num_classes,
                    1e-5,
                    seed,
                    ad,
                )?))
            }
        }
    }

    fn optimizer(&self, recipe: &SegRecipe) -> Optimizer {
        let rule = Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let wd = recipe.weight_decay;
        match self {
            SegModel::Upernet(m, _) => {
                let depth = m.backbone.as_ref().map_or(0, |b| b.blocks.len());
                let decay = recipe.layer_decay;
                Optimizer::new(
                    rule,
                    Box::new(move |p, nd| seg_param_group(p, nd, depth, decay, wd)),
                )
            }
            // mmcv's default constructor: one group, decay on every parameter.
            SegModel::Linear(_) => Optimizer::new(
                rule,
                Box::new(move |_, _| ParamGroup {
                    lr_scale: 1.0,
                    weight_decay: wd,
                }),
            ),
        }
    }

    /// One iteration: loss, backward, update. Returns the loss.
    fn train_step(
        self,
        images: Tensor<4>,
        labels: Tensor<3, Int>,
        ctx: &mut ForwardCtx,
        opt: &mut Optimizer,
        lr: f64,
    ) -> Result<(Self, f64)> {
        match self {
            SegModel::Upernet(mut m, cfg) => {
                let out = m.forward(images, ctx)?;
                let loss = m.loss(&cfg, &out, labels).loss;
                let value = f64::from(to_vec(loss.clone())?[0]);
                let grads = GradientsParams::from_grads(loss.backward(), &m);
                Ok((SegModel::Upernet(opt.step(m, grads, lr), cfg), value))
            }
            SegModel::Linear(mut m) => {
                let logits = m.forward(images, true)?;
                let loss = seg_cross_entropy(logits, labels, 255, false);
                let value = f64::from(to_vec(loss.clone())?[0]);
                let grads = GradientsParams::from_grads(loss.backward(), &m);
                Ok((SegModel::Linear(opt.step(m, grads, lr)), value))
            }
        }
    }

    fn tensors(&self) -> Result<Vec<cae_pretrain::weights::RawTensor>> {
        Ok(match self {
            SegModel::Upernet(m, _) => collect_tensors(m, None, "model.")?,
            SegModel::Linear(m) => collect_tensors(m, None, "model.")?,
        })
    }

    fn load(&mut self, bytes: &[u8], path: &Path) -> Result<()> {
        let opts = LoadOptions {
            prefix: Some("model."),
            ignore: SEG_IGNORED_KEYS,
            ..Default::default()
        };
        match self {
            SegModel::Upernet(m, _) => {
                load_safetensors_bytes(m, bytes, path, &opts)?;
            }
            SegModel::Linear(m) => {
                load_safetensors_bytes(m, bytes, path, &opts)?;
            }
        }
        Ok(())
    }

    /// An evaluation copy (no autodiff) that maps a crop to logits at the crop's size.
    fn predictor(&self) -> Predictor {
        match self {
            SegModel::Upernet(m, _) => Predictor::Upernet(m.valid()),
            SegModel::Linear(m) => Predictor::Linear(m.valid()),
        }
    }
}

#[allow(clippy::large_enum_variant)]
enum Predictor {
    Upernet(UperNet),
    Linear(LinearSegmentor),
}

impl Predictor {
    fn crop_logits(&mut self, crop: Tensor<4>) -> cae_heads::error::Result<Tensor<4>> {
        let [_, _, h, w] = crop.dims();
        let logits = match self {
            Predictor::Upernet(m) => m.forward(crop, &mut ForwardCtx::eval())?.logits,
            Predictor::Linear(m) => m.forward(crop, false)?,
        };
        Ok(resize_bilinear(logits, [h, w]))
    }
}

/// Evaluates on the validation split; with `write`, saves each prediction (ADE encoding) under
/// `write`'s folder.
fn evaluate(
    model: &SegModel,
    recipe: &SegRecipe,
    val: &AdeDataset,
    device: &Device,
    write: Option<&Path>,
    pb: &indicatif::ProgressBar,
) -> Result<SegMetrics> {
    let mut predictor = model.predictor();
    let mut conf = SegConfusion::new(recipe.num_classes, 255)?;
    let plain = device.clone().without_autodiff();
    let single = recipe.test_ratios == [1.0] && !recipe.test_flip;
    for (i, pair) in val.samples.iter().enumerate() {
        let (img, label) = val.load(i)?;
        let ori = [img.height() as usize, img.width() as usize];
        // Single scale: the argmax of the logits. Multi-scale / flip (mmseg's aug_test): the
        // mean of the softmax at the original size over every scale and flip.
        let mut sum: Option<Tensor<4>> = None;
        for &r in &recipe.test_ratios {
            let tf = SegTestTransform {
                scale: (
                    (recipe.test_scale.0 as f64 * r) as u32,
                    (recipe.test_scale.1 as f64 * r) as u32,
                ),
                ..SegTestTransform::for_crop(recipe.crop as u32)
            };
            let s = tf.apply(&img);
            let x = images_tensor(vec![s.image], [s.height as usize, s.width as usize], &plain);
            for flip in [false, true] {
                if flip && !recipe.test_flip {
                    continue;
                }
                let input = if flip { x.clone().flip([3]) } else { x.clone() };
                let mut logits = slide_logits(input, [recipe.crop; 2], [recipe.stride; 2], |c| {
                    predictor.crop_logits(c)
                })?;
                if flip {
                    logits = logits.flip([3]);
                }
                let full = resize_bilinear(logits, ori);
                let part = if single {
                    full
                } else {
                    burn::tensor::activation::softmax(full, 1)
                };
                sum = Some(match sum {
                    Some(acc) => acc + part,
                    None => part,
                });
            }
        }
        let full = sum.expect("at least one test scale");
        let pred: Vec<u8> = full
            .argmax(1)
            .try_into_vec_as::<i64>()
            .map_err(|e| ProtocolError::Config(format!("backend: {e:?}")))?
            .into_iter()
            .map(|v| v as u8)
            .collect();
        conf.update(&pred, &label.data)?;
        if let Some(dir) = write {
            let name = pair
                .annotation
                .file_name()
                .expect("an annotation file has a name");
            let map = LabelMap {
                width: ori[1] as u32,
                height: ori[0] as u32,
                data: pred.iter().map(|&v| v + 1).collect(),
            };
            save_label_png(&dir.join(name), &map)?;
        }
        pb.tick();
    }
    Ok(conf.compute())
}

fn pct(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v * 100.0)
}

fn headline(m: &SegMetrics) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (k, v) in [("mIoU", m.m_iou), ("mAcc", m.m_acc), ("aAcc", m.a_acc)] {
        if let Some(v) = pct(v) {
            out.insert(k.to_string(), v);
        }
    }
    out
}

/// The class names of the data: ADE20K's for 150 classes, the synthetic world's
/// (`world.json` two folders up) when there, `class_<i>` otherwise.
/// The ADE20K classes of a synthetic world (`world.json` at most two folders above the data
/// root): its shapes, then its stuff classes. `None` for any other dataset.
fn world_classes(root: &Path) -> Option<Vec<String>> {
    let path = root
        .ancestors()
        .take(3)
        .map(|d| d.join("world.json"))
        .find(|p| p.is_file())?;
    let text = std::fs::read_to_string(&path).ok()?;
    let v = serde_json::from_str::<serde_json::Value>(&text).ok()?;
    let names = |key: &str| -> Option<Vec<String>> {
        v.get(key)?
            .as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut all = names("classes")?;
    all.extend(names("stuff_classes").unwrap_or_default());
    Some(all)
}

/// Runs `cae-bench segment` (see the module docs).
pub fn run_segment(req: &SegRequest) -> Result<SegOutcome> {
    let started = Instant::now();
    let mut overrides = req.overrides.clone();
    // A synthetic world names its classes (read once: the count here, the names in the record).
    let world_names = world_classes(&req.data);
    if overrides.num_classes.is_none()
        && let Some(names) = &world_names
    {
        tracing::info!(
            "{} classes, from the synthetic world's world.json ({})",
            names.len(),
            names.join(", ")
        );
        overrides.num_classes = Some(names.len());
    }
    let recipe = SegRecipe::resolve(&req.preset, req.protocol, &overrides)?;
    let device = cae_pretrain::device::parse_device(&req.device)?;
    recipe.precision.check_device(&device)?;
    // Training and evaluation in the recipe's precision (this thread runs every model op).
    let _precision = autocast(recipe.precision);
    let record_path = req.out.join("record.json");
    let existing = super::recipe::run_folder_checkpoints(&req.out, req.resume)?;
    let data = preflight_data(&req.data, recipe.num_classes)?;
    let (encoder, mut model_cfg, encoder_info) = resolve_encoder(
        &req.encoder,
        Some(&recipe.encoder_preset),
        req.label.as_deref(),
        req.seed,
        &device,
    )?;
    check_encoder_fits(req, &recipe, &model_cfg)?;
    let built_for = model_cfg.encoder.img_size;
    let encoder = encoder
        .at_resolution(
            &mut model_cfg.encoder,
            [recipe.crop; 2],
            recipe.pos_embed_resize,
        )
        .map_err(|e| {
            ProtocolError::Config(format!(
                "{}: {e}",
                encoder_name(&req.encoder, &recipe.encoder_preset)
            ))
        })?;
    let position_table = super::recipe::position_table_note(
        model_cfg.encoder.pos_embed,
        recipe.pos_embed_resize,
        built_for,
        recipe.crop,
    );
    if built_for != recipe.crop {
        tracing::info!("position table: {position_table}");
    }
    let fingerprint = cae_datasets::fingerprint_dir(&req.data)?.to_string();
    let key = super::recipe::identity(
        &recipe.protocol.record_name(),
        &recipe,
        &encoder_info,
        &fingerprint,
        &req.device,
        req.seed,
    );

    let ad = device.clone().autodiff();
    let mut model = SegModel::build(&recipe, encoder, req.seed, &ad)?;
    let mut opt = model.optimizer(&recipe);
    let mut start = 0u64;
    let (mut loss_sum, mut loss_count) = (0.0f64, 0u64);
    if req.resume
        && let Some((_, path)) = existing.last()
    {
        let st = checkpoint::load(
            path,
            SEG_CHECKPOINT_FORMAT,
            &key,
            &mut opt,
            &device,
            |bytes| model.load(bytes, path),
        )?;
        start = st.iter;
        (loss_sum, loss_count) = (st.loss_sum, st.loss_count);
        tracing::info!("resuming from {} (iteration {start})", path.display());
    }

    let mut writer = start_record(
        req,
        &recipe,
        &model_cfg,
        &encoder_info,
        &data,
        &fingerprint,
        &key,
        start,
    )?;
    writer
        .record
        .protocol
        .details
        .insert("position_table".into(), serde_json::json!(position_table));
    writer.record.trainable = match &model {
        SegModel::Upernet(m, _) => super::recipe::trainable_groups(m, &opt),
        SegModel::Linear(m) => super::recipe::trainable_groups(m, &opt),
    };
    writer.update()?;
    let result = train_and_evaluate(
        req,
        &recipe,
        &data,
        model,
        &mut opt,
        &device,
        &ad,
        start,
        (loss_sum, loss_count),
        &key,
        &mut writer,
    );
    match result {
        Ok((metrics, iters, complete)) => {
            let predictions = req.out.join("predictions");
            let (m_iou, m_acc, a_acc) = match &metrics {
                Some(m) => (pct(m.m_iou), pct(m.m_acc), pct(m.a_acc)),
                None => (None, None, None),
            };
            if let Some(m) = &metrics {
                let names = match &world_names {
                    Some(names) if names.len() == recipe.num_classes => names.clone(),
                    _ => crate::commands::ade_eval::class_names(recipe.num_classes),
                };
                writer.record.per_class = names
                    .into_iter()
                    .enumerate()
                    .map(|(c, name)| ClassResult {
                        name,
                        values: BTreeMap::from([
                            ("IoU".to_string(), pct(m.iou[c])),
                            ("Acc".to_string(), pct(m.acc[c])),
                        ]),
                    })
                    .collect();
                writer.complete(headline(m))?;
            } else {
                writer.update()?;
            }
            Ok(SegOutcome {
                m_iou,
                m_acc,
                a_acc,
                majority_miou: data.majority_miou,
                uniform_miou: data.uniform_miou,
                iters,
                resumed_from: start,
                complete,
                record: record_path,
                predictions,
                seconds: started.elapsed().as_secs_f64(),
            })
        }
        Err(e) => {
            let _ = writer.fail(&e.to_string());
            Err(e)
        }
    }
}

/// The encoder must tile the crop with whole patches (its position table is then moved to the
/// crop's grid: `VisionTransformerEncoder::at_resolution`).
fn check_encoder_fits(req: &SegRequest, recipe: &SegRecipe, cfg: &CaeConfig) -> Result<()> {
    let what = encoder_name(&req.encoder, &recipe.encoder_preset);
    let e = &cfg.encoder;
    if !recipe.crop.is_multiple_of(e.patch_size) {
        return Err(ProtocolError::Config(format!(
            "{what}: {}-px patches do not tile the {} preset's {}-px crop",
            e.patch_size, recipe.preset, recipe.crop
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn start_record(
    req: &SegRequest,
    recipe: &SegRecipe,
    model_cfg: &CaeConfig,
    encoder: &EncoderInfo,
    data: &DataSummary,
    fingerprint: &str,
    key: &str,
    start: u64,
) -> Result<RecordWriter> {
    let mut details = BTreeMap::new();
    let mut put = |k: &str, v: serde_json::Value| {
        details.insert(k.to_string(), v);
    };
    put("majority_class_mIoU", serde_json::json!(data.majority_miou));
    put("uniform_guess_mIoU", serde_json::json!(data.uniform_miou));
    put("majority_class", serde_json::json!(data.majority));
    put(
        "train_pipeline",
        serde_json::json!(format!(
            "RandomResize(scale=({}, {}), ratio {}-{}) + RandomCrop({}, cat_max_ratio 0.75) + flip 0.5{} + pad 255; reduce_zero_label",
            4 * recipe.crop,
            recipe.crop,
            recipe.resize_ratio.0,
            recipe.resize_ratio.1,
            recipe.crop,
            if recipe.photometric {
                " + PhotoMetricDistortion"
            } else {
                ""
            }
        )),
    );
    put(
        "test",
        serde_json::json!(format!(
            "Resize({:?}, keep ratio) + slide {} / stride {} + bilinear resize to the original size; {}",
            recipe.test_scale,
            recipe.crop,
            recipe.stride,
            match (recipe.test_ratios.as_slice(), recipe.test_flip) {
                ([r], false) if *r == 1.0 => "single scale, no flip".to_string(),
                (r, f) => format!(
                    "softmax averaged over scales {r:?}{}",
                    if f { " and their flips" } else { "" }
                ),
            }
        )),
    );
    put(
        "batchnorm",
        serde_json::json!("batch statistics over the whole batch on one device (SyncBN's result)"),
    );
    match recipe.protocol {
        SegProtocol::Upernet => put(
            "loss",
            serde_json::json!("CE(ignore 255, mean over all pixels) + 0.4 CE(aux)"),
        ),
        SegProtocol::Linear => put(
            "features",
            serde_json::json!(format!(
                "patch tokens of the last {} block(s) after the final LayerNorm, frozen",
                recipe.linear_blocks
            )),
        ),
    }
    let protocol = ProtocolInfo {
        name: recipe.protocol.record_name(),
        pooling: None,
        layer: None,
        // Iterations, not epochs: they are in the settings (`iters`).
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
            v.push("head init, data order, augmentation, dropout".to_string());
            v
        }),
    };
    let config = serde_json::json!({
        "segment": recipe,
        "model": model_cfg,
        "data": req.data.display().to_string(),
        "device": req.device,
    });
    let mut record = RunRecord::start(
        "segment",
        req.command.clone(),
        config,
        req.seed,
        protocol,
        MachineInfo::current(&req.device, None),
    );
    record.encoder = Some(encoder.clone());
    record.dataset = Some(DatasetInfo {
        path: req.data.display().to_string(),
        train_images: Some(data.train.len()),
        val_images: Some(data.val.len()),
        classes: Some(recipe.num_classes),
        fingerprint: Some(fingerprint.to_string()),
    });
    record.request_key = Some(key.to_string());
    super::recipe::finish_record(&mut record, &req.out, start);
    Ok(RecordWriter::create(&req.out, record)?)
}

#[allow(clippy::too_many_arguments)]
fn train_and_evaluate(
    req: &SegRequest,
    recipe: &SegRecipe,
    data: &DataSummary,
    mut model: SegModel,
    opt: &mut Optimizer,
    device: &Device,
    ad: &Device,
    start: u64,
    (mut loss_sum, mut loss_count): (f64, u64),
    key: &str,
    writer: &mut RecordWriter,
) -> Result<(Option<SegMetrics>, u64, bool)> {
    let schedule = recipe.schedule();
    let tf = SegTrainTransform {
        photometric: if recipe.photometric {
            SegTrainTransform::for_crop(recipe.crop as u32).photometric
        } else {
            None
        },
        ratio_range: recipe.resize_ratio,
        ..SegTrainTransform::for_crop(recipe.crop as u32)
    };
    let n = data.train.len();
    let pb = cae_pretrain::progress::bar(req.progress, recipe.iters, start, "iters");
    let ckpt_dir = req.out.join("checkpoints");
    let c = recipe.crop;
    let mut lr = schedule.at(start);
    for it in start..recipe.iters {
        let idx = batch_indices(req.seed, n, recipe.batch, it);
        let first = it * recipe.batch as u64;
        let samples: Vec<cae_datasets::SegSample> = idx
            .par_iter()
            .enumerate()
            .map(|(j, &i)| {
                let (img, label) = data.train.load(i)?;
                let mut rng =
                    ChaCha8Rng::from_seed(derive_seed(&[req.seed, SALT_AUG, first + j as u64]));
                Ok(tf.apply(&img, &label, &mut rng)?)
            })
            .collect::<Result<_>>()?;
        let labels: Vec<u8> = samples
            .iter()
            .flat_map(|s| s.label.iter().copied())
            .collect();
        let images = images_tensor(samples.into_iter().map(|s| s.image).collect(), [c, c], ad);
        let labels = cae_heads::segmentation::label_tensor(
            &labels,
            [recipe.batch, c, c],
            recipe.num_classes,
            255,
            ad,
        )?;
        lr = schedule.at(it);
        let mut ctx = ForwardCtx::train(salted_step_rng(req.seed, SALT_STEP, it));
        let (next, loss) = model.train_step(images, labels, &mut ctx, opt, lr)?;
        model = next;
        if !loss.is_finite() {
            pb.abandon();
            return Err(ProtocolError::NonFinite {
                iter: it + 1,
                value: loss,
            });
        }
        loss_sum += loss;
        loss_count += 1;
        pb.inc(1);
        pb.set_message(format!("loss {loss:.4}"));
        let done = it + 1;
        let last = done == recipe.iters;
        if !last && recipe.eval_every > 0 && done.is_multiple_of(recipe.eval_every) {
            let m = evaluate(&model, recipe, &data.val, device, None, &pb)?;
            report(
                writer,
                recipe,
                done,
                &m,
                loss_sum / loss_count.max(1) as f64,
                lr,
                &pb,
            )?;
            (loss_sum, loss_count) = (0.0, 0);
        }
        if last || done.is_multiple_of(recipe.checkpoint_every) {
            let state = CheckpointState {
                format: SEG_CHECKPOINT_FORMAT.into(),
                iter: done,
                seed: req.seed,
                request_key: key.to_string(),
                optim_steps: BTreeMap::new(),
                loss_sum,
                loss_count,
            };
            checkpoint::save(&ckpt_dir, model.tensors()?, opt, &state)?;
        }
        if req.stop_after == Some(done) && !last {
            pb.abandon();
            return Ok((None, done, false));
        }
    }
    // The final evaluation writes the predictions and is scored from the files.
    let pred_dir = req.out.join("predictions");
    if pred_dir.exists() {
        std::fs::remove_dir_all(&pred_dir).map_err(|e| ProtocolError::Input {
            path: pred_dir.clone(),
            message: format!("cannot clear old predictions: {e}"),
        })?;
    }
    std::fs::create_dir_all(&pred_dir).map_err(|e| ProtocolError::Input {
        path: pred_dir.clone(),
        message: e.to_string(),
    })?;
    pb.set_message("evaluating");
    let in_memory = evaluate(&model, recipe, &data.val, device, Some(&pred_dir), &pb)?;
    let gt_dir = data
        .val
        .root
        .join("annotations")
        .join(AdeSplit::Validation.name());
    let scored = evaluate_folders(
        &gt_dir,
        &pred_dir,
        &FolderEvalConfig {
            num_classes: recipe.num_classes,
            encoding: LabelEncoding::ReduceZeroLabel,
            ignore_index: 255,
        },
    )?;
    if scored.metrics.areas != in_memory.areas {
        return Err(ProtocolError::Config(format!(
            "the predictions written to {} score differently from the evaluation that wrote \
             them (a bug: please report it)",
            pred_dir.display()
        )));
    }
    report(
        writer,
        recipe,
        recipe.iters,
        &scored.metrics,
        loss_sum / loss_count.max(1) as f64,
        lr,
        &pb,
    )?;
    pb.finish_and_clear();
    Ok((Some(scored.metrics), recipe.iters, true))
}

fn report(
    writer: &mut RecordWriter,
    recipe: &SegRecipe,
    iter: u64,
    m: &SegMetrics,
    loss: f64,
    lr: f64,
    pb: &indicatif::ProgressBar,
) -> Result<()> {
    let mut metrics = headline(m);
    metrics.insert("loss".into(), loss);
    metrics.insert("lr".into(), lr);
    let line = format!(
        "{} iter {iter}/{}: mIoU {:.2}  mAcc {:.2}  aAcc {:.2}  loss {loss:.4}",
        recipe.protocol.record_name(),
        recipe.iters,
        m.m_iou * 100.0,
        m.m_acc * 100.0,
        m.a_acc * 100.0
    );
    if pb.is_hidden() {
        tracing::debug!("{line}");
    } else {
        pb.suspend(|| tracing::info!("{line}"));
    }
    writer.record.push_epoch(
        EpochMetrics {
            epoch: iter,
            metrics,
        },
        "mIoU",
    );
    writer.update()?;
    Ok(())
}

/// The timings of [`bench_upernet_iteration`].
#[derive(Debug, Clone, Serialize)]
pub struct SegBench {
    /// Recipe preset (`mini` or `paper`).
    pub preset: String,
    /// Images per iteration.
    pub batch: usize,
    /// Crop side in pixels.
    pub crop: usize,
    /// Burn's `num_params` of the model: the trainable parameters plus the frozen position table
    /// and BatchNorm's running statistics (the PyTorch twin counts only the trainable ones).
    pub params: usize,
    /// Milliseconds of each timed iteration (forward, backward, AdamW step).
    pub ms: Vec<f64>,
    /// The loss of the last iteration.
    pub loss: f64,
}

/// Times whole UperNet training iterations (forward, backward, AdamW with the recipe's layer-decay
/// groups) on one fixed synthetic batch, the work of `benches/torch_seg_twin.py`: images
/// N(0, 1) of `[batch, 3, crop, crop]`, labels `(b + y/8 + x/8) % num_classes`, a random-init
/// encoder of the recipe's preset built at the crop size. `preset` is a recipe (`mini`, `paper`).
pub fn bench_upernet_iteration(
    preset: &str,
    batch: Option<usize>,
    iters: usize,
    warmup: usize,
    device: &Device,
) -> Result<SegBench> {
    let recipe = SegRecipe::resolve(preset, SegProtocol::Upernet, &SegOverrides::default())?;
    let b = batch.unwrap_or(if preset == "mini" { recipe.batch } else { 2 });
    let c = recipe.crop;
    let mut cfg = CaeConfig::preset(&recipe.encoder_preset)
        .map_err(|e| ProtocolError::Config(e.to_string()))?;
    cfg.encoder.img_size = c;
    let ad = device.clone().autodiff();
    let enc = cae_pretrain::encoder_file::random_encoder(&cfg, 0, device);
    let mut model = SegModel::build(&recipe, enc, 0, &ad)?;
    let mut opt = model.optimizer(&recipe);
    let params = match &model {
        SegModel::Upernet(m, _) => m.num_params(),
        SegModel::Linear(m) => m.num_params(),
    };
    ad.seed(0);
    let images = Tensor::<4>::random(
        [b, 3, c, c],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &ad,
    );
    let classes = recipe.num_classes;
    let labels: Vec<u8> = (0..b * c * c)
        .map(|i| {
            let (bi, y, x) = (i / (c * c), (i / c) % c, i % c);
            ((bi + y / 8 + x / 8) % classes) as u8
        })
        .collect();
    let mut ms = Vec::with_capacity(iters);
    let mut loss = f64::NAN;
    for it in 0..warmup + iters {
        let labels_t =
            cae_heads::segmentation::label_tensor(&labels, [b, c, c], classes, 255, &ad)?;
        let t0 = Instant::now();
        let mut ctx = ForwardCtx::train(salted_step_rng(0, SALT_STEP, it as u64));
        let (next, l) =
            model.train_step(images.clone(), labels_t, &mut ctx, &mut opt, recipe.lr)?;
        model = next;
        loss = l;
        if it >= warmup {
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(SegBench {
        preset: recipe.preset,
        batch: b,
        crop: c,
        params,
        ms,
        loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper preset, value by value (cae.md §5b, protocols.md §2.4 and §2.7).
    #[test]
    fn paper_preset_values() {
        let r = SegRecipe::resolve(
            "ade20k-paper",
            SegProtocol::Upernet,
            &SegOverrides::default(),
        )
        .unwrap();
        assert_eq!(r.encoder_preset, "vit_base_patch16");
        assert_eq!(r.heads, "paper");
        assert_eq!(r.num_classes, 150);
        assert_eq!(r.crop, 512);
        assert_eq!(r.test_scale, (2048, 512));
        assert_eq!(r.stride, 341);
        assert_eq!(r.iters, 160_000);
        assert_eq!(r.batch, 16);
        assert_eq!(r.lr, 1e-4);
        assert_eq!(r.weight_decay, 0.05);
        assert_eq!(r.layer_decay, 0.65);
        assert_eq!(r.warmup_iters, 1500);
        assert_eq!(r.warmup_ratio, 1e-6);
        assert_eq!(r.power, 1.0);
        assert_eq!(r.min_lr, 0.0);
        assert_eq!(r.drop_path, 0.1);
        assert!(r.rel_pos_bias);
        assert!(r.photometric);
        assert_eq!((r.test_ratios.clone(), r.test_flip), (vec![1.0], false));
        let heads = UperNetConfig::preset(&r.heads).unwrap();
        assert_eq!((heads.channels, heads.num_classes), (768, 150));
        let aux = heads.aux.unwrap();
        assert_eq!((aux.channels, aux.in_index, aux.loss_weight), (256, 2, 0.4));
        assert_eq!(heads.pool_scales, vec![1, 2, 3, 6]);
        assert_eq!(heads.dropout, 0.1);
        // mini differs from the paper only in sizes, schedule length, warmup and UperNet's lr.
        let m = SegRecipe::mini(SegProtocol::Upernet);
        let same = SegRecipe {
            preset: m.preset.clone(),
            encoder_preset: m.encoder_preset.clone(),
            heads: m.heads.clone(),
            num_classes: m.num_classes,
            crop: m.crop,
            test_scale: m.test_scale,
            stride: m.stride,
            iters: m.iters,
            batch: m.batch,
            lr: m.lr,
            warmup_iters: m.warmup_iters,
            eval_every: m.eval_every,
            checkpoint_every: m.checkpoint_every,
            ..SegRecipe::paper(SegProtocol::Upernet)
        };
        assert_eq!(m, same);
        assert_eq!((m.crop, m.test_scale, m.stride), (32, (128, 32), 21));
        // DINOv2's linear head.
        let l = SegRecipe::paper(SegProtocol::Linear);
        assert_eq!(
            (l.iters, l.lr, l.weight_decay, l.layer_decay),
            (40_000, 1e-3, 1e-4, 1.0)
        );
        assert_eq!((l.crop, l.batch, l.warmup_iters), (512, 16, 1500));
        // Overrides and validation.
        let o = SegOverrides {
            iters: Some(100),
            ..Default::default()
        };
        let r = SegRecipe::resolve("ade20k-paper", SegProtocol::Upernet, &o).unwrap();
        assert_eq!((r.iters, r.warmup_iters), (100, 100));
        let o = SegOverrides {
            batch: Some(1),
            ..Default::default()
        };
        assert!(SegRecipe::resolve("mini", SegProtocol::Upernet, &o).is_err());
        assert!(
            SegRecipe::resolve("nope", SegProtocol::Upernet, &SegOverrides::default()).is_err()
        );
    }

    #[test]
    fn set_overrides_any_recipe_field_and_names_unknown_ones() {
        let o = SegOverrides {
            set: vec![
                ("layer_decay".into(), "0.75".into()),
                ("resize_ratio".into(), "[1.0, 1.5]".into()),
                ("photometric".into(), "false".into()),
            ],
            ..Default::default()
        };
        let r = SegRecipe::resolve("mini", SegProtocol::Upernet, &o).unwrap();
        assert_eq!(r.layer_decay, 0.75);
        assert_eq!(r.resize_ratio, (1.0, 1.5));
        assert!(!r.photometric);
        let o = SegOverrides {
            set: vec![("layer_dekay".into(), "0.75".into())],
            ..Default::default()
        };
        let e = SegRecipe::resolve("mini", SegProtocol::Upernet, &o).unwrap_err();
        assert!(e.to_string().contains("layer_dekay") && e.to_string().contains("layer_decay"));
        let o = SegOverrides {
            set: vec![("resize_ratio".into(), "[2.0, 1.0]".into())],
            ..Default::default()
        };
        assert!(SegRecipe::resolve("mini", SegProtocol::Upernet, &o).is_err());
        let o = SegOverrides {
            set: vec![("iters".into(), "many".into())],
            ..Default::default()
        };
        assert!(SegRecipe::resolve("mini", SegProtocol::Upernet, &o).is_err());
    }

    #[test]
    fn uniform_guess_by_hand() {
        // Balanced: 1/(2K − 1).
        assert!((uniform_guess_miou(&[10, 10, 10, 10]) - 1.0 / 7.0).abs() < 1e-12);
        // K = 2, L = (3, 1), T = 4: IoU_0 = 1.5/(3 + 2 − 1.5) = 3/7, IoU_1 = 0.5/(1 + 2 − 0.5) = 1/5.
        let want = (3.0 / 7.0 + 0.2) / 2.0;
        assert!((uniform_guess_miou(&[3, 1]) - want).abs() < 1e-12);
        assert!(uniform_guess_miou(&[0, 0]).is_nan());
    }

    #[test]
    fn sampler_is_a_permutation_per_pass() {
        let n = 7;
        let pass0: Vec<usize> = (0..n as u64).map(|k| sample_index(3, n, k)).collect();
        let mut sorted = pass0.clone();
        sorted.sort();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        let pass1: Vec<usize> = (n as u64..2 * n as u64)
            .map(|k| sample_index(3, n, k))
            .collect();
        assert_ne!(pass0, pass1, "each pass draws its own order");
        // Batches straddling a pass boundary read the same samples.
        let b: Vec<usize> = (0..5).flat_map(|it| batch_indices(3, n, 3, it)).collect();
        let k: Vec<usize> = (0..15).map(|k| sample_index(3, n, k)).collect();
        assert_eq!(b, k);
    }
}

#[cfg(test)]
mod learning {
    use super::*;

    /// The bench runs the protocol's own training iteration: the timed iterations are counted,
    /// the loss starts near 1.4 · ln(classes) and the trainable parameters are all there.
    #[test]
    fn bench_times_the_training_iteration() {
        let r = bench_upernet_iteration("test", Some(2), 3, 1, &Device::flex()).unwrap();
        assert_eq!((r.ms.len(), r.batch, r.crop), (3, 2, 16));
        assert!(r.ms.iter().all(|&m| m > 0.0), "{:?}", r.ms);
        assert!(r.loss.is_finite() && r.loss > 0.5 && r.loss < 1.4 * 8f64.ln() + 1.0);
        assert!(bench_upernet_iteration("no-such", None, 1, 0, &Device::flex()).is_err());
    }

    /// The training step learns: on one fixed batch, 30 UperNet updates at lr 1e-2 at least
    /// halve the loss (main + 0.4 auxiliary CE).
    #[test]
    fn upernet_overfits_one_batch() {
        let dev = Device::flex();
        let ad = dev.clone().autodiff();
        let recipe = SegRecipe::test(SegProtocol::Upernet);
        let cfg = CaeConfig::preset("test").unwrap();
        let enc = cae_pretrain::encoder_file::random_encoder(&cfg, 0, &dev);
        let mut model = SegModel::build(&recipe, enc, 0, &ad).unwrap();
        let mut opt = model.optimizer(&recipe);
        let c = recipe.crop;
        let imgs: Vec<Vec<f32>> = (0..4)
            .map(|b| {
                (0..3 * c * c)
                    .map(|i| (((i * 7 + b * 13) % 17) as f32 / 17.0) - 0.5)
                    .collect()
            })
            .collect();
        let labels: Vec<u8> = (0..4 * c * c).map(|i| ((i / 5) % 3) as u8).collect();
        let mut losses = Vec::new();
        for it in 0..30 {
            let images = images_tensor(imgs.clone(), [c, c], &ad);
            let l = cae_heads::segmentation::label_tensor(&labels, [4, c, c], 8, 255, &ad).unwrap();
            let mut ctx = ForwardCtx::train(salted_step_rng(0, 1, it));
            let (m, loss) = model
                .train_step(images, l, &mut ctx, &mut opt, 1e-2)
                .unwrap();
            model = m;
            losses.push(loss);
        }
        // At initialisation the logits are ~0: 1.4 · ln 8 (main + 0.4 aux).
        assert!((losses[0] - 1.4 * 8f64.ln()).abs() < 0.3, "{losses:?}");
        assert!(losses[29] < 0.5 * losses[0], "{losses:?}");
    }
}
