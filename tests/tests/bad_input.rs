//! Bad input to `cae-bench pretrain`, through the real command line: each case exits non-zero
//! with a message naming the file or the option and what is wrong, never panics, and leaves no
//! record claiming a complete run that did not happen.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use cae_pretrain::CaeConfig;
use cae_pretrain::config::TargetConfig;
use common::{cli, run_ok, world};

/// `pretrain --data DATA --out OUT --no-progress EXTRA…`.
fn pretrain_args<'a>(data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "pretrain",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    args
}

fn pretrain(data: &Path, out: &Path, extra: &[&str]) -> Output {
    cli()
        .args(pretrain_args(data, out, extra))
        .output()
        .expect("starting cae-bench")
}

/// [`pretrain`] that must succeed.
fn pretrain_ok(data: &Path, out: &Path, extra: &[&str]) -> Output {
    run_ok(&pretrain_args(data, out, extra))
}

/// Fails cleanly: non-zero exit, no panic, every needle in stderr. Returns stderr.
fn refused(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected a failure; stderr: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    err
}

/// The record's status, if there is a record.
fn status(run: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run.join("record.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).expect("record.json is readable JSON");
    Some(v["status"].as_str().unwrap().to_string())
}

/// A tiny world (48 scenes), its train split.
fn tiny_world(dir: &Path) -> PathBuf {
    world(&dir.join("w"), 48, 9)
}

const FAST: [&str; 6] = ["--preset", "test", "--steps", "2", "--batch", "8"];

/// A safetensors file without tensors whose metadata holds `dalle_config`.
fn tokenizer_with_config(path: &Path, config: &str) {
    let meta = HashMap::from([("dalle_config".to_string(), config.to_string())]);
    let bytes = safetensors::serialize(
        Vec::<(String, safetensors::tensor::TensorView<'_>)>::new(),
        Some(meta),
    )
    .unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_tokenizer_whose_sizes_cannot_be_built_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_world(dir.path());
    let tok = dir.path().join("three_groups.safetensors");
    tokenizer_with_config(
        &tok,
        r#"{"group_count":3,"n_hid":8,"n_blk_per_group":1,"vocab_size":16}"#,
    );
    let out = dir.path().join("run");
    let res = pretrain(
        &data,
        &out,
        &[
            &FAST[..],
            &["--target", "dalle", "--tokenizer", tok.to_str().unwrap()],
        ]
        .concat(),
    );
    refused(&res, &["three_groups.safetensors", "group_count is 3"]);
    assert_ne!(status(&out).as_deref(), Some("complete"));
    assert!(!out.join("encoder.safetensors").exists());
}

#[test]
fn a_tokenizer_of_the_wrong_vocabulary_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_world(dir.path());
    let tok = dir.path().join("vocab16.safetensors");
    tokenizer_with_config(
        &tok,
        r#"{"group_count":4,"n_hid":8,"n_blk_per_group":1,"vocab_size":16}"#,
    );
    // A model whose head predicts the released tokenizer's 8192 tokens.
    let mut cfg = CaeConfig::test();
    cfg.target = TargetConfig::Dalle { vocab_size: 8192 };
    let model = dir.path().join("model.toml");
    std::fs::write(&model, cfg.to_toml()).unwrap();
    let out = dir.path().join("run");
    let res = pretrain(
        &data,
        &out,
        &[
            "--model-config",
            model.to_str().unwrap(),
            "--steps",
            "2",
            "--batch",
            "8",
            "--tokenizer",
            tok.to_str().unwrap(),
        ],
    );
    refused(&res, &["vocab16.safetensors", "16 tokens", "8192"]);
    assert_ne!(status(&out).as_deref(), Some("complete"));
}

#[test]
fn a_one_patch_model_config_with_a_mask_ratio_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_world(dir.path());
    let mut cfg = CaeConfig::test();
    cfg.encoder.img_size = cfg.encoder.patch_size; // one patch
    let model = dir.path().join("one_patch.toml");
    std::fs::write(&model, cfg.to_toml()).unwrap();
    let out = dir.path().join("run");
    let res = pretrain(
        &data,
        &out,
        &[
            "--model-config",
            model.to_str().unwrap(),
            "--steps",
            "2",
            "--mask-ratio",
            "0.5",
        ],
    );
    // The config file itself cannot mask anything (the guard before `--mask-ratio`'s
    // `clamp(1, n - 1)` keeps a one-patch model from panicking there as well).
    refused(&res, &["one_patch.toml", "1 patches"]);
    assert_eq!(status(&out), None);
}

