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
//! Every stage leaves its record; running the command again with the same `--out` reuses the
//! finished stages and resumes an interrupted pretraining run from its newest checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser};
use serde::{Deserialize, Serialize};

use cae_datasets::synth::{SynthConfig, WorldSummary, write_world};
use cae_heads::probe::EncoderSource;
use cae_pretrain::CaeConfig;
use cae_pretrain::device::parse_device;
use cae_pretrain::train::RunSummary;
use cae_pretrain::train::bench::bench_pretrain_step;
use cae_reports::Leaderboard;
use cae_reports::record::{RunRecord, write_atomic};
use cae_reports::report::Report;

use crate::commands::pretrain::{PretrainArgs, pretrain_with_record};
use crate::suite::{SuiteEncoder, SuiteSettings, run_suite, standard_protocols};

/// `cae-bench quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Output folder (world, pretraining runs, probe runs, report).
    #[arg(long, default_value = "quickstart")]
    pub out: PathBuf,
    /// Time budget in minutes on this machine; it sets the pretraining steps (about half of the
    /// budget goes to pretraining). Ignored with `--pretrain-steps`.
    #[arg(long, default_value_t = 15.0)]
    pub minutes: f64,
    /// Pretraining steps of CAE and of BEiT (batch 64), instead of the budget: for an exact rerun.
    #[arg(long)]
    pub pretrain_steps: Option<u64>,
    /// Scenes in the synthetic world (80% train, 20% val).
    #[arg(long, default_value_t = 1500)]
    pub images: usize,
    /// Seeds of every downstream protocol (0, 1, …).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Seed of the world and of pretraining.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda[:N], vulkan[:N], tch.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the leaderboard as JSON at the end.
    #[arg(long)]
    pub json: bool,
}

/// The preset the quickstart pretrains and measures.
const PRESET: &str = "mini";
/// Pretraining batch.
const BATCH: usize = 64;
/// Share of the budget planned for pretraining (both methods together).
const PRETRAIN_SHARE: f64 = 0.5;

/// What a quickstart folder was planned with (`OUT/plan.json`): a rerun in the same folder keeps
/// it, so the steps do not change with the machine's speed on a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Plan {
    images: usize,
    seed: u64,
    seeds: u64,
    pretrain_steps: u64,
    /// How the steps were chosen.
    rule: String,
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

/// Writes the world unless the folder already holds the same one.
fn world(out: &Path, cfg: &SynthConfig) -> anyhow::Result<WorldSummary> {
    let json = out.join("world.json");
    if let Ok(text) = std::fs::read_to_string(&json)
        && let Ok(old) = serde_json::from_str::<WorldSummary>(&text)
        && old.config == *cfg
    {
        tracing::info!("reusing the world in {}", out.display());
        return Ok(WorldSummary {
            root: out.to_path_buf(),
            ..old
        });
    }
    write_world(cfg, out)
        .with_context(|| format!("writing the synthetic world to {}", out.display()))
}

