//! Run records: `RUN/record.json`, written by every command that produces a number.
//!
//! A record says what was run (command line, resolved config, seed), on what (encoder file and its
//! sha256, dataset), how (protocol, pooling, layer, effective batch and lr), what came out (metrics
//! per epoch, best, last, headline metrics), how long it took, where (machine) and with which
//! versions. It is written when the run starts (`status = "running"`), rewritten atomically as it
//! goes, and marked `complete` only at the very end; a run that was killed keeps `running` (or is
//! `failed`), and [`RunRecord::is_result`] is false for it, so a leaderboard never shows it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ReportError;

/// The schema version written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not finished (a killed run stays here).
    Running,
    /// Finished; its numbers are results.
    Complete,
    /// Stopped by an error.
    Failed,
}

/// The encoder a downstream run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EncoderInfo {
    /// A short label for tables (e.g. `cae-mini-600steps`, `random-init`).
    pub label: String,
    /// The file, when there is one (`None` for a random initialisation).
    pub path: Option<String>,
    /// sha256 of the file.
    pub sha256: Option<String>,
    /// Pretraining method (`cae`, `beit`, `mae`, `random`, …).
    pub method: String,
    /// Model preset / architecture name.
    pub arch: String,
    /// Pretraining steps, when known.
    pub pretrain_steps: Option<u64>,
}

/// How a number was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProtocolInfo {
    /// `linear`, `attentive`, `knn`, `finetune`, `pretrain`, `coco`, `ade`, …
    pub name: String,
    /// Feature pooling (`cls`, `mean`, `cls+mean`), when it applies.
    pub pooling: Option<String>,
    /// Probed block (0-based), `None` = the final output.
    pub layer: Option<usize>,
    /// Epochs.
    pub epochs: Option<u64>,
    /// Images per optimizer step.
    pub effective_batch: Option<usize>,
    /// Peak learning rate after scaling.
    pub lr: Option<f64>,
    /// How the lr was derived (e.g. `lr = blr × batch / 256`).
    pub lr_rule: Option<String>,
    /// Optimizer.
    pub optimizer: Option<String>,
    /// Whether features were extracted once without augmentation.
    pub cached_features: Option<bool>,
    /// Fraction of the labels used (low-label fine-tuning).
    pub label_fraction: Option<f64>,
    /// Anything else worth stating next to the number.
    #[serde(default)]
    pub details: BTreeMap<String, serde_json::Value>,
    /// Every setting that can change the number, except the seed (k, temperature, weight decay,
    /// warmup, layer decay, drop path, label smoothing, …; for pretraining the model and
    /// optimisation config). The leaderboard groups by it. Empty in records written before it
    /// existed; the leaderboard then groups by [`Self::details`], where those records kept the
    /// protocol's settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// What the run's seed draws (`encoder init`, `head init`, `batch order`, `augmentation`,
    /// `drop path`, …); empty = nothing: the number is a deterministic function of the encoder
    /// and the settings. `None` in older records: see [`RunRecord::seed_draws`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_varies: Option<Vec<String>>,
}

/// The dataset a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DatasetInfo {
    /// The folder.
    pub path: String,
    /// Training images.
    pub train_images: Option<usize>,
    /// Evaluation images.
    pub val_images: Option<usize>,
    /// Classes.
    pub classes: Option<usize>,
    /// What the data was, independent of where it lies: `cae_datasets::fingerprint_dir`'s
    /// `MODE:FILES:BYTES:SHA256` of the folder (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The machine a run ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MachineInfo {
    /// Logical cores available to the process.
    pub cores: usize,
    /// CPU model, when readable.
    pub cpu: Option<String>,
    /// GPU, when one was used.
    pub gpu: Option<String>,
    /// Operating system.
    pub os: String,
    /// The device the run computed on (`cpu`, `cuda:0`, …).
    pub device: String,
    /// Worker threads.
    pub threads: Option<usize>,
}

impl MachineInfo {
    /// This machine, computing on `device`.
    pub fn current(device: &str, threads: Option<usize>) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        });
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            gpu: gpu_description(device, &nvidia_models()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            device: device.to_string(),
            threads,
        }
    }
}

/// Whether a device spec (`cpu`, `cuda:0`, `vulkan`, `tch:cuda:1`, a comma-separated list of
/// them) computes on a GPU: `vulkan:cpu` / `wgpu:cpu` (lavapipe) and `tch:cpu` do not.
fn is_gpu_device(device: &str) -> bool {
    device.split(',').any(|d| {
        let (kind, rest) = d.trim().split_once(':').unwrap_or((d.trim(), ""));
        match kind {
            "cuda" | "tch-cuda" => true,
            "vulkan" | "wgpu" => rest != "cpu",
            "tch" | "libtorch" => rest.starts_with("cuda"),
            _ => false,
        }
    })
}

