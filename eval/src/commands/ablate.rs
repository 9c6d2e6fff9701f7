//! `cae-bench ablate`: a grid of pretraining options × seeds, each cell pretrained and measured
//! downstream, resumable cell by cell, with a table and plots.
//!
//! `--param lambda=0,1,2 --param mask-ratio=0.25,0.5,0.75` pretrains one encoder per combination
//! and seed (`OUT/cells/<combination>/seed-<k>/pretrain-<key8>/`, any `cae-bench pretrain` option
//! can be a `--param`), then measures it with each `--protocol` (`linear`, `knn`,
//! `finetune-10pct` on `--data`; `segment` on `--ade`, `detect` on `--coco`, with their `mini`
//! presets) with the same seed. Every stage has an identity (its arguments and its data), so a
//! second invocation reuses the finished cells, resumes an interrupted pretraining run from its
//! checkpoint, and runs only what is missing. `OUT/ablation.json` lists the cells and their
//! runs; `OUT/report.md` / `report.html` (the `cae-bench report` of `OUT`) show the tables and
//! plots: the metric against each option, mean ± std over seeds, the paper's value marked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::commands::quickstart::{pretrain_argv, pretrain_once};
use crate::protocols::classification::EncoderSource;
use crate::suite::{
    Dense, DenseSettings, SuiteEncoder, SuiteSettings, run_dense, run_suite, standard_protocols,
};
use cae_reports::ablation::{AblationCell, AblationManifest, AblationParam, paper_default};
use cae_reports::record::write_atomic;

