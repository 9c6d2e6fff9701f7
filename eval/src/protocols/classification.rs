//! Running a protocol end to end: [`run_probe`] takes a [`ProbeRequest`] (encoder, data,
//! protocol, seed, overrides), resolves a [`ProbeConfig`] from the protocol's defaults, runs it,
//! writes `OUT/record.json` through [`cae_reports::record`] when given an output folder, and
//! returns a [`ProbeOutcome`].
//!
//! # Defaults
//!
//! [`Recipe::Paper`] is the official recipe (cae.md §5a, protocols.md §4); [`Recipe::Small`]
//! scales it down for CPU runs on small data. [`Recipe::Auto`] picks `paper` for encoders of
//! 224 px or more and `small` below.
//!
//! | protocol | paper | small |
//! |---|---|---|
//! | linear | cls, BN + Linear, LARS blr 0.1 (lr = blr·batch/256 = 6.4 at 16384), 90 ep, 10 warmup, fresh RRC+flip every epoch | cls, 100 ep on cached features, batch 128, lr 6.4, 10 warmup |
//! | attentive | Nesterov SGD lr 0.4, batch 8192, 90 ep, 10 warmup, min lr 1e-6, fresh augmentation | 30 ep on cached tokens, batch 128, lr 0.4, 3 warmup |
//! | knn | k 20, T 0.07, cls, features once | same |
//! | finetune | mean + fc_norm, AdamW lr 8e-3 @ 4096, layer decay 0.65, wd 0.05, drop path 0.1, smoothing 0.1, 100 ep / 5 warmup (ViT-L: lr 2e-3, decay 0.75, drop path 0.2, 50 ep) | 30 ep, batch 16, lr 2e-3, 3 warmup, layer decay 0.65, drop path 0.1 |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use cae_datasets::{Loader, ProbeEvalTransform, ProbeTrainTransform};
use cae_pretrain::CaeConfig;
use cae_pretrain::config::EncoderConfig;
use cae_pretrain::model::{ForwardCtx, VisionTransformerEncoder};
use cae_pretrain::train::salted_step_rng;
use cae_reports::record::{
    DatasetInfo, EncoderInfo, EpochMetrics, MachineInfo, PerImage, ProtocolInfo, RecordWriter,
    RunRecord,
};
use serde::{Deserialize, Serialize};

use cae_heads::HeadsError;
use cae_heads::classification::attentive::{ATTENTIVE_BN_EPS, AttentiveProbe};
use cae_heads::data::{Splits, label_subset};
use cae_heads::error::to_vec;

use super::error::{ProtocolError, Result};
use cae_heads::classification::features::{
    AugmentedFeed, FeatureKind, FeatureSet, FeatureSpec, Pooling, check_layer, extract_eval,
    images_tensor,
};
use cae_heads::classification::finetune::{FinetuneBuild, FinetuneModel, accumulate};
use cae_heads::classification::knn::{KnnConfig, knn_accuracy};
use cae_heads::classification::linear::LinearProbe;
use cae_heads::classification::train_head::{
    EpochResult, HeadTraining, LrSchedule, TrainFeed, train_head,
};
use cae_heads::metrics::TopK;
use cae_heads::optim::{Optimizer, Rule, layer_decay_group};
use cae_heads::schedule::{CosineSchedule, MaeSchedule};

/// The evaluation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// BatchNorm + Linear on frozen features, LARS.
    Linear,
    /// One cross-attention block on a learned query, BatchNorm + Linear, Nesterov SGD.
    Attentive,
    /// Weighted kNN on frozen features.
    Knn,
    /// End-to-end fine-tuning with layer-wise lr decay.
    Finetune,
}

impl Protocol {
    /// `linear`, `attentive`, `knn`, `finetune`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Attentive => "attentive",
            Self::Knn => "knn",
            Self::Finetune => "finetune",
        }
    }
}

/// Which set of defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Recipe {
    /// `paper` for encoders of 224 px or more, else `small`.
    #[default]
    Auto,
    /// Scaled down for CPU runs on small data.
    Small,
    /// The official recipe.
    Paper,
}

/// A fully resolved protocol configuration (written into the record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// The protocol.
    pub protocol: Protocol,
    /// The defaults it started from (`small` or `paper`).
    pub recipe: Recipe,
    /// Feature pooling (linear, kNN, fine-tuning; the attentive probe takes all tokens).
    pub pooling: Pooling,
    /// Probed block (0-based); `None` = after the final LayerNorm.
    pub layer: Option<usize>,
    /// Epochs (0 for kNN).
    pub epochs: u64,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Peak learning rate actually used.
    pub lr: f64,
    /// How `lr` was obtained.
    pub lr_rule: String,
    /// Final learning rate of the cosine.
    pub min_lr: f64,
    /// Warmup epochs.
    pub warmup_epochs: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Momentum (LARS, SGD).
    pub momentum: f64,
    /// Features extracted once without augmentation (else fresh augmentation every epoch).
    pub cache_features: bool,
    /// The run's seed (head init, order, augmentation, drop path; the random encoder).
    pub seed: u64,
    /// Fraction of the training labels used.
    pub label_fraction: f64,
    /// Seed of the label subset (fixed across runs).
    pub label_subset_seed: u64,
    /// kNN settings.
    pub knn: KnnConfig,
    /// Layer-wise lr decay (fine-tuning).
    pub layer_decay: f64,
    /// Stochastic depth (fine-tuning).
    pub drop_path: f64,
    /// Label smoothing (fine-tuning).
    pub label_smoothing: f64,
    /// Learned per-block relative position tables added for fine-tuning.
    pub rel_pos_bias: bool,
    /// Images per forward/backward within a step (fine-tuning; gradients are accumulated).
    pub micro_batch: usize,
    /// Evaluate every this many epochs (and always after the last).
    pub eval_every: u64,
}

