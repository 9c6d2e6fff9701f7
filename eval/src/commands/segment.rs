//! `cae-bench segment`: ADE20K semantic segmentation (UperNet fine-tune or a linear head on the
//! frozen encoder), a thin shell over [`crate::protocols::ade20k::run_segment`].

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::protocols::ade20k::{SegOverrides, SegProtocol, SegRequest, run_segment};

/// `--protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SegProtocolArg {
    /// UperNet on the fine-tuned encoder, layer-wise lr decay (BEiT / CAE / MAE).
    Upernet,
    /// BatchNorm + 1×1 conv on the frozen patch tokens (DINOv2).
    Linear,
}

/// `cae-bench segment`.
#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// Encoder file (from `pretrain` or `import`), `zoo:NAME` (`cae-bench zoo list`), or `random`
    /// for a fresh initialisation of the
    /// preset's encoder.
    #[arg(long)]
    pub encoder: String,
    /// The `ADEChallengeData2016` folder (or the folder holding it), e.g. `WORLD/ade`.
    #[arg(long, value_name = "ADE_ROOT")]
    pub data: PathBuf,
    /// Recipe: `ade20k-paper` (512 crop, 160k iterations, batch 16, …), `mini` (the synthetic
    /// world on a CPU), `test`.
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// Protocol.
    #[arg(long, value_enum, default_value_t = SegProtocolArg::Upernet)]
    pub protocol: SegProtocolArg,
    /// Training iterations [default: the preset's].
    #[arg(long)]
    pub iters: Option<u64>,
    /// Images per iteration [default: the preset's].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Base learning rate [default: the preset's].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Evaluate every N iterations (0: only at the end) [default: the preset's].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Number of classes [default: a synthetic world's own (its `world.json`: shapes + stuff),
    /// else the preset's: 150 for ade20k-paper, 8 for mini].
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// `--protocol linear`: concatenate the last N blocks (1, or 4 as DINOv2's "+ms").
    #[arg(long)]
    pub linear_blocks: Option<usize>,
    /// Any other recipe setting, `NAME=VALUE` (JSON values: `--set layer_decay=0.75`,
    /// `--set resize_ratio=[1.0,1.5]`); repeatable. The record keeps the resolved recipe.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the run in `--out` from its newest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Device: cpu, cuda[:N], vulkan[:N|:cpu], tch[:cpu|:cuda:N] (`cae-bench devices` lists what this binary has).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Run folder: record.json, checkpoints/, predictions/ [default: runs/segment/<protocol>-seed<K>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The encoder's label in records and tables.
    #[arg(long)]
    pub label: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `--set NAME=VALUE` arguments as `(name, value)` pairs (trimmed).
pub fn parse_set(set: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    set.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--set {kv}: expected NAME=VALUE"))
        })
        .collect()
}

/// Runs the command.
pub fn run(args: SegmentArgs) -> anyhow::Result<()> {
    let protocol = match args.protocol {
        SegProtocolArg::Upernet => SegProtocol::Upernet,
        SegProtocolArg::Linear => SegProtocol::Linear,
    };
    let encoder = crate::zoo::encoder_source(&args.encoder)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "runs/segment/{}-seed{}",
            protocol.name(),
            args.seed
        ))
    });
    let req = SegRequest {
        encoder,
        data: args.data.clone(),
        preset: args.preset.clone(),
        protocol,
        overrides: SegOverrides {
            iters: args.iters,
            batch: args.batch,
            lr: args.lr,
            eval_every: args.eval_every,
            num_classes: args.num_classes,
            linear_blocks: args.linear_blocks,
            set: parse_set(&args.set)?,
        },
        seed: args.seed,
        resume: args.resume,
        device: args.device.clone(),
        out: out.clone(),
        progress: !args.no_progress && !args.json,
        command: std::env::args().collect(),
        label: args.label.clone(),
        stop_after: None,
    };
    let o = run_segment(&req).with_context(|| {
        format!(
            "segment ({}, {}) failed; the record in {} says `failed`",
            protocol.record_name(),
            args.encoder,
            out.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&o)?);
    } else {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{}: mIoU {}  mAcc {}  aAcc {}  (most frequent class everywhere: mIoU {:.2}; uniform guess: {:.2})  {} iterations{}  {:.0} s\nrecord: {}\npredictions: {}",
            protocol.record_name(),
            f(o.m_iou),
            f(o.m_acc),
            f(o.a_acc),
            o.majority_miou,
            o.uniform_miou,
            o.iters,
            if o.resumed_from > 0 {
                format!(" (resumed from {})", o.resumed_from)
            } else {
                String::new()
            },
            o.seconds,
            o.record.display(),
            o.predictions.display()
        );
    }
    Ok(())
}