/// The GPU a run computed on: `None` on the CPU; on a GPU the model name the NVIDIA driver reports
/// (`/proc/driver/nvidia/gpus/*/information`) with the device spec, when every GPU of the machine
/// is that model (so the name cannot be the wrong card's); otherwise the device spec alone.
fn gpu_description(device: &str, models: &[String]) -> Option<String> {
    if !is_gpu_device(device) {
        return None;
    }
    match models.first() {
        Some(first) if models.iter().all(|m| m == first) => Some(format!("{first} ({device})")),
        _ => Some(device.to_string()),
    }
}

/// The model names of the NVIDIA GPUs, as the driver lists them (empty without the driver).
fn nvidia_models() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    let mut models: Vec<String> = entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("information")).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("Model:"))
                .map(|m| m.trim().to_string())
        })
        .collect();
    models.sort();
    models
}

/// The metrics of one epoch (or one evaluation point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch (1-based) or step.
    pub epoch: u64,
    /// Named values (`top1`, `top5`, `loss`, …).
    pub metrics: BTreeMap<String, f64>,
}

/// One run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// What produced it (`linear-probe`, `pretrain`, …).
    pub kind: String,
    /// Where the run stands.
    pub status: RunStatus,
    /// Error message of a failed run.
    #[serde(default)]
    pub error: Option<String>,
    /// The command line, as given.
    pub command: Vec<String>,
    /// The resolved configuration.
    pub config: serde_json::Value,
    /// The seed.
    pub seed: u64,
    /// The encoder measured (downstream runs).
    #[serde(default)]
    pub encoder: Option<EncoderInfo>,
    /// The protocol.
    pub protocol: ProtocolInfo,
    /// The dataset.
    #[serde(default)]
    pub dataset: Option<DatasetInfo>,
    /// Metrics per epoch, in order.
    #[serde(default)]
    pub per_epoch: Vec<EpochMetrics>,
    /// The epoch with the best headline metric.
    #[serde(default)]
    pub best: Option<EpochMetrics>,
    /// The last epoch.
    #[serde(default)]
    pub last: Option<EpochMetrics>,
    /// The headline numbers of the run (what a table shows; the last epoch's unless stated).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Seconds from start to the last update.
    pub wall_time_s: f64,
    /// UNIX time of the start.
    pub started_unix: u64,
    /// The machine.
    pub machine: MachineInfo,
    /// Crate and tool versions (`cae-bench`, `burn`, …).
    pub versions: BTreeMap<String, String>,
    /// The identity of the request that produced the run (a sha256 over everything that changes
    /// its numbers but the seed: protocol and its settings, encoder checksum, data fingerprint,
    /// device), set by callers that reuse finished runs (`quickstart`, `calibrate`, `ablate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_key: Option<String>,
    /// Per-class results of the final evaluation (segmentation: IoU and Acc per class, in
    /// percent, `None` where undefined), beside the headline [`Self::metrics`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_class: Vec<ClassResult>,
    /// Per-image results of the final evaluation (classification: top-1 right or wrong for each
    /// validation image), so that two encoders measured on the same images can be compared
    /// image by image (a paired bootstrap, [`crate::stats::paired_bootstrap`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_image: Option<PerImage>,
    /// What the run trained, per parameter group (the model's top-level components: `backbone`,
    /// `neck`, `decode_head`, …): trainable and frozen parameter counts and the learning-rate
    /// scales of the trainable ones. Empty for runs that train nothing or predate it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trainable: Vec<TrainableGroup>,
}

/// What one parameter group of a run trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainableGroup {
    /// The component (the first segment of the parameter paths: `backbone`, `encoder`, `head`).
    pub group: String,
    /// Elements of the parameters that take gradients and are updated.
    pub trainable: u64,
    /// Elements of the parameters that are not trained (the fixed sin-cos position table, a
    /// frozen encoder).
    pub frozen: u64,
    /// Elements of buffers (BatchNorm running statistics): updated by the forward pass, never by
    /// the optimiser, counted apart from both.
    #[serde(default)]
    pub buffers: u64,
    /// Smallest and largest learning-rate scale among the trainable parameters (layer-wise lr
    /// decay spreads them; `[1, 1]` without it); `None` when nothing trains.
    pub lr_scale: Option<(f64, f64)>,
    /// Smallest and largest weight decay among the trainable parameters.
    pub weight_decay: Option<(f64, f64)>,
    /// The frozen parameters by path (a whole frozen component is named once, as `group.*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen_params: Vec<String>,
}

/// Per-image results of one evaluation, in the evaluation split's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerImage {
    /// The split (`val`).
    pub split: String,
    /// The metric (`top1`).
    pub metric: String,
    /// One character per image: `1` right, `0` wrong.
    pub correct: String,
}

