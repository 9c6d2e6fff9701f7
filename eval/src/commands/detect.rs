//! `cae-bench detect`: COCO object detection and instance segmentation with Mask R-CNN, a thin
//! shell over [`crate::protocols::coco::run_detect`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::segment::parse_set;
use crate::protocols::coco::{DetOverrides, DetRequest, run_detect};

/// `cae-bench detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Encoder file (from `pretrain` or `import`), `zoo:NAME` (`cae-bench zoo list`), or `random`
    /// for a fresh initialisation of the
    /// preset's encoder.
    #[arg(long)]
    pub encoder: String,
    /// `COCO_ROOT`: `train2017/`, `val2017/`, `annotations/instances_{train,val}2017.json`
    /// (e.g. `WORLD/coco`).
    #[arg(long, value_name = "COCO_ROOT")]
    pub data: PathBuf,
    /// Recipe: `coco-1x-paper` (CAE's Mask R-CNN 1x: 12 epochs, batch 32, …), `mini` (the
    /// synthetic world on a CPU), `test`.
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// Training iterations [default: the preset's].
    #[arg(long, conflicts_with = "epochs")]
    pub iters: Option<u64>,
    /// Training epochs (iterations = epochs · train images / batch) [default: the preset's].
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Images per iteration [default: the preset's].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Base learning rate [default: the preset's].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Evaluate every N iterations (0: only at the end) [default: the preset's].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Any other recipe setting, `NAME=VALUE` (JSON values: `--set layer_decay=0.65`,
    /// `--set box_loss='{"l1":{"weight":1.0}}'`); repeatable. The record keeps the resolved
    /// recipe.
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
    /// Run folder: record.json, detections_{bbox,segm}.json, checkpoints/
    /// [default: runs/detect/seed<K>].
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

/// Runs the command.
pub fn run(args: DetectArgs) -> anyhow::Result<()> {
    let encoder = crate::zoo::encoder_source(&args.encoder)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/detect/seed{}", args.seed)));
    let req = DetRequest {
        encoder,
        data: args.data.clone(),
        preset: args.preset.clone(),
        overrides: DetOverrides {
            iters: args.iters,
            epochs: args.epochs,
            batch: args.batch,
            lr: args.lr,
            eval_every: args.eval_every,
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
    let o = run_detect(&req).with_context(|| {
        format!(
            "detect ({}) failed; the record in {} says `failed`",
            args.encoder,
            out.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&o)?);
    } else {
        let f = |s: Option<crate::metrics::coco::CocoStats>| {
            s.map_or("-".to_string(), |s| {
                format!(
                    "AP {:.1}  AP50 {:.1}  AP75 {:.1}",
                    100.0 * s.ap,
                    100.0 * s.ap50,
                    100.0 * s.ap75
                )
            })
        };
        println!(
            "coco-mask-rcnn: box {}  |  mask {}  {} iterations{}  {:.0} s\nrecord: {}\nresults: {}, {}",
            f(o.bbox),
            f(o.segm),
            o.iters,
            if o.resumed_from > 0 {
                format!(" (resumed from {})", o.resumed_from)
            } else {
                String::new()
            },
            o.seconds,
            o.record.display(),
            o.results[0].display(),
            o.results[1].display(),
        );
    }
    Ok(())
}
