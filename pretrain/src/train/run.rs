//! `cae-bench pretrain`: the pretraining loop, with checkpoints, exact resume and metrics.
//!
//! A run directory holds:
//!
//! * `config.toml` — the resolved [`RunConfig`] (model, method, optimisation, derived lr/batch);
//! * `metrics.jsonl` — one JSON object per logged step (`step`, `epoch`, `loss`, `loss_rec`,
//!   `loss_align`, `mlm_acc`, `lr`, `grad_norm`, `img_per_s`);
//! * `checkpoints/ckpt-<step>.safetensors` — model, optimizer and step (last `keep` kept);
//! * `encoder.safetensors` — at the end, the encoder alone with the official `encoder.*` keys.
//!
//! Everything random is a pure function of the seed and the step (data order per epoch,
//! augmentation and mask per sample position, drop path per step), so `--resume` from the newest
//! checkpoint reproduces an uninterrupted run bit for bit on the same machine and thread count.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use cae_datasets::transforms::tokenizer_pixels;
use cae_datasets::{Loader, PretrainTransform, UnlabelledFolder};
use serde::Serialize;

use super::checkpoint::{
    CheckpointState, FORMAT, latest_checkpoint, load_checkpoint, save_checkpoint,
};
use super::config::{Derived, RunConfig, TrainConfig};
use super::dist::{Collective, SingleProcess};
use super::schedule::CosineSchedule;
use super::step::{PretrainBatch, StepStats, step_rng, train_step_parallel};
use super::trainable::on_autodiff;
use crate::config::{CaeConfig, Method, TargetConfig};
use crate::dalle::{DalleConfig, DalleEncoder};
use crate::error::PretrainError;
use crate::masking::{GridMask, MaskBatch, MaskGenerator};
use crate::model::{BeitPretrain, ContextAutoencoder};
use crate::optim::{AdamW, AdamWConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The model / method config.
    pub model: CaeConfig,
    /// Optimisation.
    pub train: TrainConfig,
    /// Folder of images (flat or ImageFolder layout).
    pub data: PathBuf,
    /// The run directory.
    pub out: PathBuf,
    /// DALL-E tokenizer weights (DALL-E targets).
    pub tokenizer: Option<PathBuf>,
    /// Device names (`cpu`, `cuda:0`, …).
    pub devices: Vec<String>,
    /// Processes of the job (MPI ranks; 1 without a launcher). Must equal the size of the
    /// [`Collective`] given to [`run_parallel`].
    pub processes: usize,
    /// Continue from the newest checkpoint in `out`.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Steps completed.
    pub steps: u64,
    /// The step the run resumed from (0 for a fresh run).
    pub resumed_from: u64,
    /// Mean of the last logged losses.
    pub final_loss: f64,
    /// The exported encoder.
    pub encoder: PathBuf,
    /// Wall time of this invocation.
    pub seconds: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MetricsLine {
    /// Optimizer steps completed.
    pub step: u64,
    /// Epoch of this step.
    pub epoch: u64,
    /// Total loss.
    pub loss: f64,
    /// Reconstruction loss.
    pub loss_rec: f64,
    /// Alignment loss (before λ).
    pub loss_align: f64,
    /// Masked-token accuracy (token targets).
    pub mlm_acc: Option<f64>,
    /// Learning rate of this step.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Images per second over this step, data loading included.
    pub img_per_s: f64,
}

/// The pretraining model of either method.
enum AnyModel {
    Cae(Box<ContextAutoencoder>),
    Beit(Box<BeitPretrain>),
}

/// Samples of one loader item: the encoder view, the tokenizer view and the mask.
struct Sample {
    image: Vec<f32>,
    tokenizer: Option<Vec<f32>>,
    mask: GridMask,
}

/// The devices of a run, each listed once: several entries that name one device (in burn 0.22
/// every CPU entry is the one CPU device) would silently merge into one worker, so they are
/// refused, saying what to use instead.
fn device_list(names: &[String]) -> Result<Vec<Device>, PretrainError> {
    if names.is_empty() {
        return Err(PretrainError::Config("no device given".into()));
    }
    let devices: Vec<Device> = names
        .iter()
        .map(|n| crate::device::parse_device(n).map(|d| d.autodiff()))
        .collect::<Result<_, _>>()?;
    for (i, d) in devices.iter().enumerate() {
        if let Some(j) = devices[..i].iter().position(|e| e == d) {
            let distinct = devices
                .iter()
                .enumerate()
                .filter(|(k, e)| !devices[..*k].contains(e))
                .count();
            return Err(PretrainError::Config(format!(
                "--devices lists {} entries but only {distinct} distinct device(s): `{}` and `{}` \
                 are the same device ({d:?}), so they would share one worker. List each device \
                 once; to split a batch on one device use --accum N, and for several processes \
                 launch with mpirun (a binary built with --features mpi)",
                names.len(),
                names[j],
                names[i]
            )));
        }
    }
    Ok(devices)
}

/// Resolves the request into the config written to `config.toml`.
pub fn resolve(req: &RunRequest, images: usize) -> Result<RunConfig, PretrainError> {
    req.model.validate()?;
    req.train.validate()?;
    if let TargetConfig::Dalle { .. } = req.model.target
        && req.tokenizer.is_none()
    {
        return Err(PretrainError::Config(
            "DALL-E targets need the tokenizer weights (`--tokenizer FILE`)".into(),
        ));
    }
    let t = &req.train;
    let spe = (images / t.batch_size) as u64;
    if spe == 0 {
        return Err(PretrainError::Input(format!(
            "{}: {images} images is fewer than one batch of {}",
            req.data.display(),
            t.batch_size
        )));
    }
    if req.processes == 0 {
        return Err(PretrainError::Config("a job of 0 processes".into()));
    }
    if !t
        .batch_size
        .is_multiple_of(t.accum_steps * req.devices.len() * req.processes)
    {
        return Err(PretrainError::Config(format!(
            "batch {} does not split into {} accumulation step(s) × {} device(s) × {} process(es)",
            t.batch_size,
            t.accum_steps,
            req.devices.len(),
            req.processes
        )));
    }
    let total = match (t.steps, t.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => e * spe,
        (None, None) => unreachable!("validated"),
    };
    Ok(RunConfig {
        version: 1,
        model: req.model.clone(),
        train: req.train.clone(),
        data: req.data.display().to_string(),
        tokenizer: req.tokenizer.as_ref().map(|p| p.display().to_string()),
        devices: req.devices.clone(),
        processes: req.processes,
        derived: Derived {
            effective_batch: t.batch_size,
            lr: t.effective_lr(),
            lr_rule: t.scaling_rule(),
            total_steps: total,
            warmup_steps: (total as f64 * t.warmup_fraction).round() as u64,
            steps_per_epoch: spe,
            images,
        },
    })
}

/// What makes a run directory hold a run worth keeping: trained weights.
const RUN_FILES: [&str; 2] = ["checkpoints", "encoder.safetensors"];

/// Checks a request against its run directory before anything is written, so that a refused
/// request leaves the directory (and its `record.json`) as it was:
///
/// * without `--resume`, a directory that already holds a trained run (checkpoints or an exported
///   encoder) is refused, whatever its config: continuing it needs `--resume`, starting afresh
///   needs another `--out` (or deleting the old run by hand). What a run that never reached a
///   checkpoint left (`config.toml`, `metrics.jsonl`, a `running`/`failed` record) is replaced;
/// * with `--resume`, the saved `config.toml` must equal the resolved config; the lines that
///   differ are named.
///
/// Returns the resolved config (which needs the number of images: the data folder is opened).
pub fn preflight(req: &RunRequest) -> Result<RunConfig, PretrainError> {
    for d in device_list(&req.devices)? {
        req.train.precision.check_device(&d)?;
    }
    let data =
        UnlabelledFolder::open(&req.data).map_err(|e| PretrainError::Input(e.to_string()))?;
    let cfg = resolve(req, data.len())?;
    check_out_dir(req, &cfg)?;
    Ok(cfg)
}

fn check_out_dir(req: &RunRequest, cfg: &RunConfig) -> Result<(), PretrainError> {
    let out = &req.out;
    let config_path = out.join("config.toml");
    let saved = if config_path.exists() {
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| PretrainError::io(&config_path, e))?;
        Some(RunConfig::from_toml(&text).map_err(|e| {
            PretrainError::Input(format!(
                "{}: not a run config ({e}); this folder does not hold a run cae-bench can \
                 continue: choose another --out",
                config_path.display()
            ))
        })?)
    } else {
        None
    };
    if req.resume {
        if let Some(saved) = saved
            && saved != *cfg
        {
            return Err(PretrainError::Config(format!(
                "{}: --resume with a different configuration than the run was started with; \
                 pass the same options (saved → given: {})",
                config_path.display(),
                config_diff(&saved.to_toml(), &cfg.to_toml())
            )));
        }
        return Ok(());
    }
    let ckpt_dir = out.join("checkpoints");
    let found: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|f| match *f {
            "checkpoints" => super::checkpoint::list_checkpoints(&ckpt_dir)
                .map(|l| !l.is_empty())
                .unwrap_or(true),
            f => out.join(f).exists(),
        })
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    let what = match &saved {
        Some(saved) if saved == cfg => "a run of this same configuration".to_string(),
        Some(saved) => format!(
            "a run of another configuration (saved → given: {})",
            config_diff(&saved.to_toml(), &cfg.to_toml())
        ),
        None => "a pretraining run".to_string(),
    };
    Err(PretrainError::Config(format!(
        "{} already holds {what} ({}); nothing was changed. Pass --resume to continue it with \
         its options, or choose another --out",
        out.display(),
        found.join(", ")
    )))
}

