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
use cae_pretrain::device::parse_device;
use cae_pretrain::train::bench::bench_pretrain_step;
use cae_pretrain::train::{RunConfig, RunSummary};
use cae_reports::Leaderboard;
use cae_reports::record::{RunRecord, request_key, write_atomic};
use cae_reports::report::Report;

use crate::commands::pretrain::{PretrainArgs, pretrain_with_record};
use crate::suite::{SuiteEncoder, SuiteSettings, reuse_summary, run_suite, standard_protocols};

/// `cae-bench quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Output folder (world, pretraining runs, probe runs, report).
    #[arg(long, default_value = "quickstart")]
    pub out: PathBuf,
    /// Time budget in minutes on this machine; it sets the pretraining steps (about half of the
    /// budget goes to pretraining), so the numbers depend on the machine's speed. Ignored with
    /// `--pretrain-steps`.
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
    /// Run nothing: render `OUT/report.md` and `OUT/leaderboard.csv` again from the records
    /// that `OUT/quickstart.json` names.
    #[arg(long)]
    pub report_only: bool,
}

/// The preset the quickstart pretrains and measures.
const PRESET: &str = "mini";
/// Pretraining batch.
const BATCH: usize = 64;
/// Share of the budget planned for pretraining (both methods together).
const PRETRAIN_SHARE: f64 = 0.5;

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

