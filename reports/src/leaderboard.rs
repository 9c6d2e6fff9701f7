//! Leaderboards: the complete runs under a folder, grouped by everything but the seed, as
//! mean ± sample std over seeds for each headline metric.
//!
//! * [`load_runs`] finds every `record.json` under a folder (recursively, in path order) and sorts
//!   them into results (`complete`), incomplete runs (`running`, i.e. still going or killed, and
//!   `failed`) and, with [`Malformed::Skip`], files that do not parse. Incomplete runs are never
//!   results; they are listed so the reader knows they exist.
//! * [`Leaderboard::build`] groups the results with polars (eager `group_by` + per-group mean and
//!   sample std, `ddof = 1`). A group is one [`GroupKey`]: encoder (label, method, arch,
//!   pretraining steps, and its identity: the file's sha256, so two different files both named
//!   `encoder.safetensors` are two rows), run kind, dataset and protocol (name, pooling, layer,
//!   epochs, effective batch, lr, optimizer, cached features, label fraction, and every other
//!   setting of [`crate::record::ProtocolInfo::settings`]: k, T, weight decay, warmup, layer
//!   decay, drop path, label smoothing, …). So every detail printed beside a number is the same
//!   for all the seeds averaged into it. A random initialisation is keyed by `random init` +
//!   arch, not by a checksum: its seed draws the encoder, so its rows run over seeds.
//! * What the seed varies is said per row ([`RunRecord::seed_draws`]). A row whose seed draws
//!   nothing (kNN on an encoder file) and whose values are all equal is **one measurement**:
//!   n = 1, no standard deviation, however many seeds were run. Two records with the same seed in
//!   one row are **flagged** (a `⚠` beside the number, a "Duplicate seeds" section in the
//!   Markdown, the `duplicate_seeds` CSV column, [`Leaderboard::duplicate_lines`] for warnings):
//!   they are the same measurement made twice and the mean counts both, which the reader must
//!   know. It is not an error, so a folder with a re-run still gives a leaderboard.
//! * [`Leaderboard::to_markdown`] / [`Leaderboard::to_csv`] render it. Rows come in a fixed
//!   order: sections sorted by (protocol, dataset, label fraction, metric), rows inside a section
//!   ranked by mean (descending; ascending for metrics named like a loss or an error), ties by
//!   the group key, so the same records always give the same bytes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::ReportError;
use crate::record::{MachineInfo, RunRecord, RunStatus, SCHEMA_VERSION};

/// The file name of a run record.
pub const RECORD_FILE: &str = "record.json";

/// What to do with a `record.json` that does not parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Malformed {
    /// Stop with an error that names the file (the default: a broken record is a bug to fix,
    /// not a run to leave out quietly).
    #[default]
    Error,
    /// Leave it out, and list it under "skipped files" in the output.
    Skip,
}

/// A record read from disk.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The file, relative to the runs folder.
    pub path: PathBuf,
    /// Its content.
    pub record: RunRecord,
}