/// Settings that replace a protocol's defaults (`None` keeps the default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeOverrides {
    /// Defaults to start from.
    pub recipe: Recipe,
    /// Pooling.
    pub pooling: Option<Pooling>,
    /// Probed block.
    pub layer: Option<usize>,
    /// Epochs.
    pub epochs: Option<u64>,
    /// Batch size.
    pub batch_size: Option<usize>,
    /// Absolute peak learning rate.
    pub lr: Option<f64>,
    /// Base learning rate per 256 images (`lr = blr × batch / 256`).
    pub blr: Option<f64>,
    /// Final learning rate.
    pub min_lr: Option<f64>,
    /// Warmup epochs.
    pub warmup_epochs: Option<f64>,
    /// Weight decay.
    pub weight_decay: Option<f64>,
    /// Cache features (`Some(false)`: fresh augmentation every epoch).
    pub cache_features: Option<bool>,
    /// Fraction of the training labels.
    pub label_fraction: Option<f64>,
    /// Seed of the label subset.
    pub label_subset_seed: Option<u64>,
    /// kNN neighbours.
    pub knn_k: Option<usize>,
    /// kNN temperature.
    pub knn_temperature: Option<f64>,
    /// Layer-wise lr decay.
    pub layer_decay: Option<f64>,
    /// Stochastic depth.
    pub drop_path: Option<f64>,
    /// Label smoothing.
    pub label_smoothing: Option<f64>,
    /// Add per-block relative position tables when fine-tuning.
    pub rel_pos_bias: Option<bool>,
    /// Fine-tuning micro-batch.
    pub micro_batch: Option<usize>,
    /// Evaluate every this many epochs.
    pub eval_every: Option<u64>,
}

/// One protocol's defaults under one recipe (the table in the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecipeDefaults {
    /// Epochs.
    pub epochs: u64,
    /// Images per optimizer step.
    pub batch: usize,
    /// The learning rate, absolute or by the linear scaling rule.
    pub lr: LrDefault,
    /// Warmup epochs.
    pub warmup_epochs: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Momentum (SGD / LARS).
    pub momentum: f64,
    /// Train on features extracted once (no augmentation).
    pub cache_features: bool,
}

impl RecipeDefaults {
    /// MAE's linear probe (`main_linprobe.py`): LARS blr 0.1 at batch 16384, 90 epochs.
    pub const LINEAR_PAPER: Self = Self {
        epochs: 90,
        batch: 16384,
        lr: LrDefault::Base(0.1),
        warmup_epochs: 10.0,
        min_lr: 0.0,
        weight_decay: 0.0,
        momentum: 0.9,
        cache_features: false,
    };
    /// The linear probe scaled to a CPU: cached features, batch 128.
    pub const LINEAR_SMALL: Self = Self {
        epochs: 100,
        batch: 128,
        lr: LrDefault::Absolute(6.4),
        cache_features: true,
        ..Self::LINEAR_PAPER
    };
    /// CAE's attentive probe: Nesterov SGD lr 0.4 at batch 8192, 90 epochs.
    pub const ATTENTIVE_PAPER: Self = Self {
        epochs: 90,
        batch: 8192,
        lr: LrDefault::Absolute(0.4),
        warmup_epochs: 10.0,
        min_lr: 1e-6,
        weight_decay: 0.0,
        momentum: 0.9,
        cache_features: false,
    };
    /// The attentive probe scaled to a CPU: cached tokens, batch 128, 30 epochs.
    pub const ATTENTIVE_SMALL: Self = Self {
        epochs: 30,
        batch: 128,
        warmup_epochs: 3.0,
        cache_features: true,
        ..Self::ATTENTIVE_PAPER
    };
    /// kNN trains nothing: features once.
    pub const KNN: Self = Self {
        epochs: 0,
        batch: 256,
        lr: LrDefault::Absolute(0.0),
        warmup_epochs: 0.0,
        min_lr: 0.0,
        weight_decay: 0.0,
        momentum: 0.0,
        cache_features: true,
    };
    /// CAE's ViT-B fine-tune: AdamW lr 8e-3 at batch 4096, 100 epochs.
    pub const FINETUNE_PAPER: Self = Self {
        epochs: 100,
        batch: 4096,
        lr: LrDefault::Absolute(8e-3),
        warmup_epochs: 5.0,
        min_lr: 1e-6,
        weight_decay: 0.05,
        momentum: 0.0,
        cache_features: false,
    };
    /// CAE's ViT-L fine-tune: lr 2e-3, 50 epochs.
    pub const FINETUNE_PAPER_LARGE: Self = Self {
        epochs: 50,
        lr: LrDefault::Absolute(2e-3),
        ..Self::FINETUNE_PAPER
    };
    /// The fine-tune scaled to a CPU: batch 16, 30 epochs.
    pub const FINETUNE_SMALL: Self = Self {
        epochs: 30,
        batch: 16,
        lr: LrDefault::Absolute(2e-3),
        warmup_epochs: 3.0,
        ..Self::FINETUNE_PAPER
    };

    /// The defaults of `protocol` under the paper recipe (`paper`) or the small one, for a
    /// ViT-L-deep encoder (`large`) or not.
    pub fn of(protocol: Protocol, paper: bool, large: bool) -> Self {
        match (protocol, paper) {
            (Protocol::Linear, true) => Self::LINEAR_PAPER,
            (Protocol::Linear, false) => Self::LINEAR_SMALL,
            (Protocol::Attentive, true) => Self::ATTENTIVE_PAPER,
            (Protocol::Attentive, false) => Self::ATTENTIVE_SMALL,
            (Protocol::Knn, _) => Self::KNN,
            (Protocol::Finetune, true) if large => Self::FINETUNE_PAPER_LARGE,
            (Protocol::Finetune, true) => Self::FINETUNE_PAPER,
            (Protocol::Finetune, false) => Self::FINETUNE_SMALL,
        }
    }
}

/// How the learning rate of a recipe is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrDefault {
    /// A base lr: `lr = blr × batch / 256`.
    Base(f64),
    /// An absolute value.
    Absolute(f64),
}

