//! `cae-bench linear-probe`: linear / attentive probing, kNN and low-label fine-tuning of an
//! encoder, a thin shell over [`crate::protocols::classification::run_probe`].

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::protocols::classification::{
    EncoderSource, ProbeOutcome, ProbeOverrides, ProbeRequest, Protocol, Recipe, run_probe,
};
use cae_heads::Pooling;

/// `--protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// BatchNorm + Linear on frozen features, LARS (MAE / CAE).
    Linear,
    /// Cross-attention on a learned query + BatchNorm + Linear, Nesterov SGD (CAE).
    Attentive,
    /// Weighted kNN, k = 20, T = 0.07 (DINO).
    Knn,
    /// End-to-end fine-tuning with layer-wise lr decay (CAE), e.g. with --label-fraction 0.1.
    Finetune,
}

/// `--pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolArg {
    /// The cls token.
    Cls,
    /// The mean of the patch tokens.
    Mean,
    /// cls ++ mean (twice as wide).
    #[value(name = "cls+mean")]
    ClsMean,
}

/// `--recipe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecipeArg {
    /// `paper` for 224-px encoders and up, else `small`.
    Auto,
    /// Scaled-down CPU defaults.
    Small,
    /// The official recipe (90-epoch LARS at batch 16384, …).
    Paper,
}