impl PerImage {
    /// Top-1 correctness of the images of `split`, in order.
    pub fn top1(split: &str, correct: &[bool]) -> Self {
        Self {
            split: split.to_string(),
            metric: "top1".to_string(),
            correct: correct.iter().map(|&c| if c { '1' } else { '0' }).collect(),
        }
    }

    /// The values as numbers (1.0 right, 0.0 wrong); an error names a character that is neither.
    pub fn values(&self) -> Result<Vec<f64>, String> {
        self.correct
            .chars()
            .enumerate()
            .map(|(i, c)| match c {
                '1' => Ok(1.0),
                '0' => Ok(0.0),
                _ => Err(format!("per_image.correct[{i}] is {c:?}, not 0 or 1")),
            })
            .collect()
    }
}

/// One class's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassResult {
    /// Class name.
    pub name: String,
    /// Named values (`IoU`, `Acc`), `None` (JSON null) where undefined (no pixel of the class).
    pub values: BTreeMap<String, Option<f64>>,
}

impl RunRecord {
    /// A record for a run that is starting now.
    pub fn start(
        kind: &str,
        command: Vec<String>,
        config: serde_json::Value,
        seed: u64,
        protocol: ProtocolInfo,
        machine: MachineInfo,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            kind: kind.to_string(),
            status: RunStatus::Running,
            error: None,
            command,
            config,
            seed,
            encoder: None,
            protocol,
            dataset: None,
            per_epoch: Vec::new(),
            best: None,
            last: None,
            metrics: BTreeMap::new(),
            wall_time_s: 0.0,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine,
            versions: BTreeMap::from([(
                "cae-reports".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]),
            request_key: None,
            per_class: Vec::new(),
            per_image: None,
            trainable: Vec::new(),
        }
    }

    /// What the seed draws in this run: [`ProtocolInfo::seed_varies`] when recorded, else inferred
    /// from the record: a random encoder (`method = random`) is drawn by the seed; kNN trains
    /// nothing, so on an encoder file it draws nothing; any other protocol trains something
    /// seeded (`probe`); a pretraining run (`kind = pretrain`) is drawn by its seed.
    pub fn seed_draws(&self) -> Vec<String> {
        if let Some(v) = &self.protocol.seed_varies {
            return v.clone();
        }
        if self.kind == "pretrain" {
            return vec!["pretraining".into()];
        }
        let mut v = Vec::new();
        if self.encoder.as_ref().is_some_and(|e| e.method == "random") {
            v.push("encoder init".into());
        }
        if self.protocol.name != "knn" {
            v.push("probe".into());
        }
        v
    }

    /// Whether the number is a deterministic function of the encoder and the settings (the seed
    /// draws nothing, e.g. kNN on an encoder file): runs that differ only in the seed are one
    /// measurement.
    pub fn is_deterministic(&self) -> bool {
        self.seed_draws().is_empty()
    }

    /// Whether its numbers may be shown as results.
    pub fn is_result(&self) -> bool {
        self.status == RunStatus::Complete
    }

    /// Appends an epoch; `best` follows the largest value of `headline` (e.g. `top1`).
    pub fn push_epoch(&mut self, epoch: EpochMetrics, headline: &str) {
        let better = match (&self.best, epoch.metrics.get(headline)) {
            (None, _) => true,
            (Some(b), Some(v)) => b.metrics.get(headline).is_none_or(|old| v > old),
            (Some(_), None) => false,
        };
        if better {
            self.best = Some(epoch.clone());
        }
        self.last = Some(epoch.clone());
        self.per_epoch.push(epoch);
    }

    /// Reads a record.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| ReportError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the record atomically (temporary file + rename).
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(self).expect("a record serialises");
        write_atomic(path, text.as_bytes())
    }
}

/// Writes a record through a run's life: at the start, after each epoch, and at the end.
pub struct RecordWriter {
    path: PathBuf,
    started: std::time::Instant,
    /// The record.
    pub record: RunRecord,
}

impl RecordWriter {
    /// Writes the starting record to `dir/record.json`.
    pub fn create(dir: &Path, record: RunRecord) -> Result<Self, ReportError> {
        std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        let w = Self {
            path: dir.join("record.json"),
            started: std::time::Instant::now(),
            record,
        };
        w.record.write(&w.path)?;
        Ok(w)
    }

    /// The record's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the record (still `running`).
    pub fn update(&mut self) -> Result<(), ReportError> {
        self.record.wall_time_s = self.started.elapsed().as_secs_f64();
        self.record.write(&self.path)
    }

    /// Marks the run complete with its headline metrics.
    pub fn complete(mut self, metrics: BTreeMap<String, f64>) -> Result<RunRecord, ReportError> {
        self.record.metrics = metrics;
        self.record.status = RunStatus::Complete;
        self.update()?;
        Ok(self.record)
    }