/// A file left out by [`Malformed::Skip`].
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedFile {
    /// The file, relative to the runs folder.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The records under a runs folder, sorted by status.
#[derive(Debug, Clone)]
pub struct RunSet {
    /// The folder searched.
    pub root: PathBuf,
    /// `complete` records: the results.
    pub complete: Vec<LoadedRun>,
    /// `running` (unfinished or killed) and `failed` records: never results.
    pub incomplete: Vec<LoadedRun>,
    /// Files that did not parse (only with [`Malformed::Skip`]).
    pub skipped: Vec<SkippedFile>,
}

/// Every `record.json` under `dir`, recursively, sorted by path. Symbolic links to folders are not
/// followed (no loops); hidden folders (`.name`) are skipped.
pub fn find_records(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let meta = std::fs::metadata(dir).map_err(|e| ReportError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(ReportError::Invalid(format!(
            "{}: not a folder of runs",
            dir.display()
        )));
    }
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| ReportError::io(&d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ReportError::io(&d, e))?;
            let path = entry.path();
            let ty = entry.file_type().map_err(|e| ReportError::io(&path, e))?;
            let name = entry.file_name();
            if ty.is_dir() {
                if !name.to_string_lossy().starts_with('.') {
                    stack.push(path);
                }
            } else if name == RECORD_FILE && (ty.is_file() || path.is_file()) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Reads every record under `dir` (see [`find_records`]).
///
/// A file that does not parse, or was written by a newer schema, is an error naming the file
/// with [`Malformed::Error`], and is listed in [`RunSet::skipped`] with [`Malformed::Skip`].
pub fn load_runs(dir: &Path, malformed: Malformed) -> Result<RunSet, ReportError> {
    let mut set = RunSet {
        root: dir.to_path_buf(),
        complete: Vec::new(),
        incomplete: Vec::new(),
        skipped: Vec::new(),
    };
    for path in find_records(dir)? {
        let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
        let record = RunRecord::read(&path).and_then(|r| {
            if r.schema_version > SCHEMA_VERSION {
                Err(ReportError::Parse {
                    path: path.clone(),
                    message: format!(
                        "schema_version {} is newer than this build reads ({SCHEMA_VERSION})",
                        r.schema_version
                    ),
                })
            } else {
                Ok(r)
            }
        });
        match (record, malformed) {
            (Ok(record), _) => {
                let run = LoadedRun { path: rel, record };
                if run.record.is_result() {
                    set.complete.push(run);
                } else {
                    set.incomplete.push(run);
                }
            }
            (Err(e), Malformed::Error) => {
                return Err(match e {
                    ReportError::Parse { path, message } => ReportError::Parse {
                        path,
                        message: format!("malformed run record: {message}"),
                    },
                    other => other,
                });
            }
            (Err(e), Malformed::Skip) => {
                let reason = match e {
                    ReportError::Parse { message, .. } => message,
                    other => other.to_string(),
                };
                set.skipped.push(SkippedFile { path: rel, reason });
            }
        }
    }
    Ok(set)
}

/// Everything that identifies a configuration except the seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupKey {
    /// Protocol name (`linear`, `knn`, `finetune`, …).
    pub protocol: String,
    /// Dataset folder, as recorded.
    pub dataset: Option<String>,
    /// The data's fingerprint (`dataset.fingerprint`), when recorded: two worlds written in turn
    /// to one folder are two datasets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<String>,
    /// Fraction of labels used.
    pub label_fraction: Option<f64>,
    /// Pretraining method of the encoder (`cae`, `random`, …); `-` without an encoder.
    pub method: String,
    /// Architecture / preset.
    pub arch: String,
    /// Encoder label.
    pub encoder: String,
    /// The encoder's identity ([`encoder_identity`]): `sha256:<hex>` of the file, `random init`
    /// (the seed draws the encoder), `output of the run` (pretraining records), `-` without an
    /// encoder, `no checksum recorded` for a file without one.
    pub encoder_id: String,
    /// Pretraining steps.
    pub pretrain_steps: Option<u64>,
    /// What produced the record (`linear-probe`, …).
    pub kind: String,
    /// Feature pooling.
    pub pooling: Option<String>,
    /// Probed block (0-based); `None` = final output.
    pub layer: Option<usize>,
    /// Epochs.
    pub epochs: Option<u64>,
    /// Images per optimizer step.
    pub effective_batch: Option<usize>,
    /// Peak lr after scaling.
    pub lr: Option<f64>,
    /// Optimizer.
    pub optimizer: Option<String>,
    /// Features extracted once, without augmentation.
    pub cached_features: Option<bool>,
    /// Every other setting that changes the number ([`crate::record::ProtocolInfo::settings`], or
    /// the `details` of a record written before `settings` existed).
    pub settings: BTreeMap<String, serde_json::Value>,
}

/// The encoder's identity in a [`GroupKey`] (see [`GroupKey::encoder_id`]).
pub fn encoder_identity(r: &RunRecord) -> String {
    match &r.encoder {
        None => "-".into(),
        Some(_) if r.kind == "pretrain" => "output of the run".into(),
        Some(e) if e.method == "random" => "random init".into(),
        Some(e) => match &e.sha256 {
            Some(sha) => format!("sha256:{sha}"),
            None => "no checksum recorded".into(),
        },
    }
}

impl GroupKey {
    /// The key of a record.
    pub fn of(r: &RunRecord) -> Self {
        let (encoder, method, arch, pretrain_steps) = match &r.encoder {
            Some(e) => (
                e.label.clone(),
                e.method.clone(),
                e.arch.clone(),
                e.pretrain_steps,
            ),
            None => ("-".into(), "-".into(), "-".into(), None),
        };
        let p = &r.protocol;
        Self {
            protocol: p.name.clone(),
            dataset: r.dataset.as_ref().map(|d| d.path.clone()),
            data_fingerprint: r.dataset.as_ref().and_then(|d| d.fingerprint.clone()),
            label_fraction: p.label_fraction,
            method,
            arch,
            encoder,
            encoder_id: encoder_identity(r),
            pretrain_steps,
            kind: r.kind.clone(),
            pooling: p.pooling.clone(),
            layer: p.layer,
            epochs: p.epochs,
            effective_batch: p.effective_batch,
            lr: p.lr,
            optimizer: p.optimizer.clone(),
            cached_features: p.cached_features,
            settings: if p.settings.is_empty() {
                p.details.clone()
            } else {
                p.settings.clone()
            },
        }
    }

    /// A total order over keys (field order as declared; floats by `total_cmp`).
    pub fn order(&self, o: &Self) -> Ordering {
        fn f(a: Option<f64>, b: Option<f64>) -> Ordering {
            match (a, b) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            }
        }
        self.protocol
            .cmp(&o.protocol)
            .then_with(|| self.dataset.cmp(&o.dataset))
            .then_with(|| self.data_fingerprint.cmp(&o.data_fingerprint))
            .then_with(|| f(self.label_fraction, o.label_fraction))
            .then_with(|| self.method.cmp(&o.method))
            .then_with(|| self.arch.cmp(&o.arch))
            .then_with(|| self.encoder.cmp(&o.encoder))
            .then_with(|| self.encoder_id.cmp(&o.encoder_id))
            .then_with(|| self.pretrain_steps.cmp(&o.pretrain_steps))
            .then_with(|| self.kind.cmp(&o.kind))
            .then_with(|| self.pooling.cmp(&o.pooling))
            .then_with(|| self.layer.cmp(&o.layer))
            .then_with(|| self.epochs.cmp(&o.epochs))
            .then_with(|| self.effective_batch.cmp(&o.effective_batch))
            .then_with(|| f(self.lr, o.lr))
            .then_with(|| self.optimizer.cmp(&o.optimizer))
            .then_with(|| self.cached_features.cmp(&o.cached_features))
            .then_with(|| settings_json(&self.settings).cmp(&settings_json(&o.settings)))
    }

    /// The encoder's sha256, when the key is a file's.
    pub fn encoder_sha256(&self) -> Option<&str> {
        self.encoder_id.strip_prefix("sha256:")
    }

    /// The dataset's folder name (its last path component), for tables.
    pub fn dataset_name(&self) -> Option<String> {
        self.dataset.as_ref().map(|d| {
            Path::new(d.trim_end_matches('/'))
                .file_name()
                .map_or_else(|| d.clone(), |n| n.to_string_lossy().into_owned())
        })
    }
}

