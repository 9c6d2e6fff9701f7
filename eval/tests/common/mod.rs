//! Helpers shared by the command-line tests: run the `cae-bench` binary, check a refusal, copy
//! fixtures. (Each test file uses some of them.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run of the binary gave.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cae-bench ARGS` with the default log level.
pub fn cae_bench<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cae-bench"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run cae-bench");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Fails with `needles` in stderr, nothing on stdout.
pub fn assert_refused(run: &Run, needles: &[&str]) {
    assert!(!run.ok, "expected a failure, got stdout {:?}", run.stdout);
    assert!(run.stdout.is_empty(), "partial output: {:?}", run.stdout);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            run.stderr
        );
    }
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A 32-px synthetic world of 48 scenes (the fewest with a validation image per class) written
/// by `cae-bench data synth` under `dir/w`; returns that folder (`imagefolder/`, `ade/`, `coco/`).
pub fn small_world(dir: &Path) -> PathBuf {
    small_world_with(dir, &[]).0
}

/// [`small_world`] with more `data synth` options (e.g. `--stuff 4`); also returns what the
/// command printed.
pub fn small_world_with(dir: &Path, extra: &[&str]) -> (PathBuf, String) {
    let out = dir.join("w");
    let mut args = vec![
        "data",
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--images",
        "48",
        "--size",
        "32",
        "--seed",
        "4",
    ];
    args.extend_from_slice(extra);
    let run = cae_bench(&args);
    assert!(run.ok, "data synth failed: {}", run.stderr);
    (out, run.stdout)
}

/// Fails cleanly: non-zero exit, no panic, every needle in stderr.
pub fn refused(run: &Run, needles: &[&str]) {
    assert!(!run.ok, "expected a failure, got stdout {:?}", run.stdout);
    assert!(!run.stderr.contains("panicked"), "a panic: {}", run.stderr);
    for n in needles {
        assert!(run.stderr.contains(n), "stderr lacks {n:?}: {}", run.stderr);
    }
}

/// The status of the record in `run`, if it wrote one.
pub fn record_status(run: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run.join("record.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).expect("record.json is readable JSON");
    Some(v["status"].as_str().unwrap().to_string())
}

/// The dtype of every tensor in every checkpoint of run folder `run`.
#[allow(dead_code)]
pub fn checkpoint_dtypes(run: &Path) -> Vec<safetensors::Dtype> {
    let mut dtypes = Vec::new();
    for entry in std::fs::read_dir(run.join("checkpoints")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for name in st.names() {
            dtypes.push(st.tensor(name).unwrap().dtype());
        }
    }
    dtypes
}

/// The loss of each `per_epoch` entry of a record.
#[allow(dead_code)]
pub fn per_epoch_losses(record: &serde_json::Value) -> Vec<f64> {
    record["per_epoch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["metrics"]["loss"].as_f64().unwrap())
        .collect()
}
