//! `cae-bench quickstart`: the whole flow on the synthetic world, in one command.
//!
//! 1. writes the synthetic world (`OUT/world/`);
//! 2. pretrains CAE and BEiT (`mini` preset, pixel targets) for the same number of steps, set by
//!    the time budget (`--minutes`) or given (`--pretrain-steps`) (`OUT/pretrain/{cae,beit}/`);
//! 3. measures them and a random initialisation with the linear probe, kNN and a low-label
//!    fine-tune, over several seeds (`OUT/runs/<encoder>/<protocol>/seed-<k>/record.json`);
//! 4. writes `OUT/report.md`: the leaderboard (mean ± std over seeds, protocol details beside each
//!    number), the published numbers with their sources, and how the run was made.
//!
//! Every stage leaves its record, and every stage has an identity: the world its generator's
//! parameters (`OUT/world-<key8>/`), a pretraining run its resolved arguments and the fingerprint
//! of its data (`OUT/pretrain/<method>-<key8>/`), a probe run its request key (see
//! [`crate::suite`]). Running the command again with the same `--out` reuses exactly the stages
//! whose identity did not change, resumes an interrupted pretraining run of the same identity from
//! its newest checkpoint, and runs everything else anew in folders of its own; it prints what it
//! reused. `OUT/quickstart.json` lists the records the report was built from, and the report is
//! rendered from those files alone ([`render_report`]), so it can be rendered again, anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser};
use serde::{Deserialize, Serialize};

use crate::protocols::classification::EncoderSource;
use cae_datasets::synth::{SynthConfig, WorldSummary, write_world};
use cae_pretrain::CaeConfig;
use cae_pretrain::autocast::Precision;
use cae_pretrain::device::parse_device;
use cae_pretrain::train::bench::bench_pretrain_step;
use cae_pretrain::train::{RunConfig, RunSummary};
use cae_reports::document::{Comparison, Document, DocumentInput, RecordAt, build, comparisons};
use cae_reports::record::{RunRecord, request_key, write_atomic};
use cae_reports::report::Section;

use crate::commands::pretrain::{PretrainArgs, pretrain_with_record};
use crate::suite::{
    Dense, DenseSettings, SuiteEncoder, SuiteSettings, reuse_summary, run_dense, run_suite,
    standard_protocols,
};

/// `cae-bench quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Output folder (world, pretraining runs, probe runs, report).
    #[arg(long, default_value = "quickstart")]
    pub out: PathBuf,
    /// Derive the pretraining steps from a time budget in minutes on this machine instead of the
    /// fixed plan. This changes the protocol: the steps, and so the numbers, then depend on the
    /// machine's speed and load. Ignored with `--pretrain-steps`.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Pretraining steps of CAE and of BEiT (batch 64) [default: the fixed plan's 600]. Another
    /// value is another protocol, named in the report.
    #[arg(long)]
    pub pretrain_steps: Option<u64>,
    /// Scenes in the synthetic world (80% train, 20% val) [default: the fixed plan's 12,000:
    /// 9,600 labelled training and 2,400 validation images].
    #[arg(long, default_value_t = PLAN_IMAGES)]
    pub images: usize,
    /// Also segmentation (UperNet and the linear head, `segment --preset mini`) and detection
    /// (`detect --preset mini`) of every encoder (CAE, BEiT, the zoo's, random init) on the
    /// world's ADE20K and COCO forms: minutes per run on 2 cores (README), so not in the
    /// default.
    #[arg(long)]
    pub full: bool,
    /// Seeds of the segmentation and detection runs of `--full`.
    #[arg(long, default_value_t = 2)]
    pub full_seeds: u64,
    /// Recipe of `--full`'s segmentation and detection runs (`test` in the tests).
    #[arg(long, default_value = "mini", hide = true)]
    pub dense_preset: String,
    /// Zoo encoders measured beside the quickstart's own (`zoo/`, `cae-bench zoo list`):
    /// `auto` takes every `mini` entry pretrained on exactly this world's training images (same
    /// data fingerprint), `none` takes none, or a comma-separated list of names (each must have
    /// been pretrained on this world's training images).
    #[arg(long, default_value = "auto")]
    pub zoo: String,
    /// Seeds of every downstream protocol (0, 1, …).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Seed of the world and of pretraining.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda[:N], vulkan[:N|:cpu], tch[:cpu|:cuda:N] (`cae-bench devices` lists what this binary has).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the leaderboard as JSON at the end.
    #[arg(long)]
    pub json: bool,
    /// Run nothing: render `OUT/report.md` and `OUT/leaderboard.csv` again from the records
    /// that `OUT/quickstart.json` names.
    #[arg(long)]
    pub report_only: bool,
}

/// The preset the quickstart pretrains and measures.
const PRESET: &str = "mini";
/// Pretraining batch.
const BATCH: usize = 64;
/// Share of the budget planned for pretraining (both methods together), with `--minutes`.
const PRETRAIN_SHARE: f64 = 0.5;
/// The fixed plan: pretraining steps per method.
pub const PLAN_STEPS: u64 = 600;
/// The fixed plan: scenes in the world (9,600 train / 2,400 val).
pub const PLAN_IMAGES: usize = 12_000;

