//! `cae-bench pretrain`: CAE or BEiT pretraining on a folder of images.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use cae_pretrain::CaeConfig;
use cae_pretrain::autocast::Precision;
use cae_pretrain::config::Method as ModelMethod;
use cae_pretrain::config::{Method, TargetConfig};
use cae_pretrain::train::run::MetricsLine;
use cae_pretrain::train::run::run_parallel;
use cae_pretrain::train::{Collective, RunConfig, RunRequest, RunSummary, TrainConfig};
use cae_reports::record::{
    DatasetInfo, EncoderInfo, EpochMetrics, MachineInfo, ProtocolInfo, RecordWriter, RunRecord,
    sha256_file,
};

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
    /// Device: cpu, cuda[:N], vulkan[:N|:cpu], tch[:cpu|:cuda:N] (`cae-bench devices` lists what this binary has).
    #[arg(long, default_value = "cpu", conflicts_with = "devices")]
    pub device: String,
    /// Several devices, data parallel (e.g. `cuda:0,cuda:1`).
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<String>>,
    /// Threads preparing data (0: share the compute pool).
    #[arg(long, default_value_t = 0)]
    pub loader_threads: usize,
    /// Precision of the matrix products: f32, or bf16 with f32 master weights, optimizer state,
    /// norms, softmax and losses (PyTorch autocast's rules; README, "Mixed precision").
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
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
        anyhow::ensure!(
            n >= 2,
            "--mask-ratio: the model has {n} patch(es) ({}×{} images, patch {}); masking needs at \
             least 2, one to see and one to predict",
            cfg.encoder.img_size,
            cfg.encoder.img_size,
            cfg.encoder.patch_size
        );
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
    match &args.model_config {
        Some(path) => cfg
            .validate()
            .with_context(|| format!("{}", path.display()))?,
        None => cfg.validate()?,
    }
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
    t.precision = args.precision;
    t.validate()?;
    Ok(t)
}

