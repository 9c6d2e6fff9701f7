//! `cae-bench import`: an official CAE / BEiT / MAE (or timm) checkpoint → an encoder file, a thin
//! shell over [`cae_pretrain::import`].

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use cae_pretrain::CaeConfig;
use cae_pretrain::import::{ImportOptions, ImportPlan, ImportSource, plan_import};

/// `--from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FromArg {
    /// Atten4Vis/CAE pretraining checkpoints (`encoder.*`).
    Cae,
    /// microsoft/unilm BEiT or timm `beit_*` (relative position bias).
    Beit,
    /// facebookresearch/mae or timm `vit_*` (fused qkv bias).
    Mae,
}

/// `cae-bench import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Checkpoint layout.
    #[arg(long, value_enum)]
    pub from: FromArg,
    /// The checkpoint (`.pth`, `.pt`, `.bin` or `.safetensors`).
    pub input: PathBuf,
    /// The encoder file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// A preset the checkpoint must match (gives heads, image size, LayerNorm eps).
    #[arg(long)]
    pub preset: Option<String>,
    /// Attention heads, when the weights do not tell (no relative position table) and no preset.
    #[arg(long)]
    pub num_heads: Option<usize>,
    /// Image side, when the checkpoint has no position tables and no preset is given.
    #[arg(long)]
    pub img_size: Option<usize>,
    /// Drop keys that map to nothing instead of refusing the checkpoint.
    #[arg(long)]
    pub allow_unexpected: bool,
    /// Print the key mapping as JSON.
    #[arg(long)]
    pub json: bool,
}

fn print_plan(plan: &ImportPlan, allow_unexpected: bool) {
    let e = &plan.config.encoder;
    eprintln!(
        "{} ({} layout{}): {} wide, {} blocks, {} heads, patch {}, image {}, qkv bias {:?}, \
         pos_embed {:?}, relative position bias {:?}, layer scale {}",
        plan.path.display(),
        plan.source.name(),
        plan.unwrapped
            .as_ref()
            .map(|w| format!(", weights under `{w}`"))
            .unwrap_or_default(),
        e.embed_dim,
        e.depth,
        e.num_heads,
        e.patch_size,
        e.img_size,
        e.qkv_bias,
        e.pos_embed,
        e.rel_pos_bias,
        e.init_values > 0.0,
    );
    for note in &plan.notes {
        eprintln!("  note: {note}");
    }
    eprintln!("  mapped ({}):", plan.mapped.len());
    for (from, to) in &plan.mapped {
        if from == &format!("encoder.{to}") || from == to {
            eprintln!("    {from}");
        } else {
            eprintln!("    {from} -> encoder.{to}");
        }
    }
    eprintln!(
        "  dropped, not part of the encoder ({}): {}",
        plan.dropped.len(),
        plan.dropped.join(", ")
    );
    eprintln!(
        "  unexpected ({}){}: {}",
        plan.unexpected.len(),
        if allow_unexpected && !plan.unexpected.is_empty() {
            ", dropped (--allow-unexpected)"
        } else {
            ""
        },
        plan.unexpected.join(", ")
    );
    eprintln!(
        "  missing ({}): {}",
        plan.missing.len(),
        plan.missing.join(", ")
    );
}

/// Runs the command.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let source = match args.from {
        FromArg::Cae => ImportSource::Cae,
        FromArg::Beit => ImportSource::Beit,
        FromArg::Mae => ImportSource::Mae,
    };
    let preset = args.preset.as_deref().map(CaeConfig::preset).transpose()?;
    let opts = ImportOptions {
        preset,
        num_heads: args.num_heads,
        img_size: args.img_size,
        allow_unexpected: args.allow_unexpected,
    };
    let plan = plan_import(&args.input, source, &opts)
        .with_context(|| format!("importing {}", args.input.display()))?;
    print_plan(&plan, args.allow_unexpected);
    let sha = cae_reports::record::sha256_file(&args.input)?;
    let extra = HashMap::from([("imported_sha256".to_string(), sha)]);
    plan.write(&args.out, args.allow_unexpected, &extra)
        .with_context(|| format!("importing {}", args.input.display()))?;
    if args.json {
        println!("{}", serde_json::to_string(&plan)?);
    } else {
        println!(
            "wrote {} ({} tensors mapped, {} dropped, {} unexpected)",
            args.out.display(),
            plan.mapped.len(),
            plan.dropped.len(),
            plan.unexpected.len()
        );
    }
    Ok(())
}
