//! `cae-bench calibrate`: downstream accuracy against pretraining steps.
//!
//! Takes one pretraining run (its checkpoints along the way) and measures the encoder at chosen
//! steps, and a random initialisation, with the quickstart's protocols over several seeds. Writes
//! `OUT/calibration.md` (table, curves, and the smallest budget at which the pretrained encoder
//! beats the random one by more than two standard deviations on some protocol),
//! `OUT/calibration.csv` and one PNG curve per protocol. Runs are reused as in the quickstart.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use cae_heads::probe::EncoderSource;
use cae_pretrain::train::RunConfig;
use cae_reports::calibration::{self, Observation};
use cae_reports::record::{RunRecord, write_atomic};

use crate::suite::{
    SuiteEncoder, SuiteProtocol, SuiteRun, SuiteSettings, run_suite, standard_protocols,
};

/// `cae-bench calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// A pretraining run folder (`cae-bench pretrain --out RUN`, with checkpoints kept).
    #[arg(long)]
    pub run: PathBuf,
    /// ImageFolder root with `train/` and `val/`.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Pretraining steps to measure (each needs its checkpoint, or is the run's last step).
    #[arg(long, value_delimiter = ',', default_value = "100,200,400,800,1600")]
    pub steps: Vec<u64>,
    /// Seeds of every protocol.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Seconds of one pretraining step on the machine the budget is quoted for [default: the
    /// run's own wall time per step].
    #[arg(long)]
    pub step_seconds: Option<f64>,
    /// Device.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The encoder file of `step` in a run: a kept checkpoint, or the final encoder.
fn encoder_at(run: &Path, cfg: &RunConfig, step: u64) -> anyhow::Result<PathBuf> {
    let ckpt = run
        .join("checkpoints")
        .join(format!("ckpt-{step:08}.safetensors"));
    if ckpt.exists() {
        return Ok(ckpt);
    }
    let last = run.join("encoder.safetensors");
    if step == cfg.derived.total_steps && last.exists() {
        return Ok(last);
    }
    anyhow::bail!(
        "{}: no checkpoint of step {step} (pretrain with --checkpoint-every dividing it and enough \
         --keep-checkpoints)",
        run.display()
    )
}

/// Runs the calibration.
pub fn run(args: CalibrateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let threads = rayon::current_num_threads();
    anyhow::ensure!(args.seeds >= 1, "--seeds must be at least 1");
    let cfg_path = args.run.join("config.toml");
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("reading {}", cfg_path.display()))?;
    let cfg = RunConfig::from_toml(&text)
        .with_context(|| format!("{}: not a pretraining run config", cfg_path.display()))?;
    let run_record = RunRecord::read(&args.run.join("record.json")).ok();
    let step_seconds = match (args.step_seconds, &run_record) {
        (Some(s), _) => s,
        (None, Some(r)) if r.is_result() => {
            let steps = r.metrics.get("steps").copied().unwrap_or(0.0);
            let secs = r.metrics.get("seconds").copied().unwrap_or(0.0);
            anyhow::ensure!(
                steps > 0.0,
                "{}: the run record has no step count; pass --step-seconds",
                args.run.display()
            );
            secs / steps
        }
        _ => anyhow::bail!(
            "{}: no finished run record to time a step from; pass --step-seconds",
            args.run.display()
        ),
    };
    let method = match cfg.model.method {
        cae_pretrain::config::Method::Cae => "CAE",
        cae_pretrain::config::Method::Beit => "BEiT",
    };
    let preset = cfg.model.preset.clone();
    let mut steps = args.steps.clone();
    steps.sort_unstable();
    steps.dedup();
    let mut encoders = vec![SuiteEncoder {
        key: "random".into(),
        label: format!("random init {preset}"),
        source: EncoderSource::Random,
        preset: preset.clone(),
    }];
    // The pretraining steps of each encoder (random init: none).
    let mut encoder_steps = vec![None];
    for &s in &steps {
        encoder_steps.push(Some(s));
        encoders.push(SuiteEncoder {
            key: format!("step-{s:06}"),
            label: format!("{method} {preset}, {s} steps"),
            source: EncoderSource::File(encoder_at(&args.run, &cfg, s)?),
            preset: preset.clone(),
        });
    }
    let seeds: Vec<u64> = (0..args.seeds).collect();
    let settings = SuiteSettings {
        data: args.data.clone(),
        runs: args.out.join("runs"),
        device: args.device.clone(),
        threads,
        command: std::env::args().collect(),
    };
    let protos = standard_protocols();
    let runs = run_suite(&encoders, &protos, &seeds, &settings)?;
    let path = write_calibration(
        &args,
        &cfg,
        method,
        &encoder_steps,
        &protos,
        &runs,
        step_seconds,
        threads,
    )?;
    eprintln!(
        "calibration: {} ({:.1} min)",
        path.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// Writes `calibration.md`, `calibration.csv` and the curves.
#[allow(clippy::too_many_arguments)]
fn write_calibration(
    args: &CalibrateArgs,
    cfg: &RunConfig,
    method: &str,
    encoder_steps: &[Option<u64>],
    protos: &[SuiteProtocol],
    runs: &[SuiteRun],
    step_seconds: f64,
    threads: usize,
) -> anyhow::Result<PathBuf> {
    let obs: Vec<Observation> = runs
        .iter()
        .filter_map(|r| {
            Observation::of(
                &r.record,
                &protos[r.protocol].key,
                encoder_steps[r.encoder],
                "top1",
            )
        })
        .collect();
    let curves = calibration::curves(&obs);
    std::fs::create_dir_all(&args.out)?;
    let plots = calibration::plots(&curves, method, "top-1 (%)", &args.out)?;
    write_atomic(
        &args.out.join("calibration.csv"),
        calibration::to_csv(&curves, step_seconds).as_bytes(),
    )?;
    let mut md = format!(
        "# Calibration: downstream top-1 against pretraining steps ({method} {}, vs random init)\n\n",
        cfg.model.preset
    );
    md.push_str(&format!(
        "- **pretraining run**: `{}` ({} steps in all, batch {}, lr {}, seed {}, data `{}`); the \
         encoders are its checkpoints, so every point shares one cosine schedule\n",
        args.run.display(),
        cfg.derived.total_steps,
        cfg.derived.effective_batch,
        cfg.derived.lr,
        cfg.train.seed,
        cfg.data
    ));
    md.push_str(&format!(
        "- **time per step**: {step_seconds:.3} s ({})\n",
        if args.step_seconds.is_some() {
            "given with --step-seconds"
        } else {
            "the run's own wall time per step"
        }
    ));
    md.push_str(&format!(
        "- **protocols** (downstream data `{}`, seeds 0–{}, device {}, {threads} threads):\n",
        args.data.display(),
        args.seeds - 1,
        args.device
    ));
    for p in protos {
        md.push_str(&format!("  - `{}`: {}\n", p.key, p.describe()));
    }
    md.push_str(&format!(
        "- **records**: `{}/<encoder>/<protocol>/seed-<k>/record.json`\n\n",
        args.out.join("runs").display()
    ));
    md.push_str("## Table (top-1 %, mean ± sample std over seeds)\n\n");
    md.push_str(&calibration::markdown(
        &curves,
        "top-1",
        step_seconds / 60.0,
    ));
    md.push_str("\n## Curves\n\n");
    for p in &plots {
        let name = p
            .png
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        md.push_str(&format!("![{name}]({name})\n\n"));
    }
    let path = args.out.join("calibration.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}
