//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cae_datasets::synth::{SynthConfig, write_world};

/// The command line under test.
pub fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cae-bench-e2e"));
    c.env("RUST_LOG", "warn");
    c
}

/// Runs the CLI with `args`, panicking with its output if it fails.
pub fn run_ok(args: &[&str]) -> Output {
    let out = cli().args(args).output().expect("starting cae-bench");
    assert!(
        out.status.success(),
        "cae-bench {} failed:\nstdout: {}\nstderr: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a small synthetic world and returns its ImageFolder `train/` split.
pub fn world(dir: &Path, images: usize, seed: u64) -> PathBuf {
    let cfg = SynthConfig::new(images, 32, seed);
    write_world(&cfg, dir).expect("writing the synthetic world");
    dir.join("imagefolder/train")
}

/// The `metrics.jsonl` lines of a run.
pub fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Mean of `key` over a slice of metrics lines.
pub fn mean(lines: &[serde_json::Value], key: &str) -> f64 {
    lines
        .iter()
        .map(|l| l[key].as_f64().expect(key))
        .sum::<f64>()
        / lines.len() as f64
}

/// The tensor names of a safetensors file.
pub fn tensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("reading safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    names
}