/// The `key = value` lines of two TOML texts that differ, as `[table] key: old → new`
/// (at most 8 shown).
fn config_diff(saved: &str, given: &str) -> String {
    fn lines(text: &str) -> Vec<(String, String)> {
        let mut table = String::new();
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                table = line.to_string();
            } else if let Some((k, v)) = line.split_once(" = ") {
                let key = if table.is_empty() {
                    k.to_string()
                } else {
                    format!("{table} {k}")
                };
                out.push((key, v.to_string()));
            }
        }
        out
    }
    let (a, b) = (lines(saved), lines(given));
    let get = |l: &[(String, String)], k: &str| {
        l.iter()
            .find(|(key, _)| key == k)
            .map_or("(absent)".to_string(), |(_, v)| v.clone())
    };
    let mut keys: Vec<&String> = a.iter().chain(b.iter()).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter_map(|k| {
            let (x, y) = (get(&a, k), get(&b, k));
            (x != y).then(|| format!("{k}: {x} → {y}"))
        })
        .collect();
    if diffs.is_empty() {
        return "no line differs".into();
    }
    let more = diffs.len().saturating_sub(8);
    let mut shown = diffs.into_iter().take(8).collect::<Vec<_>>().join("; ");
    if more > 0 {
        shown.push_str(&format!("; and {more} more"));
    }
    shown
}