/// Runs pretraining and prints its summary.
pub fn run_pretrain(args: PretrainArgs) -> anyhow::Result<()> {
    // One process, or a rank of the MPI job that started this one (`mpirun -np N`).
    let job = crate::dist::join()?;
    let summary = match pretrain_with_record(&args, job.as_ref()) {
        Ok(s) => s,
        Err(e) if job.size() > 1 => {
            // The other ranks would wait for this one forever: end the job.
            eprintln!("error (rank {} of {}): {e:#}", job.rank(), job.size());
            crate::dist::abort_job(job.as_ref());
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if !job.is_root() {
        return Ok(());
    }
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

/// Runs pretraining with its `RUN/record.json`: `running` from the start, then `complete` with
/// the encoder's checksum, or `failed` with the error. In a job of several processes every rank
/// trains and rank 0 alone writes the record.
pub fn pretrain_with_record(
    args: &PretrainArgs,
    job: &dyn Collective,
) -> anyhow::Result<RunSummary> {
    let model = model_config(args)?;
    let train = train_config(args, &model.preset)?;
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
        processes: job.size(),
        resume: args.resume,
        progress: !args.no_progress,
    };
    // Bad options and a run directory that must not be touched are refused before the record
    // is written, so a refused command leaves the folder as it was.
    let option = if args.devices.is_some() {
        "--devices"
    } else {
        "--device"
    };
    for d in &req.devices {
        cae_pretrain::device::parse_device(d).with_context(|| format!("{option}: entry `{d}`"))?;
    }
    cae_pretrain::train::run::preflight(&req)
        .with_context(|| format!("pretraining into {}", args.out.display()))?;
    // Every rank has checked the directory before rank 0 writes its record there.
    job.barrier()?;
    let record = if job.is_root() {
        Some(start_record(&req, rayon::current_num_threads(), job)?)
    } else {
        None
    };
    let summary = match run_parallel(&req, job) {
        Ok(s) => s,
        Err(e) => {
            let e =
                anyhow::Error::new(e).context(format!("pretraining into {}", args.out.display()));
            // The run's own error is what the user needs; a failure to mark the record is logged.
            if let Some(record) = record
                && let Err(re) = record.fail(&format!("{e:#}"))
            {
                tracing::warn!("could not mark the run record failed: {re}");
            }
            return Err(e);
        }
    };
    if let Some(mut record) = record {
        finish_record(&mut record, &req, &summary)?;
        record.complete(summary_metrics(&summary))?;
    }
    Ok(summary)
}

/// The headline numbers of a finished pretraining run, as recorded. Only finite values: JSON has
/// no NaN, and a record must stay readable (a run without a logged loss has no `final_loss`).
fn summary_metrics(s: &RunSummary) -> BTreeMap<String, f64> {
    [
        ("steps", s.steps as f64),
        ("final_loss", s.final_loss),
        ("seconds", s.seconds),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_finite())
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Writes `RUN/record.json` as `running` before the first step: a run that is killed stays
/// marked incomplete. A resumed run starts a new record (its config is the same by construction).
pub fn start_record(
    req: &RunRequest,
    threads: usize,
    job: &dyn Collective,
) -> anyhow::Result<RecordWriter> {
    let method = match req.model.method {
        ModelMethod::Cae => "cae",
        ModelMethod::Beit => "beit",
    };
    let protocol = ProtocolInfo {
        name: format!("pretrain-{method}"),
        pooling: None,
        layer: None,
        epochs: req.train.epochs,
        effective_batch: Some(req.train.batch_size),
        lr: Some(req.train.effective_lr()),
        lr_rule: Some(req.train.scaling_rule()),
        optimizer: Some("adamw".into()),
        cached_features: None,
        label_fraction: None,
        details: BTreeMap::new(),
        settings: pretrain_settings(req)?,
        seed_varies: Some(
            [
                "model init",
                "data order",
                "augmentation",
                "masks",
                "drop path",
            ]
            .map(String::from)
            .to_vec(),
        ),
    };
    let config = serde_json::json!({
        "model": req.model,
        "train": req.train,
        "data": req.data.display().to_string(),
        "devices": req.devices,
        "processes": req.processes,
        "collective": job.describe(),
        "resume": req.resume,
    });
    let mut record = RunRecord::start(
        "pretrain",
        std::env::args().collect(),
        config,
        req.train.seed,
        protocol,
        MachineInfo::current(&req.devices.join(","), Some(threads)),
    );
    crate::protocols::recipe::stamp_versions(&mut record);
    record.encoder = Some(EncoderInfo {
        label: format!("{} {}", method_label(method), req.model.preset),
        path: None,
        sha256: None,
        method: method.to_string(),
        arch: req.model.preset.clone(),
        pretrain_steps: None,
    });
    RecordWriter::create(&req.out, record)
        .with_context(|| format!("writing the run record in {}", req.out.display()))
}

/// What changes a pretraining run's numbers except its seed: the whole model config (method,
/// λ, mask ratio, depths, targets, …) and the optimisation settings; not the seed, nor where and
/// how often it writes (checkpoints, logging, loader threads).
fn pretrain_settings(req: &RunRequest) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let mut settings = BTreeMap::new();
    settings.insert("model".to_string(), serde_json::to_value(&req.model)?);
    let train = crate::protocols::recipe::without_defaults(serde_json::to_value(&req.train)?);
    if let serde_json::Value::Object(train) = train {
        const NOT_SETTINGS: [&str; 6] = [
            "seed",
            "checkpoint_every",
            "keep_checkpoints",
            "log_every",
            "loader_threads",
            "prefetch",
        ];
        for (k, v) in train {
            if !NOT_SETTINGS.contains(&k.as_str()) {
                settings.insert(k, v);
            }
        }
    }
    Ok(settings)
}

fn method_label(method: &str) -> &'static str {
    match method {
        "beit" => "BEiT",
        _ => "CAE",
    }
}

/// Fills in what only the finished run knows: the resolved config, the loss per epoch and the
/// exported encoder with its checksum.
pub fn finish_record(
    record: &mut RecordWriter,
    req: &RunRequest,
    summary: &RunSummary,
) -> anyhow::Result<()> {
    let cfg_path = req.out.join("config.toml");
    if let Ok(text) = std::fs::read_to_string(&cfg_path) {
        let resolved = RunConfig::from_toml(&text)
            .with_context(|| format!("{}: not a run config", cfg_path.display()))?;
        record.record.config = serde_json::to_value(&resolved)?;
        record.record.dataset = Some(DatasetInfo {
            path: resolved.data.clone(),
            train_images: Some(resolved.derived.images),
            val_images: None,
            classes: None,
            fingerprint: Some(
                cae_datasets::fingerprint_dir(std::path::Path::new(&resolved.data))
                    .with_context(|| format!("fingerprinting the data {}", resolved.data))?
                    .to_string(),
            ),
        });
    }
    let metrics_path = req.out.join("metrics.jsonl");
    if let Ok(text) = std::fs::read_to_string(&metrics_path) {
        // Mean of each logged quantity over the steps of an epoch.
        let mut epochs: BTreeMap<u64, BTreeMap<String, (f64, usize)>> = BTreeMap::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let m: MetricsLine = serde_json::from_str(line).with_context(|| {
                format!(
                    "{} line {}: not a metrics line",
                    metrics_path.display(),
                    i + 1
                )
            })?;
            let e = epochs.entry(m.epoch).or_default();
            let mut add = |k: &str, v: f64| {
                if v.is_finite() {
                    let s = e.entry(k.to_string()).or_insert((0.0, 0));
                    s.0 += v;
                    s.1 += 1;
                }
            };
            add("loss", m.loss);
            add("loss_rec", m.loss_rec);
            add("loss_align", m.loss_align);
            if let Some(a) = m.mlm_acc {
                add("mlm_acc", a);
            }
            add("img_per_s", m.img_per_s);
        }
        let per_epoch: Vec<EpochMetrics> = epochs
            .into_iter()
            .map(|(epoch, sums)| EpochMetrics {
                epoch,
                metrics: sums
                    .into_iter()
                    .map(|(k, (s, n))| (k, s / n as f64))
                    .collect(),
            })
            .collect();
        // For pretraining the best epoch is the one with the lowest mean loss.
        let loss = |e: &EpochMetrics| e.metrics.get("loss").copied().unwrap_or(f64::INFINITY);
        record.record.best = per_epoch
            .iter()
            .min_by(|a, b| loss(a).total_cmp(&loss(b)))
            .cloned();
        record.record.last = per_epoch.last().cloned();
        record.record.per_epoch = per_epoch;
    }
    let sha = sha256_file(&summary.encoder)
        .with_context(|| format!("checksumming {}", summary.encoder.display()))?;
    if let Some(enc) = record.record.encoder.as_mut() {
        enc.path = Some(summary.encoder.display().to_string());
        enc.sha256 = Some(sha);
        enc.pretrain_steps = Some(summary.steps);
    }
    Ok(())
}
