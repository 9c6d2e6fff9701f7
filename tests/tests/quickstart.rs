//! End to end: `cae-bench quickstart` (world → CAE and BEiT pretraining → probes of three
//! encoders over seeds → report.md), its resume, and `cae-bench calibrate` on its CAE run.

mod common;

use std::path::Path;

use common::run_ok;

fn record(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `OUT/quickstart.json`.
fn manifest(out: &Path) -> serde_json::Value {
    record(&out.join("quickstart.json"))
}

/// The folder of a manifest entry.
fn entry(out: &Path, m: &serde_json::Value, key: &str) -> std::path::PathBuf {
    out.join(m["pretrain"][key].as_str().unwrap())
}

/// The run folders of the manifest whose path starts with `prefix`.
fn runs_of(m: &serde_json::Value, prefix: &str) -> Vec<String> {
    m["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .filter(|r| r.starts_with(prefix))
        .collect()
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
    let m = manifest(&out);
    assert_eq!(m["runs"].as_array().unwrap().len(), 18);
    assert_eq!(m["reused"], 0);
    for enc in ["cae", "beit", "random"] {
        for proto in ["linear", "knn", "finetune-1pct"] {
            let runs = runs_of(&m, &format!("runs/{enc}/{proto}-"));
            assert_eq!(runs.len(), 2, "{enc} {proto}: {runs:?}");
            for (seed, run) in runs.iter().enumerate() {
                assert!(run.ends_with(&format!("/seed-{seed}")), "{run}");
                let rec = record(&out.join(run).join("record.json"));
                assert_eq!(rec["status"], "complete");
                assert_eq!(rec["seed"], seed);
                assert!(rec["request_key"].as_str().is_some_and(|k| k.len() == 64));
                assert!(
                    rec["dataset"]["fingerprint"]
                        .as_str()
                        .is_some_and(|f| f.starts_with("content:"))
                );
                let top1 = rec["metrics"]["top1"].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&top1));
            }
        }
    }
    let cae_dir = entry(&out, &m, "cae");
    let cae = record(&cae_dir.join("record.json"));
    assert_eq!(cae["status"], "complete");
    assert_eq!(cae["encoder"]["pretrain_steps"], 4);
    let ft = record(
        &out.join(&runs_of(&m, "runs/cae/finetune-1pct-")[0])
            .join("record.json"),
    );
    assert_eq!(ft["protocol"]["label_fraction"], 0.01);
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
        "Published numbers",
        "published, Atten4Vis/CAE",
        "backend flex",
        "What the seed varies",
    ] {
        assert!(
            report.contains(needle),
            "report.md lacks {needle:?}:\n{report}"
        );
    }
    assert!(!report.contains("nothing is copied"), "{report}");
    assert!(out.join("leaderboard.csv").exists());
    // The report is a function of the files it names: rendered again, it is the same text.
    let again = cae_bench::commands::quickstart::render_report(&out).expect("rendering again");
    assert_eq!(again.markdown, report);
    assert_eq!(
        again.csv,
        std::fs::read_to_string(out.join("leaderboard.csv")).unwrap()
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<table>") && html.contains("data:image/png;base64,"));

    // A second run in the same folder reuses every finished stage.
    let again = run_ok(&args);
    let err = String::from_utf8_lossy(&again.stderr);
    // The world, both pretraining runs and the 18 probe runs.
    assert_eq!(err.matches("(reused)").count(), 1 + 2 + 18, "{err}");
    assert!(err.contains("18 of 18 runs reused"), "{err}");
    let cae_again = record(&cae_dir.join("record.json"));
    assert_eq!(
        cae["started_unix"], cae_again["started_unix"],
        "pretraining ran again"
    );
    let rows2: Vec<serde_json::Value> = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(rows, rows2);

    // A zoo entry pretrained on this world's training images (here: a copy of the CAE run's
    // encoder and record) is measured beside the quickstart's own encoders; everything else is
    // reused, and the report compares it with random init.
    let zoo = dir.path().join("zoo");
    let entry_dir = zoo.join("cae-mini-4-s0");
    std::fs::create_dir_all(&entry_dir).unwrap();
    for f in ["encoder.safetensors", "record.json"] {
        std::fs::copy(cae_dir.join(f), entry_dir.join(f)).unwrap();
    }
    let with_zoo = common::cli()
        .env("CAE_BENCH_ZOO", &zoo)
        .args(args)
        .output()
        .unwrap();
    assert!(with_zoo.status.success(), "{with_zoo:?}");
    let err = String::from_utf8_lossy(&with_zoo.stderr);
    assert!(
        err.contains("[zoo cae-mini-4-s0] CAE mini, 4 steps (zoo, seed 0)"),
        "{err}"
    );
    assert!(err.contains("18 of 24 runs reused"), "{err}");
    let mz = manifest(&out);
    assert_eq!(mz["zoo"]["cae-mini-4-s0"], "zoo/cae-mini-4-s0");
    assert_eq!(runs_of(&mz, "runs/zoo-cae-mini-4-s0/").len(), 3 * 2);
    let zrec = record(
        &out.join(&runs_of(&mz, "runs/zoo-cae-mini-4-s0/linear-")[0])
            .join("record.json"),
    );
    assert_eq!(
        zrec["encoder"]["sha256"], cae["encoder"]["sha256"],
        "the zoo file is the CAE run's"
    );
    let zreport = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "zoo `cae-mini-4-s0`",
        "- linear: CAE mini, 4 steps (zoo, seed 0) − random init mini = ",
    ] {
        assert!(
            zreport.contains(needle),
            "report.md lacks {needle:?}:\n{zreport}"
        );
    }
    assert_eq!(
        cae_bench::commands::quickstart::render_report(&out)
            .unwrap()
            .markdown,
        zreport
    );
    // `--zoo none` leaves it out again.
    let mut no_zoo = args.to_vec();
    no_zoo.extend(["--zoo", "none"]);
    let without = common::cli()
        .env("CAE_BENCH_ZOO", &zoo)
        .args(&no_zoo)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&without.stderr).contains("18 of 18 runs reused"));

    // Other pretraining steps (one seed, to keep the test short): the world and the random
    // encoder's runs are reused; CAE and BEiT pretrain again in folders of their own (no
    // --resume of the 4-step run), and their probes run again.
    let mut longer = args;
    longer[4] = "6";
    longer[8] = "1";
    let third = run_ok(&longer);
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(!err.contains("resume"), "{err}");
    assert!(err.contains("3 of 9 runs reused"), "{err}");
    let m3 = manifest(&out);
    assert_eq!(m3["world"], m["world"]);
    assert_ne!(entry(&out, &m3, "cae"), cae_dir);
    assert_eq!(
        record(&entry(&out, &m3, "cae").join("record.json"))["encoder"]["pretrain_steps"],
        6
    );
    let seed0 = |runs: Vec<String>| -> Vec<String> {
        runs.into_iter().filter(|r| r.ends_with("seed-0")).collect()
    };
    assert_eq!(
        runs_of(&m3, "runs/random/"),
        seed0(runs_of(&m, "runs/random/"))
    );
    assert!(
        runs_of(&m3, "runs/cae/")
            .iter()
            .all(|r| !runs_of(&m, "runs/cae/").contains(r))
    );
    // The first run's records are untouched.
    assert_eq!(record(&cae_dir.join("record.json")), cae);

    // Another world: everything runs again (one seed, to keep the test short).
    let mut other = args;
    other[6] = "200";
    other[8] = "1";
    let fourth = run_ok(&other);
    let err = String::from_utf8_lossy(&fourth.stderr);
    assert!(err.contains("0 of 9 runs reused"), "{err}");
    let m4 = manifest(&out);
    assert_ne!(m4["world"], m["world"]);
    assert_ne!(entry(&out, &m4, "cae"), cae_dir);
    assert!(
        runs_of(&m4, "runs/random/")
            .iter()
            .all(|r| !runs_of(&m, "runs/random/").contains(r))
    );
    let rec = record(
        &out.join(&runs_of(&m4, "runs/random/linear-")[0])
            .join("record.json"),
    );
    assert_eq!(rec["dataset"]["val_images"], 40);
    // The zoo entry was pretrained on the first world: named for this one, it is refused before
    // anything trains.
    let mut named = other.to_vec();
    named.extend(["--zoo", "cae-mini-4-s0"]);
    let refused = common::cli()
        .env("CAE_BENCH_ZOO", &zoo)
        .args(&named)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--zoo cae-mini-4-s0") && err.contains("not on this world's training images"),
        "{err}"
    );
    assert!(!err.contains("[pretrain"), "{err}");

    // The calibration of the first CAE run: its last checkpoint against random init.
    let cal = dir.path().join("cal");
    run_ok(&[
        "calibrate",
        "--run",
        cae_dir.to_str().unwrap(),
        "--data",
        out.join(m["world"].as_str().unwrap())
            .join("imagefolder")
            .to_str()
            .unwrap(),
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
    for p in ["linear", "knn", "finetune-1pct"] {
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

#[test]
fn quickstart_full_adds_segmentation_and_detection_to_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qs");
    let args = [
        "quickstart",
        "--out",
        out.to_str().unwrap(),
        "--pretrain-steps",
        "2",
        "--images",
        "100",
        "--seeds",
        "1",
        "--full",
        "--full-seeds",
        "1",
        "--dense-preset",
        "test",
        "--no-progress",
    ];
    run_ok(&args);
    let m = manifest(&out);
    for (prefix, metric) in [
        ("segment-upernet-", "mIoU"),
        ("segment-linear-", "mIoU"),
        ("detect-", "bbox_AP"),
    ] {
        for enc in ["cae", "beit", "random"] {
            let runs = runs_of(&m, &format!("runs/{enc}/{prefix}"));
            assert_eq!(runs.len(), 1, "{enc} {prefix}: {runs:?}");
            let rec = record(&out.join(&runs[0]).join("record.json"));
            assert_eq!(rec["status"], "complete");
            assert!(rec["metrics"][metric].as_f64().is_some(), "{rec}");
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "· mIoU",
        "· bbox_AP",
        "## Per-class IoU",
        "ade20k_upernet",
        "coco_maskrcnn_1x",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    // Run again: every stage is reused, the dense runs included.
    let again = run_ok(&args);
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        err.lines()
            .filter(|l| (l.starts_with("[segment") || l.starts_with("[detect"))
                && l.ends_with("(reused)"))
            .count(),
        9,
        "{err}"
    );
}