/// Chooses the pretraining steps: the given ones, the plan of an earlier run in this folder with
/// the same options, or the budget divided by a measured step time.
fn plan(args: &QuickstartArgs, threads: usize) -> anyhow::Result<Plan> {
    let path = args.out.join("plan.json");
    let old: Option<Plan> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let same_setup = |p: &Plan| {
        p.images == args.images
            && p.seed == args.seed
            && p.seeds == args.seeds
            && p.device == args.device
            && p.minutes == Some(args.minutes)
    };
    let plan = match (args.pretrain_steps, old) {
        (Some(steps), _) => Plan {
            images: args.images,
            seed: args.seed,
            seeds: args.seeds,
            minutes: None,
            device: args.device.clone(),
            pretrain_steps: steps,
            rule: "given (--pretrain-steps)".into(),
        },
        (None, Some(old)) if same_setup(&old) => {
            eprintln!(
                "keeping the plan of {} ({} pretraining steps, {})",
                path.display(),
                old.pretrain_steps,
                old.rule
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
                minutes: Some(args.minutes),
                device: args.device.clone(),
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

/// Pretrains one method in `OUT/pretrain/<method>-<key8>/`, the key being its arguments and
/// the fingerprint of its data; reuses the finished run there, or resumes an interrupted one.
/// Returns the folder, the encoder, the record and whether it was reused.
fn pretrain(
    method: &str,
    data: &Path,
    plan: &Plan,
    args: &QuickstartArgs,
) -> anyhow::Result<(PathBuf, PathBuf, RunRecord, bool)> {
    let mut argv: Vec<String> = [
        "--preset",
        PRESET,
        "--method",
        method,
        "--data",
        &data.display().to_string(),
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
    let fingerprint = cae_datasets::fingerprint_dir(data)
        .with_context(|| format!("fingerprinting {}", data.display()))?
        .to_string();
    let key = request_key(&serde_json::json!({
        "kind": "pretrain",
        "args": argv,
        "data": fingerprint,
    }));
    let dir = args
        .out
        .join("pretrain")
        .join(format!("{method}-{}", short(&key)));
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
    if args.no_progress {
        argv.push("--no-progress".into());
    }
    let pargs = pretrain_args(&argv)?;
    let summary: RunSummary = pretrain_with_record(&pargs)?;
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

/// Runs the quickstart.
pub fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    if args.report_only {
        let (text, csv) = render_report(&args.out)?;
        write_atomic(&args.out.join("leaderboard.csv"), csv.as_bytes())?;
        write_atomic(&args.out.join("report.md"), text.as_bytes())?;
        eprintln!("report: {}", args.out.join("report.md").display());
        return Ok(());
    }
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
    let encoders = vec![
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

    // 4. The manifest and the report, rendered from the records alone.
    let manifest = Manifest {
        command: std::env::args().collect(),
        world: relative(&world.root, &args.out),
        pretrain: pretrained
            .iter()
            .map(|(m, (dir, _))| (m.to_string(), relative(dir, &args.out)))
            .collect(),
        runs: runs.iter().map(|r| relative(&r.dir, &args.out)).collect(),
        reused: runs.iter().filter(|r| r.reused).count(),
        pretrain_steps: plan.pretrain_steps,
        rule: plan.rule.clone(),
        seeds: plan.seeds,
        seconds: started.elapsed().as_secs_f64(),
        threads,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    write_atomic(
        &args.out.join("quickstart.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    let (text, csv) = render_report(&args.out)?;
    write_atomic(&args.out.join("leaderboard.csv"), csv.as_bytes())?;
    let report = args.out.join("report.md");
    write_atomic(&report, text.as_bytes())?;
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

/// The distinct values of `f` over `records`, joined with ", " (for environment lines).
fn distinct(records: &[&RunRecord], f: impl Fn(&RunRecord) -> Option<String>) -> String {
    let set: std::collections::BTreeSet<String> = records.iter().filter_map(|r| f(r)).collect();
    if set.is_empty() {
        "not recorded".into()
    } else {
        set.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// Renders `OUT/report.md` and `OUT/leaderboard.csv` from the files of a quickstart folder alone
/// (`quickstart.json`, the world's `world.json`, and the records it names): every sentence comes
/// from them, so the report can be rendered again from a copy of the folder.
pub fn render_report(out: &Path) -> anyhow::Result<(String, String)> {
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
    let records = manifest
        .runs
        .iter()
        .map(|rel| read_record(out, rel))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let metrics = vec!["top1".to_string(), "top5".to_string()];
    let lb = Leaderboard::from_records(&records, &metrics)?;
    let csv = lb.to_csv();

    let mut pre = String::from(
        "| method | preset | steps | batch | peak lr | final loss | wall time | encoder sha256 | record |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut described = Vec::new();
    for (method, rel, rec) in &pretrained {
        let sha = rec
            .encoder
            .as_ref()
            .and_then(|e| e.sha256.clone())
            .unwrap_or_default();
        let cfg: RunConfig = serde_json::from_value(rec.config.clone())
            .with_context(|| format!("{rel}/record.json: no resolved pretraining config"))?;
        pre.push_str(&format!(
            "| {method} | {} | {} | {} | {:.2e} | {:.4} | {:.0} s | `{}` | `{rel}/record.json` |\n",
            cfg.model.preset,
            cfg.derived.total_steps,
            cfg.derived.effective_batch,
            cfg.derived.lr,
            rec.metrics.get("final_loss").copied().unwrap_or(f64::NAN),
            rec.metrics.get("seconds").copied().unwrap_or(f64::NAN),
            &sha[..sha.len().min(16)],
        ));
        described.push(describe_pretraining(method, &cfg));
    }
    pre.push('\n');
    for d in described {
        pre.push_str(&format!("- {d}\n"));
    }
    pre.push_str(&format!(
        "\nSteps per method: {} ({}).\n",
        manifest.pretrain_steps, manifest.rule
    ));

    let mut protos = String::new();
    for p in standard_protocols() {
        protos.push_str(&format!("- `{}`: {}\n", p.key, p.describe()));
    }
    let pretrain_seeds = distinct(
        &pretrained.iter().map(|(_, _, r)| r).collect::<Vec<_>>(),
        |r| Some(r.seed.to_string()),
    );
    protos.push_str(&format!(
        "\nEach on {} train / {} val images of the world ({} classes, chance {:.1}%), seeds \
         0–{}. What the seed varies: for the pretrained encoders only the probe (initialisation \
         of the head, data order, label subset), the encoder being one pretraining run each \
         (pretraining seed {pretrain_seeds}), so the spread says nothing about pretraining's own \
         variance; for the random initialisation, the encoder's weights too. Records: \
         `runs/<encoder>/<protocol>-<key>/seed-<k>/record.json`; {} of the {} runs were reused \
         from an earlier invocation of the same request.\n",
        world.train_images,
        world.val_images,
        world.classes.len(),
        100.0 / world.classes.len() as f64,
        manifest.seeds - 1,
        manifest.reused,
        manifest.runs.len(),
    ));

    let all: Vec<&RunRecord> = records
        .iter()
        .chain(pretrained.iter().map(|(_, _, r)| r))
        .collect();
    let device = distinct(&all, |r| Some(r.machine.device.clone()));
    let backend = distinct(&all, |r| Some(backend_of(&r.machine.device).to_string()));
    let report = Report::new("cae-bench quickstart", lb)
        .environment("command", format!("`{}`", manifest.command.join(" ")))
        .environment("versions", {
            let set: std::collections::BTreeSet<String> = all
                .iter()
                .flat_map(|r| r.versions.iter().map(|(k, v)| format!("{k} {v}")))
                .collect();
            set.into_iter().collect::<Vec<_>>().join(", ")
        })
        .environment("device", format!("{device}, backend {backend}"))
        .environment("GPU", {
            let gpus = distinct(&all, |r| r.machine.gpu.clone());
            if gpus == "not recorded" {
                "none used".to_string()
            } else {
                gpus
            }
        })
        .environment("CPU", distinct(&all, |r| r.machine.cpu.clone()))
        .environment(
            "cores, threads",
            format!("{} cores, {} threads", manifest.cores, manifest.threads),
        )
        .environment(
            "wall time",
            format!(
                "{:.1} min for this invocation (runs reused from earlier ones cost nothing here)",
                manifest.seconds / 60.0
            ),
        )
        .environment(
            "world",
            format!(
                "synthetic shapes, {} scenes at {} px, seed {} (`{}/`)",
                world.config.images, world.config.size, world.config.seed, manifest.world
            ),
        )
        .section("Pretraining", pre)
        .section("Protocols", protos)
        .note("Reading these numbers", reading_notes(&records));
    Ok((report.render()?, csv))
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

/// What the numbers say, computed from them: each pretrained encoder's mean against the random
/// initialisation's, per protocol, with both spreads.
fn reading_notes(records: &[RunRecord]) -> String {
    use std::collections::BTreeMap as Map;
    // (protocol key, encoder method) -> top-1 values.
    let mut values: Map<(String, String), (String, Vec<f64>)> = Map::new();
    for r in records {
        let (Some(e), Some(v)) = (&r.encoder, r.metrics.get("top1")) else {
            continue;
        };
        let proto = match r.protocol.label_fraction {
            Some(f) if f < 1.0 => format!("{} ({:.0}% of the labels)", r.protocol.name, f * 100.0),
            _ => r.protocol.name.clone(),
        };
        let entry = values
            .entry((proto, e.method.clone()))
            .or_insert_with(|| (e.label.clone(), Vec::new()));
        // A run whose seed draws nothing (kNN on an encoder file) repeats one measurement.
        let deterministic = r
            .protocol
            .seed_varies
            .as_ref()
            .is_some_and(|v| v.is_empty());
        if !(deterministic && entry.1.contains(v)) {
            entry.1.push(*v);
        }
    }
    let stat = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            f64::NAN
        };
        (mean, sd)
    };
    let mut out = String::from(
        "Computed from the records above (top-1 %, mean over seeds; sd = sample standard \
         deviation over seeds, n/a for one value; a protocol whose seed draws nothing, kNN on an \
         encoder file, is one measurement however many seeds ran):\n\n",
    );
    let protos: std::collections::BTreeSet<String> = values.keys().map(|k| k.0.clone()).collect();
    for proto in protos {
        let Some((_, rand)) = values.get(&(proto.clone(), "random".to_string())) else {
            continue;
        };
        let (rm, rs) = stat(rand);
        for ((p, method), (label, v)) in &values {
            if *p != proto || method == "random" {
                continue;
            }
            let (m, s) = stat(v);
            let spread = |x: f64| {
                if x.is_nan() {
                    "n/a".to_string()
                } else {
                    format!("{x:.1}")
                }
            };
            out.push_str(&format!(
                "- {proto}: {label} {m:.1} (sd {}, n = {}) against random init {rm:.1} (sd {}, \
                 n = {}): {:+.1} points.\n",
                spread(s),
                v.len(),
                spread(rs),
                rand.len(),
                m - rm
            ));
        }
    }
    out.push_str(
        "\nA difference smaller than the spreads beside it is not evidence either way. For exact \
         reruns pass `--pretrain-steps` with the steps above; `cae-bench calibrate` measures how \
         the gap grows with pretraining on one world.\n",
    );
    out
}