impl ProbeConfig {
    /// The protocol's defaults for `recipe` and an encoder, with `o` applied.
    pub fn resolve(
        protocol: Protocol,
        seed: u64,
        encoder: &EncoderConfig,
        o: &ProbeOverrides,
    ) -> Result<Self> {
        let recipe = match o.recipe {
            Recipe::Auto if encoder.img_size >= 224 => Recipe::Paper,
            Recipe::Auto => Recipe::Small,
            r => r,
        };
        let paper = recipe == Recipe::Paper;
        let large = encoder.depth >= 24;
        let RecipeDefaults {
            epochs,
            batch,
            lr,
            warmup_epochs: warmup,
            min_lr,
            weight_decay: wd,
            momentum,
            cache_features: cache,
        } = RecipeDefaults::of(protocol, paper, large);
        let batch = o.batch_size.unwrap_or(batch);
        let (lr, lr_rule) = match (o.lr, o.blr, lr) {
            (Some(lr), _, _) => (lr, format!("lr = {lr} (given)")),
            (None, Some(blr), _) | (None, None, LrDefault::Base(blr)) => {
                let lr = blr * batch as f64 / 256.0;
                (lr, format!("lr = blr {blr} × batch {batch} / 256 = {lr}"))
            }
            (None, None, LrDefault::Absolute(lr)) => {
                (lr, format!("lr = {lr} ({} default)", recipe_name(recipe)))
            }
        };
        let default_pool = match protocol {
            Protocol::Finetune => Pooling::Mean,
            _ => Pooling::Cls,
        };
        let cfg = Self {
            protocol,
            recipe,
            pooling: o.pooling.unwrap_or(default_pool),
            layer: o.layer,
            epochs: o.epochs.unwrap_or(epochs),
            batch_size: batch,
            lr,
            lr_rule,
            min_lr: o.min_lr.unwrap_or(min_lr),
            // Fewer epochs than the recipe's keep its warmup fraction.
            warmup_epochs: o.warmup_epochs.unwrap_or(match o.epochs {
                Some(e) if epochs > 0 && e < epochs => warmup * e as f64 / epochs as f64,
                _ => warmup,
            }),
            weight_decay: o.weight_decay.unwrap_or(wd),
            momentum,
            cache_features: o.cache_features.unwrap_or(cache),
            seed,
            label_fraction: o.label_fraction.unwrap_or(1.0),
            label_subset_seed: o.label_subset_seed.unwrap_or(0),
            knn: KnnConfig {
                k: o.knn_k.unwrap_or(20),
                temperature: o.knn_temperature.unwrap_or(0.07),
            },
            layer_decay: o.layer_decay.unwrap_or(if large { 0.75 } else { 0.65 }),
            drop_path: o.drop_path.unwrap_or(if large { 0.2 } else { 0.1 }),
            label_smoothing: o.label_smoothing.unwrap_or(0.1),
            rel_pos_bias: o.rel_pos_bias.unwrap_or(true),
            micro_batch: o.micro_batch.unwrap_or(64),
            eval_every: o.eval_every.unwrap_or(1),
        };
        cfg.validate(encoder)?;
        Ok(cfg)
    }

    /// Checks the settings against each other and the encoder.
    pub fn validate(&self, encoder: &EncoderConfig) -> Result<()> {
        let bad = |m: String| Err(ProtocolError::Config(m));
        check_layer(self.layer, encoder.depth)?;
        if self.protocol != Protocol::Knn && self.epochs == 0 {
            return bad(format!("{} needs at least one epoch", self.protocol.name()));
        }
        if self.eval_every == 0 {
            return bad("--eval-every must be at least 1".into());
        }
        if self.batch_size < 2 {
            return bad(format!(
                "batch size {} is too small (BatchNorm and the loaders need at least 2)",
                self.batch_size
            ));
        }
        if !(self.label_fraction > 0.0 && self.label_fraction <= 1.0) {
            return bad(format!(
                "--label-fraction must be in (0, 1], got {}",
                self.label_fraction
            ));
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(format!(
                "learning rate {} is not a finite, non-negative number",
                self.lr
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return bad(format!("drop path {} is not in [0, 1)", self.drop_path));
        }
        if !(self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            return bad(format!("layer decay {} is not in (0, 1]", self.layer_decay));
        }
        if self.warmup_epochs < 0.0 || (self.epochs > 0 && self.warmup_epochs > self.epochs as f64)
        {
            return bad(format!(
                "{} warmup epochs for {} epochs",
                self.warmup_epochs, self.epochs
            ));
        }
        match self.protocol {
            Protocol::Finetune if self.pooling == Pooling::ClsMean => {
                bad("fine-tuning pools `mean` (official) or `cls`, not `cls+mean`".into())
            }
            Protocol::Finetune if self.layer.is_some() => {
                bad("fine-tuning trains the whole encoder; --layer applies to frozen probes".into())
            }
            Protocol::Finetune if self.micro_batch == 0 => bad("micro-batch must be ≥ 1".into()),
            Protocol::Knn if !self.cache_features => {
                bad("kNN extracts features once (no per-epoch augmentation)".into())
            }
            Protocol::Knn if self.knn.k == 0 || self.knn.temperature <= 0.0 => bad(format!(
                "kNN needs k ≥ 1 and T > 0, got k = {}, T = {}",
                self.knn.k, self.knn.temperature
            )),
            _ => Ok(()),
        }
    }

    /// Every setting that can change the run's number and is not a column of its own in a
    /// leaderboard (pooling, layer, epochs, batch, lr, cached features and label fraction are),
    /// except the seed: what the record's `protocol.settings` holds and leaderboards group by.
    /// `train_images` bounds kNN's k (the k actually used is recorded).
    pub fn settings(&self, train_images: usize) -> BTreeMap<String, serde_json::Value> {
        use serde_json::json;
        let mut s = BTreeMap::new();
        let mut put = |k: &str, v: serde_json::Value| {
            s.insert(k.to_string(), v);
        };
        put("label_subset_seed", json!(self.label_subset_seed));
        match self.protocol {
            Protocol::Knn => {
                put("k", json!(self.knn.k.min(train_images)));
                put("temperature", json!(self.knn.temperature));
            }
            _ => {
                put("recipe", json!(recipe_name(self.recipe)));
                put("min_lr", json!(self.min_lr));
                put("warmup_epochs", json!(self.warmup_epochs));
                put("weight_decay", json!(self.weight_decay));
                put("eval_every", json!(self.eval_every));
            }
        }
        match self.protocol {
            Protocol::Linear | Protocol::Attentive => put("momentum", json!(self.momentum)),
            Protocol::Finetune => {
                put("layer_decay", json!(self.layer_decay));
                put("drop_path", json!(self.drop_path));
                put("label_smoothing", json!(self.label_smoothing));
                put("rel_pos_bias", json!(self.rel_pos_bias));
                put("micro_batch", json!(self.micro_batch));
            }
            Protocol::Knn => {}
        }
        s
    }

    /// What the run's seed draws (the record's `protocol.seed_varies`): the encoder when it is a
    /// random initialisation, and whatever the protocol draws. Empty = nothing: kNN on an encoder
    /// file is a deterministic function of the encoder and the settings.
    pub fn seed_draws(&self, random_encoder: bool) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        if random_encoder {
            v.push("encoder init".into());
        }
        match self.protocol {
            Protocol::Knn => {}
            Protocol::Linear | Protocol::Attentive => {
                v.push("head init".into());
                v.push("batch order".into());
                if !self.cache_features {
                    v.push("augmentation".into());
                }
            }
            Protocol::Finetune => {
                v.extend(
                    ["head init", "batch order", "augmentation", "drop path"].map(String::from),
                );
            }
        }
        v
    }

    /// The optimizer's name, for records.
    pub fn optimizer_name(&self) -> &'static str {
        match self.protocol {
            Protocol::Linear => "lars",
            Protocol::Attentive => "sgd-nesterov",
            Protocol::Knn => "none",
            Protocol::Finetune => "adamw-layer-decay",
        }
    }
}

