//! A suite of downstream protocols over several encoders and seeds: what `cae-bench quickstart`
//! and `cae-bench calibrate` run.
//!
//! Every (encoder, protocol) request has an identity, its request key
//! ([`RunRecord::request_key`]): a sha256 over everything that changes its numbers but the
//! seed: the protocol and every setting given to it, the encoder (its file's sha256, or the
//! preset of a random initialisation), the data (the fingerprint of the folder's files), the
//! device and the label. Its runs live in `RUNS/<encoder>/<protocol>-<key8>/seed-<k>/`, each with
//! its `record.json`. A run whose record there is complete and carries the same key and seed is
//! reused, so an interrupted suite picks up where it stopped, and a suite run again on other
//! data, another encoder file or other settings runs again in folders of its own instead of
//! showing old numbers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::protocols::classification::{
    EncoderSource, ProbeOverrides, ProbeRequest, Protocol, run_probe,
};
use cae_reports::record::{RunRecord, request_key, sha256_file};

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

/// The identity of one (encoder, protocol) request, seed excluded (see the module docs).
/// `encoder_sha` is the encoder file's checksum (`None` for a random encoder).
pub fn suite_request_key(
    enc: &SuiteEncoder,
    encoder_sha: Option<&str>,
    p: &SuiteProtocol,
    data_fingerprint: &str,
    device: &str,
) -> String {
    let encoder = match &enc.source {
        EncoderSource::Random => serde_json::json!({ "random": enc.preset }),
        EncoderSource::File(_) => {
            serde_json::json!({ "sha256": encoder_sha, "preset": enc.preset })
        }
    };
    request_key(&serde_json::json!({
        "kind": "linear-probe",
        "protocol": p.protocol.name(),
        "overrides": p.overrides,
        "encoder": encoder,
        "label": enc.label,
        "data": data_fingerprint,
        "device": device,
    }))
}

/// The folder of one run: `RUNS/<encoder>/<protocol>-<key8>/seed-<k>`.
pub fn run_dir(runs: &Path, encoder: &str, protocol: &str, key: &str, seed: u64) -> PathBuf {
    runs.join(encoder)
        .join(format!("{protocol}-{}", &key[..key.len().min(8)]))
        .join(format!("seed-{seed}"))
}

/// One finished run of a suite.
#[derive(Debug, Clone)]
pub struct SuiteRun {
    /// Index into the encoders given to [`run_suite`].
    pub encoder: usize,
    /// Index into the protocols given to [`run_suite`].
    pub protocol: usize,
    /// Its folder.
    pub dir: PathBuf,
    /// Whether a finished record was reused instead of running.
    pub reused: bool,
    /// Its record (complete).
    pub record: RunRecord,
}

/// Whether `rec` is a finished run of exactly this request and seed.
fn reusable(rec: &RunRecord, key: &str, seed: u64) -> bool {
    rec.is_result() && rec.seed == seed && rec.request_key.as_deref() == Some(key)
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
/// [`progress_line`] for each and a summary of what was reused; returns the runs in that order.
pub fn run_suite(
    encoders: &[SuiteEncoder],
    protocols: &[SuiteProtocol],
    seeds: &[u64],
    s: &SuiteSettings,
) -> anyhow::Result<Vec<SuiteRun>> {
    let total = encoders.len() * protocols.len() * seeds.len();
    let mut out = Vec::with_capacity(total);
    let data_fp = cae_datasets::fingerprint_dir(&s.data)
        .with_context(|| format!("fingerprinting the data {}", s.data.display()))?
        .to_string();
    for (ei, enc) in encoders.iter().enumerate() {
        // Checksummed once per encoder, for the request key.
        let sha = match &enc.source {
            EncoderSource::File(path) => Some(
                sha256_file(path).with_context(|| format!("checksumming {}", path.display()))?,
            ),
            EncoderSource::Random => None,
        };
        for (pi, p) in protocols.iter().enumerate() {
            let key = suite_request_key(enc, sha.as_deref(), p, &data_fp, &s.device);
            for &seed in seeds {
                let dir = run_dir(&s.runs, &enc.key, &p.key, &key, seed);
                let started = Instant::now();
                let existing = dir.join("record.json");
                let (record, reused) = match RunRecord::read(&existing) {
                    Ok(rec) if reusable(&rec, &key, seed) => (rec, true),
                    _ => {
                        let ctx = RunContext {
                            key: &key,
                            data_fingerprint: &data_fp,
                            settings: s,
                        };
                        (run_one(enc, p, seed, &dir, &ctx)?, false)
                    }
                };
                let secs = started.elapsed().as_secs_f64();
                eprintln!("{}", progress_line(out.len(), total, &record, reused, secs));
                out.push(SuiteRun {
                    encoder: ei,
                    protocol: pi,
                    dir,
                    reused,
                    record,
                });
            }
        }
    }
    eprintln!("{}", reuse_summary(&out, &s.runs));
    Ok(out)
}

/// One line on what a suite reused: `suite: 6 of 27 runs reused, 21 run (RUNS)`.
pub fn reuse_summary(runs: &[SuiteRun], root: &Path) -> String {
    let reused = runs.iter().filter(|r| r.reused).count();
    format!(
        "suite: {reused} of {} runs reused (finished records of the same request and seed), {} \
         run now ({})",
        runs.len(),
        runs.len() - reused,
        root.display()
    )
}

/// What [`run_one`] needs beyond the encoder, protocol and seed.
struct RunContext<'a> {
    key: &'a str,
    data_fingerprint: &'a str,
    settings: &'a SuiteSettings,
}

