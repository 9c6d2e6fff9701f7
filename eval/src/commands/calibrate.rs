//! `cae-bench calibrate`: downstream accuracy against pretraining steps.
//!
//! Takes one pretraining run (its checkpoints along the way) and measures the encoder at chosen
//! steps, and a random initialisation, with the quickstart's protocols over several seeds. Writes
//! `OUT/calibration.md` (table, curves, and the smallest budget at which the pretrained encoder
//! beats the random one by more than two standard deviations on some protocol),
//! `OUT/calibration.csv` and one PNG curve per protocol. Runs are reused as in the quickstart.
//!
//! Minutes are steps × the step time the pretraining run measured itself ([`step_time`]: the
//! median of the `img_per_s` of its logged steps in `RUN/metrics.jsonl`), never a number given on
//! the command line; the output says where it came from (machine, threads, cae-bench version of
//! the run), so a run made before a speed-up is visibly so.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::protocols::classification::EncoderSource;
use cae_pretrain::train::RunConfig;
use cae_pretrain::train::run::MetricsLine;
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

/// A pretraining step's time and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTime {
    /// Seconds per optimizer step.
    pub seconds: f64,
    /// Where it came from, in words.
    pub source: String,
}

/// The step time of a pretraining run, measured by the run itself: `effective batch / median
/// img_per_s` over the steps logged in `RUN/metrics.jsonl` (the median leaves out the first,
/// warming step and holds across a resume, whose wall time would not). Without a metrics file
/// with a positive `img_per_s`, the run record's wall `seconds` / `steps` (right only for a run
/// that was not resumed, and said so). Errors name the file when neither is there.
pub fn step_time(run: &Path, effective_batch: usize) -> anyhow::Result<StepTime> {
    let record = RunRecord::read(&run.join("record.json")).ok();
    let provenance = record.as_ref().map_or_else(
        || "no run record to say on which machine".to_string(),
        |r| {
            let m = &r.machine;
            format!(
                "measured on {}, {} cores, {} threads, device {}, cae-bench {}",
                m.cpu.as_deref().unwrap_or("an unknown CPU"),
                m.cores,
                m.threads.map_or_else(|| "?".to_string(), |t| t.to_string()),
                m.device,
                r.versions.get("cae-bench").map_or("?", String::as_str)
            )
        },
    );
    let metrics = run.join("metrics.jsonl");
    let batch = effective_batch as f64;
    if let Ok(text) = std::fs::read_to_string(&metrics) {
        let mut rates = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let m: MetricsLine = serde_json::from_str(line).with_context(|| {
                format!("{} line {}: not a metrics line", metrics.display(), i + 1)
            })?;
            if m.img_per_s.is_finite() && m.img_per_s > 0.0 {
                rates.push(m.img_per_s);
            }
        }
        if !rates.is_empty() {
            rates.sort_by(f64::total_cmp);
            let k = rates.len();
            let median = if k % 2 == 1 {
                rates[k / 2]
            } else {
                (rates[k / 2 - 1] + rates[k / 2]) / 2.0
            };
            return Ok(StepTime {
                seconds: batch / median,
                source: format!(
                    "batch {batch} / the median img/s ({median:.1}) of the {k} steps logged in \
                     `{}` ({provenance})",
                    metrics.display()
                ),
            });
        }
    }
    match &record {
        Some(r) if r.is_result() => {
            let steps = r.metrics.get("steps").copied().unwrap_or(0.0);
            let secs = r.metrics.get("seconds").copied().unwrap_or(0.0);
            anyhow::ensure!(
                steps > 0.0 && secs > 0.0,
                "{}: no img_per_s in {} and no step count or wall time in the run record to \
                 time a step from",
                run.display(),
                metrics.display()
            );
            Ok(StepTime {
                seconds: secs / steps,
                source: format!(
                    "the run record's wall time / steps ({secs:.0} s / {steps} steps; no \
                     img_per_s in `{}`; too high if the run was resumed) ({provenance})",
                    metrics.display()
                ),
            })
        }
        _ => anyhow::bail!(
            "{}: cannot time a pretraining step: no img_per_s in {} and no finished run record",
            run.display(),
            metrics.display()
        ),
    }
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
    let timing = step_time(&args.run, cfg.derived.effective_batch)?;
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
        &timing,
        threads,
    )?;
    eprintln!(
        "calibration: {} ({:.1} min)",
        path.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// What a calibration measured, written beside its report as `OUT/calibration.json`, so that
/// [`render`] can draw the report again from the committed records alone (no checkpoint, no
/// world needed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// `CAE` or `BEiT`.
    pub method: String,
    /// The encoder preset.
    pub preset: String,
    /// The pretraining run folder, as given on the command line.
    pub run: String,
    /// Its total steps, effective batch, peak lr, seed and data folder.
    pub pretrain_steps: u64,
    /// Effective batch of the pretraining run.
    pub pretrain_batch: usize,
    /// Peak learning rate of the pretraining run.
    pub pretrain_lr: f64,
    /// Seed of the pretraining run.
    pub pretrain_seed: u64,
    /// Pretraining data folder (as the run recorded it).
    pub pretrain_data: String,
    /// Downstream ImageFolder root, as given on the command line.
    pub data: String,
    /// Seeds per protocol.
    pub seeds: u64,
    /// Device of the probes.
    pub device: String,
    /// Worker threads.
    pub threads: usize,
    /// Seconds per pretraining step ([`step_time`]).
    pub step_seconds: f64,
    /// Where the step time came from.
    pub step_source: String,
    /// Protocol keys and their descriptions, in table order.
    pub protocols: Vec<(String, String)>,
    /// Every run: pretraining steps of its encoder (`None`: random init), protocol key, and its
    /// folder relative to `OUT`.
    pub runs: Vec<(Option<u64>, String, String)>,
}

