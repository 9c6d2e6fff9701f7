//! A suite of downstream protocols over several encoders and seeds: what `cae-bench quickstart`
//! and `cae-bench calibrate` run.
//!
//! Every run gets its own folder, `RUNS/<encoder>/<protocol>/seed-<k>/`, with its `record.json`.
//! A run whose record is already complete (same protocol settings, same encoder file) is reused,
//! so a suite that was interrupted picks up where it stopped; an incomplete record is run again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use cae_heads::probe::{EncoderSource, ProbeOverrides, ProbeRequest, Protocol, run_probe};
use cae_reports::record::{RunRecord, sha256_file};

/// One protocol of a suite, with its settings.
#[derive(Debug, Clone)]
pub struct SuiteProtocol {
    /// Folder name and table key (`linear`, `knn`, `finetune-10pct`).
    pub key: String,
    /// The protocol.
    pub protocol: Protocol,
    /// Its settings (beyond the recipe's defaults).
    pub overrides: ProbeOverrides,
}

/// One encoder of a suite.
#[derive(Debug, Clone)]
pub struct SuiteEncoder {
    /// Folder name (`cae`, `beit`, `random`, `cae-step-400`).
    pub key: String,
    /// The label in tables (`CAE mini, 600 steps`).
    pub label: String,
    /// The encoder.
    pub source: EncoderSource,
    /// Preset (for a random encoder, or a file without a config).
    pub preset: String,
}

/// Where a suite runs.
#[derive(Debug, Clone)]
pub struct SuiteSettings {
    /// ImageFolder root with `train/` and `val/`.
    pub data: PathBuf,
    /// Folder of the runs.
    pub runs: PathBuf,
    /// Device.
    pub device: String,
    /// Worker threads (for the records).
    pub threads: usize,
    /// The command line that started the suite (for the records).
    pub command: Vec<String>,
}

/// The folder of one run.
pub fn run_dir(runs: &Path, encoder: &str, protocol: &str, seed: u64) -> PathBuf {
    runs.join(encoder)
        .join(protocol)
        .join(format!("seed-{seed}"))
}

/// Whether `rec` is a finished run of exactly this protocol on exactly this encoder.
fn reusable(rec: &RunRecord, p: &SuiteProtocol, enc: &SuiteEncoder, seed: u64) -> bool {
    if !rec.is_result() || rec.seed != seed || rec.protocol.name != p.protocol.name() {
        return false;
    }
    if let Some(e) = p.overrides.epochs
        && rec.protocol.epochs != Some(e)
    {
        return false;
    }
    let fraction = p.overrides.label_fraction.unwrap_or(1.0);
    if rec
        .protocol
        .label_fraction
        .is_none_or(|f| (f - fraction).abs() > 1e-12)
    {
        return false;
    }
    let Some(info) = &rec.encoder else {
        return false;
    };
    match &enc.source {
        EncoderSource::Random => info.method == "random" && info.arch == enc.preset,
        EncoderSource::File(path) => match sha256_file(path) {
            Ok(sha) => info.sha256.as_deref() == Some(sha.as_str()),
            Err(_) => false,
        },
    }
}

/// Runs every (encoder, protocol, seed), or reuses its finished record; returns the records in
/// that order. `on_run` hears about each run as it finishes (index from 0, total, the record,
/// whether it was reused, seconds).
pub fn run_suite(
    encoders: &[SuiteEncoder],
    protocols: &[SuiteProtocol],
    seeds: &[u64],
    s: &SuiteSettings,
    mut on_run: impl FnMut(usize, usize, &RunRecord, bool, f64),
) -> anyhow::Result<Vec<RunRecord>> {
    let total = encoders.len() * protocols.len() * seeds.len();
    let mut out = Vec::with_capacity(total);
    for enc in encoders {
        for p in protocols {
            for &seed in seeds {
                let dir = run_dir(&s.runs, &enc.key, &p.key, seed);
                let started = Instant::now();
                let existing = dir.join("record.json");
                if existing.exists()
                    && let Ok(rec) = RunRecord::read(&existing)
                    && reusable(&rec, p, enc, seed)
                {
                    on_run(out.len(), total, &rec, true, 0.0);
                    out.push(rec);
                    continue;
                }
                let mut req = ProbeRequest::new(enc.source.clone(), &s.data, p.protocol);
                req.preset = Some(enc.preset.clone());
                req.seed = seed;
                req.overrides = p.overrides.clone();
                req.out = Some(dir.clone());
                req.device = s.device.clone();
                req.progress = false;
                req.command = s.command.clone();
                req.threads = Some(s.threads);
                req.label = Some(enc.label.clone());
                let outcome = run_probe(&req)
                    .with_context(|| format!("{} on {} (seed {seed})", p.key, enc.label))?;
                let record = outcome
                    .record
                    .as_ref()
                    .context("the probe wrote no record")?;
                let rec = RunRecord::read(record)
                    .with_context(|| format!("reading {}", record.display()))?;
                on_run(
                    out.len(),
                    total,
                    &rec,
                    false,
                    started.elapsed().as_secs_f64(),
                );
                out.push(rec);
            }
        }
    }
    Ok(out)
}