/// One run inside a leaderboard row.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRef {
    /// The record, relative to the runs folder.
    pub path: PathBuf,
    /// Its seed.
    pub seed: u64,
    /// Its value of the row's metric.
    pub value: f64,
    /// sha256 of the encoder file, when there is one.
    pub encoder_sha256: Option<String>,
    /// The machine.
    pub machine: MachineInfo,
    /// Crate / tool versions, `name version` joined by `, `.
    pub versions: String,
    /// Wall time of the run.
    pub wall_time_s: f64,
}

/// One configuration and one metric: mean ± std over its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderboardRow {
    /// `R1`, `R2`, … in display order (links a row to its provenance line).
    pub id: String,
    /// The configuration.
    pub key: GroupKey,
    /// The metric (`top1`, …).
    pub metric: String,
    /// Independent measurements: the runs averaged, or 1 for a [`Self::deterministic`] row
    /// (however many runs it has; see [`Self::runs`]).
    pub n: usize,
    /// Mean over the runs.
    pub mean: f64,
    /// Sample standard deviation (`n − 1`); `None` when n = 1.
    pub std: Option<f64>,
    /// The seed draws nothing ([`RunRecord::is_deterministic`] for every run) and every run gave
    /// the same value: one measurement, whatever the number of seeds.
    pub deterministic: bool,
    /// What the seed draws in these runs ([`RunRecord::seed_draws`] of the first run; the runs of
    /// a row share encoder kind and protocol).
    pub seed_draws: Vec<String>,
    /// Seeds that occur in more than one record of the row (flagged in every output).
    pub duplicate_seeds: Vec<u64>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// The runs, by seed.
    pub runs: Vec<RunRef>,
}

impl LeaderboardRow {
    /// Seeds, in order.
    pub fn seeds(&self) -> Vec<u64> {
        self.runs.iter().map(|r| r.seed).collect()
    }

    /// What varies between the runs of the row, in words.
    pub fn varies_text(&self) -> String {
        let runs = self.runs.len();
        if self.deterministic {
            return format!(
                "nothing: deterministic given the encoder ({runs} identical run{})",
                plural(runs)
            );
        }
        if self.seed_draws.is_empty() {
            return "nothing by design, yet the runs differ (nondeterministic computation)".into();
        }
        let mut t = format!("seed → {}", self.seed_draws.join(", "));
        if self.key.encoder_sha256().is_some() {
            t.push_str("; one encoder file (pretraining seed fixed)");
        }
        t
    }
}

/// What goes into a leaderboard.
#[derive(Debug, Clone, Default)]
pub struct LeaderboardOptions {
    /// Headline metrics to show; empty = every metric the records have.
    pub metrics: Vec<String>,
    /// What to do with files that do not parse.
    pub malformed: Malformed,
}

/// A leaderboard of the runs under one folder.
#[derive(Debug, Clone)]
pub struct Leaderboard {
    /// The runs folder.
    pub root: PathBuf,
    /// The rows, in display order.
    pub rows: Vec<LeaderboardRow>,
    /// Incomplete (`running`, killed) and `failed` runs: not results, listed for the reader.
    pub incomplete: Vec<LoadedRun>,
    /// Files left out because they did not parse ([`Malformed::Skip`]).
    pub skipped: Vec<SkippedFile>,
    /// Complete runs that have none of the metrics asked for.
    pub without_metrics: Vec<PathBuf>,
    /// The metric filter used (empty = all).
    pub metrics: Vec<String>,
    /// Complete runs read.
    pub complete_runs: usize,
}

/// Whether smaller is better for a metric of this name (`loss`, `error`, `err`).
pub fn lower_is_better(metric: &str) -> bool {
    let m = metric.to_ascii_lowercase();
    m.contains("loss") || m.contains("error") || m.split(['_', '-', '@']).any(|w| w == "err")
}

/// One (record, metric) value, the unit of aggregation.
struct Obs<'a> {
    key: GroupKey,
    group: String,
    metric: String,
    value: f64,
    run: &'a LoadedRun,
}

/// What polars gives back per group.
struct Agg {
    first: usize,
    n: usize,
    mean: f64,
    std: Option<f64>,
    min: f64,
    max: f64,
}

fn polars_err(e: polars::prelude::PolarsError) -> ReportError {
    ReportError::Aggregate(e.to_string())
}