fn recipe_name(r: Recipe) -> &'static str {
    match r {
        Recipe::Auto => "auto",
        Recipe::Small => "small",
        Recipe::Paper => "paper",
    }
}

pub use super::encoder::EncoderSource;

/// Everything [`run_probe`] needs.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    /// The encoder.
    pub encoder: EncoderSource,
    /// Preset for a random encoder or a file without a `config` (ignored otherwise).
    pub preset: Option<String>,
    /// Folder holding `train/` and `val/`.
    pub data: PathBuf,
    /// The protocol.
    pub protocol: Protocol,
    /// The seed.
    pub seed: u64,
    /// Changes to the defaults.
    pub overrides: ProbeOverrides,
    /// Run folder for `record.json` (none: no record).
    pub out: Option<PathBuf>,
    /// Device (`cpu`, `cuda:0`, …).
    pub device: String,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// The command line, for the record.
    pub command: Vec<String>,
    /// Worker threads, for the record.
    pub threads: Option<usize>,
    /// The encoder's label in records and tables [default: `random-init-<preset>`, or the
    /// file's stem].
    pub label: Option<String>,
    /// The data folder's fingerprint (`cae_datasets::fingerprint_dir`), when the caller has it
    /// already; otherwise it is taken when the record is written.
    pub data_fingerprint: Option<String>,
    /// The caller's identity of this request, written into the record (see
    /// `RunRecord::request_key`).
    pub request_key: Option<String>,
    /// Fine-tuning: write the fine-tuned model (encoder, `fc_norm`, head) to
    /// `OUT/finetuned.safetensors` at the end (needs `out`).
    pub save_model: bool,
}

impl ProbeRequest {
    /// A request with the defaults: no record, CPU, no progress bar.
    pub fn new(encoder: EncoderSource, data: impl Into<PathBuf>, protocol: Protocol) -> Self {
        Self {
            encoder,
            preset: None,
            data: data.into(),
            protocol,
            seed: 0,
            overrides: ProbeOverrides::default(),
            out: None,
            device: "cpu".into(),
            progress: false,
            command: Vec::new(),
            threads: None,
            label: None,
            data_fingerprint: None,
            request_key: None,
            save_model: false,
        }
    }
}

/// What a run gave.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeOutcome {
    /// The protocol.
    pub protocol: Protocol,
    /// Top-1 of the last epoch, percent.
    pub top1: f64,
    /// Top-5 of the last epoch, percent.
    pub top5: f64,
    /// Best top-1 over the epochs, percent.
    pub best_top1: f64,
    /// The epoch of the best top-1.
    pub best_epoch: u64,
    /// Epochs trained (0 for kNN).
    pub epochs: u64,
    /// The seed.
    pub seed: u64,
    /// Every epoch.
    pub per_epoch: Vec<EpochResult>,
    /// The resolved configuration.
    pub config: ProbeConfig,
    /// The encoder measured.
    pub encoder: EncoderInfo,
    /// Training images used (after the label subset).
    pub train_images: usize,
    /// Validation images.
    pub val_images: usize,
    /// Classes.
    pub classes: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The record written, if any.
    pub record: Option<PathBuf>,
}

/// The encoder of a request, its config and its description
/// ([`super::encoder::resolve_encoder`] with the request's preset, label and seed).
pub fn resolve_encoder(
    req: &ProbeRequest,
    device: &Device,
) -> Result<(VisionTransformerEncoder, CaeConfig, EncoderInfo)> {
    super::encoder::resolve_encoder(
        &req.encoder,
        req.preset.as_deref(),
        req.label.as_deref(),
        req.seed,
        device,
    )
}