/// What a quickstart folder was planned with (`OUT/plan.json`): a rerun in the same folder with
/// the same options keeps it, so the steps do not change with the machine's speed on a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Plan {
    images: usize,
    seed: u64,
    seeds: u64,
    /// The budget the steps were derived from (`None`: given with `--pretrain-steps`).
    minutes: Option<f64>,
    device: String,
    pretrain_steps: u64,
    /// How the steps were chosen.
    rule: String,
}

/// `OUT/quickstart.json`: what the report is built from, paths relative to `OUT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The command line.
    pub command: Vec<String>,
    /// The world's folder.
    pub world: String,
    /// Pretraining run folders by method (`cae`, `beit`).
    pub pretrain: BTreeMap<String, String>,
    /// Zoo encoders measured beside them: name → the folder under `OUT` holding a copy of the
    /// entry's pretraining record (`zoo/<name>`).
    #[serde(default)]
    pub zoo: BTreeMap<String, String>,
    /// The probe runs' folders, in the suite's order.
    pub runs: Vec<String>,
    /// How many of them were reused from an earlier invocation.
    pub reused: usize,
    /// Pretraining steps per method, and how they were chosen.
    pub pretrain_steps: u64,
    /// The rule that chose them.
    pub rule: String,
    /// Seeds of the downstream protocols.
    pub seeds: u64,
    /// Scenes in the world.
    #[serde(default)]
    pub images: usize,
    /// The time estimated before starting, in minutes.
    #[serde(default)]
    pub estimated_minutes: Option<f64>,
    /// Wall time of this invocation, in seconds.
    pub seconds: f64,
    /// Worker threads.
    pub threads: usize,
    /// Logical cores.
    pub cores: usize,
}

/// Parses a `cae-bench pretrain` argument list (its defaults live in one place).
pub fn pretrain_args(args: &[String]) -> anyhow::Result<PretrainArgs> {
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: PretrainArgs,
    }
    let argv = std::iter::once("pretrain".to_string()).chain(args.iter().cloned());
    Ok(Wrap::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .args)
}

/// The short form of a key used in folder names.
fn short(key: &str) -> &str {
    &key[..key.len().min(8)]
}

/// Writes the world into `OUT/world-<key8>/` unless that folder already holds it.
fn world(out: &Path, cfg: &SynthConfig) -> anyhow::Result<(WorldSummary, bool)> {
    let key = request_key(&serde_json::json!({ "synth": cfg }));
    let dir = out.join(format!("world-{}", short(&key)));
    let json = dir.join("world.json");
    if let Ok(text) = std::fs::read_to_string(&json)
        && let Ok(old) = serde_json::from_str::<WorldSummary>(&text)
        && old.config == *cfg
    {
        return Ok((WorldSummary { root: dir, ..old }, true));
    }
    let w = write_world(cfg, &dir)
        .with_context(|| format!("writing the synthetic world to {}", dir.display()))?;
    Ok((w, false))
}

/// The time of one `mini` pretraining step of batch 64 on `device`, in ms (median of 3 after one
/// warm-up step).
fn step_ms(device: &str) -> anyhow::Result<f64> {
    let cfg = CaeConfig::preset(PRESET)?;
    let device = parse_device(device)?.autodiff();
    let b = bench_pretrain_step(&cfg, BATCH, 3, 1, Precision::F32, &device)
        .context("timing a pretraining step")?;
    Ok(b.ms_per_step)
}