/// Writes `calibration.json`, then the curves, `calibration.csv` and `calibration.md` drawn from
/// it ([`render`]).
#[allow(clippy::too_many_arguments)]
fn write_calibration(
    args: &CalibrateArgs,
    cfg: &RunConfig,
    method: &str,
    encoder_steps: &[Option<u64>],
    protos: &[SuiteProtocol],
    runs: &[SuiteRun],
    timing: &StepTime,
    threads: usize,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&args.out)?;
    let rel = |d: &Path| -> anyhow::Result<String> {
        let r = d
            .strip_prefix(&args.out)
            .with_context(|| format!("{} is not under {}", d.display(), args.out.display()))?;
        Ok(r.to_string_lossy().replace('\\', "/"))
    };
    let manifest = Manifest {
        method: method.to_string(),
        preset: cfg.model.preset.clone(),
        run: args.run.display().to_string(),
        pretrain_steps: cfg.derived.total_steps,
        pretrain_batch: cfg.derived.effective_batch,
        pretrain_lr: cfg.derived.lr,
        pretrain_seed: cfg.train.seed,
        pretrain_data: cfg.data.clone(),
        data: args.data.display().to_string(),
        seeds: args.seeds,
        device: args.device.clone(),
        threads,
        step_seconds: timing.seconds,
        step_source: timing.source.clone(),
        protocols: protos
            .iter()
            .map(|p| (p.key.clone(), p.describe()))
            .collect(),
        runs: runs
            .iter()
            .map(|r| {
                Ok((
                    encoder_steps[r.encoder],
                    protos[r.protocol].key.clone(),
                    rel(&r.dir)?,
                ))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    write_atomic(
        &args.out.join("calibration.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    let (md, csv) = render(&args.out, &args.out)?;
    write_atomic(&args.out.join("calibration.csv"), csv.as_bytes())?;
    let path = args.out.join("calibration.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// Draws a calibration again from `OUT/calibration.json` and the records it names: returns
/// `calibration.md` and `calibration.csv`, and draws the curves (PNG and CSV per protocol) into
/// `plots`. Errors name the manifest or the record that is missing or incomplete.
pub fn render(out: &Path, plots: &Path) -> anyhow::Result<(String, String)> {
    let mpath = out.join("calibration.json");
    let m: Manifest = serde_json::from_str(
        &std::fs::read_to_string(&mpath).with_context(|| format!("reading {}", mpath.display()))?,
    )
    .with_context(|| format!("{}: not a calibration manifest", mpath.display()))?;
    let mut obs = Vec::new();
    for (step, protocol, dir) in &m.runs {
        let path = out.join(dir).join("record.json");
        let rec = RunRecord::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let o = Observation::of(&rec, protocol, *step, "top1")
            .with_context(|| format!("{}: not a finished run with a top-1", path.display()))?;
        obs.push(o);
    }
    let curves = calibration::curves(&obs);
    std::fs::create_dir_all(plots)?;
    let drawn = calibration::plots(&curves, &m.method, "top-1 (%)", plots)?;
    let csv = calibration::to_csv(&curves, m.step_seconds);
    let mut md = format!(
        "# Calibration: downstream top-1 against pretraining steps ({} {}, vs random init)\n\n",
        m.method, m.preset
    );
    md.push_str(&format!(
        "- **pretraining run**: `{}` ({} steps in all, batch {}, lr {}, seed {}, data `{}`); the \
         encoders are its checkpoints, so every point shares one cosine schedule\n",
        m.run, m.pretrain_steps, m.pretrain_batch, m.pretrain_lr, m.pretrain_seed, m.pretrain_data
    ));
    md.push_str(&format!(
        "- **time per step**: {:.3} s, {}; minutes below are steps × this time\n",
        m.step_seconds, m.step_source
    ));
    md.push_str(&format!(
        "- **what varies**: random init: the seed draws the encoder itself and the probe; \
         pretrained points: one pretraining run (seed {}), so the seed varies only the probe, and \
         the spread shown does not include variation over pretraining seeds; kNN on a checkpoint \
         draws nothing from the seed and is one measurement (\"deterministic\", n = 1)\n",
        m.pretrain_seed
    ));
    md.push_str(&format!(
        "- **protocols** (downstream data `{}`, seeds 0–{}, device {}, {} threads):\n",
        m.data,
        m.seeds.saturating_sub(1),
        m.device,
        m.threads
    ));
    for (key, describe) in &m.protocols {
        md.push_str(&format!("  - `{key}`: {describe}\n"));
    }
    md.push_str(
        "- **records**: `runs/<encoder>/<protocol>/seed-<k>/record.json` beside this file, listed \
         in `calibration.json`\n\n",
    );
    md.push_str("## Table (top-1 %, mean ± sample std over seeds)\n\n");
    md.push_str(&calibration::markdown(
        &curves,
        "top-1",
        m.step_seconds / 60.0,
    ));
    if let Some(last) = obs.iter().filter_map(|o| o.step).max() {
        md.push_str(&format!(
            "\n## Pretrained ({last} steps) − random init\n\n\
             Top-1 points, Welch's 95% interval over the probe seeds. A protocol whose seed draws \
             nothing on the checkpoint (kNN) gives the pretrained side the same value for every \
             seed, and the interval is then random init's spread alone. Neither side varies the \
             pretraining seed.\n\n\
             | protocol | pretrained − random |\n|---|---|\n"
        ));
        for (key, _) in &m.protocols {
            let values = |step: Option<u64>| -> Vec<f64> {
                obs.iter()
                    .filter(|o| &o.protocol == key && o.step == step)
                    .map(|o| o.value)
                    .collect()
            };
            let cell = cae_reports::stats::welch(&values(Some(last)), &values(None))
                .map_or_else(|| "– (fewer than 2 seeds)".to_string(), |d| d.text(1));
            md.push_str(&format!("| `{key}` | {cell} |\n"));
        }
    }
    md.push_str("\n## Curves\n\n");
    for p in &drawn {
        let name = p
            .png
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        md.push_str(&format!("![{name}]({name})\n\n"));
    }
    Ok((md, csv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: u64, img_per_s: f64) -> String {
        format!(
            "{{\"step\":{step},\"epoch\":0,\"loss\":1.0,\"loss_rec\":1.0,\"loss_align\":0.0,\
             \"mlm_acc\":null,\"lr\":0.001,\"grad_norm\":1.0,\"img_per_s\":{img_per_s}}}\n"
        )
    }

    #[test]
    fn the_step_time_is_the_runs_own_median_throughput() {
        let dir = tempfile::tempdir().unwrap();
        // A slow first (warming) step, then steady ones.
        let text: String = [(1, 20.0), (2, 160.0), (3, 150.0), (4, 170.0), (5, 0.0)]
            .iter()
            .map(|(s, r)| line(*s, *r))
            .collect();
        std::fs::write(dir.path().join("metrics.jsonl"), text).unwrap();
        let t = step_time(dir.path(), 64).unwrap();
        // Median of 20, 150, 160, 170 (the 0 is no measurement) = 155.
        assert!((t.seconds - 64.0 / 155.0).abs() < 1e-12, "{t:?}");
        assert!(
            t.source.contains("median img/s (155.0) of the 4 steps"),
            "{}",
            t.source
        );
        assert!(t.source.contains("no run record"), "{}", t.source);
    }

    #[test]
    fn without_metrics_or_a_finished_record_there_is_no_step_time() {
        let dir = tempfile::tempdir().unwrap();
        let err = step_time(dir.path(), 64).unwrap_err().to_string();
        assert!(err.contains("cannot time a pretraining step"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        std::fs::write(dir.path().join("metrics.jsonl"), "not json\n").unwrap();
        let err = format!("{:#}", step_time(dir.path(), 64).unwrap_err());
        assert!(err.contains("metrics.jsonl line 1"), "{err}");
    }
}
