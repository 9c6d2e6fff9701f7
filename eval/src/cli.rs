//! The command line: one subcommand per file in [`crate::commands`].
//!
//! `main` only parses and reports errors; every command lives in its own module and returns
//! `anyhow::Result`, so the binary owns the exit codes and the libraries stay on `thiserror`.

use clap::{Parser, Subcommand};

use crate::commands;

/// Pretrain Context Autoencoder (CAE) vision encoders and measure them downstream.
#[derive(Debug, Parser)]
#[command(name = "cae-bench", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Worker threads for tensor ops and data loading [env: CAE_BENCH_THREADS; default: all cores].
    #[arg(long, global = true, env = "CAE_BENCH_THREADS")]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmarks (img/s of a pretraining step, ...).
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// COCO bbox / segm AP of a detections file (pycocotools' numbers).
    CocoEval(commands::coco_eval::CocoEvalArgs),
    /// ADE20K mIoU / mAcc / aAcc of a folder of predicted label maps (mmsegmentation's numbers).
    AdeEval(commands::ade_eval::AdeEvalArgs),
    /// Datasets: the synthetic world.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Pretrain an encoder with CAE (or the BEiT baseline) on a folder of images.
    Pretrain(Box<commands::pretrain::PretrainArgs>),
    /// Measure an encoder: linear / attentive probe, kNN, or (low-label) fine-tuning.
    LinearProbe(Box<commands::linear_probe::LinearProbeArgs>),
    /// ADE20K semantic segmentation: UperNet fine-tune (or a linear head on the frozen encoder),
    /// mIoU scored as `ade-eval` does.
    Segment(Box<commands::segment::SegmentArgs>),
    /// COCO detection and instance segmentation: Mask R-CNN on the fine-tuned encoder, box and
    /// mask AP scored as `coco-eval` does.
    Detect(Box<commands::detect::DetectArgs>),
    /// The backends compiled into this binary and whether each one's device starts here.
    Devices(commands::devices::DevicesArgs),
    /// Convert an official CAE / BEiT / MAE (or timm) checkpoint into an encoder file.
    Import(commands::import::ImportArgs),
    /// Mean ± std over seeds of every complete run (record.json) under a folder, as Markdown or CSV.
    Leaderboard(commands::leaderboard::LeaderboardArgs),
    /// The whole flow on the synthetic world, as a fixed plan: pretrain CAE and BEiT, probe them
    /// and a random control over seeds, write report.md and report.html.
    Quickstart(commands::quickstart::QuickstartArgs),
    /// A grid of pretraining options (λ, mask ratio, …) × seeds, each cell pretrained and
    /// measured downstream; resumable cell by cell; tables and plots.
    Ablate(Box<commands::ablate::AblateArgs>),
    /// report.md and a self-contained report.html from the run records under a folder.
    Report(commands::report::ReportArgs),
    /// Downstream accuracy against pretraining steps (the checkpoints of one run) vs random init.
    Calibrate(commands::calibrate::CalibrateArgs),
    /// The model zoo: committed `mini` encoders with their pretraining records (`--encoder
    /// zoo:NAME`).
    #[command(subcommand)]
    Zoo(commands::zoo::ZooCommand),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(n) = cli.threads {
        anyhow::ensure!(n >= 1, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| anyhow::anyhow!("setting up {n} threads: {e}"))?;
    }
    // Only pretraining is data parallel across processes; any other command started by an MPI
    // launcher would run N times over, writing the same files.
    if let Some((n, var)) = crate::dist::launcher_size()
        && n > 1
        && !matches!(cli.command, Command::Pretrain(_))
    {
        anyhow::bail!(
            "started as one of {n} processes ({var}={n}) by an MPI launcher; only `cae-bench \
             pretrain` runs as several processes: run this command once, without mpirun"
        );
    }
    match cli.command {
        Command::Bench(cmd) => commands::bench::run(cmd),
        Command::CocoEval(args) => commands::coco_eval::run(args),
        Command::AdeEval(args) => commands::ade_eval::run(args),
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Pretrain(args) => commands::pretrain::run_pretrain(*args),
        Command::LinearProbe(args) => commands::linear_probe::run(*args, cli.threads),
        Command::Segment(args) => commands::segment::run(*args),
        Command::Detect(args) => commands::detect::run(*args),
        Command::Devices(args) => commands::devices::run(args),
        Command::Import(args) => commands::import::run(args),
        Command::Leaderboard(args) => commands::leaderboard::run(args),
        Command::Quickstart(args) => commands::quickstart::run(args),
        Command::Ablate(args) => commands::ablate::run(*args),
        Command::Report(args) => commands::report::run(args),
        Command::Calibrate(args) => commands::calibrate::run(args),
        Command::Zoo(cmd) => commands::zoo::run(cmd),
    }
}

/// Logs go to stderr, so `--json` output on stdout stays machine-readable.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
