//! End to end: synthetic world → `cae-bench pretrain` (CAE and BEiT), resume, options.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{cli, mean, metrics, run_ok, tensor_names, world};

fn pretrain_args<'a>(data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["pretrain", "--data", data, "--out", out, "--no-progress"];
    v.extend_from_slice(extra);
    v
}

/// The reconstruction loss of the first and last quarter of a run.
fn quarters(run: &Path) -> (f64, f64) {
    let m = metrics(run);
    let q = m.len() / 4;
    (
        mean(&m[..q], "loss_rec"),
        mean(&m[m.len() - q..], "loss_rec"),
    )
}

#[test]
fn both_methods_lower_the_reconstruction_loss_on_the_synthetic_world() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(&dir.path().join("w"), 240, 3);
    let data = data.to_str().unwrap();
    for method in ["cae", "beit"] {
        let out = dir.path().join(format!("run-{method}"));
        let out_s = out.to_str().unwrap();
        // The `mini` model at batch 16 (the CPU-sized smoke version of the acceptance run).
        run_ok(&pretrain_args(
            data,
            out_s,
            &[
                "--preset", "mini", "--method", method, "--steps", "120", "--batch", "16",
            ],
        ));
        let (first, last) = quarters(&out);
        assert!(
            last < 0.9 * first,
            "{method}: loss_rec {first:.4} → {last:.4} is not a >10% drop"
        );
        let names = tensor_names(&out.join("encoder.safetensors"));
        assert!(names.iter().all(|n| n.starts_with("encoder.")));
        assert!(names.contains(&"encoder.blocks.3.attn.qkv.weight".to_string()));
    }
}

#[test]
fn a_run_killed_after_a_checkpoint_resumes_to_the_same_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(&dir.path().join("w"), 96, 5);
    let data = data.to_str().unwrap();
    let common_args = [
        "--preset",
        "test",
        "--steps",
        "60",
        "--batch",
        "8",
        "--checkpoint-every",
        "5",
        "--seed",
        "7",
    ];
    let straight = dir.path().join("straight");
    run_ok(&pretrain_args(
        data,
        straight.to_str().unwrap(),
        &common_args,
    ));

    let killed = dir.path().join("killed");
    let killed_s = killed.to_str().unwrap();
    let mut child = cli()
        .args(pretrain_args(data, killed_s, &common_args))
        .spawn()
        .expect("starting cae-bench");
    let first = killed.join("checkpoints/ckpt-00000005.safetensors");
    let deadline = Instant::now() + Duration::from_secs(600);
    while !first.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(Instant::now() < deadline, "no checkpoint after 10 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed before its end");
    assert!(!killed.join("encoder.safetensors").exists());
    // The killed run's record says it is not a result.
    assert_eq!(record_status(&killed), "running");

    let mut resume_args = common_args.to_vec();
    resume_args.push("--resume");
    let out = run_ok(&pretrain_args(data, killed_s, &resume_args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("resumed at 0"), "{stdout}");

    let a = std::fs::read(straight.join("encoder.safetensors")).unwrap();
    let b = std::fs::read(killed.join("encoder.safetensors")).unwrap();
    assert!(
        a == b,
        "the resumed encoder differs from the uninterrupted one"
    );
    let ma = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap();
    let mb = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap();
    let losses = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].to_string())
            .collect()
    };
    assert_eq!(losses(&ma), losses(&mb));
    for run in [&straight, &killed] {
        assert_eq!(record_status(run), "complete");
        let rec = record(run);
        assert_eq!(rec["kind"], "pretrain");
        assert_eq!(rec["seed"], 7);
        assert_eq!(rec["encoder"]["pretrain_steps"], 60);
        assert_eq!(rec["encoder"]["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(rec["config"]["derived"]["total_steps"], 60);
        assert!(rec["last"]["metrics"]["loss"].as_f64().unwrap().is_finite());
    }
}

fn record(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("record.json")).expect("record.json");
    serde_json::from_str(&text).unwrap()
}

fn record_status(run: &Path) -> String {
    record(run)["status"].as_str().unwrap().to_string()
}

