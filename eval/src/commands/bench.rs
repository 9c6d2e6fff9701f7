//! `cae-bench bench …`: throughput benchmarks.

use anyhow::Context;
use clap::{Args, Subcommand};

use cae_pretrain::CaeConfig;
use cae_pretrain::device::parse_device;
use cae_pretrain::train::bench::bench_pretrain_step;

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Images per second of a full pretraining step (forward, backward, AdamW) on random data.
    Pretrain(BenchPretrainArgs),
}

/// `cae-bench bench pretrain`.
#[derive(Debug, Args)]
pub struct BenchPretrainArgs {
    /// Model preset (test, mini, vit_tiny_patch16, vit_small_patch16, vit_base_patch16, vit_large_patch16).
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// Batch size [default: 64 for mini, 8 otherwise].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Device: cpu, cuda[:N], tch, tch-cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Pretrain(args) => pretrain(args),
    }
}

fn pretrain(args: BenchPretrainArgs) -> anyhow::Result<()> {
    let cfg = CaeConfig::preset(&args.preset)?;
    let batch = args
        .batch
        .unwrap_or(if args.preset == "mini" { 64 } else { 8 });
    let device = parse_device(&args.device)?;
    let result = bench_pretrain_step(&cfg, batch, args.steps, args.warmup, &device)
        .context("running the pretraining benchmark")?;
    let threads = rayon::current_num_threads();
    if args.json {
        let mut v = serde_json::to_value(&result)?;
        v["device"] = serde_json::Value::from(args.device.clone());
        v["threads"] = serde_json::Value::from(threads);
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "{} batch {} on {} ({} threads): {:.1} ms/step (median {:.1}), {:.1} img/s over {} steps",
            result.preset,
            result.batch,
            args.device,
            threads,
            result.ms_per_step,
            result.median_ms,
            result.img_per_s,
            result.steps
        );
    }
    Ok(())
}