/// Runs (or resumes) a pretraining run in this process alone.
pub fn run(req: &RunRequest) -> Result<RunSummary, PretrainError> {
    run_parallel(req, &SingleProcess)
}

/// Every rank's copy of `values` must equal rank 0's; `what` names them in the error.
fn agree(collective: &dyn Collective, values: &[f32], what: &str) -> Result<(), PretrainError> {
    if collective.size() == 1 {
        return Ok(());
    }
    let mut root = values.to_vec();
    collective.broadcast_from_root(&mut root)?;
    if root != values {
        return Err(PretrainError::Config(format!(
            "rank {} of {} disagrees with rank 0 on {what} ({values:?} here, {root:?} on rank 0); \
             every rank must run the same command on the same data, with --out on a filesystem \
             every rank sees",
            collective.rank(),
            collective.size()
        )));
    }
    Ok(())
}

/// Runs (or resumes) a pretraining run as one process (rank) of a data-parallel job: each rank
/// trains on its slice of every batch, gradients are summed over ranks every step, and rank 0
/// alone writes `config.toml`, metrics, checkpoints and the encoder. Every rank must see the same
/// data folder and run directory (resume reads the checkpoint rank 0 wrote).
pub fn run_parallel(
    req: &RunRequest,
    collective: &dyn Collective,
) -> Result<RunSummary, PretrainError> {
    let started = Instant::now();
    if collective.size() != req.processes {
        return Err(PretrainError::Config(format!(
            "the request is for {} process(es) but the job has {}",
            req.processes,
            collective.size()
        )));
    }
    let root = collective.is_root();
    let data = Arc::new(
        UnlabelledFolder::open(&req.data).map_err(|e| PretrainError::Input(e.to_string()))?,
    );
    let cfg = resolve(req, data.len())?;
    let out = &req.out;
    let ckpt_dir = out.join("checkpoints");
    let config_path = out.join("config.toml");
    let devices = device_list(&req.devices)?;
    for d in &devices {
        cfg.train.precision.check_device(d)?;
    }
    let device = devices[0].clone();
    check_out_dir(req, &cfg)?;
    agree(collective, &[data.len() as f32], "the number of images")?;

    // Fresh run or resume.
    let mut resumed_from = None;
    if req.resume {
        resumed_from = latest_checkpoint(&ckpt_dir)?;
        if resumed_from.is_none() && root {
            tracing::info!(
                "--resume: no checkpoint in {}, starting from step 0",
                ckpt_dir.display()
            );
        }
    }
    agree(
        collective,
        &[resumed_from.as_ref().map_or(-1.0, |(s, _)| *s as f32)],
        "the checkpoint to resume from",
    )?;
    // Every rank has read the directory before rank 0 writes to it.
    collective.barrier()?;
    let config_toml = cfg.to_toml();
    if root {
        std::fs::create_dir_all(&ckpt_dir).map_err(|e| PretrainError::io(&ckpt_dir, e))?;
        crate::weights::write_atomic(&config_path, config_toml.as_bytes())?;
    }

    let t = &cfg.train;
    if root {
        tracing::info!(
            "{} on {} images, {} steps ({} per epoch), effective batch {}, {}; warmup {} steps{}",
            match cfg.model.method {
                Method::Cae => "CAE",
                Method::Beit => "BEiT",
            },
            cfg.derived.images,
            cfg.derived.total_steps,
            cfg.derived.steps_per_epoch,
            cfg.derived.effective_batch,
            cfg.derived.lr_rule,
            cfg.derived.warmup_steps,
            if collective.size() > 1 {
                format!(
                    "; {} processes ({})",
                    collective.size(),
                    collective.describe()
                )
            } else {
                String::new()
            },
        );
    }

    // Built on the plain device (the initial values are drawn on the CPU either way), then made
    // trainable the one way every protocol does it (`trainable::on_autodiff`).
    let plain = device.clone().without_autodiff();
    let mut model = match cfg.model.method {
        Method::Cae => AnyModel::Cae(Box::new(on_autodiff(
            ContextAutoencoder::new(&cfg.model, t.seed, &plain),
            &device,
        ))),
        Method::Beit => AnyModel::Beit(Box::new(on_autodiff(
            BeitPretrain::new(&cfg.model, t.seed, &plain),
            &device,
        ))),
    };
    let mut optim = AdamW::new(AdamWConfig {
        beta1: t.beta1,
        beta2: t.beta2,
        eps: 1e-8,
        weight_decay: t.weight_decay,
    });
    let mut step = 0u64;
    if let Some((_, path)) = &resumed_from {
        let state = match &mut model {
            AnyModel::Cae(m) => load_checkpoint(path, m.as_mut(), &mut optim, &device)?,
            AnyModel::Beit(m) => load_checkpoint(path, m.as_mut(), &mut optim, &device)?,
        };
        step = state.step;
        if root {
            tracing::info!("resumed from {} (step {step})", path.display());
        }
    }
    // Every rank has loaded its checkpoint before rank 0 writes (and prunes) new ones.
    collective.barrier()?;
    let metrics_path = out.join("metrics.jsonl");
    if root {
        truncate_metrics(&metrics_path, step)?;
    }
    let tokenizer = match (&cfg.model.target, &req.tokenizer) {
        (TargetConfig::Dalle { vocab_size }, Some(path)) => {
            let tcfg = tokenizer_config(path, *vocab_size)?;
            let tok_device = device.clone().without_autodiff();
            Some(DalleEncoder::load(&tcfg, path, None, &tok_device)?)
        }
        _ => None,
    };

    let schedule = CosineSchedule {
        base: cfg.derived.lr,
        min: t.min_lr,
        warmup: cfg.derived.warmup_steps,
        total: cfg.derived.total_steps,
    };
    let e = &cfg.model.encoder;
    let mut transform = PretrainTransform::new(e.img_size as u32);
    if tokenizer.is_some() {
        // The dVAE downsamples by 8: its view must give one token per patch.
        transform.tokenizer_size = Some(8 * e.grid_size() as u32);
    }
    let masks = MaskGenerator::new(e.grid_size(), &cfg.model.mask)?;
    let mut loader = Loader::new(data.len(), t.batch_size, t.seed, true, true, t.prefetch)
        .map_err(|e| PretrainError::Config(e.to_string()))?;
    if t.loader_threads > 0 {
        loader = loader
            .with_threads(t.loader_threads)
            .map_err(|e| PretrainError::Config(e.to_string()))?;
    }
    if collective.size() > 1 {
        loader = loader
            .with_shard(collective.rank(), collective.size())
            .map_err(|e| PretrainError::Config(e.to_string()))?;
    }
    let spe = cfg.derived.steps_per_epoch;
    let total = cfg.derived.total_steps;
    let want_tokens = tokenizer.is_some();

    let progress = crate::progress::bar(req.progress && root, total, step, "steps");
    let mut metrics = if root {
        Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&metrics_path)
                .map_err(|e| PretrainError::io(&metrics_path, e))?,
        )
    } else {
        None
    };
    let mut last_losses = Vec::new();
    let resumed_step = step;

    while step < total {
        let epoch = step / spe;
        let start_batch = (step % spe) as usize;
        let data_c = data.clone();
        let tf = transform.clone();
        let mg = masks.clone();
        let batches = loader.epoch(epoch, start_batch, move |i, rng| {
            let img = data_c.load(i)?;
            let (a, b) = tf.apply_rgb(&img, rng);
            let mask = mg.sample(rng);
            Ok::<_, cae_datasets::DatasetError>(Sample {
                image: tf.normalize.apply(&a),
                tokenizer: want_tokens.then(|| tokenizer_pixels(&b)),
                mask,
            })
        });
        let mut tick = Instant::now();
        for batch in batches {
            if step >= total {
                break;
            }
            let samples = batch.map_err(|e| PretrainError::Input(e.to_string()))?;
            let lr = schedule.at(step);
            let shards = make_shards(&samples, &cfg, tokenizer.as_ref(), &devices)?;
            let rng = step_rng(t.seed, step);
            // One step of either model (the two arms differ only in the variant).
            macro_rules! step {
                ($m:expr) => {{
                    // The step's products in the run's precision (the tokenizer ran above, in f32).
                    let _precision = crate::autocast::autocast(t.precision);
                    train_step_parallel(
                        *$m,
                        &mut optim,
                        &cfg.model,
                        &shards,
                        lr,
                        t.clip_grad,
                        rng,
                        collective,
                    )?
                }};
            }
            let (next, stats) = match model {
                AnyModel::Cae(m) => {
                    let (m, s) = step!(m);
                    (AnyModel::Cae(Box::new(m)), s)
                }
                AnyModel::Beit(m) => {
                    let (m, s) = step!(m);
                    (AnyModel::Beit(Box::new(m)), s)
                }
            };
            model = next;
            if !stats.loss.is_finite() {
                progress.abandon();
                return Err(PretrainError::NonFinite {
                    step: step + 1,
                    value: stats.loss,
                });
            }
            step += 1;
            let secs = tick.elapsed().as_secs_f64();
            tick = Instant::now();
            if let Some(metrics) = metrics.as_mut()
                && (step.is_multiple_of(t.log_every) || step == total)
            {
                write_metrics(
                    metrics,
                    &metrics_path,
                    step,
                    epoch,
                    lr,
                    &stats,
                    (samples.len() * collective.size()) as f64 / secs,
                )?;
            }
            last_losses.push(stats.loss);
            if last_losses.len() > 10 {
                last_losses.remove(0);
            }
            progress.set_position(step);
            progress.set_message(format!("loss {:.4}", stats.loss));
            if root && (step.is_multiple_of(t.checkpoint_every) || step == total) {
                let state = CheckpointState {
                    format: FORMAT.into(),
                    step,
                    optim_steps: optim.steps,
                    seed: t.seed,
                };
                match &model {
                    AnyModel::Cae(m) => save_checkpoint(
                        &ckpt_dir,
                        &state,
                        &config_toml,
                        m.as_ref(),
                        &optim,
                        t.keep_checkpoints,
                    )?,
                    AnyModel::Beit(m) => save_checkpoint(
                        &ckpt_dir,
                        &state,
                        &config_toml,
                        m.as_ref(),
                        &optim,
                        t.keep_checkpoints,
                    )?,
                };
            }
        }
    }
    progress.finish_and_clear();
    let encoder = out.join("encoder.safetensors");
    // The encoder file also says how long it was pretrained (read into run records).
    let extra = std::collections::HashMap::from([("steps".to_string(), step.to_string())]);
    let enc_module = match &model {
        AnyModel::Cae(m) => &m.encoder,
        AnyModel::Beit(m) => &m.encoder,
    };
    if root {
        crate::encoder_file::save_encoder(enc_module, &cfg.model, &encoder, &extra)?;
    }
    if last_losses.is_empty() {
        // Resumed at the final step: the losses of the run are the logged ones.
        last_losses = logged_losses(&metrics_path, step)?;
    }
    let tail = &last_losses[last_losses.len().saturating_sub(10)..];
    let final_loss = if tail.is_empty() {
        f64::NAN
    } else {
        tail.iter().sum::<f64>() / tail.len() as f64
    };
    Ok(RunSummary {
        steps: step,
        resumed_from: resumed_step,
        final_loss,
        encoder,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The logged losses of the steps up to `step`, in order (from `metrics.jsonl`).
fn logged_losses(path: &Path, step: u64) -> Result<Vec<f64>, PretrainError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| PretrainError::io(path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<MetricsLine>(l).ok())
        .filter(|m| m.step <= step && m.loss.is_finite())
        .map(|m| m.loss)
        .collect())
}

