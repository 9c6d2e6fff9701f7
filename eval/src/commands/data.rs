//! `cae-bench data …`: datasets.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use cae_datasets::synth::{SynthConfig, sample_sheet, write_world};

/// Dataset commands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write the synthetic world as ImageFolder, ADE20K and COCO (same seed → same bytes).
    Synth(SynthArgs),
}

/// `cae-bench data synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (gets `imagefolder/`, `ade/`, `coco/`).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of scenes (train + val).
    #[arg(long, default_value_t = 600)]
    pub images: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 32)]
    pub size: u32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of shape classes (8..=10).
    #[arg(long, default_value_t = 8)]
    pub classes: usize,
    /// Share of scenes in the validation split.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Stuff classes in the ADE20K copy (0..=4: sky, grass, wall, water): backgrounds become
    /// stuff regions annotated after the shapes, a segmentation task learnable from local
    /// appearance. ImageFolder and COCO keep the shape classes only.
    #[arg(long, default_value_t = 0)]
    pub stuff: usize,
    /// Also draw a sample sheet (PNG grid of images, labels and masks) at this path.
    #[arg(long)]
    pub sheet: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs a data command.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Synth(args) => synth(args),
    }
}

fn synth(args: SynthArgs) -> anyhow::Result<()> {
    let mut cfg = SynthConfig::new(args.images, args.size, args.seed);
    cfg.classes = args.classes;
    cfg.val_fraction = args.val_fraction;
    cfg.stuff = args.stuff;
    let summary = write_world(&cfg, &args.out)
        .with_context(|| format!("writing the synthetic world to {}", args.out.display()))?;
    if let Some(sheet) = &args.sheet {
        sample_sheet(&cfg, 4, 4, sheet)
            .with_context(|| format!("drawing the sample sheet {}", sheet.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let stuff = if summary.stuff_classes.is_empty() {
            String::new()
        } else {
            format!(
                "; ADE20K also has {} stuff classes: {}",
                summary.stuff_classes.len(),
                summary.stuff_classes.join(", ")
            )
        };
        println!(
            "wrote {} train + {} val scenes ({} classes: {}{stuff}) to {}",
            summary.train_images,
            summary.val_images,
            summary.classes.len(),
            summary.classes.join(", "),
            args.out.display()
        );
    }
    Ok(())
}