/// `cae-bench linear-probe`.
#[derive(Debug, Args)]
pub struct LinearProbeArgs {
    /// Encoder file (from `pretrain` or `import`), `zoo:NAME` (`cae-bench zoo list`), or `random`
    /// for a fresh initialisation.
    #[arg(long)]
    pub encoder: String,
    /// Preset for `random`, or for a file without a `config` in its metadata.
    #[arg(long)]
    pub preset: Option<String>,
    /// Dataset folder holding `train/` and `val/` (ImageFolder splits).
    #[arg(long)]
    pub data: PathBuf,
    /// Protocol.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Linear)]
    pub protocol: ProtocolArg,
    /// Defaults: the official recipe or the scaled-down one.
    #[arg(long, value_enum, default_value_t = RecipeArg::Auto)]
    pub recipe: RecipeArg,
    /// Feature pooling [default: cls; mean for finetune].
    #[arg(long, value_enum)]
    pub pool: Option<PoolArg>,
    /// Probe the raw output of block L (0-based) instead of the final LayerNorm's (BEiT).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Images per optimizer step.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Absolute peak learning rate.
    #[arg(long, conflicts_with = "blr")]
    pub lr: Option<f64>,
    /// Base learning rate: lr = blr × batch / 256.
    #[arg(long)]
    pub blr: Option<f64>,
    /// Warmup epochs.
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Extract features once, without augmentation (the record says so).
    #[arg(long, conflicts_with = "augment")]
    pub cache_features: bool,
    /// Fresh RandomResizedCrop + flip every epoch (the MAE protocol).
    #[arg(long)]
    pub augment: bool,
    /// Train on this fraction of the labels (a fixed, stratified subset).
    #[arg(long)]
    pub label_fraction: Option<f64>,
    /// Seed of the label subset (kept fixed across runs).
    #[arg(long)]
    pub subset_seed: Option<u64>,
    /// kNN neighbours.
    #[arg(long)]
    pub k: Option<usize>,
    /// kNN temperature.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Fine-tuning: layer-wise lr decay.
    #[arg(long)]
    pub layer_decay: Option<f64>,
    /// Fine-tuning: stochastic depth.
    #[arg(long)]
    pub drop_path: Option<f64>,
    /// Fine-tuning: label smoothing.
    #[arg(long)]
    pub smoothing: Option<f64>,
    /// Fine-tuning: do not add learned per-block relative position tables.
    #[arg(long)]
    pub no_rel_pos_bias: bool,
    /// Fine-tuning: images per forward/backward (gradients are accumulated to the batch).
    #[arg(long)]
    pub micro_batch: Option<usize>,
    /// Evaluate every N epochs (and after the last) [default: 1].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Seed of everything random in the run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The encoder's name in the record and in leaderboards [default: the file's stem, or
    /// `random-init-<preset>`].
    #[arg(long)]
    pub label: Option<String>,
    /// Run folder for `record.json`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fine-tuning: also write the fine-tuned model to `OUT/finetuned.safetensors`.
    #[arg(long, requires = "out")]
    pub save_model: bool,
    /// Device: cpu, cuda[:N], vulkan[:N|:cpu], tch[:cpu|:cuda:N] (`cae-bench devices` lists what this binary has).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The library request for these arguments.
pub fn request(args: &LinearProbeArgs, threads: Option<usize>) -> anyhow::Result<ProbeRequest> {
    let encoder = crate::zoo::encoder_source(&args.encoder)?;
    anyhow::ensure!(
        !matches!(encoder, EncoderSource::Random) || args.preset.is_some(),
        "--encoder random needs --preset (e.g. mini)"
    );
    let protocol = match args.protocol {
        ProtocolArg::Linear => Protocol::Linear,
        ProtocolArg::Attentive => Protocol::Attentive,
        ProtocolArg::Knn => Protocol::Knn,
        ProtocolArg::Finetune => Protocol::Finetune,
    };
    let overrides = ProbeOverrides {
        recipe: match args.recipe {
            RecipeArg::Auto => Recipe::Auto,
            RecipeArg::Small => Recipe::Small,
            RecipeArg::Paper => Recipe::Paper,
        },
        pooling: args.pool.map(|p| match p {
            PoolArg::Cls => Pooling::Cls,
            PoolArg::Mean => Pooling::Mean,
            PoolArg::ClsMean => Pooling::ClsMean,
        }),
        layer: args.layer,
        epochs: args.epochs,
        batch_size: args.batch,
        lr: args.lr,
        blr: args.blr,
        min_lr: None,
        warmup_epochs: args.warmup_epochs,
        weight_decay: args.weight_decay,
        cache_features: match (args.cache_features, args.augment) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        label_fraction: args.label_fraction,
        label_subset_seed: args.subset_seed,
        knn_k: args.k,
        knn_temperature: args.temperature,
        layer_decay: args.layer_decay,
        drop_path: args.drop_path,
        label_smoothing: args.smoothing,
        rel_pos_bias: args.no_rel_pos_bias.then_some(false),
        micro_batch: args.micro_batch,
        eval_every: args.eval_every,
    };
    Ok(ProbeRequest {
        encoder,
        preset: args.preset.clone(),
        data: args.data.clone(),
        protocol,
        seed: args.seed,
        overrides,
        out: args.out.clone(),
        device: args.device.clone(),
        progress: !args.no_progress && !args.json,
        command: std::env::args().collect(),
        threads,
        label: args.label.clone(),
        data_fingerprint: None,
        request_key: None,
        save_model: args.save_model,
    })
}

/// Runs the command.
pub fn run(args: LinearProbeArgs, threads: Option<usize>) -> anyhow::Result<()> {
    let req = request(&args, threads)?;
    let outcome = run_probe(&req).with_context(|| {
        format!(
            "{} of {} on {}",
            req.protocol.name(),
            args.encoder,
            args.data.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&json_summary(&outcome))?);
    } else {
        println!(
            "{} {}: top-1 {:.2}%  top-5 {:.2}%  (best top-1 {:.2}% at epoch {}; {} epochs, seed {}, {} train / {} val images, {:.1} s){}",
            outcome.protocol.name(),
            outcome.encoder.label,
            outcome.top1,
            outcome.top5,
            outcome.best_top1,
            outcome.best_epoch,
            outcome.epochs,
            outcome.seed,
            outcome.train_images,
            outcome.val_images,
            outcome.seconds,
            outcome
                .record
                .as_ref()
                .map(|p| format!("\nrecord: {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// The `--json` object: the headline numbers first, then the details.
pub fn json_summary(o: &ProbeOutcome) -> serde_json::Value {
    serde_json::json!({
        "top1": o.top1,
        "top5": o.top5,
        "best_top1": o.best_top1,
        "best_epoch": o.best_epoch,
        "protocol": o.protocol.name(),
        "epochs": o.epochs,
        "seed": o.seed,
        "pooling": o.config.pooling.name(),
        "layer": o.config.layer,
        "recipe": o.config.recipe,
        "batch": o.config.batch_size,
        "lr": o.config.lr,
        "cached_features": o.config.cache_features,
        "label_fraction": o.config.label_fraction,
        "encoder": o.encoder,
        "train_images": o.train_images,
        "val_images": o.val_images,
        "classes": o.classes,
        "seconds": o.seconds,
        "record": o.record,
        "per_epoch": o.per_epoch,
    })
}
