//! Data parallel pretraining across processes on MPI: `mpirun -np 2` equals one process with
//! `--accum 2` (same losses, same encoder), resumes with the same number of ranks, refuses another,
//! and the comparison fails when the gradient all-reduce is skipped.
//!
//! Needs the `mpi` feature and `mpirun` on the PATH (Open MPI or MPICH):
//! `cargo test -p cae-bench --features mpi --test mpi`. `.ci/run` installs Open MPI and runs it.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cae_datasets::synth::{SynthConfig, write_world};

/// The pretraining options of every run here: the `test` model, 4 steps of 8 images, each
/// process on one thread.
fn pretrain_argv(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--threads",
        "1",
        "pretrain",
        "--preset",
        "test",
        "--steps",
        "4",
        "--batch",
        "8",
        "--checkpoint-every",
        "2",
        "--no-progress",
        "--data",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(data.display().to_string());
    v.push("--out".into());
    v.push(out.display().to_string());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `cae-bench ARGV` as one process.
fn single(argv: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cae-bench"))
        .args(argv)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run cae-bench")
}

/// `mpirun -np 2 cae-bench ARGV`, with `env` added.
fn mpirun2(argv: &[String], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("mpirun");
    c.args(["-np", "2", "--oversubscribe", "--bind-to", "none"])
        .arg(env!("CARGO_BIN_EXE_cae-bench"))
        .args(argv)
        .env("RUST_LOG", "warn")
        // Open MPI refuses root without these (CI containers run as root).
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .expect("starting mpirun: install an MPI (e.g. `apt install openmpi-bin libopenmpi-dev`)")
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["loss"].as_f64().unwrap()
        })
        .collect()
}

/// Every tensor of a safetensors file, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The largest absolute difference between two encoders' weights.
fn max_weight_diff(a: &Path, b: &Path) -> f32 {
    let (x, y) = (tensors(a), tensors(b));
    assert_eq!(x.len(), y.len());
    let mut worst = 0f32;
    for ((na, va), (nb, vb)) in x.iter().zip(&y) {
        assert_eq!(na, nb);
        assert_eq!(va.len(), vb.len(), "{na}");
        for (p, q) in va.iter().zip(vb) {
            worst = worst.max((p - q).abs());
        }
    }
    worst
}

fn max_loss_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1e-12))
        .fold(0.0, f64::max)
}

fn world(dir: &Path) -> PathBuf {
    write_world(&SynthConfig::new(48, 32, 6), dir.join("w")).unwrap();
    dir.join("w/imagefolder/train")
}

#[test]
fn two_mpi_ranks_equal_one_process_with_two_accumulation_steps() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    let skipped = dir.path().join("skipped");

    check(
        single(&pretrain_argv(&data, &one, &["--accum", "2"])),
        "one process, --accum 2",
    );
    check(
        mpirun2(&pretrain_argv(&data, &two, &[]), &[]),
        "mpirun -np 2",
    );

    // The same losses and the same final encoder.
    let (l1, l2) = (losses(&one), losses(&two));
    assert_eq!(l1.len(), 4);
    let dl = max_loss_diff(&l1, &l2);
    assert!(dl <= 1e-5, "losses differ by {dl:e}: {l1:?} vs {l2:?}");
    let dw = max_weight_diff(
        &one.join("encoder.safetensors"),
        &two.join("encoder.safetensors"),
    );
    assert!(dw <= 1e-5, "encoders differ by {dw:e}");

    // Rank 0 alone wrote the run: one record, saying how it ran.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("record.json")).unwrap()).unwrap();
    assert_eq!(record["status"], "complete");
    assert_eq!(record["config"]["processes"], 2, "{}", record["config"]);
    let config = std::fs::read_to_string(two.join("config.toml")).unwrap();
    assert!(config.contains("processes = 2"), "{config}");

    // Without the gradient all-reduce each rank follows its own half of the data: the comparison
    // above must then fail (it is not vacuous).
    check(
        mpirun2(
            &pretrain_argv(&data, &skipped, &[]),
            &[("CAE_BENCH_TEST_SKIP_GRADIENT_ALL_REDUCE", "1")],
        ),
        "mpirun -np 2 without the gradient all-reduce",
    );
    let dl = max_loss_diff(&l1, &losses(&skipped));
    let dw = max_weight_diff(
        &one.join("encoder.safetensors"),
        &skipped.join("encoder.safetensors"),
    );
    assert!(
        dl > 1e-4 && dw > 1e-4,
        "skipping the all-reduce went unnoticed (losses {dl:e}, weights {dw:e})"
    );
}

#[test]
fn an_mpi_run_resumes_with_its_ranks_and_refuses_another_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let run = dir.path().join("run");
    check(
        mpirun2(&pretrain_argv(&data, &run, &[]), &[]),
        "mpirun -np 2",
    );
    let encoder = run.join("encoder.safetensors");
    let finished = std::fs::read(&encoder).unwrap();

    // Interrupted after step 2: the last checkpoint and the encoder are gone.
    std::fs::remove_file(run.join("checkpoints/ckpt-00000004.safetensors")).unwrap();
    std::fs::remove_file(&encoder).unwrap();

    // One process cannot continue a run of two.
    let refused = single(&pretrain_argv(&data, &run, &["--resume"]));
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("processes"), "{err}");

    // Two can, and end where the uninterrupted run ended.
    check(
        mpirun2(&pretrain_argv(&data, &run, &["--resume"]), &[]),
        "mpirun -np 2 --resume",
    );
    assert_eq!(
        std::fs::read(&encoder).unwrap(),
        finished,
        "the resumed run's encoder differs"
    );
}