/// Tokenizer sizes: from the file's `dalle_config` metadata, else the released model's with the
/// target's vocabulary.
fn tokenizer_config(path: &Path, vocab_size: usize) -> Result<DalleConfig, PretrainError> {
    let meta = crate::weights::read_metadata(path)?;
    let cfg = match meta.get("dalle_config") {
        Some(text) => serde_json::from_str(text).map_err(|e| PretrainError::Safetensors {
            path: path.to_path_buf(),
            message: format!("metadata `dalle_config`: {e}"),
        })?,
        None => DalleConfig::default(),
    };
    cfg.validate().map_err(|e| {
        PretrainError::Input(format!("{}: metadata `dalle_config`: {e}", path.display()))
    })?;
    if cfg.vocab_size != vocab_size {
        return Err(PretrainError::Config(format!(
            "{}: the tokenizer has {} tokens, the model's head predicts {vocab_size}",
            path.display(),
            cfg.vocab_size
        )));
    }
    Ok(cfg)
}

/// Splits a batch into `accum_steps × devices` shards, each on its device, with token ids when
/// the target needs them.
fn make_shards(
    samples: &[Sample],
    cfg: &RunConfig,
    tokenizer: Option<&DalleEncoder>,
    devices: &[Device],
) -> Result<Vec<PretrainBatch>, PretrainError> {
    let e = &cfg.model.encoder;
    let parts = cfg.train.accum_steps * devices.len();
    let per = samples.len() / parts;
    let (c, s) = (e.in_chans, e.img_size);
    let mut shards = Vec::with_capacity(parts);
    for (k, chunk) in samples.chunks(per).enumerate() {
        let device = &devices[k % devices.len()];
        let b = chunk.len();
        let pixels: Vec<f32> = chunk.iter().flat_map(|x| x.image.iter().copied()).collect();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [b, c, s, s]), device);
        let masks =
            MaskBatch::from_masks(&chunk.iter().map(|x| x.mask.clone()).collect::<Vec<_>>())?;
        let tokens = match tokenizer {
            Some(tok) => {
                let t = 8 * e.grid_size();
                let views: Vec<f32> = chunk
                    .iter()
                    .flat_map(|x| {
                        x.tokenizer
                            .as_ref()
                            .expect("tokenizer views were made")
                            .iter()
                            .copied()
                    })
                    .collect();
                // The views are already mapped to 0.8·x + 0.1.
                let tok_device = tok
                    .devices()
                    .into_iter()
                    .next()
                    .unwrap_or_else(Device::flex);
                let v = Tensor::<4>::from_data(TensorData::new(views, [b, 3, t, t]), &tok_device);
                let ids: Tensor<2, Int> = tok.tokens_of_mapped(v);
                Some(ids.to_device(device))
            }
            None => None,
        };
        shards.push(PretrainBatch {
            images,
            masks,
            tokens,
        });
    }
    Ok(shards)
}

/// Drops metrics lines past `step` (a resumed run rewrites them).
fn truncate_metrics(path: &Path, step: u64) -> Result<(), PretrainError> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| PretrainError::io(path, e))?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<MetricsLine>(l)
                .map(|m| m.step <= step)
                .unwrap_or(false)
        })
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    crate::weights::write_atomic(path, body.as_bytes())
}

fn write_metrics(
    file: &mut std::fs::File,
    path: &Path,
    step: u64,
    epoch: u64,
    lr: f64,
    s: &StepStats,
    img_per_s: f64,
) -> Result<(), PretrainError> {
    let line = MetricsLine {
        step,
        epoch,
        loss: s.loss,
        loss_rec: s.loss_rec,
        loss_align: s.loss_align,
        mlm_acc: s.mlm_acc,
        lr,
        grad_norm: s.grad_norm,
        img_per_s,
    };
    let mut text = serde_json::to_string(&line).expect("metrics serialise");
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|_| file.flush())
        .map_err(|e| PretrainError::io(path, e))
}
