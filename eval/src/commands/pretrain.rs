//! `cae-bench pretrain`: CAE or BEiT pretraining on a folder of images.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use cae_pretrain::CaeConfig;
use cae_pretrain::config::{Method, TargetConfig};
use cae_pretrain::train::{RunRequest, TrainConfig, run};

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Context Autoencoder.
    Cae,
    /// BEiT's masked image modelling on the same encoder.
    Beit,
}

/// `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// Normalised pixels of the masked patches (MSE).
    Pixel,
    /// DALL-E dVAE token ids (cross-entropy); needs `--tokenizer`.
    Dalle,
}

/// `cae-bench pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Model preset (test, mini, vit_tiny_patch16, vit_small_patch16, vit_base_patch16, vit_large_patch16).
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// A model config file (TOML, as in a run's `config.toml` `[model]` table) instead of a preset.
    #[arg(long, conflicts_with = "preset")]
    pub model_config: Option<PathBuf>,
    /// Folder of images (flat, or ImageFolder layout: labels are ignored).
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Optimizer steps.
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Epochs over the data.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Seed of everything random in the run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Method.
    #[arg(long, value_enum, default_value_t = MethodArg::Cae)]
    pub method: MethodArg,
    /// λ, the alignment loss weight (0 turns the alignment branch off).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Fraction of patches masked (rounded to a patch count).
    #[arg(long)]
    pub mask_ratio: Option<f64>,
    /// Regressor depth.
    #[arg(long)]
    pub regressor_depth: Option<usize>,
    /// Decoder depth.
    #[arg(long)]
    pub decoder_depth: Option<usize>,
    /// Reconstruction target.
    #[arg(long, value_enum)]
    pub target: Option<TargetArg>,
    /// DALL-E encoder weights (safetensors, official keys) for `--target dalle`.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Images per optimizer step [default: the preset's: 64 for mini/test, 2048 for the ViTs].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Gradient accumulation steps per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub accum: usize,
    /// Absolute peak learning rate (overrides `--blr`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Base learning rate per 256 images (`lr = blr × batch / 256`).
    #[arg(long)]
    pub blr: Option<f64>,
    /// Warmup as a fraction of all steps.
    #[arg(long)]
    pub warmup_fraction: Option<f64>,
    /// Write a checkpoint every N steps (and at the end).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Checkpoints kept.
    #[arg(long, default_value_t = 3)]
    pub keep_checkpoints: usize,
    /// Continue the run in `--out` from its newest complete checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Device: cpu, cuda[:N], tch, tch-cuda[:N].
    #[arg(long, default_value = "cpu", conflicts_with = "devices")]
    pub device: String,
    /// Several devices, data parallel (e.g. `cuda:0,cuda:1`).
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<String>>,
    /// Threads preparing data (0: share the compute pool).
    #[arg(long, default_value_t = 0)]
    pub loader_threads: usize,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the run summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Builds the model config from the preset and the overrides.
pub fn model_config(args: &PretrainArgs) -> anyhow::Result<CaeConfig> {
    let mut cfg = match &args.model_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            CaeConfig::from_toml(&text).with_context(|| format!("{}", path.display()))?
        }
        None => CaeConfig::preset(&args.preset)?,
    };
    cfg.method = match args.method {
        MethodArg::Cae => Method::Cae,
        MethodArg::Beit => Method::Beit,
    };
    if let Some(l) = args.lambda {
        cfg.align_loss_weight = l;
    }
    if let Some(r) = args.mask_ratio {
        anyhow::ensure!(
            r > 0.0 && r < 1.0,
            "--mask-ratio must be in (0, 1), got {r}"
        );
        let n = cfg.encoder.num_patches();
        cfg.mask.num_masked = ((r * n as f64).round() as usize).clamp(1, n - 1);
    }
    if let Some(d) = args.regressor_depth {
        cfg.regressor_depth = d;
    }
    if let Some(d) = args.decoder_depth {
        cfg.decoder_depth = d;
    }
    match args.target {
        Some(TargetArg::Pixel) => {
            cfg.target = TargetConfig::Pixel {
                norm: Default::default(),
            }
        }
        Some(TargetArg::Dalle) => {
            let vocab = match &args.tokenizer {
                Some(path) => {
                    cae_pretrain::weights::read_metadata(path)?
                        .get("dalle_config")
                        .map(|t| serde_json::from_str::<cae_pretrain::dalle::DalleConfig>(t))
                        .transpose()
                        .with_context(|| format!("{}: metadata `dalle_config`", path.display()))?
                        .unwrap_or_default()
                        .vocab_size
                }
                None => anyhow::bail!(
                    "--target dalle needs --tokenizer FILE (the DALL-E encoder weights)"
                ),
            };
            cfg.target = TargetConfig::Dalle { vocab_size: vocab };
        }
        None => {}
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Builds the training config from the preset's defaults and the overrides.
pub fn train_config(args: &PretrainArgs, preset: &str) -> anyhow::Result<TrainConfig> {
    let mut t = TrainConfig::for_preset(preset);
    t.steps = args.steps;
    t.epochs = args.epochs;
    if t.steps.is_none() && t.epochs.is_none() {
        anyhow::bail!("give --steps N or --epochs E");
    }
    t.seed = args.seed;
    if let Some(b) = args.batch {
        t.batch_size = b;
    }
    t.accum_steps = args.accum;
    if let Some(lr) = args.lr {
        t.lr = Some(lr);
    }
    if let Some(blr) = args.blr {
        t.blr = blr;
    }
    if let Some(w) = args.warmup_fraction {
        t.warmup_fraction = w;
    }
    if let Some(c) = args.checkpoint_every {
        t.checkpoint_every = c;
    }
    t.keep_checkpoints = args.keep_checkpoints;
    t.loader_threads = args.loader_threads;
    t.validate()?;
    Ok(t)
}

/// Runs pretraining.
pub fn run_pretrain(args: PretrainArgs) -> anyhow::Result<()> {
    let model = model_config(&args)?;
    let train = train_config(&args, &model.preset)?;
    let devices = args
        .devices
        .clone()
        .unwrap_or_else(|| vec![args.device.clone()]);
    let req = RunRequest {
        model,
        train,
        data: args.data.clone(),
        out: args.out.clone(),
        tokenizer: args.tokenizer.clone(),
        devices,
        resume: args.resume,
        progress: !args.no_progress,
    };
    let summary = run(&req).with_context(|| format!("pretraining into {}", args.out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} steps (resumed at {}), final loss {:.4}, encoder {} ({:.1} s)",
            summary.steps,
            summary.resumed_from,
            summary.final_loss,
            summary.encoder.display(),
            summary.seconds
        );
    }
    Ok(())
}