/// `cae-bench ablate`.
#[derive(Debug, Args)]
pub struct AblateArgs {
    /// ImageFolder root (`train/`, `val/`): pretraining reads `train/`, the classification
    /// protocols both.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (cells, ablation.json, report).
    #[arg(long)]
    pub out: PathBuf,
    /// An ablated pretraining option and its values, `NAME=V1,V2,…` (`lambda`, `mask-ratio`,
    /// `regressor-depth`, `decoder-depth`, `target`, or any other `cae-bench pretrain` option);
    /// repeatable: the grid is the product.
    #[arg(long = "param", value_name = "NAME=V1,V2,…", required = true)]
    pub params: Vec<String>,
    /// Downstream protocols: `linear`, `knn`, `finetune-10pct`, `segment` (needs `--ade`),
    /// `detect` (needs `--coco`).
    #[arg(long, value_delimiter = ',', default_value = "linear,knn")]
    pub protocol: Vec<String>,
    /// Seeds per cell (0, 1, …): seed k pretrains and probes with seed k.
    #[arg(long, default_value_t = 2)]
    pub seeds: u64,
    /// Pretraining steps per cell.
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
    /// Pretraining preset.
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// Pretraining batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// `ADEChallengeData2016` folder for `segment`.
    #[arg(long)]
    pub ade: Option<PathBuf>,
    /// COCO root for `detect`.
    #[arg(long)]
    pub coco: Option<PathBuf>,
    /// Recipe of `segment` and `detect`.
    #[arg(long, default_value = "mini")]
    pub dense_preset: String,
    /// Device.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// The protocols `ablate` knows.
const PROTOCOLS: [&str; 5] = ["linear", "knn", "finetune-1pct", "segment", "detect"];

/// Parses `NAME=V1,V2` into a param (with the paper's value where known).
fn parse_param(spec: &str) -> anyhow::Result<AblationParam> {
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--param {spec}: expected NAME=V1,V2,…"))?;
    let name = name.trim().trim_start_matches("--").to_string();
    anyhow::ensure!(
        !name.is_empty() && !["data", "out", "seed", "steps", "resume"].contains(&name.as_str()),
        "--param {spec}: `{name}` cannot be ablated here"
    );
    let values: Vec<String> = values
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    anyhow::ensure!(!values.is_empty(), "--param {spec}: no values");
    let mut seen = values.clone();
    seen.sort();
    seen.dedup();
    anyhow::ensure!(
        seen.len() == values.len(),
        "--param {spec}: a value is repeated"
    );
    Ok(AblationParam {
        paper_default: paper_default(&name).map(str::to_string),
        name,
        values,
    })
}

/// Every combination of the params' values, first param slowest.
fn grid(params: &[AblationParam]) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![BTreeMap::new()];
    for p in params {
        out = out
            .into_iter()
            .flat_map(|c| {
                p.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(p.name.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    out
}

/// The folder name of a combination: `lambda-2_mask-ratio-0.5`.
fn cell_name(params: &[AblationParam], values: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|p| format!("{}-{}", p.name, values[&p.name]))
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Runs the command.
pub fn run(args: AblateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let params = args
        .params
        .iter()
        .map(|p| parse_param(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    names.dedup();
    anyhow::ensure!(names.len() == params.len(), "a --param is given twice");
    for p in &args.protocol {
        anyhow::ensure!(
            PROTOCOLS.contains(&p.as_str()),
            "--protocol {p}: one of {}",
            PROTOCOLS.join(", ")
        );
    }
    anyhow::ensure!(args.seeds >= 1, "--seeds must be at least 1");
    anyhow::ensure!(args.steps >= 1, "--steps must be at least 1");
    let train = args.data.join("train");
    anyhow::ensure!(
        train.is_dir() && args.data.join("val").is_dir(),
        "{}: expected an ImageFolder root with train/ and val/",
        args.data.display()
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let base = pretrain_argv(
        &args.preset,
        "cae",
        args.steps,
        args.batch,
        None,
        &args.device,
    );
    let combos = grid(&params);
    let total = combos.len() as u64 * args.seeds;
    eprintln!(
        "ablate: {} combinations × {} seeds = {total} cells, {} pretraining steps each, protocols \
         {}",
        combos.len(),
        args.seeds,
        args.steps,
        args.protocol.join(", ")
    );
    let command: Vec<String> = std::env::args().collect();
    let mut manifest = AblationManifest {
        command: command.clone(),
        params: params.clone(),
        protocols: args.protocol.clone(),
        seeds: args.seeds,
        steps: args.steps,
        pretrain_args: base.clone(),
        data: args.data.display().to_string(),
        cells: Vec::new(),
    };
    let suite: Vec<_> = standard_protocols()
        .into_iter()
        .filter(|p| args.protocol.contains(&p.key))
        .collect();
    let mut n = 0;
    for seed in 0..args.seeds {
        for values in &combos {
            n += 1;
            let t = Instant::now();
            let name = cell_name(&params, values);
            let cell_dir = args
                .out
                .join("cells")
                .join(&name)
                .join(format!("seed-{seed}"));
            let mut argv = base.clone();
            for p in &params {
                argv.extend([format!("--{}", p.name), values[&p.name].clone()]);
            }
            argv.extend(["--seed".to_string(), seed.to_string()]);
            let (pdir, encoder, rec, reused) =
                pretrain_once(&cell_dir, "pretrain", &argv, &train, args.no_progress)
                    .with_context(|| format!("pretraining cell {name} seed {seed}"))?;
            let label = format!("CAE {} {name}", args.preset);
            let mut runs = BTreeMap::new();
            let mut all_reused = reused;
            if !suite.is_empty() {
                let enc = SuiteEncoder {
                    key: "encoder".into(),
                    label: label.clone(),
                    source: EncoderSource::File(encoder.clone()),
                    preset: args.preset.clone(),
                };
                let settings = SuiteSettings {
                    data: args.data.clone(),
                    runs: cell_dir.join("probes"),
                    device: args.device.clone(),
                    threads: rayon::current_num_threads(),
                    command: command.clone(),
                };
                for r in run_suite(&[enc], &suite, &[seed], &settings)? {
                    all_reused &= r.reused;
                    runs.insert(suite[r.protocol].key.clone(), relative(&r.dir, &args.out));
                }
            }
            for p in args
                .protocol
                .iter()
                .filter(|p| ["segment", "detect"].contains(&p.as_str()))
            {
                let (kind, data) = if p == "segment" {
                    (
                        Dense::SegUpernet,
                        args.ade.clone().context("--protocol segment needs --ade")?,
                    )
                } else {
                    (
                        Dense::Detect,
                        args.coco
                            .clone()
                            .context("--protocol detect needs --coco")?,
                    )
                };
                let enc = SuiteEncoder {
                    key: "encoder".into(),
                    label: label.clone(),
                    source: EncoderSource::File(encoder.clone()),
                    preset: args.preset.clone(),
                };
                let settings = DenseSettings {
                    data,
                    preset: args.dense_preset.clone(),
                    device: args.device.clone(),
                    progress: !args.no_progress,
                };
                let (dir, _, reused) =
                    run_dense(kind, &enc, seed, &cell_dir.join("dense"), &settings)?;
                all_reused &= reused;
                runs.insert(p.clone(), relative(&dir, &args.out));
            }
            manifest.cells.push(AblationCell {
                values: values.clone(),
                seed,
                pretrain: relative(&pdir, &args.out),
                runs,
            });
            // The manifest after every cell: a killed grid still renders what it finished.
            write_atomic(
                &args.out.join("ablation.json"),
                serde_json::to_string_pretty(&manifest)?.as_bytes(),
            )?;
            eprintln!(
                "[cell {n}/{total}] {name} seed {seed}: final loss {:.4} ({})",
                rec.metrics.get("final_loss").copied().unwrap_or(f64::NAN),
                if all_reused {
                    "reused".to_string()
                } else {
                    format!("{:.0} s", t.elapsed().as_secs_f64())
                }
            );
        }
    }
    let title = "cae-bench ablation";
    let doc = crate::commands::report::document_of(&args.out, &args.out, title, Vec::new())?;
    doc.write(&args.out, title)?;
    eprintln!(
        "report: {} and report.html ({:.1} min)",
        args.out.join("report.md").display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_the_grid_is_their_product() {
        let a = parse_param("lambda=0,2").unwrap();
        assert_eq!(a.values, ["0", "2"]);
        assert_eq!(a.paper_default.as_deref(), Some("2"));
        let b = parse_param("--mask-ratio=0.25, 0.5,0.75").unwrap();
        assert_eq!(b.name, "mask-ratio");
        let g = grid(&[a.clone(), b.clone()]);
        assert_eq!(g.len(), 6);
        assert_eq!(
            cell_name(&[a.clone(), b.clone()], &g[0]),
            "lambda-0_mask-ratio-0.25"
        );
        assert_eq!(cell_name(&[a, b], &g[5]), "lambda-2_mask-ratio-0.75");
        assert!(parse_param("lambda").is_err());
        assert!(parse_param("lambda=1,1").is_err());
        assert!(parse_param("steps=1,2").is_err());
        assert_eq!(parse_param("blr=1e-3").unwrap().paper_default, None);
    }
}