/// Chooses the pretraining steps: the given ones, the plan of an earlier run in this folder, or
/// the budget divided by a measured step time.
fn plan(args: &QuickstartArgs, threads: usize) -> anyhow::Result<Plan> {
    let path = args.out.join("plan.json");
    let old: Option<Plan> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let same_setup =
        |p: &Plan| p.images == args.images && p.seed == args.seed && p.seeds == args.seeds;
    let plan = match (args.pretrain_steps, old) {
        (Some(steps), _) => Plan {
            images: args.images,
            seed: args.seed,
            seeds: args.seeds,
            pretrain_steps: steps,
            rule: "given (--pretrain-steps)".into(),
        },
        (None, Some(old)) if same_setup(&old) => {
            tracing::info!(
                "keeping the plan of {} ({} pretraining steps)",
                path.display(),
                old.pretrain_steps
            );
            old
        }
        (None, _) => {
            anyhow::ensure!(
                args.minutes.is_finite() && args.minutes > 0.0,
                "--minutes must be positive"
            );
            let cfg = CaeConfig::preset(PRESET)?;
            let device = parse_device(&args.device)?.autodiff();
            let b = bench_pretrain_step(&cfg, BATCH, 3, 1, &device)
                .context("timing a pretraining step")?;
            let secs = b.ms_per_step / 1e3;
            // CAE and BEiT each get the same steps; BEiT's step costs about as much as CAE's.
            let budget = args.minutes * 60.0 * PRETRAIN_SHARE;
            let steps = ((budget / (2.0 * secs)) / 10.0).floor() as u64 * 10;
            let steps = steps.clamp(20, 100_000);
            Plan {
                images: args.images,
                seed: args.seed,
                seeds: args.seeds,
                pretrain_steps: steps,
                rule: format!(
                    "{PRETRAIN_SHARE} × {} min / (2 methods × {:.0} ms per step, measured on {} with \
                     {threads} threads), rounded down to tens",
                    args.minutes, b.ms_per_step, args.device
                ),
            }
        }
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_atomic(&path, serde_json::to_string_pretty(&plan)?.as_bytes())?;
    Ok(plan)
}

/// Pretrains one method, or reuses the finished run in `dir`.
fn pretrain(
    method: &str,
    data: &Path,
    dir: &Path,
    plan: &Plan,
    args: &QuickstartArgs,
) -> anyhow::Result<(PathBuf, RunRecord)> {
    let encoder = dir.join("encoder.safetensors");
    let record = dir.join("record.json");
    if let Ok(rec) = RunRecord::read(&record)
        && rec.is_result()
        && rec
            .encoder
            .as_ref()
            .and_then(|e| e.pretrain_steps)
            .is_some_and(|s| s == plan.pretrain_steps)
        && rec.seed == plan.seed
        && encoder.exists()
    {
        tracing::info!("reusing the finished {method} run in {}", dir.display());
        return Ok((encoder, rec));
    }
    let mut argv: Vec<String> = [
        "--preset",
        PRESET,
        "--method",
        method,
        "--data",
        &data.display().to_string(),
        "--out",
        &dir.display().to_string(),
        "--steps",
        &plan.pretrain_steps.to_string(),
        "--batch",
        &BATCH.to_string(),
        "--seed",
        &plan.seed.to_string(),
        "--device",
        &args.device,
        "--checkpoint-every",
        "50",
        "--keep-checkpoints",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A folder with an earlier, interrupted run of the same config resumes it.
    if dir.join("config.toml").exists() {
        argv.push("--resume".into());
    }
    if args.no_progress {
        argv.push("--no-progress".into());
    }
    let pargs = pretrain_args(&argv)?;
    let summary: RunSummary = pretrain_with_record(&pargs)?;
    let rec = RunRecord::read(&record).with_context(|| format!("reading {}", record.display()))?;
    Ok((summary.encoder, rec))
}

/// Runs the quickstart.
pub fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let threads = rayon::current_num_threads();
    anyhow::ensure!(args.seeds >= 1, "--seeds must be at least 1");
    let plan = plan(&args, threads)?;
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
    let world = world(&args.out.join("world"), &wcfg)?;
    let images = world.root.join("imagefolder");
    eprintln!(
        "[world] {} train / {} val scenes, {} classes ({:.0} s)",
        world.train_images,
        world.val_images,
        world.classes.len(),
        started.elapsed().as_secs_f64()
    );

    // 2. Pretraining.
    let mut pretrained = BTreeMap::new();
    for method in ["cae", "beit"] {
        let t = Instant::now();
        let (enc, rec) = pretrain(
            method,
            &images.join("train"),
            &args.out.join("pretrain").join(method),
            &plan,
            &args,
        )?;
        eprintln!(
            "[pretrain {method}] {} steps, final loss {:.4} ({:.0} s)",
            plan.pretrain_steps,
            rec.metrics.get("final_loss").copied().unwrap_or(f64::NAN),
            t.elapsed().as_secs_f64()
        );
        pretrained.insert(method, (enc, rec));
    }

    // 3. The downstream protocols.
    let steps = plan.pretrain_steps;
    let encoders = vec![
        SuiteEncoder {
            key: "cae".into(),
            label: format!("CAE {PRESET}, {steps} steps"),
            source: EncoderSource::File(pretrained["cae"].0.clone()),
            preset: PRESET.into(),
        },
        SuiteEncoder {
            key: "beit".into(),
            label: format!("BEiT {PRESET}, {steps} steps"),
            source: EncoderSource::File(pretrained["beit"].0.clone()),
            preset: PRESET.into(),
        },
        SuiteEncoder {
            key: "random".into(),
            label: format!("random init {PRESET}"),
            source: EncoderSource::Random,
            preset: PRESET.into(),
        },
    ];
    let seeds: Vec<u64> = (0..plan.seeds).collect();
    let settings = SuiteSettings {
        data: images.clone(),
        runs: args.out.join("runs"),
        device: args.device.clone(),
        threads,
        command: std::env::args().collect(),
    };
    let runs = run_suite(&encoders, &standard_protocols(), &seeds, &settings)?;
    let records: Vec<RunRecord> = runs.into_iter().map(|r| r.record).collect();

    // 4. The report.
    let report = write_report(
        &args,
        &world,
        &plan,
        &pretrained,
        &records,
        started.elapsed().as_secs_f64(),
        threads,
    )?;
    eprintln!(
        "report: {} ({:.1} min in all)",
        report.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    if args.json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
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

/// Writes `OUT/report.md` (and `OUT/leaderboard.csv`).
fn write_report(
    args: &QuickstartArgs,
    world: &WorldSummary,
    plan: &Plan,
    pretrained: &BTreeMap<&str, (PathBuf, RunRecord)>,
    records: &[RunRecord],
    seconds: f64,
    threads: usize,
) -> anyhow::Result<PathBuf> {
    let metrics = vec!["top1".to_string(), "top5".to_string()];
    let lb = Leaderboard::from_records(records, &metrics)?;
    write_atomic(&args.out.join("leaderboard.csv"), lb.to_csv().as_bytes())?;
    let mut pre = String::from(
        "| method | preset | steps | batch | peak lr | final loss | wall time | encoder sha256 |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (method, (_, rec)) in pretrained {
        let sha = rec
            .encoder
            .as_ref()
            .and_then(|e| e.sha256.clone())
            .unwrap_or_default();
        pre.push_str(&format!(
            "| {method} | {PRESET} | {} | {} | {} | {:.4} | {:.0} s | `{}` |\n",
            plan.pretrain_steps,
            rec.protocol.effective_batch.unwrap_or(BATCH),
            rec.protocol.lr.map_or("?".into(), |l| format!("{l:.2e}")),
            rec.metrics.get("final_loss").copied().unwrap_or(f64::NAN),
            rec.metrics.get("seconds").copied().unwrap_or(f64::NAN),
            &sha[..sha.len().min(16)],
        ));
    }
    pre.push_str(&format!(
        "\nBoth methods: the `{PRESET}` preset (32 px, patch 4, width 128, depth 4), pixel targets \
         (per-patch LayerNorm), block-wise masking, AdamW, cosine schedule, seed {}. CAE: \
         λ = 2 alignment + regressor/decoder as in the paper; BEiT: masked patch prediction on the \
         same encoder. Steps: {}. Records: `pretrain/<method>/record.json`.\n",
        plan.seed, plan.rule
    ));
    let mut protos = String::new();
    for p in standard_protocols() {
        protos.push_str(&format!("- `{}`: {}\n", p.key, p.describe()));
    }
    protos.push_str(&format!(
        "\nEach on {} train / {} val images of the world ({} classes, chance {:.1}%), seeds \
         0–{}; a random-initialised encoder (drawn with each run's seed) is the control. \
         Records: `runs/<encoder>/<protocol>/seed-<k>/record.json`.\n",
        world.train_images,
        world.val_images,
        world.classes.len(),
        100.0 / world.classes.len() as f64,
        plan.seeds - 1
    ));
    let report = Report::new("cae-bench quickstart", lb)
        .environment(
            "command",
            format!("`{}`", std::env::args().collect::<Vec<_>>().join(" ")),
        )
        .environment("cae-bench", env!("CARGO_PKG_VERSION"))
        .environment(
            "burn",
            format!("{} (flex backend)", cae_pretrain::BURN_VERSION),
        )
        .environment("device", format!("{} ({threads} threads)", args.device))
        .environment(
            "cores",
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        )
        .environment("wall time", format!("{:.1} min in all", seconds / 60.0))
        .environment(
            "world",
            format!(
                "synthetic shapes, {} scenes at 32 px, seed {} (`world/`)",
                world.config.images, world.config.seed
            ),
        )
        .section("Pretraining", pre)
        .section("Protocols", protos)
        .note(
            "Reading these numbers",
            "Everything above was measured by this run; nothing is copied. At this scale (the \
             `mini` encoder, minutes of pretraining on a CPU) masked image modelling \
             features are known to separate classes only weakly: expect the pretrained encoders \
             near the random control on the linear probe and kNN. `cae-bench calibrate` measures \
             where pretraining starts to pay on this world (see the README's calibration curve). \
             For exact reruns pass `--pretrain-steps` with the steps above.",
        );
    let path = args.out.join("report.md");
    report.write(&path)?;
    Ok(path)
}
