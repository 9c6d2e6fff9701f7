//! `cae-bench zoo`: the committed `mini` encoders ([`crate::zoo`]).

use clap::Subcommand;

use crate::zoo::{entries, zoo_dir};

/// The zoo's subcommands.
#[derive(Debug, Subcommand)]
pub enum ZooCommand {
    /// Every entry (`--encoder zoo:NAME`): method, architecture, steps, pretraining seed, data,
    /// sha256, and whether the file is the one its record describes.
    List {
        /// Print one JSON object per entry instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command.
pub fn run(cmd: ZooCommand) -> anyhow::Result<()> {
    match cmd {
        ZooCommand::List { json } => {
            let dir = zoo_dir();
            let all = entries(&dir)?;
            if !json {
                println!("zoo: {}", dir.display());
                println!(
                    "{:<20} {:<6} {:<6} {:>6} {:>5}  {:<16}  {:<10} status",
                    "name", "method", "arch", "steps", "seed", "sha256", "data"
                );
            }
            let mut bad = 0;
            for e in &all {
                let check = e.verify();
                bad += usize::from(check.is_err());
                let sha = e.sha256().unwrap_or("-");
                let arch = e.record.encoder.as_ref().map_or("?", |i| i.arch.as_str());
                let data = e
                    .record
                    .dataset
                    .as_ref()
                    .and_then(|d| d.fingerprint.as_deref())
                    .and_then(|f| f.rsplit(':').next())
                    .map_or("-".to_string(), |f| f.chars().take(10).collect());
                let status = match &check {
                    Ok(()) => "ok".to_string(),
                    Err(err) => format!("BAD: {err}"),
                };
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "name": e.name, "method": e.method(), "arch": arch,
                            "steps": e.steps(), "seed": e.record.seed, "sha256": sha,
                            "file": e.encoder, "data_fingerprint": e.record.dataset.as_ref().and_then(|d| d.fingerprint.clone()),
                            "ok": check.is_ok(),
                        })
                    );
                } else {
                    println!(
                        "{:<20} {:<6} {:<6} {:>6} {:>5}  {:<16}  {:<10} {status}",
                        e.name,
                        e.method(),
                        arch,
                        e.steps().map_or("-".into(), |s| s.to_string()),
                        e.record.seed,
                        &sha[..sha.len().min(16)],
                        data,
                    );
                }
            }
            anyhow::ensure!(
                bad == 0,
                "{bad} zoo entr{} not the file{} {} record describes",
                if bad == 1 { "y is" } else { "ies are" },
                if bad == 1 { "" } else { "s" },
                if bad == 1 { "its" } else { "their" }
            );
            Ok(())
        }
    }
}