#[test]
fn lambda_zero_turns_the_alignment_loss_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(&dir.path().join("w"), 48, 1);
    let out = dir.path().join("run");
    run_ok(&pretrain_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        &[
            "--preset", "test", "--steps", "3", "--batch", "8", "--lambda", "0",
        ],
    ));
    for line in metrics(&out) {
        assert_eq!(line["loss_align"].as_f64().unwrap(), 0.0);
        assert_eq!(line["loss"].as_f64(), line["loss_rec"].as_f64());
    }
    let with = dir.path().join("run2");
    run_ok(&pretrain_args(
        data.to_str().unwrap(),
        with.to_str().unwrap(),
        &["--preset", "test", "--steps", "1", "--batch", "8"],
    ));
    let m = metrics(&with);
    assert!(m[0]["loss_align"].as_f64().unwrap() > 0.0);
}

#[test]
fn mask_ratio_and_depths_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(&dir.path().join("w"), 48, 2);
    let out = dir.path().join("run");
    run_ok(&pretrain_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        &[
            "--preset",
            "test",
            "--steps",
            "1",
            "--batch",
            "8",
            "--mask-ratio",
            "0.25",
            "--regressor-depth",
            "3",
            "--decoder-depth",
            "2",
        ],
    ));
    let cfg: toml::Value =
        toml::from_str(&std::fs::read_to_string(out.join("config.toml")).unwrap()).unwrap();
    let model = &cfg["model"];
    assert_eq!(model["mask"]["num_masked"].as_integer(), Some(4)); // 25% of 16 patches
    assert_eq!(model["regressor_depth"].as_integer(), Some(3));
    assert_eq!(model["decoder_depth"].as_integer(), Some(2));
    let ckpt = tensor_names(&out.join("checkpoints/ckpt-00000001.safetensors"));
    let has = |p: &str| ckpt.iter().any(|n| n.starts_with(p));
    assert!(
        has("model.regresser.regressor_blocks.2.") && !has("model.regresser.regressor_blocks.3.")
    );
    assert!(has("model.decoder.decoder_blocks.1.") && !has("model.decoder.decoder_blocks.2."));
    assert!(
        cfg["derived"]["lr_rule"]
            .as_str()
            .unwrap()
            .contains("batch")
    );
}

#[test]
fn a_non_finite_loss_stops_the_run_with_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(&dir.path().join("w"), 48, 4);
    let out = dir.path().join("run");
    let res = cli()
        .args(pretrain_args(
            data.to_str().unwrap(),
            out.to_str().unwrap(),
            &[
                "--preset",
                "test",
                "--steps",
                "20",
                "--batch",
                "8",
                "--lr",
                "1e30",
                "--warmup-fraction",
                "0",
                "--checkpoint-every",
                "1",
            ],
        ))
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("non-finite loss") && err.contains("at step"),
        "{err}"
    );
    assert!(!out.join("encoder.safetensors").exists());
    let rec = record(&out);
    assert_eq!(rec["status"], "failed");
    assert!(
        rec["error"].as_str().unwrap().contains("non-finite loss"),
        "{rec}"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let res = cli()
        .args(pretrain_args(
            empty.to_str().unwrap(),
            dir.path().join("r").to_str().unwrap(),
            &["--preset", "test", "--steps", "1"],
        ))
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("empty"), "{err}");
    let res = cli()
        .args(pretrain_args(
            empty.to_str().unwrap(),
            dir.path().join("r").to_str().unwrap(),
            &["--preset", "huge", "--steps", "1"],
        ))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&res.stderr).contains("unknown preset"));
}

#[test]
fn devices_listing_one_device_twice_are_refused_not_merged() {
    // In burn 0.22 every CPU entry is the one CPU device: `cpu,cpu` would silently become one
    // worker, so it is refused, naming both entries and what to use instead.
    let dir = tempfile::tempdir().unwrap();
    let data = world(&dir.path().join("w"), 48, 6);
    let out = dir.path().join("two");
    let res = cli()
        .args(pretrain_args(
            data.to_str().unwrap(),
            out.to_str().unwrap(),
            &[
                "--preset",
                "test",
                "--steps",
                "1",
                "--batch",
                "8",
                "--devices",
                "cpu,cpu",
            ],
        ))
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    for needle in [
        "2 entries",
        "1 distinct device",
        "`cpu` and `cpu`",
        "--accum",
        "mpirun",
    ] {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    assert!(
        !out.join("record.json").exists() && !out.join("config.toml").exists(),
        "a refused run wrote files"
    );
}