#[test]
fn resuming_a_finished_run_keeps_a_readable_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_world(dir.path());
    let out = dir.path().join("run");
    pretrain_ok(&data, &out, &FAST);
    let encoder = std::fs::read(out.join("encoder.safetensors")).unwrap();
    // --resume at the final step: nothing left to train, the same encoder, a finite final loss.
    let res = pretrain_ok(&data, &out, &[&FAST[..], &["--resume", "--json"]].concat());
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(summary["resumed_from"], 2);
    assert!(summary["final_loss"].as_f64().unwrap().is_finite());
    assert_eq!(
        std::fs::read(out.join("encoder.safetensors")).unwrap(),
        encoder
    );
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap()).unwrap();
    assert_eq!(rec["status"], "complete");
    assert!(rec["metrics"]["final_loss"].as_f64().unwrap().is_finite());
    let rec = cae_reports_read(&out.join("record.json"));
    assert!(rec.is_some(), "record.json does not read back");
}

/// Reads a record the way the leaderboard does (typed), `None` when it does not parse.
fn cae_reports_read(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    // Every metric is a number (JSON has no NaN: a NaN would be written as null).
    v["metrics"]
        .as_object()?
        .values()
        .all(serde_json::Value::is_f64)
        .then_some(v)
}

#[test]
fn resume_with_a_different_config_is_refused_and_the_run_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_world(dir.path());
    let out = dir.path().join("run");
    pretrain_ok(&data, &out, &FAST);
    let record = std::fs::read(out.join("record.json")).unwrap();
    let res = pretrain(
        &data,
        &out,
        &[&FAST[..], &["--seed", "5", "--resume"]].concat(),
    );
    refused(&res, &["config.toml", "--resume", "seed: 0 → 5"]);
    assert_eq!(std::fs::read(out.join("record.json")).unwrap(), record);
}

#[test]
fn an_output_folder_holding_another_run_is_refused_without_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_world(dir.path());
    let out = dir.path().join("taken");
    pretrain_ok(&data, &out, &FAST);
    let before: Vec<Vec<u8>> = ["record.json", "config.toml", "encoder.safetensors"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    // Another method into the same folder, no --resume.
    let res = pretrain(&data, &out, &[&FAST[..], &["--method", "beit"]].concat());
    let err = refused(
        &res,
        &["taken", "already holds", "--resume", "another --out"],
    );
    assert!(err.contains("another configuration"), "{err}");
    // The same config again, no --resume: refused too (continuing needs --resume).
    let res = pretrain(&data, &out, &FAST);
    refused(&res, &["taken", "already holds", "--resume"]);
    let after: Vec<Vec<u8>> = ["record.json", "config.toml", "encoder.safetensors"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    assert!(before == after, "the refused command changed the old run");
    assert_eq!(status(&out).as_deref(), Some("complete"));
}

#[test]
fn an_unknown_devices_entry_is_refused_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_world(dir.path());
    let out = dir.path().join("run");
    let res = pretrain(
        &data,
        &out,
        &[&FAST[..], &["--devices", "cpu,tpu"]].concat(),
    );
    refused(&res, &["--devices", "`tpu`", "unknown device"]);
    assert_eq!(status(&out), None);
}

#[test]
fn a_damaged_checkpoint_is_refused_on_resume_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_world(dir.path());
    let out = dir.path().join("run");
    let args = [&FAST[..], &["--checkpoint-every", "1"]].concat();
    let first = pretrain(&data, &out, &args);
    assert!(first.status.success());
    let newest = out.join("checkpoints/ckpt-00000002.safetensors");
    std::fs::write(&newest, b"not a safetensors file").unwrap();
    let res = pretrain(&data, &out, &[&args[..], &["--resume"]].concat());
    refused(&res, &["ckpt-00000002.safetensors", "damaged"]);
    assert_ne!(status(&out).as_deref(), Some("complete"));
}