/// Runs a protocol (see the module docs). With `req.out` the record is written at the start,
/// after every epoch and at the end (`complete`), or marked `failed` with the error.
pub fn run_probe(req: &ProbeRequest) -> Result<ProbeOutcome> {
    let started = Instant::now();
    let device = cae_pretrain::device::parse_device(&req.device)?;
    let (encoder, model_cfg, encoder_info) = resolve_encoder(req, &device)?;
    let enc_cfg = model_cfg.encoder.clone();
    let cfg = ProbeConfig::resolve(req.protocol, req.seed, &enc_cfg, &req.overrides)?;
    let splits = Splits::open(&req.data)?;
    let subset = label_subset(
        &splits
            .train
            .samples
            .iter()
            .map(|(_, l)| *l)
            .collect::<Vec<_>>(),
        cfg.label_fraction,
        cfg.label_subset_seed,
    );
    let classes = splits.num_classes();
    let mut cfg = cfg;
    if cfg.batch_size > subset.len() {
        tracing::warn!(
            "batch {} is larger than the {} training images; using {}",
            cfg.batch_size,
            subset.len(),
            subset.len()
        );
        cfg.batch_size = subset.len();
        cfg.validate(&enc_cfg)?;
    }
    let mut writer = match &req.out {
        Some(_) => Some(start_record(
            req,
            &cfg,
            &model_cfg,
            &encoder_info,
            &splits,
            subset.len(),
        )?),
        None => None,
    };
    let result = run_resolved(
        req,
        &cfg,
        encoder,
        &enc_cfg,
        &splits,
        &subset,
        &device,
        &mut writer,
    );
    match result {
        Ok(per_epoch) => {
            let last = per_epoch
                .last()
                .cloned()
                .ok_or_else(|| ProtocolError::Config("the run produced no evaluation".into()))?;
            let best = per_epoch
                .iter()
                .fold(&last, |b, e| if e.top1 > b.top1 { e } else { b })
                .clone();
            let record = match writer {
                Some(mut w) => {
                    let path = w.path().to_path_buf();
                    w.record.per_image = Some(PerImage::top1("val", &last.correct));
                    w.complete(BTreeMap::from([
                        ("top1".to_string(), last.top1),
                        ("top5".to_string(), last.top5),
                        ("best_top1".to_string(), best.top1),
                        ("best_epoch".to_string(), best.epoch as f64),
                    ]))?;
                    Some(path)
                }
                None => None,
            };
            Ok(ProbeOutcome {
                protocol: cfg.protocol,
                top1: last.top1,
                top5: last.top5,
                best_top1: best.top1,
                best_epoch: best.epoch,
                epochs: cfg.epochs,
                seed: cfg.seed,
                per_epoch,
                config: cfg,
                encoder: encoder_info,
                train_images: subset.len(),
                val_images: splits.val.len(),
                classes,
                seconds: started.elapsed().as_secs_f64(),
                record,
            })
        }
        Err(e) => {
            if let Some(w) = writer {
                // The run's error matters more than a failure to record it.
                let _ = w.fail(&e.to_string());
            }
            Err(e)
        }
    }
}

fn start_record(
    req: &ProbeRequest,
    cfg: &ProbeConfig,
    model_cfg: &CaeConfig,
    encoder: &EncoderInfo,
    splits: &Splits,
    train_images: usize,
) -> Result<RecordWriter> {
    let out = req.out.as_ref().expect("called with an output folder");
    let pooling = match cfg.protocol {
        Protocol::Attentive => "attentive (all tokens)".to_string(),
        _ => cfg.pooling.name().to_string(),
    };
    let mut details: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut put = |k: &str, v: serde_json::Value| {
        details.insert(k.to_string(), v);
    };
    put("recipe", serde_json::json!(recipe_name(cfg.recipe)));
    put("warmup_epochs", serde_json::json!(cfg.warmup_epochs));
    put("min_lr", serde_json::json!(cfg.min_lr));
    put("weight_decay", serde_json::json!(cfg.weight_decay));
    put(
        "train_augmentation",
        serde_json::json!(match (cfg.protocol, cfg.cache_features) {
            (Protocol::Knn, _) | (_, true) =>
                "none: features extracted once (resize + center crop)",
            _ => "RandomResizedCrop(0.08-1, bicubic) + flip, fresh every epoch",
        }),
    );
    put(
        "eval_transform",
        serde_json::json!("resize(size/0.875, bicubic) + center crop"),
    );
    put(
        "label_subset_seed",
        serde_json::json!(cfg.label_subset_seed),
    );
    put(
        "features",
        serde_json::json!(match cfg.layer {
            None => "after the final LayerNorm".to_string(),
            Some(l) => format!("raw output of block {l} (0-based, no final norm)"),
        }),
    );
    match cfg.protocol {
        Protocol::Linear | Protocol::Attentive => {
            put("momentum", serde_json::json!(cfg.momentum));
            put("batchnorm_eval", serde_json::json!("running statistics"));
            if cfg.protocol == Protocol::Linear {
                put("lars_trust", serde_json::json!(0.001));
            }
        }
        Protocol::Knn => {
            put("k", serde_json::json!(cfg.knn.k.min(train_images)));
            put("temperature", serde_json::json!(cfg.knn.temperature));
        }
        Protocol::Finetune => {
            put("layer_decay", serde_json::json!(cfg.layer_decay));
            put("drop_path", serde_json::json!(cfg.drop_path));
            put("label_smoothing", serde_json::json!(cfg.label_smoothing));
            put("rel_pos_bias_added", serde_json::json!(cfg.rel_pos_bias));
            put("micro_batch", serde_json::json!(cfg.micro_batch));
            put(
                "not_reproduced",
                serde_json::json!("RandAugment, random erasing, mixup/cutmix"),
            );
        }
    }
    let protocol = ProtocolInfo {
        name: cfg.protocol.name().into(),
        pooling: Some(pooling),
        layer: cfg.layer,
        epochs: Some(cfg.epochs),
        effective_batch: (cfg.protocol != Protocol::Knn).then_some(cfg.batch_size),
        lr: (cfg.protocol != Protocol::Knn).then_some(cfg.lr),
        lr_rule: (cfg.protocol != Protocol::Knn).then(|| cfg.lr_rule.clone()),
        optimizer: Some(cfg.optimizer_name().into()),
        cached_features: Some(cfg.protocol == Protocol::Knn || cfg.cache_features),
        label_fraction: Some(cfg.label_fraction),
        details,
        settings: cfg.settings(train_images),
        seed_varies: Some(cfg.seed_draws(matches!(req.encoder, EncoderSource::Random))),
    };
    let config = serde_json::json!({
        "probe": cfg,
        "model": model_cfg,
        "data": req.data.display().to_string(),
        "device": req.device,
    });
    let mut record = RunRecord::start(
        "linear-probe",
        req.command.clone(),
        config,
        cfg.seed,
        protocol,
        MachineInfo::current(&req.device, req.threads),
    );
    record.encoder = Some(encoder.clone());
    record.dataset = Some(DatasetInfo {
        path: req.data.display().to_string(),
        train_images: Some(train_images),
        val_images: Some(splits.val.len()),
        classes: Some(splits.num_classes()),
        fingerprint: Some(match &req.data_fingerprint {
            Some(f) => f.clone(),
            None => cae_datasets::fingerprint_dir(&req.data)?.to_string(),
        }),
    });
    record.request_key = req.request_key.clone();
    record
        .versions
        .insert("cae-heads".into(), env!("CARGO_PKG_VERSION").into());
    record
        .versions
        .insert("burn".into(), cae_pretrain::BURN_VERSION.into());
    Ok(RecordWriter::create(out, record)?)
}