/// Groups `obs` (sorted so that each group is contiguous) by (group, metric) with polars and
/// returns, per group in order, its first row, size, mean, sample std, min and max.
fn aggregate(obs: &[Obs<'_>]) -> Result<Vec<Agg>, ReportError> {
    use polars::prelude::*;
    if obs.is_empty() {
        return Ok(Vec::new());
    }
    let n_obs = u32::try_from(obs.len())
        .map_err(|_| ReportError::Aggregate("too many run records".into()))?;
    let df = DataFrame::new_infer_height(vec![
        Column::new(
            "group".into(),
            obs.iter().map(|o| o.group.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            obs.iter().map(|o| o.metric.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "value".into(),
            obs.iter().map(|o| o.value).collect::<Vec<_>>(),
        ),
        Column::new("row".into(), (0..n_obs).collect::<Vec<u32>>()),
    ])
    .map_err(polars_err)?;
    // `group_by_stable`: groups in order of their first row, which is the order of `obs`.
    let out = df
        .group_by_stable(["group", "metric"])
        .map_err(polars_err)?
        .apply(|g| {
            let values = g.column("value")?.as_materialized_series().clone();
            let rows = g.column("row")?.u32()?.clone();
            let n = g.height();
            let first = rows.get(0).unwrap_or(0);
            let contiguous = (0..n).all(|i| rows.get(i) == Some(first + i as u32));
            polars_ensure!(contiguous, ComputeError: "rows of a group are not contiguous");
            let std = if n > 1 { values.std(1) } else { None };
            let min: Option<f64> = values.min()?;
            let max: Option<f64> = values.max()?;
            DataFrame::new_infer_height(vec![
                Column::new("first".into(), [first]),
                Column::new("n".into(), [n as u32]),
                Column::new("mean".into(), [values.mean()]),
                Column::new("std".into(), [std]),
                Column::new("min".into(), [min]),
                Column::new("max".into(), [max]),
            ])
        })
        .map_err(polars_err)?;
    let col = |name: &str| out.column(name).map_err(polars_err);
    let first = col("first")?.u32().map_err(polars_err)?.clone();
    let n = col("n")?.u32().map_err(polars_err)?.clone();
    let mean = col("mean")?.f64().map_err(polars_err)?.clone();
    let std = col("std")?.f64().map_err(polars_err)?.clone();
    let min = col("min")?.f64().map_err(polars_err)?.clone();
    let max = col("max")?.f64().map_err(polars_err)?.clone();
    let missing = || ReportError::Aggregate("an aggregate is missing".into());
    (0..out.height())
        .map(|i| {
            Ok(Agg {
                first: first.get(i).ok_or_else(missing)? as usize,
                n: n.get(i).ok_or_else(missing)? as usize,
                mean: mean.get(i).ok_or_else(missing)?,
                std: std.get(i),
                min: min.get(i).ok_or_else(missing)?,
                max: max.get(i).ok_or_else(missing)?,
            })
        })
        .collect()
}

fn versions_text(r: &RunRecord) -> String {
    r.versions
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The section a row belongs to: (protocol, dataset, label fraction, metric).
fn section_order(a: &LeaderboardRow, b: &LeaderboardRow) -> Ordering {
    a.key
        .protocol
        .cmp(&b.key.protocol)
        .then_with(|| a.key.dataset.cmp(&b.key.dataset))
        .then_with(|| match (a.key.label_fraction, b.key.label_fraction) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        })
        .then_with(|| a.metric.cmp(&b.metric))
}

fn same_section(a: &LeaderboardRow, b: &LeaderboardRow) -> bool {
    section_order(a, b) == Ordering::Equal
}

impl Leaderboard {
    /// Reads the runs under `dir` and builds the leaderboard.
    pub fn from_dir(dir: &Path, options: &LeaderboardOptions) -> Result<Self, ReportError> {
        let set = load_runs(dir, options.malformed)?;
        Self::build(set, &options.metrics)
    }

    /// Builds the leaderboard from records already in memory (e.g. the quickstart's own runs).
    ///
    /// Records that are not complete ([`RunRecord::is_result`] false) go to
    /// [`Leaderboard::incomplete`], never into the rows. Each record is named `#i` (its index in
    /// `records`) where a path would be shown. `metrics` empty = every metric in the records.
    pub fn from_records(records: &[RunRecord], metrics: &[String]) -> Result<Self, ReportError> {
        let mut set = RunSet {
            root: PathBuf::new(),
            complete: Vec::new(),
            incomplete: Vec::new(),
            skipped: Vec::new(),
        };
        for (i, record) in records.iter().enumerate() {
            if record.schema_version > SCHEMA_VERSION {
                return Err(ReportError::Invalid(format!(
                    "record #{i}: schema_version {} is newer than this build reads \
                     ({SCHEMA_VERSION})",
                    record.schema_version
                )));
            }
            let run = LoadedRun {
                path: PathBuf::from(format!("#{i}")),
                record: record.clone(),
            };
            if run.record.is_result() {
                set.complete.push(run);
            } else {
                set.incomplete.push(run);
            }
        }
        Self::build(set, metrics)
    }

    /// Groups the complete runs of `set` (see the module docs). `metrics` empty = all.
    pub fn build(set: RunSet, metrics: &[String]) -> Result<Self, ReportError> {
        let mut obs = Vec::new();
        let mut without_metrics = Vec::new();
        for run in &set.complete {
            let key = GroupKey::of(&run.record);
            let group = serde_json::to_string(&key).expect("a key serialises");
            let mut any = false;
            for (metric, &value) in &run.record.metrics {
                if !metrics.is_empty() && !metrics.contains(metric) {
                    continue;
                }
                if !value.is_finite() {
                    return Err(ReportError::Parse {
                        path: set.root.join(&run.path),
                        message: format!("metric {metric} is not finite ({value})"),
                    });
                }
                any = true;
                obs.push(Obs {
                    key: key.clone(),
                    group: group.clone(),
                    metric: metric.clone(),
                    value,
                    run,
                });
            }
            if !any {
                without_metrics.push(run.path.clone());
            }
        }
        // Every group contiguous, groups in key order, runs by seed then path.
        obs.sort_by(|a, b| {
            a.key
                .order(&b.key)
                .then_with(|| a.group.cmp(&b.group))
                .then_with(|| a.metric.cmp(&b.metric))
                .then_with(|| a.run.record.seed.cmp(&b.run.record.seed))
                .then_with(|| a.run.path.cmp(&b.run.path))
        });
        let aggs = aggregate(&obs)?;
        let mut rows: Vec<LeaderboardRow> = aggs
            .into_iter()
            .map(|a| {
                let members = &obs[a.first..a.first + a.n];
                let head = &members[0];
                let deterministic =
                    members.iter().all(|o| o.run.record.is_deterministic()) && a.min == a.max;
                let mut duplicate_seeds: Vec<u64> = members
                    .windows(2)
                    .filter(|w| w[0].run.record.seed == w[1].run.record.seed)
                    .map(|w| w[0].run.record.seed)
                    .collect();
                duplicate_seeds.dedup();
                LeaderboardRow {
                    id: String::new(),
                    key: head.key.clone(),
                    metric: head.metric.clone(),
                    n: if deterministic { 1 } else { a.n },
                    mean: a.mean,
                    std: if deterministic { None } else { a.std },
                    deterministic,
                    seed_draws: head.run.record.seed_draws(),
                    duplicate_seeds,
                    min: a.min,
                    max: a.max,
                    runs: members
                        .iter()
                        .map(|o| RunRef {
                            path: o.run.path.clone(),
                            seed: o.run.record.seed,
                            value: o.value,
                            encoder_sha256: o
                                .run
                                .record
                                .encoder
                                .as_ref()
                                .and_then(|e| e.sha256.clone()),
                            machine: o.run.record.machine.clone(),
                            versions: versions_text(&o.run.record),
                            wall_time_s: o.run.record.wall_time_s,
                        })
                        .collect(),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            section_order(a, b)
                .then_with(|| {
                    let by_mean = b.mean.total_cmp(&a.mean);
                    if lower_is_better(&a.metric) {
                        by_mean.reverse()
                    } else {
                        by_mean
                    }
                })
                .then_with(|| a.key.order(&b.key))
        });
        for (i, row) in rows.iter_mut().enumerate() {
            row.id = format!("R{}", i + 1);
        }
        let mut incomplete = set.incomplete;
        incomplete.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            root: set.root,
            rows,
            incomplete,
            skipped: set.skipped,
            without_metrics,
            metrics: metrics.to_vec(),
            complete_runs: set.complete.len(),
        })
    }

    /// The leaderboard as a Markdown document (title, how to read it, one table per section,
    /// provenance, incomplete runs).
    pub fn to_markdown(&self) -> String {
        let mut out = if self.root.as_os_str().is_empty() {
            "# Leaderboard\n\n".to_string()
        } else {
            format!(
                "# Leaderboard: runs under `{}`\n\n",
                md_code(&self.root.display().to_string())
            )
        };
        out.push_str(&self.markdown_body(2));
        out
    }

    /// The Markdown of [`Self::to_markdown`] without its title; `level` is the heading level of
    /// its sections (`2` = `##`).
    pub fn markdown_body(&self, level: usize) -> String {
        let h = "#".repeat(level.max(1));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured here: {} complete run{} in {} row{} (configuration × metric){}.\n",
            self.complete_runs,
            plural(self.complete_runs),
            self.rows.len(),
            plural(self.rows.len()),
            if self.metrics.is_empty() {
                String::new()
            } else {
                format!(" (metrics: {})", self.metrics.join(", "))
            }
        );
        out.push_str(HOW_TO_READ);
        out.push('\n');
        if self.rows.is_empty() {
            out.push_str("No complete run has a headline metric to show.\n\n");
        }
        let mut start = 0;
        while start < self.rows.len() {
            let mut end = start + 1;
            while end < self.rows.len() && same_section(&self.rows[start], &self.rows[end]) {
                end += 1;
            }
            let section = &self.rows[start..end];
            let _ = writeln!(out, "{h} {}\n", section_title(&section[0]));
            out.push_str(&markdown_table(section));
            out.push('\n');
            start = end;
        }
        let dups = self.duplicate_markdown();
        if !dups.is_empty() {
            let _ = writeln!(out, "{h} Duplicate seeds (check these rows)\n");
            out.push_str(&dups);
            out.push('\n');
        }
        if !self.rows.is_empty() {
            let _ = writeln!(out, "{h} Provenance of each row\n");
            out.push_str(&self.provenance_markdown());
            out.push('\n');
        }
        let _ = writeln!(out, "{h} Incomplete runs (not results)\n");
        out.push_str(&self.incomplete_markdown());
        out
    }

    /// One line per row with a seed in more than one record (empty when there is none).
    fn duplicate_markdown(&self) -> String {
        let mut out = String::new();
        for line in self.duplicate_lines_with(true) {
            let _ = writeln!(out, "- {line}");
        }
        out
    }

    /// One line per row that has the same seed in more than one record, plain text (for
    /// warnings on stderr).
    pub fn duplicate_lines(&self) -> Vec<String> {
        self.duplicate_lines_with(false)
    }

    fn duplicate_lines_with(&self, markdown: bool) -> Vec<String> {
        let mut lines = Vec::new();
        for row in self.rows.iter().filter(|r| !r.duplicate_seeds.is_empty()) {
            for &seed in &row.duplicate_seeds {
                let paths: Vec<String> = row
                    .runs
                    .iter()
                    .filter(|r| r.seed == seed)
                    .map(|r| {
                        let p = r.path.display().to_string();
                        if markdown {
                            format!("`{}`", md_code(&p))
                        } else {
                            p
                        }
                    })
                    .collect();
                let (id, enc, metric) = if markdown {
                    (
                        format!("**{}**", row.id),
                        md_cell(&row.key.encoder),
                        md_cell(&row.metric),
                    )
                } else {
                    (row.id.clone(), row.key.encoder.clone(), row.metric.clone())
                };
                lines.push(format!(
                    "{id} ({enc} · {} · {metric}): seed {seed} in {} records ({}): the same \
                     configuration and seed measured more than once; the row's mean counts each \
                     of them",
                    row.key.protocol,
                    paths.len(),
                    paths.join(", ")
                ));
            }
        }
        lines
    }

    /// One line per row: seeds, record files, encoder sha256, settings, machine, versions.
    fn provenance_markdown(&self) -> String {
        let mut out = String::new();
        for row in &self.rows {
            let machines: BTreeSet<String> =
                row.runs.iter().map(|r| machine_text(&r.machine)).collect();
            let versions: BTreeSet<&str> = row.runs.iter().map(|r| r.versions.as_str()).collect();
            let shas: BTreeSet<String> = row
                .runs
                .iter()
                .filter_map(|r| r.encoder_sha256.as_deref())
                .map(|s| s.chars().take(12).collect())
                .collect();
            let records = row
                .runs
                .iter()
                .map(|r| format!("`{}`", md_code(&r.path.display().to_string())))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = write!(
                out,
                "- **{}** ({} · {}): seeds {}; records {}",
                row.id,
                md_cell(&row.key.encoder),
                md_cell(&row.metric),
                join_u64(&row.seeds()),
                records
            );
            if !shas.is_empty() {
                let _ = write!(
                    out,
                    "; encoder sha256 {}",
                    shas.iter()
                        .map(|s| format!("`{s}…`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if let Some(d) = &row.key.dataset {
                let _ = write!(out, "; dataset `{}`", md_code(d));
            }
            if !row.key.settings.is_empty() {
                let _ = write!(
                    out,
                    "; settings {}",
                    row.key
                        .settings
                        .iter()
                        .map(|(k, v)| format!("{}={}", md_cell(k), md_cell(&value_text(v))))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let _ = write!(out, "; varies: {}", md_cell(&row.varies_text()));
            let _ = write!(
                out,
                "; machine {}",
                machines
                    .iter()
                    .map(|m| md_cell(m))
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
            let _ = writeln!(
                out,
                "; versions {}",
                versions
                    .iter()
                    .map(|v| if v.is_empty() { "(none recorded)" } else { v })
                    .map(md_cell)
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
        out
    }

    /// The list of incomplete and failed runs, and of skipped files.
    pub fn incomplete_markdown(&self) -> String {
        let mut out = String::new();
        if self.incomplete.is_empty() {
            out.push_str("incomplete runs: none.\n");
        } else {
            let _ = writeln!(
                out,
                "incomplete runs: {} (running, killed or failed; their numbers are not results and \
                 appear in no table above):\n",
                self.incomplete.len()
            );
            for run in &self.incomplete {
                let _ = writeln!(out, "- {}", incomplete_line(run, true));
            }
        }
        if !self.without_metrics.is_empty() {
            let _ = writeln!(
                out,
                "\ncomplete runs without {}: {}",
                if self.metrics.is_empty() {
                    "headline metrics".to_string()
                } else {
                    format!("the metrics asked for ({})", self.metrics.join(", "))
                },
                self.without_metrics
                    .iter()
                    .map(|p| format!("`{}`", md_code(&p.display().to_string())))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(
                out,
                "\nskipped files (malformed, left out by --skip-malformed):\n"
            );
            for s in &self.skipped {
                let _ = writeln!(
                    out,
                    "- `{}`: {}",
                    md_code(&s.path.display().to_string()),
                    md_cell(&s.reason)
                );
            }
        }
        out
    }

    /// One line per incomplete run, plain text (for warnings on stderr).
    pub fn incomplete_lines(&self) -> Vec<String> {
        self.incomplete
            .iter()
            .map(|r| incomplete_line(r, false))
            .collect()
    }

    /// The CSV columns of [`Self::to_csv`].
    pub const CSV_COLUMNS: [&'static str; 31] = [
        "id",
        "protocol",
        "dataset",
        "label_fraction",
        "metric",
        "n",
        "mean",
        "std",
        "min",
        "max",
        "encoder",
        "method",
        "arch",
        "pretrain_steps",
        "kind",
        "pooling",
        "layer",
        "epochs",
        "effective_batch",
        "lr",
        "optimizer",
        "cached_features",
        "seeds",
        "values",
        "records",
        "encoder_sha256",
        "runs",
        "deterministic",
        "seed_draws",
        "duplicate_seeds",
        "settings",
    ];

    /// The leaderboard as CSV: a header ([`Self::CSV_COLUMNS`]) and one line per row, in display
    /// order. Numbers at full precision (Rust's shortest round-trip form); empty = not recorded
    /// (`std` is empty for n = 1, `layer` empty = final output); lists are `;`-separated. `n` is
    /// the number of independent measurements, `runs` the number of records (they differ for a
    /// `deterministic` row); `duplicate_seeds` lists seeds found in more than one record of the
    /// row; `settings` is the row's settings as one JSON object (keys sorted).
    pub fn to_csv(&self) -> String {
        let mut out = crate::csv::row(&Self::CSV_COLUMNS);
        let opt = |v: Option<String>| v.unwrap_or_default();
        for r in &self.rows {
            let k = &r.key;
            let shas: BTreeSet<&str> = r
                .runs
                .iter()
                .filter_map(|x| x.encoder_sha256.as_deref())
                .collect();
            out.push_str(&crate::csv::row(&[
                r.id.clone(),
                k.protocol.clone(),
                opt(k.dataset.clone()),
                opt(k.label_fraction.map(|v| v.to_string())),
                r.metric.clone(),
                r.n.to_string(),
                r.mean.to_string(),
                opt(r.std.map(|v| v.to_string())),
                r.min.to_string(),
                r.max.to_string(),
                k.encoder.clone(),
                k.method.clone(),
                k.arch.clone(),
                opt(k.pretrain_steps.map(|v| v.to_string())),
                k.kind.clone(),
                opt(k.pooling.clone()),
                opt(k.layer.map(|v| v.to_string())),
                opt(k.epochs.map(|v| v.to_string())),
                opt(k.effective_batch.map(|v| v.to_string())),
                opt(k.lr.map(|v| v.to_string())),
                opt(k.optimizer.clone()),
                opt(k.cached_features.map(|v| v.to_string())),
                r.runs
                    .iter()
                    .map(|x| x.seed.to_string())
                    .collect::<Vec<_>>()
                    .join(";"),
                r.runs
                    .iter()
                    .map(|x| x.value.to_string())
                    .collect::<Vec<_>>()
                    .join(";"),
                r.runs
                    .iter()
                    .map(|x| x.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(";"),
                shas.into_iter().collect::<Vec<_>>().join(";"),
                r.runs.len().to_string(),
                r.deterministic.to_string(),
                r.seed_draws.join(";"),
                join_sep(&r.duplicate_seeds, ";"),
                settings_json(&k.settings),
            ]));
        }
        out
    }
}

/// The note printed above the tables.
pub const HOW_TO_READ: &str = "\
**How to read these tables.** Each row is one configuration measured here; its number is the \
mean ± sample standard deviation (n − 1 in the denominator) over the n seeds listed, with n in \
parentheses. A single measurement shows its value with no ± and says n=1. Everything in the row \
except the seed is identical for the runs averaged: encoder (label, method, arch, pretraining \
steps, and the file itself: the short sha256 beside the label; a random initialisation is one \
row over its seeds), protocol, dataset, label fraction, pooling (`cls`, `mean`, …), layer \
(probed block, 0-based; `final` = the encoder's output), epochs, effective batch (images per \
optimizer step, over all devices and accumulation), lr (peak, after scaling), optimizer, cached \
features (`yes` = features extracted once without augmentation) and every other protocol \
setting (k, T, weight decay, warmup, layer decay, drop path, label smoothing, …: all listed under \
\"Provenance\"; the `settings` column shows those that differ between the rows of a table). \
\"What varies\" says what the seed draws: for a random initialisation the encoder itself, for an \
encoder file only the probe (the encoder, and so its pretraining seed, is fixed). A protocol \
whose seed draws nothing (kNN on an encoder file) gives the same value for every seed: that is \
one measurement, shown as n=1 with no ±. ⚠ marks a row with the same seed in more than one \
record (listed under \"Duplicate seeds\"). Rows are ranked by mean (lower first for losses \
and errors). Only runs whose record says `complete` count; running, killed and failed runs are \
listed under \"Incomplete runs\". The `id` links a row to its seeds, record files (with the full \
resolved config and command), encoder sha256, machine and versions under \"Provenance\".\n";

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn join_u64(v: &[u64]) -> String {
    join_sep(v, ", ")
}

fn join_sep(v: &[u64], sep: &str) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(sep)
}

/// Settings as one JSON object, keys sorted (a `BTreeMap`), compact.
fn settings_json(s: &BTreeMap<String, serde_json::Value>) -> String {
    serde_json::to_string(s).expect("settings serialise")
}

/// A setting's value for a table: strings without quotes, anything else as compact JSON.
fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Text safe inside a Markdown table cell.
pub(crate) fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Text safe inside inline code in a table (no backticks, no pipes, one line).
pub(crate) fn md_code(s: &str) -> String {
    s.replace('`', "'")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn machine_text(m: &MachineInfo) -> String {
    let mut parts = vec![m.cpu.clone().unwrap_or_else(|| "unknown CPU".into())];
    parts.push(format!("{} cores", m.cores));
    if let Some(t) = m.threads {
        parts.push(format!("{t} threads"));
    }
    if let Some(g) = &m.gpu {
        parts.push(g.clone());
    }
    parts.push(format!("device {}", m.device));
    parts.push(m.os.clone());
    parts.join(", ")
}

fn incomplete_line(run: &LoadedRun, markdown: bool) -> String {
    let r = &run.record;
    let status = match r.status {
        RunStatus::Running => "running (unfinished or killed)",
        RunStatus::Failed => "failed",
        RunStatus::Complete => "complete",
    };
    let label = r.encoder.as_ref().map_or("-", |e| e.label.as_str());
    let path = run.path.display().to_string();
    let mut line = if markdown {
        format!(
            "`{}`: {status}; {} · {} · seed {}",
            md_code(&path),
            md_cell(label),
            md_cell(&r.protocol.name),
            r.seed
        )
    } else {
        format!(
            "{path}: {status}; {label} · {} · seed {}",
            r.protocol.name, r.seed
        )
    };
    if let Some(e) = &r.error {
        let _ = write!(
            line,
            "; error: {}",
            if markdown { md_cell(e) } else { e.clone() }
        );
    }
    line
}

/// A number for a table: 4 decimals when the section's values are at most about 1 (fractions,
/// losses), 2 otherwise (percentages).
fn decimals(rows: &[LeaderboardRow]) -> usize {
    let big = rows.iter().map(|r| r.mean.abs()).fold(0.0, f64::max);
    if big <= 1.5 { 4 } else { 2 }
}

/// `mean ± std (n=k)`, or `value (n=1)`.
pub fn mean_std_text(mean: f64, std: Option<f64>, n: usize, decimals: usize) -> String {
    match std {
        Some(s) if n > 1 => format!("{mean:.decimals$} ± {s:.decimals$} (n={n})"),
        _ => format!("{mean:.decimals$} (n={n})"),
    }
}

fn section_title(r: &LeaderboardRow) -> String {
    let mut t = format!("`{}` · {}", md_code(&r.key.protocol), md_cell(&r.metric));
    if let Some(d) = r.key.dataset_name() {
        let _ = write!(t, " · dataset `{}`", md_code(&d));
    }
    match r.key.label_fraction {
        Some(f) if f < 1.0 => {
            let _ = write!(t, " · {} of the labels", percent(f));
        }
        _ => t.push_str(" · all labels"),
    }
    t
}

/// `0.1` → `10%`.
pub fn percent(f: f64) -> String {
    let p = f * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}%", p.round())
    } else {
        format!("{p}%")
    }
}

/// The settings whose values are not the same in every row of `rows` (a missing one counts as a
/// value), sorted.
fn differing_settings(rows: &[LeaderboardRow]) -> Vec<String> {
    let keys: BTreeSet<&String> = rows.iter().flat_map(|r| r.key.settings.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let first = rows[0].key.settings.get(*k);
            rows.iter().any(|r| r.key.settings.get(*k) != first)
        })
        .cloned()
        .collect()
}

fn markdown_table(rows: &[LeaderboardRow]) -> String {
    let dec = decimals(rows);
    let metric = md_cell(&rows[0].metric);
    let differing = differing_settings(rows);
    let mut out = format!(
        "| id | encoder | method | arch | pretrain steps | pooling | layer | epochs | eff. batch \
         | lr | optimizer | cached features | settings | {metric}: mean ± std (n) | seeds \
         | what varies | provenance |\n"
    );
    out.push_str("|---|---|---|---|---:|---|---|---:|---:|---:|---|---|---|---:|---|---|---|\n");
    let dash = || "–".to_string();
    for r in rows {
        let k = &r.key;
        let encoder = match k.encoder_sha256() {
            Some(sha) => format!(
                "{} (`{}`)",
                md_cell(&k.encoder),
                md_code(&sha.chars().take(8).collect::<String>())
            ),
            None => md_cell(&k.encoder),
        };
        let settings = if differing.is_empty() {
            dash()
        } else {
            differing
                .iter()
                .map(|name| {
                    let v = k.settings.get(name).map_or_else(dash, value_text);
                    format!("{}={}", md_cell(name), md_cell(&v))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut number = mean_std_text(r.mean, r.std, r.n, dec);
        if !r.duplicate_seeds.is_empty() {
            let _ = write!(
                number,
                " ⚠ duplicate seed{} {}",
                plural(r.duplicate_seeds.len()),
                join_u64(&r.duplicate_seeds)
            );
        }
        let cells = [
            r.id.clone(),
            encoder,
            md_cell(&k.method),
            md_cell(&k.arch),
            k.pretrain_steps.map_or_else(dash, |s| s.to_string()),
            k.pooling.as_deref().map_or_else(dash, md_cell),
            k.layer.map_or_else(|| "final".into(), |l| l.to_string()),
            k.epochs.map_or_else(dash, |e| e.to_string()),
            k.effective_batch.map_or_else(dash, |b| b.to_string()),
            k.lr.map_or_else(dash, |l| l.to_string()),
            k.optimizer.as_deref().map_or_else(dash, md_cell),
            k.cached_features
                .map_or_else(dash, |c| if c { "yes".into() } else { "no".into() }),
            settings,
            number,
            join_u64(&r.seeds()),
            md_cell(&r.varies_text()),
            "this run".to_string(),
        ];
        out.push_str("| ");
        out.push_str(&cells.join(" | "));
        out.push_str(" |\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_like_metrics_rank_ascending() {
        assert!(lower_is_better("loss"));
        assert!(lower_is_better("val_loss"));
        assert!(lower_is_better("top1_err"));
        assert!(!lower_is_better("top1"));
        assert!(!lower_is_better("mIoU"));
        assert!(!lower_is_better("AP_box"));
    }

    #[test]
    fn number_formats() {
        assert_eq!(mean_std_text(0.5, Some(0.1), 2, 4), "0.5000 ± 0.1000 (n=2)");
        assert_eq!(mean_std_text(0.5, None, 1, 4), "0.5000 (n=1)");
        assert_eq!(percent(0.1), "10%");
        assert_eq!(percent(0.125), "12.5%");
    }
}