/// Runs one protocol on one encoder with one seed, recording into `dir`.
fn run_one(
    enc: &SuiteEncoder,
    p: &SuiteProtocol,
    seed: u64,
    dir: &Path,
    ctx: &RunContext<'_>,
) -> anyhow::Result<RunRecord> {
    let s = ctx.settings;
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
    req.data_fingerprint = Some(ctx.data_fingerprint.to_string());
    req.request_key = Some(ctx.key.to_string());
    let outcome =
        run_probe(&req).with_context(|| format!("{} on {} (seed {seed})", p.key, enc.label))?;
    let record = outcome
        .record
        .as_ref()
        .context("the probe wrote no record")?;
    RunRecord::read(record).with_context(|| format!("reading {}", record.display()))
}

/// The protocols of the quickstart and of the calibration: the linear probe (the recipe's
/// defaults), kNN, and a fine-tune on 1% of the labels (the semi-supervised 1% of SimCLR / BYOL;
/// 96 images of the quickstart's 9,600, at least one per class), 10 epochs, evaluated at the
/// end. 1% rather than 10%: on the quickstart's labelled split 10% would cost more than the rest
/// of the downstream protocols together.
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
            key: "finetune-1pct".into(),
            protocol: Protocol::Finetune,
            overrides: ProbeOverrides {
                epochs: Some(10),
                label_fraction: Some(0.01),
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

/// A dense downstream protocol of a suite (the quickstart's `--full`, `ablate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dense {
    /// `cae-bench segment --protocol upernet`.
    SegUpernet,
    /// `cae-bench segment --protocol linear`.
    SegLinear,
    /// `cae-bench detect`.
    Detect,
}

impl Dense {
    /// Folder and table key.
    pub fn key(self) -> &'static str {
        match self {
            Self::SegUpernet => "segment-upernet",
            Self::SegLinear => "segment-linear",
            Self::Detect => "detect",
        }
    }
}

/// Where and how a dense protocol runs.
#[derive(Debug, Clone)]
pub struct DenseSettings {
    /// `ADEChallengeData2016` (segmentation) or the COCO root (detection).
    pub data: PathBuf,
    /// Recipe (`mini`, `test`, …).
    pub preset: String,
    /// Device.
    pub device: String,
    /// Progress bars.
    pub progress: bool,
}

/// Runs a dense protocol on `enc` with `seed` in `RUNS/<encoder>/<key>-<id8>/seed-<k>/`, `id`
/// being the request (protocol, recipe, encoder checksum or random preset, data fingerprint,
/// device, label); reuses a complete record there, resumes from the checkpoints of an
/// interrupted run. Returns the folder, the record and whether it was reused.
pub fn run_dense(
    kind: Dense,
    enc: &SuiteEncoder,
    seed: u64,
    runs: &Path,
    s: &DenseSettings,
) -> anyhow::Result<(PathBuf, RunRecord, bool)> {
    use crate::protocols::ade20k::{SegOverrides, SegProtocol, SegRequest, run_segment};
    use crate::protocols::coco::{DetRequest, run_detect};
    let encoder = match &enc.source {
        EncoderSource::File(p) => serde_json::json!({
            "sha256": sha256_file(p).with_context(|| format!("checksumming {}", p.display()))?
        }),
        EncoderSource::Random => serde_json::json!({ "random": enc.preset }),
    };
    let key = request_key(&serde_json::json!({
        "kind": kind.key(),
        "preset": s.preset,
        "encoder": encoder,
        "label": enc.label,
        "data": cae_datasets::fingerprint_dir(&s.data)
            .with_context(|| format!("fingerprinting {}", s.data.display()))?
            .to_string(),
        "device": s.device,
    }));
    let dir = run_dir(runs, &enc.key, kind.key(), &key, seed);
    if let Ok(r) = RunRecord::read(&dir.join("record.json"))
        && r.is_result()
        && r.seed == seed
    {
        return Ok((dir, r, true));
    }
    let resume = dir.join("checkpoints").is_dir();
    let command: Vec<String> = std::env::args().collect();
    let record = match kind {
        Dense::SegUpernet | Dense::SegLinear => {
            let req = SegRequest {
                encoder: enc.source.clone(),
                data: s.data.clone(),
                preset: s.preset.clone(),
                protocol: if kind == Dense::SegUpernet {
                    SegProtocol::Upernet
                } else {
                    SegProtocol::Linear
                },
                overrides: SegOverrides::default(),
                seed,
                resume,
                device: s.device.clone(),
                out: dir.clone(),
                progress: s.progress,
                command,
                label: Some(enc.label.clone()),
                stop_after: None,
            };
            run_segment(&req)
                .with_context(|| format!("{} on {} (seed {seed})", kind.key(), enc.label))?
                .record
        }
        Dense::Detect => {
            let mut req = DetRequest::new(enc.source.clone(), s.data.clone(), dir.clone());
            req.preset = s.preset.clone();
            req.seed = seed;
            req.resume = resume;
            req.device = s.device.clone();
            req.progress = s.progress;
            req.command = command;
            req.label = Some(enc.label.clone());
            run_detect(&req)
                .with_context(|| format!("detect on {} (seed {seed})", enc.label))?
                .record
        }
    };
    let rec = RunRecord::read(&record).with_context(|| format!("reading {}", record.display()))?;
    Ok((dir, rec, false))
}