/// Logs an epoch, adds it to the record, rewrites the record.
fn report_epoch(
    cfg: &ProbeConfig,
    r: &EpochResult,
    writer: &mut Option<RecordWriter>,
    per_epoch: &mut Vec<EpochResult>,
    pb: &indicatif::ProgressBar,
) -> Result<()> {
    let line = format!(
        "{} epoch {}/{}: top-1 {:.2}  top-5 {:.2}  loss {:.4}  lr {:.3e}",
        cfg.protocol.name(),
        r.epoch,
        cfg.epochs,
        r.top1,
        r.top5,
        r.loss,
        r.lr
    );
    // With a progress bar the epochs are logged between its redraws; without one (`--no-progress`,
    // `--json`, or runs inside a suite) they are debug lines (`-v`), the record has them all.
    if pb.is_hidden() {
        tracing::debug!("{line}");
    } else {
        pb.suspend(|| tracing::info!("{line}"));
    }
    pb.set_message(format!("top-1 {:.2}", r.top1));
    per_epoch.push(r.clone());
    if let Some(w) = writer {
        let mut metrics =
            BTreeMap::from([("top1".to_string(), r.top1), ("top5".to_string(), r.top5)]);
        if cfg.protocol != Protocol::Knn {
            metrics.insert("loss".into(), r.loss);
            metrics.insert("lr".into(), r.lr);
        }
        w.record.push_epoch(
            EpochMetrics {
                epoch: r.epoch,
                metrics,
            },
            "top1",
        );
        w.update()?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_resolved(
    req: &ProbeRequest,
    cfg: &ProbeConfig,
    encoder: VisionTransformerEncoder,
    enc_cfg: &EncoderConfig,
    splits: &Splits,
    subset: &[usize],
    device: &Device,
    writer: &mut Option<RecordWriter>,
) -> Result<Vec<EpochResult>> {
    let side = enc_cfg.img_size;
    let classes = splits.num_classes();
    let mut per_epoch = Vec::new();
    let all_val: Vec<usize> = (0..splits.val.len()).collect();
    let steps_per_epoch = subset.len() / cfg.batch_size;
    if cfg.protocol == Protocol::Finetune {
        return finetune(req, cfg, encoder, enc_cfg, splits, subset, device, writer);
    }
    let spec = FeatureSpec {
        kind: match cfg.protocol {
            Protocol::Attentive => FeatureKind::Tokens,
            _ => FeatureKind::Pooled(cfg.pooling),
        },
        layer: cfg.layer,
    };
    let cached = cfg.protocol == Protocol::Knn || cfg.cache_features;
    let extract_images = splits.val.len() + if cached { subset.len() } else { 0 };
    let train_steps = cfg.epochs * steps_per_epoch as u64;
    let pb = cae_pretrain::progress::bar(
        req.progress,
        extract_images as u64 + train_steps,
        0,
        "images+steps",
    );
    let mut tick = |n: usize| pb.inc(n as u64);
    // Features depend on the encoder, the images and the spec only: runs of the same encoder in
    // one process (seeds, kNN after the linear probe) share one extraction.
    let identity = encoder_identity(req, &format!("{enc_cfg:?}"));
    let key = |split: &str, idx: &[usize]| {
        identity.as_ref().map(|id| {
            format!(
                "{id}|{}|{split}|{}|{spec:?}|{side}|{device:?}",
                splits.root.display(),
                index_hash(idx)
            )
        })
    };
    let val = cached_features(key("val", &all_val), || {
        Ok(extract_eval(
            &encoder,
            &splits.val,
            &all_val,
            &spec,
            side,
            device,
            &mut tick,
        )?)
    })?;
    let train_cached = if cached {
        Some(cached_features(key("train", subset), || {
            Ok(extract_eval(
                &encoder,
                &splits.train,
                subset,
                &spec,
                side,
                device,
                &mut tick,
            )?)
        })?)
    } else {
        None
    };
    if cfg.protocol == Protocol::Knn {
        let train = train_cached.expect("kNN always caches");
        let acc: TopK = knn_accuracy(&train, &val, classes, &cfg.knn, device)?;
        pb.inc(extract_images as u64);
        let r = EpochResult {
            epoch: 1,
            top1: acc.top1_pct(),
            top5: acc.top5_pct(),
            loss: 0.0,
            lr: 0.0,
            correct: acc.correct,
        };
        report_epoch(cfg, &r, writer, &mut per_epoch, &pb)?;
        pb.finish_and_clear();
        return Ok(per_epoch);
    }
    let ad = device.clone().autodiff();
    let aug = AugmentedFeed {
        folder: splits.train.clone(),
        indices: Arc::new(subset.to_vec()),
        transform: ProbeTrainTransform::new(side as u32),
        seed: cfg.seed,
        side,
    };
    let feed = match &train_cached {
        Some(set) => TrainFeed::Cached(set.as_ref()),
        None => TrainFeed::Augmented {
            feed: &aug,
            encoder: &encoder,
            spec,
            device: device.clone(),
        },
    };
    let training = HeadTraining {
        eval_every: cfg.eval_every,
        epochs: cfg.epochs,
        batch: cfg.batch_size,
        seed: cfg.seed,
        schedule: match cfg.protocol {
            Protocol::Linear => LrSchedule::Mae(MaeSchedule {
                lr: cfg.lr,
                min_lr: cfg.min_lr,
                warmup_epochs: cfg.warmup_epochs,
                epochs: cfg.epochs as f64,
            }),
            _ => LrSchedule::Cosine(CosineSchedule {
                base: cfg.lr,
                min: cfg.min_lr,
                warmup: (cfg.warmup_epochs * steps_per_epoch as f64).round() as u64,
                total: cfg.epochs * steps_per_epoch as u64,
            }),
        },
        bn_eps: if cfg.protocol == Protocol::Linear {
            1e-6
        } else {
            ATTENTIVE_BN_EPS
        },
        steps_per_epoch,
    };
    // The record's errors stop training; the first one is returned as it is.
    let mut record_error: Option<ProtocolError> = None;
    let mut on_epoch = |r: &EpochResult| {
        report_epoch(cfg, r, writer, &mut per_epoch, &pb).map_err(|e| {
            let message = e.to_string();
            record_error.get_or_insert(e);
            HeadsError::Stopped(message)
        })
    };
    let mut step_tick = || pb.inc(1);
    let d = encoder.embed_dim();
    let trained = match cfg.protocol {
        Protocol::Linear => {
            let head = LinearProbe::new(val.shape[1], classes, cfg.seed, &ad);
            let mut opt = Optimizer::lars(cfg.momentum, 0.001, cfg.weight_decay);
            train_head(
                head,
                &mut opt,
                feed,
                &val,
                classes,
                &training,
                &mut on_epoch,
                &mut step_tick,
            )
            .map(|_| ())
        }
        Protocol::Attentive => {
            let heads = encoder.blocks[0].attn.num_heads;
            let head = AttentiveProbe::new(d, heads, classes, cfg.seed, &ad);
            let mut opt = Optimizer::sgd(cfg.momentum, true, cfg.weight_decay);
            train_head(
                head,
                &mut opt,
                feed,
                &val,
                classes,
                &training,
                &mut on_epoch,
                &mut step_tick,
            )
            .map(|_| ())
        }
        Protocol::Knn | Protocol::Finetune => unreachable!("handled above"),
    };
    if let Err(e) = trained {
        return Err(record_error.take().unwrap_or(ProtocolError::from(e)));
    }
    pb.finish_and_clear();
    Ok(per_epoch)
}

/// Features extracted in this process, most recently used last: (key, features).
type FeatureCache = std::sync::Mutex<Vec<(String, Arc<FeatureSet>)>>;

/// How many feature sets [`cached_features`] keeps (a `mini` world of 12,000 images is about
/// 6 MB per set).
const FEATURE_CACHE_SETS: usize = 8;

fn feature_cache() -> &'static FeatureCache {
    static CACHE: std::sync::OnceLock<FeatureCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// The features under `key` from this process's cache, or `extract`ed and kept (no key: not
/// cacheable, always extracted).
fn cached_features(
    key: Option<String>,
    extract: impl FnOnce() -> Result<FeatureSet>,
) -> Result<Arc<FeatureSet>> {
    let Some(key) = key else {
        return Ok(Arc::new(extract()?));
    };
    {
        let mut cache = feature_cache().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
            let hit = cache.remove(i);
            let set = hit.1.clone();
            cache.push(hit);
            tracing::debug!("features reused from this process: {key}");
            return Ok(set);
        }
    }
    let set = Arc::new(extract()?);
    let mut cache = feature_cache().lock().unwrap_or_else(|e| e.into_inner());
    cache.push((key, set.clone()));
    if cache.len() > FEATURE_CACHE_SETS {
        cache.remove(0);
    }
    Ok(set)
}

/// What fixes an encoder's weights: the file's checksum, or a random initialisation's preset and
/// seed (`None` when the file cannot be checksummed: no caching).
fn encoder_identity(req: &ProbeRequest, arch: &str) -> Option<String> {
    match &req.encoder {
        EncoderSource::File(path) => cae_reports::record::sha256_file(path)
            .ok()
            .map(|sha| format!("file:{sha}:{arch}")),
        EncoderSource::Random => Some(format!("random:{arch}:seed{}", req.seed)),
    }
}

/// FNV-1a over a list of indices (the identity of a subset in a cache key).
fn index_hash(idx: &[usize]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &i in idx {
        for b in (i as u64).to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{}:{h:016x}", idx.len())
}

/// Evaluates a fine-tuned model on the validation images.
fn evaluate_model(
    model: &FinetuneModel,
    splits: &Splits,
    side: usize,
    classes: usize,
    device: &Device,
) -> Result<TopK> {
    let model = model.valid();
    let tf = ProbeEvalTransform::new(side as u32);
    let folder = splits.val.clone();
    let loader = Loader::new(folder.len(), 128, 0, false, false, 2)?;
    let mut acc = TopK::default();
    for batch in loader.epoch(0, 0, move |i, _| {
        let (img, l) = folder.load(i)?;
        Ok::<_, cae_datasets::DatasetError>((tf.apply(&img), l))
    }) {
        let batch = batch?;
        let imgs: Vec<Vec<f32>> = batch.iter().map(|(x, _)| x.clone()).collect();
        let labels: Vec<usize> = batch.iter().map(|(_, l)| *l).collect();
        let logits = model.forward(images_tensor(&imgs, side, device), &mut ForwardCtx::eval());
        acc.update(&to_vec(logits)?, classes, &labels);
    }
    Ok(acc)
}

#[allow(clippy::too_many_arguments)]
fn finetune(
    req: &ProbeRequest,
    cfg: &ProbeConfig,
    encoder: VisionTransformerEncoder,
    enc_cfg: &EncoderConfig,
    splits: &Splits,
    subset: &[usize],
    device: &Device,
    writer: &mut Option<RecordWriter>,
) -> Result<Vec<EpochResult>> {
    let side = enc_cfg.img_size;
    let classes = splits.num_classes();
    let ad = device.clone().autodiff();
    // The encoder is fine-tuned: every parameter but the frozen sin-cos table trains.
    let encoder = cae_pretrain::train::on_autodiff(encoder, &ad);
    let mut model = FinetuneModel::new(
        encoder,
        &FinetuneBuild {
            pooling: cfg.pooling,
            drop_path: cfg.drop_path,
            rel_pos_bias: cfg.rel_pos_bias,
            init_scale: 0.001,
            classes,
            seed: cfg.seed,
            ln_eps: enc_cfg.layer_norm_eps,
        },
        &ad,
    );
    let depth = enc_cfg.depth;
    let (decay, wd) = (cfg.layer_decay, cfg.weight_decay);
    let mut opt = Optimizer::new(
        Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        Box::new(move |p, nd| layer_decay_group(p, nd, depth, decay, wd)),
    );
    if let Some(w) = writer.as_mut() {
        w.record.trainable = super::recipe::trainable_groups(&model, &opt);
        w.update()?;
    }
    let spe = subset.len() / cfg.batch_size;
    let schedule = CosineSchedule {
        base: cfg.lr,
        min: cfg.min_lr,
        warmup: (cfg.warmup_epochs * spe as f64).round() as u64,
        total: cfg.epochs * spe as u64,
    };
    let pb = cae_pretrain::progress::bar(req.progress, cfg.epochs * spe as u64, 0, "steps");
    let tf = ProbeTrainTransform::new(side as u32);
    let idx = Arc::new(subset.to_vec());
    let loader = Loader::new(subset.len(), cfg.batch_size, cfg.seed, true, true, 2)?;
    let mut per_epoch = Vec::new();
    let mut global = 0u64;
    for epoch in 0..cfg.epochs {
        let (folder, idx2, tf2) = (splits.train.clone(), idx.clone(), tf.clone());
        let batches = loader.epoch(epoch, 0, move |i, rng| {
            let (img, l) = folder.load(idx2[i])?;
            Ok::<_, cae_datasets::DatasetError>((tf2.apply(&img, rng), l))
        });
        let (mut loss_sum, mut lr, mut steps) = (0.0, 0.0, 0usize);
        for batch in batches {
            let batch = batch?;
            lr = schedule.at(global);
            let parts: Vec<(burn::tensor::Tensor<4>, Vec<usize>)> = batch
                .chunks(cfg.micro_batch)
                .map(|c| {
                    let imgs: Vec<Vec<f32>> = c.iter().map(|(x, _)| x.clone()).collect();
                    (
                        images_tensor(&imgs, side, &ad),
                        c.iter().map(|(_, l)| *l).collect(),
                    )
                })
                .collect();
            let mut ctx = ForwardCtx::train(salted_step_rng(cfg.seed, FINETUNE_STEP_SALT, global));
            let (grads, loss) = accumulate(&model, parts, cfg.label_smoothing, &mut ctx);
            global += 1;
            if !loss.is_finite() {
                pb.abandon();
                return Err(HeadsError::NonFinite {
                    epoch: epoch + 1,
                    step: global,
                    value: loss,
                }
                .into());
            }
            model = opt.step(model, grads, lr);
            loss_sum += loss;
            steps += 1;
            pb.inc(1);
        }
        if (epoch + 1) % cfg.eval_every != 0 && epoch + 1 != cfg.epochs {
            continue;
        }
        let acc = evaluate_model(&model, splits, side, classes, device)?;
        let r = EpochResult {
            epoch: epoch + 1,
            top1: acc.top1_pct(),
            top5: acc.top5_pct(),
            loss: loss_sum / steps.max(1) as f64,
            lr,
            correct: acc.correct,
        };
        report_epoch(cfg, &r, writer, &mut per_epoch, &pb)?;
    }
    pb.finish_and_clear();
    if req.save_model
        && let Some(out) = &req.out
    {
        let meta = std::collections::HashMap::from([(
            "format".to_string(),
            "cae-bench-finetuned-v1".to_string(),
        )]);
        cae_pretrain::weights::save_safetensors(&model, &out.join(FINETUNED_FILE), None, &meta)?;
    }
    Ok(per_epoch)
}

/// The fine-tuned model of `linear-probe --protocol finetune --save-model`, in the run folder.
pub const FINETUNED_FILE: &str = "finetuned.safetensors";

/// The salt of fine-tuning's per-step drop-path streams ([`salted_step_rng`]).
const FINETUNE_STEP_SALT: u64 = 0xd409_9a7f;

/// Reads a record's headline back (used by tests and the quickstart).
pub fn read_record(path: &Path) -> Result<RunRecord> {
    Ok(RunRecord::read(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(protocol: Protocol, seed: u64, o: &ProbeOverrides) -> ProbeConfig {
        let enc = CaeConfig::preset("test").unwrap().encoder;
        ProbeConfig::resolve(protocol, seed, &enc, o).unwrap()
    }

    #[test]
    fn settings_hold_what_changes_the_number_and_never_the_seed() {
        let ft = resolve(Protocol::Finetune, 0, &ProbeOverrides::default());
        let s = ft.settings(1000);
        for k in [
            "layer_decay",
            "drop_path",
            "label_smoothing",
            "weight_decay",
            "warmup_epochs",
            "min_lr",
            "micro_batch",
        ] {
            assert!(s.contains_key(k), "{k}: {s:?}");
        }
        assert!(!s.contains_key("seed"));
        // Another seed: the same settings; another drop path: different ones.
        assert_eq!(
            resolve(Protocol::Finetune, 7, &ProbeOverrides::default()).settings(1000),
            s
        );
        let o = ProbeOverrides {
            drop_path: Some(0.2),
            ..Default::default()
        };
        assert_ne!(resolve(Protocol::Finetune, 0, &o).settings(1000), s);
        // kNN: the k actually used, and T.
        let knn = resolve(Protocol::Knn, 0, &ProbeOverrides::default());
        let s = knn.settings(10);
        assert_eq!(s["k"], serde_json::json!(10));
        assert_eq!(s["temperature"], serde_json::json!(0.07));
    }

    #[test]
    fn what_the_seed_draws() {
        let knn = resolve(Protocol::Knn, 0, &ProbeOverrides::default());
        assert!(knn.seed_draws(false).is_empty());
        assert_eq!(knn.seed_draws(true), vec!["encoder init".to_string()]);
        let lin = resolve(Protocol::Linear, 0, &ProbeOverrides::default());
        assert_eq!(lin.seed_draws(false), vec!["head init", "batch order"]);
        let ft = resolve(Protocol::Finetune, 0, &ProbeOverrides::default());
        assert!(ft.seed_draws(true).contains(&"drop path".to_string()));
    }
}
