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

/// One finished run of a suite.
#[derive(Debug, Clone)]
pub struct SuiteRun {
    /// Index into the encoders given to [`run_suite`].
    pub encoder: usize,
    /// Index into the protocols given to [`run_suite`].
    pub protocol: usize,
    /// Its record (complete).
    pub record: RunRecord,
}

/// Whether `rec` is a finished run of exactly this protocol on exactly this encoder (`sha` is
/// the encoder file's checksum, `None` for a random encoder).
fn reusable(
    rec: &RunRecord,
    p: &SuiteProtocol,
    enc: &SuiteEncoder,
    sha: Option<&str>,
    seed: u64,
) -> bool {
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
        EncoderSource::File(_) => sha.is_some() && info.sha256.as_deref() == sha,
    }
}

/// The line printed for each finished run: `[i/n] protocol · encoder · seed k: top-1 x% (t s)`.
pub fn progress_line(i: usize, n: usize, rec: &RunRecord, reused: bool, secs: f64) -> String {
    let top1 = rec.metrics.get("top1").copied().unwrap_or(f64::NAN);
    let label = rec.encoder.as_ref().map_or("?", |e| e.label.as_str());
    let how = if reused {
        "reused".to_string()
    } else {
        format!("{secs:.0} s")
    };
    format!(
        "[{}/{n}] {} · {label} · seed {}: top-1 {top1:.1}% ({how})",
        i + 1,
        rec.protocol.name,
        rec.seed
    )
}

/// Runs every (encoder, protocol, seed), or reuses its finished record, and prints a
/// [`progress_line`] for each; returns the runs in that order.
pub fn run_suite(
    encoders: &[SuiteEncoder],
    protocols: &[SuiteProtocol],
    seeds: &[u64],
    s: &SuiteSettings,
) -> anyhow::Result<Vec<SuiteRun>> {
    let total = encoders.len() * protocols.len() * seeds.len();
    let mut out = Vec::with_capacity(total);
    for (ei, enc) in encoders.iter().enumerate() {
        // Checksummed once per encoder, for the reuse check.
        let sha = match &enc.source {
            EncoderSource::File(path) => Some(
                sha256_file(path).with_context(|| format!("checksumming {}", path.display()))?,
            ),
            EncoderSource::Random => None,
        };
        for (pi, p) in protocols.iter().enumerate() {
            for &seed in seeds {
                let dir = run_dir(&s.runs, &enc.key, &p.key, seed);
                let started = Instant::now();
                let existing = dir.join("record.json");
                let record = match RunRecord::read(&existing) {
                    Ok(rec) if reusable(&rec, p, enc, sha.as_deref(), seed) => {
                        eprintln!("{}", progress_line(out.len(), total, &rec, true, 0.0));
                        rec
                    }
                    _ => {
                        let rec = run_one(enc, p, seed, &dir, s)?;
                        let secs = started.elapsed().as_secs_f64();
                        eprintln!("{}", progress_line(out.len(), total, &rec, false, secs));
                        rec
                    }
                };
                out.push(SuiteRun {
                    encoder: ei,
                    protocol: pi,
                    record,
                });
            }
        }
    }
    Ok(out)
}

/// Runs one protocol on one encoder with one seed, recording into `dir`.
fn run_one(
    enc: &SuiteEncoder,
    p: &SuiteProtocol,
    seed: u64,
    dir: &Path,
    s: &SuiteSettings,
) -> anyhow::Result<RunRecord> {
    let mut req = ProbeRequest::new(enc.source.clone(), &s.data, p.protocol);
    req.preset = Some(enc.preset.clone());
    req.seed = seed;
    req.overrides = p.overrides.clone();
    req.out = Some(dir.to_path_buf());
    req.device = s.device.clone();
    req.progress = false;
    req.command = s.command.clone();
    req.threads = Some(s.threads);
    req.label = Some(enc.label.clone());
    let outcome =
        run_probe(&req).with_context(|| format!("{} on {} (seed {seed})", p.key, enc.label))?;
    let record = outcome
        .record
        .as_ref()
        .context("the probe wrote no record")?;
    RunRecord::read(record).with_context(|| format!("reading {}", record.display()))
}

/// The protocols of the quickstart and of the calibration: the linear probe (the recipe's
/// defaults), kNN, and a fine-tune on 10% of the labels, 10 epochs, evaluated at the end.
pub fn standard_protocols() -> Vec<SuiteProtocol> {
    vec![
        SuiteProtocol {
            key: "linear".into(),
            protocol: Protocol::Linear,
            overrides: ProbeOverrides::default(),
        },
        SuiteProtocol {
            key: "knn".into(),
            protocol: Protocol::Knn,
            overrides: ProbeOverrides::default(),
        },
        SuiteProtocol {
            key: "finetune-10pct".into(),
            protocol: Protocol::Finetune,
            overrides: ProbeOverrides {
                epochs: Some(10),
                label_fraction: Some(0.1),
                eval_every: Some(10),
                ..Default::default()
            },
        },
    ]
}

impl SuiteProtocol {
    /// One line on the protocol's settings, for reports.
    pub fn describe(&self) -> String {
        let o = &self.overrides;
        let mut parts = vec![self.protocol.name().to_string()];
        if let Some(e) = o.epochs {
            parts.push(format!("{e} epochs"));
        }
        if let Some(f) = o.label_fraction {
            parts.push(format!(
                "{:.0}% of the labels (fixed seeded subset)",
                f * 100.0
            ));
        }
        parts.push(
            match self.protocol {
                Protocol::Linear => {
                    "BatchNorm (no affine) + Linear on the cls token, LARS, features cached"
                }
                Protocol::Knn => {
                    "k = 20, cosine similarity, temperature 0.07 weighted vote, cls token"
                }
                Protocol::Finetune => {
                    "end to end, AdamW with layer-wise lr decay 0.65, mean-pooled patch tokens"
                }
                Protocol::Attentive => {
                    "learned query, one cross-attention block, BatchNorm + Linear, Nesterov SGD"
                }
            }
            .to_string(),
        );
        parts.join(", ")
    }
}