    /// Marks the run failed.
    pub fn fail(mut self, error: &str) -> Result<RunRecord, ReportError> {
        self.record.status = RunStatus::Failed;
        self.record.error = Some(error.to_string());
        self.update()?;
        Ok(self.record)
    }
}

/// sha256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A request key: the sha256 of a JSON value's compact text (object keys sorted, as
/// `serde_json` keeps them), for [`RunRecord::request_key`].
pub fn request_key(value: &serde_json::Value) -> String {
    sha256_hex(value.to_string().as_bytes())
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, ReportError> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(|e| ReportError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ReportError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes `bytes` to `path` atomically and durably ([`cae_fsio::write_atomic`], the workspace's one
/// implementation), with the error naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    cae_fsio::write_atomic(path, bytes).map_err(|e| ReportError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gpu_is_named_only_on_a_gpu_device_and_only_when_unambiguous() {
        let h200 = vec!["NVIDIA H200".to_string(), "NVIDIA H200".to_string()];
        assert_eq!(gpu_description("cpu", &h200), None);
        assert_eq!(gpu_description("cpu,cpu", &h200), None);
        assert_eq!(
            gpu_description("vulkan", &h200).as_deref(),
            Some("NVIDIA H200 (vulkan)")
        );
        assert_eq!(
            gpu_description("cuda:0,cuda:1", &h200).as_deref(),
            Some("NVIDIA H200 (cuda:0,cuda:1)")
        );
        let mixed = vec!["NVIDIA A100".to_string(), "NVIDIA H200".to_string()];
        assert_eq!(gpu_description("cuda:1", &mixed).as_deref(), Some("cuda:1"));
        assert_eq!(
            gpu_description("tch-cuda:0", &[]).as_deref(),
            Some("tch-cuda:0")
        );
        assert_eq!(
            gpu_description("tch:cuda:0", &h200).as_deref(),
            Some("NVIDIA H200 (tch:cuda:0)")
        );
        for cpu in ["tch:cpu", "tch", "vulkan:cpu", "wgpu:cpu", "flex"] {
            assert_eq!(gpu_description(cpu, &h200), None, "{cpu}");
        }
        assert_eq!(MachineInfo::current("cpu", Some(2)).gpu, None);
    }

    fn record() -> RunRecord {
        RunRecord::start(
            "linear-probe",
            vec!["cae-bench".into(), "linear-probe".into()],
            serde_json::json!({"epochs": 2}),
            3,
            ProtocolInfo {
                name: "linear".into(),
                pooling: Some("cls".into()),
                ..Default::default()
            },
            MachineInfo::current("cpu", Some(2)),
        )
    }

    #[test]
    fn a_record_is_a_result_only_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = RecordWriter::create(dir.path(), record()).unwrap();
        let on_disk = RunRecord::read(w.path()).unwrap();
        assert_eq!(on_disk.status, RunStatus::Running);
        assert!(!on_disk.is_result());
        for (e, top1) in [(1, 0.4), (2, 0.6), (3, 0.5)] {
            w.record.push_epoch(
                EpochMetrics {
                    epoch: e,
                    metrics: BTreeMap::from([("top1".into(), top1)]),
                },
                "top1",
            );
            w.update().unwrap();
        }
        assert_eq!(w.record.best.as_ref().unwrap().epoch, 2);
        assert_eq!(w.record.last.as_ref().unwrap().epoch, 3);
        let path = w.path().to_path_buf();
        w.complete(BTreeMap::from([("top1".into(), 0.5)])).unwrap();
        let done = RunRecord::read(&path).unwrap();
        assert!(done.is_result());
        assert_eq!(done.metrics["top1"], 0.5);
        assert_eq!(done.schema_version, SCHEMA_VERSION);
    }

    #[test]
    fn older_records_without_settings_still_load_and_infer_what_the_seed_draws() {
        let mut r = record();
        let mut v = serde_json::to_value(&r).unwrap();
        let p = v["protocol"].as_object_mut().unwrap();
        assert!(!p.contains_key("settings") && !p.contains_key("seed_varies"));
        let old: RunRecord = serde_json::from_value(v).unwrap();
        assert_eq!(old, r);
        assert_eq!(old.seed_draws(), vec!["probe".to_string()]);
        r.protocol.name = "knn".into();
        r.encoder = Some(EncoderInfo {
            method: "cae".into(),
            ..Default::default()
        });
        assert!(r.is_deterministic());
        r.encoder.as_mut().unwrap().method = "random".into();
        assert_eq!(r.seed_draws(), vec!["encoder init".to_string()]);
        r.protocol.seed_varies = Some(vec![]);
        assert!(r.is_deterministic());
        let back: RunRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.protocol.seed_varies, Some(vec![]));
    }

    #[test]
    fn sha256_of_a_known_string() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
