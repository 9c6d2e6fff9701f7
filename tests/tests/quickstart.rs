//! End to end: `cae-bench quickstart` (world → CAE and BEiT pretraining → probes of three
//! encoders over seeds → report.md), its resume, and `cae-bench calibrate` on its CAE run.

mod common;

use std::path::Path;

use common::run_ok;

fn record(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn quickstart_writes_a_report_of_every_encoder_protocol_and_seed_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qs");
    let out_s = out.to_str().unwrap();
    let args = [
        "quickstart",
        "--out",
        out_s,
        "--pretrain-steps",
        "4",
        "--images",
        "160",
        "--seeds",
        "2",
        "--no-progress",
        "--json",
    ];
    let first = run_ok(&args);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(rows.len(), 3 * 3 * 2, "3 encoders × 3 protocols × 2 seeds");
    for enc in ["cae", "beit", "random"] {
        for proto in ["linear", "knn", "finetune-10pct"] {
            for seed in 0..2 {
                let rec = record(&out.join(format!("runs/{enc}/{proto}/seed-{seed}/record.json")));
                assert_eq!(rec["status"], "complete");
                assert_eq!(rec["seed"], seed);
                let top1 = rec["metrics"]["top1"].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&top1));
            }
        }
    }
    let cae = record(&out.join("pretrain/cae/record.json"));
    assert_eq!(cae["status"], "complete");
    assert_eq!(cae["encoder"]["pretrain_steps"], 4);
    let ft = record(&out.join("runs/cae/finetune-10pct/seed-0/record.json"));
    assert_eq!(ft["protocol"]["label_fraction"], 0.1);
    assert_eq!(ft["encoder"]["label"], "CAE mini, 4 steps");
    assert_eq!(ft["encoder"]["pretrain_steps"], 4);

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "CAE mini, 4 steps",
        "BEiT mini, 4 steps",
        "random init mini",
        "`finetune` · top1",
        "`knn` · top1",
        "`linear` · top1",
        "(n=2)",
        "Published numbers",
        "published, Atten4Vis/CAE",
    ] {
        assert!(
            report.contains(needle),
            "report.md lacks {needle:?}:\n{report}"
        );
    }
    assert!(out.join("leaderboard.csv").exists());

    // A second run in the same folder reuses every finished stage.
    let again = run_ok(&args);
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.matches("(reused)").count(), 18, "{err}");
    let cae_again = record(&out.join("pretrain/cae/record.json"));
    assert_eq!(
        cae["started_unix"], cae_again["started_unix"],
        "pretraining ran again"
    );
    let rows2: Vec<serde_json::Value> = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(rows, rows2);

    // The calibration of the CAE run: its last checkpoint against random init.
    let cal = dir.path().join("cal");
    run_ok(&[
        "calibrate",
        "--run",
        out.join("pretrain/cae").to_str().unwrap(),
        "--data",
        out.join("world/imagefolder").to_str().unwrap(),
        "--out",
        cal.to_str().unwrap(),
        "--steps",
        "4",
        "--seeds",
        "2",
    ]);
    let md = std::fs::read_to_string(cal.join("calibration.md")).unwrap();
    assert!(md.contains("| 0 (random init) | 0 |"), "{md}");
    assert!(md.contains("| 4 |"), "{md}");
    assert!(md.contains("2σ"), "{md}");
    for p in ["linear", "knn", "finetune-10pct"] {
        assert!(cal.join(format!("calibration-{p}.png")).exists());
    }
    let csv = std::fs::read_to_string(cal.join("calibration.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 * 2, "{csv}");
}

#[test]
fn calibrate_names_a_missing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::world(&dir.path().join("w"), 48, 2);
    let run = dir.path().join("run");
    run_ok(&[
        "pretrain",
        "--preset",
        "test",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "3",
        "--batch",
        "8",
        "--no-progress",
    ]);
    let res = common::cli()
        .args([
            "calibrate",
            "--run",
            run.to_str().unwrap(),
            "--data",
            data.parent().unwrap().to_str().unwrap(),
            "--out",
            dir.path().join("cal").to_str().unwrap(),
            "--steps",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("no checkpoint of step 2"), "{err}");
}