/// Chooses the pretraining steps: the fixed plan ([`PLAN_STEPS`]) unless `--pretrain-steps` gives
/// others; with `--minutes`, the plan of an earlier run in this folder with the same options, or
/// the budget divided by a measured step time.
fn plan(args: &QuickstartArgs, threads: usize, ms: f64) -> anyhow::Result<Plan> {
    let path = args.out.join("plan.json");
    let old: Option<Plan> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let same_setup = |p: &Plan| {
        p.images == args.images
            && p.seed == args.seed
            && p.seeds == args.seeds
            && p.device == args.device
            && p.minutes == args.minutes
    };
    let fixed = |steps: u64, rule: &str| Plan {
        images: args.images,
        seed: args.seed,
        seeds: args.seeds,
        minutes: None,
        device: args.device.clone(),
        pretrain_steps: steps,
        rule: rule.into(),
    };
    let plan = match (args.pretrain_steps, args.minutes, old) {
        (Some(steps), _, _) if steps == PLAN_STEPS => fixed(steps, "the fixed plan (the default)"),
        (Some(steps), _, _) => fixed(
            steps,
            "given (--pretrain-steps): another protocol than the fixed plan's",
        ),
        (None, None, _) => fixed(PLAN_STEPS, "the fixed plan (the default)"),
        (None, Some(_), Some(old)) if same_setup(&old) => {
            eprintln!(
                "keeping the plan of {} ({} pretraining steps, {})",
                path.display(),
                old.pretrain_steps,
                old.rule
            );
            old
        }
        (None, Some(minutes), _) => {
            anyhow::ensure!(
                minutes.is_finite() && minutes > 0.0,
                "--minutes must be positive"
            );
            let secs = ms / 1e3;
            // CAE and BEiT each get the same steps; BEiT's step costs about as much as CAE's.
            let budget = minutes * 60.0 * PRETRAIN_SHARE;
            let steps = ((budget / (2.0 * secs)) / 10.0).floor() as u64 * 10;
            let steps = steps.clamp(20, 100_000);
            Plan {
                images: args.images,
                seed: args.seed,
                seeds: args.seeds,
                minutes: Some(minutes),
                device: args.device.clone(),
                pretrain_steps: steps,
                rule: format!(
                    "derived from --minutes: {PRETRAIN_SHARE} × {minutes} min / (2 methods × {ms:.0} \
                     ms per step, measured on {} with {threads} threads), rounded down to tens; \
                     this depends on the machine's speed and load, so it is not the fixed plan",
                    args.device
                ),
            }
        }
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_atomic(&path, serde_json::to_string_pretty(&plan)?.as_bytes())?;
    Ok(plan)
}

/// Pretrains one method in `OUT/pretrain/<method>-<key8>/`, the key being its arguments and
/// the fingerprint of its data; reuses the finished run there, or resumes an interrupted one.
/// Returns the folder, the encoder, the record and whether it was reused.
fn pretrain(
    method: &str,
    data: &Path,
    plan: &Plan,
    args: &QuickstartArgs,
) -> anyhow::Result<(PathBuf, PathBuf, RunRecord, bool)> {
    let argv = pretrain_argv(
        PRESET,
        method,
        plan.pretrain_steps,
        BATCH,
        Some(plan.seed),
        &args.device,
    );
    pretrain_once(
        &args.out.join("pretrain"),
        method,
        &argv,
        data,
        args.no_progress,
    )
}

/// The `cae-bench pretrain` options of the quickstart's and `ablate`'s runs: preset, method,
/// steps, batch, the seed when given, device, and a checkpoint every 50 steps (the newest kept),
/// so an interrupted run resumes.
pub fn pretrain_argv(
    preset: &str,
    method: &str,
    steps: u64,
    batch: usize,
    seed: Option<u64>,
    device: &str,
) -> Vec<String> {
    let mut argv: Vec<String> = ["--preset", preset, "--method", method]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(["--steps".into(), steps.to_string()]);
    argv.extend(["--batch".into(), batch.to_string()]);
    if let Some(seed) = seed {
        argv.extend(["--seed".into(), seed.to_string()]);
    }
    argv.extend(["--device".into(), device.to_string()]);
    argv.extend(
        ["--checkpoint-every", "50", "--keep-checkpoints", "1"]
            .iter()
            .map(|s| s.to_string()),
    );
    argv
}

/// Pretrains with `argv` (`cae-bench pretrain` options without `--data`/`--out`) on `data` in
/// `parent/<name>-<key8>/`, the key being the arguments and the fingerprint of the data: reuses
/// the finished run there, or resumes an interrupted one from its newest checkpoint. Returns the
/// folder, the encoder, the record and whether it was reused. (The quickstart and `ablate`.)
pub fn pretrain_once(
    parent: &Path,
    name: &str,
    argv: &[String],
    data: &Path,
    no_progress: bool,
) -> anyhow::Result<(PathBuf, PathBuf, RunRecord, bool)> {
    let fingerprint = cae_datasets::fingerprint_dir(data)
        .with_context(|| format!("fingerprinting {}", data.display()))?
        .to_string();
    let mut argv = argv.to_vec();
    // The key is over the arguments as the quickstart has always written them (data first).
    let at = argv.len().min(4);
    argv.splice(at..at, ["--data".to_string(), data.display().to_string()]);
    let key = request_key(&serde_json::json!({
        "kind": "pretrain",
        "args": argv,
        "data": fingerprint,
    }));
    let dir = parent.join(format!("{name}-{}", short(&key)));
    let encoder = dir.join("encoder.safetensors");
    let record = dir.join("record.json");
    if let Ok(rec) = RunRecord::read(&record)
        && rec.is_result()
        && encoder.exists()
    {
        return Ok((dir, encoder, rec, true));
    }
    argv.extend(["--out".to_string(), dir.display().to_string()]);
    // The same identity, interrupted: resume it.
    if dir.join("config.toml").exists() {
        argv.push("--resume".into());
    }
    if no_progress {
        argv.push("--no-progress".into());
    }
    let pargs = pretrain_args(&argv)?;
    let summary: RunSummary = pretrain_with_record(&pargs, &cae_pretrain::train::SingleProcess)?;
    let rec = RunRecord::read(&record).with_context(|| format!("reading {}", record.display()))?;
    Ok((dir, summary.encoder, rec, false))
}

/// A path relative to `base` (as given when it is not below it).
fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A zoo encoder the quickstart measures beside its own.
struct ZooUse {
    name: String,
    sha256: String,
    encoder: SuiteEncoder,
    /// `OUT/zoo/<name>/`: a copy of the entry's pretraining record, so that the report renders
    /// from the quickstart folder alone.
    copy: PathBuf,
}

/// `CAE` / `BEiT` / as given.
fn method_label(method: &str) -> String {
    match method {
        "cae" => "CAE".into(),
        "beit" => "BEiT".into(),
        m => m.to_string(),
    }
}

/// The zoo encoders `--zoo` names (`auto`, `none` or names), each checked against its record's
/// sha256 and against the data it was pretrained on: the fingerprint of this world's `train`
/// images, since a zoo encoder pretrained on other scenes would be measured on images it may have
/// seen, or on another world. `auto` skips entries of other data or another preset, and a missing
/// zoo folder; named entries must fit, or the command stops and says why.
fn zoo_encoders(spec: &str, train: &Path, out: &Path) -> anyhow::Result<Vec<ZooUse>> {
    use crate::zoo::{entries, resolve, zoo_dir};
    let spec = spec.trim();
    if spec == "none" || spec.is_empty() {
        return Ok(Vec::new());
    }
    let dir = zoo_dir();
    let auto = spec == "auto";
    if auto && !dir.is_dir() {
        eprintln!(
            "[zoo] no zoo at {} (CAE_BENCH_ZOO): measuring the quickstart's own encoders only",
            dir.display()
        );
        return Ok(Vec::new());
    }
    let fingerprint = cae_datasets::fingerprint_dir(train)
        .with_context(|| format!("fingerprinting {}", train.display()))?
        .to_string();
    let picked = if auto {
        entries(&dir)?
    } else {
        spec.split(',')
            .map(|n| resolve(&dir, n.trim()))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut out_list = Vec::new();
    for e in picked {
        let data = e
            .record
            .dataset
            .as_ref()
            .and_then(|d| d.fingerprint.clone())
            .unwrap_or_default();
        let arch = e
            .record
            .encoder
            .as_ref()
            .map_or(String::new(), |i| i.arch.clone());
        let fits = data == fingerprint && arch == PRESET;
        if !fits {
            anyhow::ensure!(
                auto,
                "--zoo {}: pretrained on data {data} with preset `{arch}`, not on this world's \
                 training images ({fingerprint}, {}) with `{PRESET}`",
                e.name,
                train.display()
            );
            continue;
        }
        e.verify()?;
        let sha256 = e.sha256().unwrap_or_default().to_string();
        let copy = out.join("zoo").join(&e.name);
        std::fs::create_dir_all(&copy).with_context(|| format!("creating {}", copy.display()))?;
        let rec = e.encoder.with_file_name("record.json");
        let bytes = std::fs::read(&rec).with_context(|| format!("reading {}", rec.display()))?;
        write_atomic(&copy.join("record.json"), &bytes)?;
        let label = format!(
            "{} {PRESET}, {} steps (zoo, seed {})",
            method_label(e.method()),
            e.steps().map_or("?".into(), |s| s.to_string()),
            e.record.seed
        );
        out_list.push(ZooUse {
            encoder: SuiteEncoder {
                key: format!("zoo-{}", e.name),
                label,
                source: EncoderSource::File(e.encoder.clone()),
                preset: PRESET.into(),
            },
            name: e.name.clone(),
            sha256,
            copy,
        });
    }
    Ok(out_list)
}

/// A rough estimate of the whole run in minutes from the time of one pretraining step: both
/// pretraining runs, plus the encoder passes of the probes (an image's forward pass taken as a
/// third of its share of a training step): feature extraction of every image for the linear
/// probe and kNN (once per encoder: the runs of one encoder share its features), and the
/// fine-tune's 10 epochs on 1% of the training images with an evaluation at the end, per seed;
/// for CAE, BEiT and the `zoo` encoders (one file each) and the random initialisation (one per
/// seed).
fn estimate_minutes(plan: &Plan, step_ms: f64, zoo: usize) -> f64 {
    let pretrain = 2.0 * plan.pretrain_steps as f64 * step_ms;
    let forward = step_ms / (3.0 * BATCH as f64);
    let (train, val) = (0.8 * plan.images as f64, 0.2 * plan.images as f64);
    let seeds = plan.seeds as f64;
    let files = 2.0 + zoo as f64;
    let extract = (files + seeds) * (train + val);
    let finetune = (files + 1.0) * seeds * (10.0 * (0.01 * train).max(8.0) * 3.0 + val);
    (pretrain + forward * (extract + finetune)) / 60_000.0
}

/// Renders the quickstart's report ([`render_report`]) and writes `report.md`, `report.html`,
/// their images and `leaderboard.csv` into `out`.
pub fn write_report(out: &Path) -> anyhow::Result<()> {
    let doc = render_report(out)?;
    doc.write(out, TITLE)?;
    write_atomic(&out.join("leaderboard.csv"), doc.csv.as_bytes())?;
    Ok(())
}

/// The report's title.
const TITLE: &str = "cae-bench quickstart";

/// Runs the quickstart.
pub fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    if args.report_only {
        write_report(&args.out)?;
        eprintln!(
            "report: {} and report.html",
            args.out.join("report.md").display()
        );
        return Ok(());
    }
    let started = Instant::now();
    let threads = rayon::current_num_threads();
    anyhow::ensure!(args.seeds >= 1, "--seeds must be at least 1");
    // One timed step serves both the `--minutes` rule and the estimate.
    let ms = step_ms(&args.device)?;
    let plan = plan(&args, threads, ms)?;
    eprintln!(
        "quickstart in {}: {} scenes, {} pretraining steps per method ({}), {} seeds",
        args.out.display(),
        plan.images,
        plan.pretrain_steps,
        plan.rule,
        plan.seeds
    );
    // 1. The world.
    let mut wcfg = SynthConfig::new(args.images, 32, args.seed);
    wcfg.classes = 8;
    let (world, reused) = world(&args.out, &wcfg)?;
    let images = world.root.join("imagefolder");
    eprintln!(
        "[world] {} train / {} val scenes, {} classes in {} ({})",
        world.train_images,
        world.val_images,
        world.classes.len(),
        world.root.display(),
        if reused {
            "reused".to_string()
        } else {
            format!("{:.0} s", started.elapsed().as_secs_f64())
        }
    );

    // The zoo encoders to measure beside the quickstart's own, checked before any training.
    let zoo = zoo_encoders(&args.zoo, &images.join("train"), &args.out)?;
    for z in &zoo {
        eprintln!(
            "[zoo {}] {} (sha256 {}…, pretrained on this world's training images)",
            z.name,
            z.encoder.label,
            &z.sha256[..z.sha256.len().min(12)]
        );
    }
    let estimate = estimate_minutes(&plan, ms, zoo.len());
    eprintln!(
        "estimated time on this machine: about {estimate:.0} min ({threads} threads; from one \
         timed pretraining step; stages already finished in {} are reused)",
        args.out.display()
    );

    // 2. Pretraining.
    let mut pretrained = BTreeMap::new();
    for method in ["cae", "beit"] {
        let t = Instant::now();
        let (dir, enc, rec, reused) = pretrain(method, &images.join("train"), &plan, &args)?;
        eprintln!(
            "[pretrain {method}] {} steps, final loss {:.4} in {} ({})",
            plan.pretrain_steps,
            rec.metrics.get("final_loss").copied().unwrap_or(f64::NAN),
            dir.display(),
            if reused {
                "reused".to_string()
            } else {
                format!("{:.0} s", t.elapsed().as_secs_f64())
            }
        );
        pretrained.insert(method, (dir, enc));
    }

    // 3. The downstream protocols.
    let steps = plan.pretrain_steps;
    let mut encoders = vec![
        SuiteEncoder {
            key: "cae".into(),
            label: format!("CAE {PRESET}, {steps} steps"),
            source: EncoderSource::File(pretrained["cae"].1.clone()),
            preset: PRESET.into(),
        },
        SuiteEncoder {
            key: "beit".into(),
            label: format!("BEiT {PRESET}, {steps} steps"),
            source: EncoderSource::File(pretrained["beit"].1.clone()),
            preset: PRESET.into(),
        },
    ];
    encoders.extend(zoo.iter().map(|z| z.encoder.clone()));
    encoders.push(SuiteEncoder {
        key: "random".into(),
        label: format!("random init {PRESET}"),
        source: EncoderSource::Random,
        preset: PRESET.into(),
    });
    let seeds: Vec<u64> = (0..plan.seeds).collect();
    let settings = SuiteSettings {
        data: images.clone(),
        runs: args.out.join("runs"),
        device: args.device.clone(),
        threads,
        command: std::env::args().collect(),
    };
    let runs = run_suite(&encoders, &standard_protocols(), &seeds, &settings)?;
    // `--full`: (folder, reused) of each segmentation and detection run.
    let mut dense_runs: Vec<(PathBuf, bool)> = Vec::new();
    if args.full {
        let ade = world.root.join("ade").join("ADEChallengeData2016");
        let coco = world.root.join("coco");
        for (kind, data) in [
            (Dense::SegUpernet, &ade),
            (Dense::SegLinear, &ade),
            (Dense::Detect, &coco),
        ] {
            let dense = DenseSettings {
                data: data.clone(),
                preset: args.dense_preset.clone(),
                device: args.device.clone(),
                progress: !args.no_progress,
            };
            for enc in &encoders {
                for seed in 0..args.full_seeds {
                    let t = Instant::now();
                    let (dir, record, reused) = run_dense(kind, enc, seed, &settings.runs, &dense)?;
                    let m = |k: &str| record.metrics.get(k).copied().unwrap_or(f64::NAN);
                    eprintln!(
                        "[{}] {} · seed {seed}: {} ({})",
                        kind.key(),
                        enc.label,
                        if kind == Dense::Detect {
                            format!("box AP {:.4}, mask AP {:.4}", m("bbox_AP"), m("segm_AP"))
                        } else {
                            format!("mIoU {:.2}", m("mIoU"))
                        },
                        if reused {
                            "reused".to_string()
                        } else {
                            format!("{:.0} s", t.elapsed().as_secs_f64())
                        }
                    );
                    dense_runs.push((dir, reused));
                }
            }
        }
    }

    // 4. The manifest and the report, rendered from the records alone.
    let manifest = Manifest {
        command: std::env::args().collect(),
        world: relative(&world.root, &args.out),
        pretrain: pretrained
            .iter()
            .map(|(m, (dir, _))| (m.to_string(), relative(dir, &args.out)))
            .collect(),
        zoo: zoo
            .iter()
            .map(|z| (z.name.clone(), relative(&z.copy, &args.out)))
            .collect(),
        runs: runs
            .iter()
            .map(|r| relative(&r.dir, &args.out))
            .chain(dense_runs.iter().map(|(d, _)| relative(d, &args.out)))
            .collect(),
        reused: runs.iter().filter(|r| r.reused).count()
            + dense_runs.iter().filter(|(_, r)| *r).count(),
        pretrain_steps: plan.pretrain_steps,
        rule: plan.rule.clone(),
        seeds: plan.seeds,
        images: plan.images,
        estimated_minutes: Some(estimate),
        seconds: started.elapsed().as_secs_f64(),
        threads,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    write_atomic(
        &args.out.join("quickstart.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    write_report(&args.out)?;
    let report = args.out.join("report.md");
    eprintln!("{}", reuse_summary(&runs, &settings.runs));
    eprintln!(
        "report: {} ({:.1} min in all)",
        report.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    if args.json {
        let rows: Vec<_> = runs
            .iter()
            .map(|r| {
                let r = &r.record;
                serde_json::json!({
                    "encoder": r.encoder.as_ref().map(|e| e.label.clone()),
                    "protocol": r.protocol.name,
                    "label_fraction": r.protocol.label_fraction,
                    "seed": r.seed,
                    "top1": r.metrics.get("top1"),
                    "top5": r.metrics.get("top5"),
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    }
    Ok(())
}

/// The compute backend behind a device string, for reports.
pub fn backend_of(device: &str) -> &'static str {
    let kind = device.split(':').next().unwrap_or(device);
    match kind {
        "cpu" => "flex (pure-Rust CPU backend)",
        "vulkan" | "wgpu" => "wgpu on Vulkan",
        "cuda" => "CubeCL CUDA",
        "tch" => "LibTorch (tch)",
        _ => "unknown backend",
    }
}

/// Reads a record named in the manifest.
fn read_record(out: &Path, rel: &str) -> anyhow::Result<RunRecord> {
    let path = out.join(rel).join("record.json");
    let rec = RunRecord::read(&path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        rec.is_result(),
        "{}: the run is not complete ({:?}); run the quickstart again to finish it",
        path.display(),
        rec.status
    );
    Ok(rec)
}

/// Renders the quickstart's report from the files of its folder alone (`quickstart.json`, the
/// world's `world.json`, the records it names and the pretraining runs' `metrics.jsonl`): every
/// sentence and number comes from them, so it can be rendered again from a copy of the folder.
/// The document is [`cae_reports::document`]'s, with the plan, the pretraining setup, the
/// protocols and a reading of the comparisons in front.
pub fn render_report(out: &Path) -> anyhow::Result<Document> {
    let mpath = out.join("quickstart.json");
    let manifest: Manifest = serde_json::from_str(
        &std::fs::read_to_string(&mpath).with_context(|| format!("reading {}", mpath.display()))?,
    )
    .with_context(|| format!("{}: not a quickstart manifest", mpath.display()))?;
    let wpath = out.join(&manifest.world).join("world.json");
    let world: WorldSummary = serde_json::from_str(
        &std::fs::read_to_string(&wpath).with_context(|| format!("reading {}", wpath.display()))?,
    )
    .with_context(|| format!("{}: not a world summary", wpath.display()))?;
    let mut pretrained = Vec::new();
    for (method, rel) in &manifest.pretrain {
        pretrained.push((method.clone(), rel.clone(), read_record(out, rel)?));
    }
    let mut zoo = Vec::new();
    for (name, rel) in &manifest.zoo {
        zoo.push((name.clone(), rel.clone(), read_record(out, rel)?));
    }
    let records = manifest
        .runs
        .iter()
        .map(|rel| Ok((rel.clone(), read_record(out, rel)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut described = String::new();
    for (method, rel, rec) in &pretrained {
        let cfg: RunConfig = serde_json::from_value(rec.config.clone())
            .with_context(|| format!("{rel}/record.json: no resolved pretraining config"))?;
        described.push_str(&format!("- {}\n", describe_pretraining(method, &cfg)));
    }
    for (name, rel, rec) in &zoo {
        let cfg: RunConfig = serde_json::from_value(rec.config.clone())
            .with_context(|| format!("{rel}/record.json: no resolved pretraining config"))?;
        let e = rec.encoder.as_ref();
        described.push_str(&format!(
            "- zoo `{name}` (`--encoder zoo:{name}`, not pretrained by this command: its \
             pretraining record is copied to `{rel}/record.json`; encoder sha256 `{}`, {} steps, \
             {:.0} s on {}): {}\n",
            e.and_then(|e| e.sha256.as_deref()).unwrap_or("?"),
            cfg.derived.total_steps,
            rec.wall_time_s,
            rec.machine.cpu.as_deref().unwrap_or("?"),
            describe_pretraining(e.map_or("?", |e| e.method.as_str()), &cfg)
        ));
    }
    let plan = format!(
        "{} pretraining steps per method (batch {BATCH}), a world of {} scenes at {} px ({} train \
         / {} val, {} classes, chance {:.1}%), {} seeds per downstream protocol, pretraining seed \
         {}: {}. {}\n\nEstimated before starting: {}; took {:.1} min for this invocation \
         (stages reused from earlier invocations cost nothing here; {} of the {} probe runs \
         were reused).\n",
        manifest.pretrain_steps,
        world.config.images,
        world.config.size,
        world.train_images,
        world.val_images,
        world.classes.len(),
        100.0 / world.classes.len() as f64,
        manifest.seeds,
        world.config.seed,
        manifest.rule,
        if manifest.rule.starts_with("the fixed plan") {
            "The same plan on every machine and under any load: the numbers depend on the seeds \
             only (and, across machines, on float rounding)."
        } else {
            "This is not the fixed plan: compare it only with runs of the same steps."
        },
        manifest
            .estimated_minutes
            .map_or("not recorded".to_string(), |m| format!("about {m:.0} min")),
        manifest.seconds / 60.0,
        manifest.reused,
        manifest.runs.len(),
    );
    let mut protos = String::new();
    for p in standard_protocols() {
        protos.push_str(&format!("- `{}`: {}\n", p.key, p.describe()));
    }
    protos.push_str(&format!(
        "\nEach on {} train / {} val images of the world, seeds 0–{}. What the seed varies: for \
         the pretrained encoders only the probe (initialisation of the head, data order, label \
         subset), the encoder being one pretraining run each (pretraining seed {}), so no \
         interval here speaks for pretraining's own variance (the ablation in `docs/ablation/` \
         varies pretraining seeds); for the random initialisation, the encoder's weights too. \
         Records: `runs/<encoder>/<protocol>-<key>/seed-<k>/record.json`.\n",
        world.train_images,
        world.val_images,
        manifest.seeds - 1,
        world.config.seed,
    ));

    let all: Vec<&RunRecord> = records
        .iter()
        .map(|(_, r)| r)
        .chain(pretrained.iter().map(|(_, _, r)| r))
        .collect();
    let mut environment = vec![(
        "command".to_string(),
        format!("`{}`", manifest.command.join(" ")),
    )];
    environment.extend(super::report::environment_of(&all));
    environment.push((
        "world".into(),
        format!(
            "synthetic shapes, {} scenes at {} px, seed {} (`{}/`)",
            world.config.images, world.config.size, world.config.seed, manifest.world
        ),
    ));
    let done: Vec<&RunRecord> = records.iter().map(|(_, r)| r).collect();
    let reading = format!(
        "{}{}",
        reading_notes(&comparisons(&done)),
        dense_notes(&done)
    );
    let mut at: Vec<RecordAt> = pretrained
        .iter()
        .map(|(_, rel, r)| RecordAt {
            dir: rel.clone(),
            path: out.join(rel),
            record: r.clone(),
        })
        .collect();
    at.extend(zoo.iter().map(|(_, rel, r)| RecordAt {
        dir: rel.clone(),
        path: out.join(rel),
        record: r.clone(),
    }));
    at.extend(records.iter().map(|(rel, r)| RecordAt {
        dir: rel.clone(),
        path: out.join(rel),
        record: r.clone(),
    }));
    let input = DocumentInput {
        title: TITLE.to_string(),
        environment,
        sections: vec![
            Section::new("What the numbers say", reading),
            Section::new("Plan", plan),
            Section::new("Pretraining setup", described),
            Section::new("Protocols", protos),
        ],
        notes: Vec::new(),
        records: at,
        ablations: Vec::new(),
        out: out.to_path_buf(),
    };
    Ok(build(&input)?)
}

/// One line on a pretraining run's resolved config.
fn describe_pretraining(method: &str, cfg: &RunConfig) -> String {
    let m = &cfg.model;
    let e = &m.encoder;
    let target = match &m.target {
        cae_pretrain::config::TargetConfig::Dalle { vocab_size } => {
            format!("DALL-E tokens (vocabulary {vocab_size})")
        }
        cae_pretrain::config::TargetConfig::Pixel { norm } => {
            format!("pixels (normalisation {norm:?})")
        }
    };
    let heads = match m.method {
        cae_pretrain::config::Method::Cae => format!(
            "λ = {}, regressor depth {}, decoder depth {}",
            m.align_loss_weight, m.regressor_depth, m.decoder_depth
        ),
        cae_pretrain::config::Method::Beit => "masked patch prediction with `lm_head`".to_string(),
    };
    format!(
        "`{method}`: preset `{}` ({} px, patch {}, width {}, depth {}, {} heads), {target}, {} of \
         {} patches masked ({:?} masking), {heads}; AdamW, lr {:.2e} ({}), warmup {} steps then \
         cosine, seed {}",
        m.preset,
        e.img_size,
        e.patch_size,
        e.embed_dim,
        e.depth,
        e.num_heads,
        m.mask.num_masked,
        (e.img_size / e.patch_size).pow(2),
        m.mask.kind,
        cfg.derived.lr,
        cfg.derived.lr_rule,
        cfg.derived.warmup_steps,
        cfg.train.seed,
    )
}

/// What the numbers say, from the paired comparisons: per protocol, CAE and BEiT against the
/// random initialisation and against each other, each a difference with its interval, in words.
fn reading_notes(cs: &[Comparison]) -> String {
    let mut out = String::from(
        "Top-1 differences in points, A − B, with the 95% interval of a paired bootstrap over the \
         validation images (details under \"Paired comparisons\"):\n\n",
    );
    // Each encoder against random init, and CAE against BEiT at the same budget; every other
    // pair is in the "Paired comparisons" table.
    for c in cs
        .iter()
        .filter(|c| c.against_random() || c.is_cae_beit_like_for_like())
    {
        let Some(d) = &c.paired else {
            continue;
        };
        out.push_str(&format!(
            "- {}: {} − {} = {}: {}.\n",
            c.protocol,
            c.a.0,
            c.b.0,
            d.text(1),
            d.words(&c.a.0, &c.b.0)
        ));
    }
    out.push_str(
        "\nThe intervals speak for the images (another sample of scenes from the same world) and, \
         averaged in, the probe seeds; the pretrained encoders are one pretraining run each.\n",
    );
    out
}

/// What `--full`'s segmentation and detection runs say: per protocol and headline metric, each
/// pretrained encoder − random init, Welch's 95% interval over the seeds (these protocols keep no
/// per-image results to pair). Empty when there are no such runs.
fn dense_notes(records: &[&RunRecord]) -> String {
    // (protocol, data and settings, metric) → label → (method, values in points).
    type Sides = BTreeMap<String, (String, Vec<f64>)>;
    let mut groups: BTreeMap<(String, String, &str), Sides> = BTreeMap::new();
    for r in records {
        let scale_of = |m: &str| if m == "mIoU" { 1.0 } else { 100.0 };
        let metrics: &[&str] = match r.kind.as_str() {
            "segment" => &["mIoU"],
            "detect" => &["bbox_AP", "segm_AP"],
            _ => continue,
        };
        let Some(e) = &r.encoder else { continue };
        let data = r
            .dataset
            .as_ref()
            .and_then(|d| d.fingerprint.clone())
            .unwrap_or_default();
        let settings = serde_json::to_string(&r.protocol.settings).unwrap_or_default();
        for &m in metrics {
            let Some(v) = r.metrics.get(m) else { continue };
            let side = groups
                .entry((r.protocol.name.clone(), format!("{data}|{settings}"), m))
                .or_default()
                .entry(e.label.clone())
                .or_insert_with(|| (e.method.clone(), Vec::new()));
            side.1.push(v * scale_of(m));
        }
    }
    let mut lines = String::new();
    for ((protocol, _, metric), sides) in &groups {
        let Some((random, (_, base))) = sides.iter().find(|(_, (m, _))| m == "random") else {
            continue;
        };
        for (label, (method, values)) in sides {
            if method == "random" {
                continue;
            }
            let (text, words) = match cae_reports::stats::welch(values, base) {
                Some(d) => (d.text(1), d.words(label, random)),
                None => (
                    "n/a".to_string(),
                    "fewer than 2 seeds on a side".to_string(),
                ),
            };
            lines.push_str(&format!(
                "- {protocol} {metric}: {label} − {random} = {text} (n = {} and {}): {words}.\n",
                values.len(),
                base.len()
            ));
        }
    }
    if lines.is_empty() {
        return lines;
    }
    format!(
        "\nSegmentation and detection (`--full`), A − random init in points (mIoU in %, AP × \
         100), Welch's 95% interval over the seeds, which draw the head, the data order, the \
         augmentation and, for random init, the encoder (these protocols keep no per-image \
         results, so there is no paired interval):\n\n{lines}"
    )
}
