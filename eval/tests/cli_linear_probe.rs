//! `cae-bench linear-probe` and `cae-bench import`, run as a binary on a small synthetic world:
//! every protocol runs and writes a complete record, a seed gives the same numbers, imported and
//! pretrained encoder files are measured, an interrupted run's record stays incomplete, and bad
//! input is a clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cae_reports::record::{RunRecord, RunStatus, sha256_file};
use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cae-bench"));
    c.env_remove("RUST_LOG").env("CAE_BENCH_THREADS", "2");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run cae-bench")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A 32-px world of 96 scenes (shared by the tests of this file).
fn world() -> &'static Path {
    static WORLD: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &WORLD
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("w");
            ok(&run(&[
                "data",
                "synth",
                "--out",
                out.to_str().unwrap(),
                "--images",
                "96",
                "--size",
                "32",
                "--seed",
                "3",
            ]));
            (dir, out.join("imagefolder"))
        })
        .1
}

fn probe(extra: &[&str]) -> Output {
    let mut args = vec![
        "linear-probe",
        "--data",
        world().to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("one JSON object on stdout")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/import")
}

/// Checks the fields every finished record must have.
fn check_record(dir: &Path, protocol: &str, epochs: u64) -> RunRecord {
    let rec = RunRecord::read(&dir.join("record.json")).unwrap();
    assert_eq!(rec.status, RunStatus::Complete);
    assert!(rec.is_result());
    assert_eq!(rec.kind, "linear-probe");
    assert_eq!(rec.schema_version, cae_reports::record::SCHEMA_VERSION);
    assert!(rec.command.iter().any(|a| a == "linear-probe"));
    assert_eq!(rec.protocol.name, protocol);
    assert_eq!(rec.protocol.epochs, Some(epochs));
    assert!(rec.protocol.pooling.is_some() && rec.protocol.optimizer.is_some());
    assert!(rec.config["probe"]["protocol"] == protocol);
    assert!(rec.config["model"]["encoder"]["embed_dim"].is_u64());
    assert_eq!(rec.per_epoch.len() as u64, epochs.max(1));
    assert!(rec.best.is_some() && rec.last.is_some());
    for k in ["top1", "top5", "best_top1"] {
        let v = rec.metrics[k];
        assert!((0.0..=100.0).contains(&v), "{k} = {v}");
    }
    assert!(rec.wall_time_s > 0.0 && rec.machine.cores >= 1);
    for v in ["cae-reports", "cae-heads", "burn"] {
        assert!(rec.versions.contains_key(v), "version of {v}");
    }
    let ds = rec.dataset.as_ref().unwrap();
    assert_eq!(ds.classes, Some(8));
    rec
}

#[test]
fn every_protocol_runs_and_writes_a_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], u64)] = &[
        ("linear", &["--epochs", "3", "--batch", "16"], 3),
        ("knn", &["--k", "5"], 0),
        ("attentive", &["--epochs", "2", "--batch", "16"], 2),
        (
            "finetune",
            &["--epochs", "2", "--batch", "8", "--label-fraction", "0.5"],
            2,
        ),
    ];
    for (protocol, extra, epochs) in cases {
        let out = dir.path().join(protocol);
        let mut args = vec![
            "--encoder",
            "random",
            "--preset",
            "test",
            "--protocol",
            protocol,
            "--seed",
            "1",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let v = json(&probe(&args));
        assert_eq!(v["protocol"], *protocol);
        assert_eq!(v["epochs"], *epochs);
        assert_eq!(v["seed"], 1);
        for k in ["top1", "top5"] {
            let x = v[k].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&x), "{protocol} {k} {x}");
        }
        assert!(v["top5"].as_f64() >= v["top1"].as_f64());
        let rec = check_record(&out, protocol, *epochs);
        assert_eq!(rec.seed, 1);
        let enc = rec.encoder.as_ref().unwrap();
        assert_eq!((enc.method.as_str(), enc.path.as_ref()), ("random", None));
        match *protocol {
            "linear" => {
                assert_eq!(rec.protocol.optimizer.as_deref(), Some("lars"));
                assert_eq!(rec.protocol.effective_batch, Some(16));
                assert_eq!(rec.protocol.cached_features, Some(true));
                assert_eq!(rec.protocol.pooling.as_deref(), Some("cls"));
                assert!(rec.protocol.lr.unwrap() > 0.0);
            }
            "knn" => {
                assert_eq!(rec.protocol.details["k"], 5);
                assert_eq!(rec.protocol.details["temperature"], 0.07);
            }
            "attentive" => {
                assert_eq!(rec.protocol.optimizer.as_deref(), Some("sgd-nesterov"));
            }
            "finetune" => {
                assert_eq!(rec.protocol.label_fraction, Some(0.5));
                assert_eq!(rec.protocol.pooling.as_deref(), Some("mean"));
                assert_eq!(rec.protocol.details["layer_decay"], 0.65);
                let train = rec.dataset.as_ref().unwrap().train_images.unwrap();
                assert!(train < 60, "half the labels: {train}");
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_numbers() {
    let args = |seed: &'static str| {
        vec![
            "--encoder",
            "random",
            "--preset",
            "test",
            "--protocol",
            "linear",
            "--epochs",
            "3",
            "--batch",
            "16",
            "--seed",
            seed,
        ]
    };
    let a = json(&probe(&args("7")));
    let b = json(&probe(&args("7")));
    let c = json(&probe(&args("8")));
    assert_eq!(a["per_epoch"], b["per_epoch"]);
    assert_eq!(a["top1"], b["top1"]);
    assert_ne!(a["per_epoch"], c["per_epoch"], "another seed, another run");
    // Augmented (MAE) linear probing and fine-tuning are seeded too.
    let aug = |seed| {
        let mut v = args(seed);
        v.push("--augment");
        json(&probe(&v))["per_epoch"].clone()
    };
    assert_eq!(aug("7"), aug("7"));
    let ft = || {
        json(&probe(&[
            "--encoder",
            "random",
            "--preset",
            "test",
            "--protocol",
            "finetune",
            "--epochs",
            "1",
            "--batch",
            "8",
            "--label-fraction",
            "0.3",
            "--seed",
            "2",
        ]))["per_epoch"]
            .clone()
    };
    assert_eq!(ft(), ft());
}

#[test]
fn imported_and_pretrained_encoder_files_are_measured() {
    let dir = tempfile::tempdir().unwrap();
    // Import a BEiT checkpoint (per-block relative position bias) ...
    let enc = dir.path().join("beit.safetensors");
    let src = fixtures().join("beit_rel.pth");
    let out = run(&[
        "import",
        "--from",
        "beit",
        src.to_str().unwrap(),
        "--out",
        enc.to_str().unwrap(),
        "--num-heads",
        "2",
    ]);
    let text = ok(&out);
    assert!(text.contains("wrote"), "{text}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("mapped (") && log.contains("missing (0)"),
        "{log}"
    );
    assert!(
        log.contains("lm_head.weight"),
        "dropped keys are listed: {log}"
    );
    // ... and probe an intermediate block with cls+mean pooling.
    let rec_dir = dir.path().join("probe");
    let v = json(&probe(&[
        "--encoder",
        enc.to_str().unwrap(),
        "--protocol",
        "linear",
        "--layer",
        "0",
        "--pool",
        "cls+mean",
        "--epochs",
        "2",
        "--batch",
        "16",
        "--out",
        rec_dir.to_str().unwrap(),
    ]));
    assert_eq!(v["layer"], 0);
    assert_eq!(v["pooling"], "cls+mean");
    let rec = check_record(&rec_dir, "linear", 2);
    assert_eq!(rec.protocol.layer, Some(0));
    let e = rec.encoder.as_ref().unwrap();
    assert_eq!(e.method, "beit");
    assert_eq!(
        e.sha256.as_deref(),
        Some(sha256_file(&enc).unwrap().as_str())
    );
    assert_eq!(rec.config["model"]["encoder"]["rel_pos_bias"], "per_block");

    // A CAE encoder from `cae-bench pretrain` (its config is in the file: no --preset).
    let run_dir = dir.path().join("pre");
    ok(&run(&[
        "pretrain",
        "--preset",
        "test",
        "--data",
        world().join("train").to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--steps",
        "2",
        "--batch",
        "16",
        "--no-progress",
    ]));
    let v = json(&probe(&[
        "--encoder",
        run_dir.join("encoder.safetensors").to_str().unwrap(),
        "--protocol",
        "knn",
    ]));
    assert_eq!(v["encoder"]["method"], "cae");
    assert_eq!(v["encoder"]["arch"], "test");
}

#[test]
fn an_interrupted_run_keeps_an_incomplete_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = bin()
        .args([
            "linear-probe",
            "--data",
            world().to_str().unwrap(),
            "--encoder",
            "random",
            "--preset",
            "test",
            "--epochs",
            "100000",
            "--batch",
            "16",
            "--no-progress",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let path = out.join("record.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(rec) = RunRecord::read(&path)
            && rec.per_epoch.len() >= 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "no epoch recorded in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let rec = RunRecord::read(&path).unwrap();
    assert_eq!(rec.status, RunStatus::Running);
    assert!(!rec.is_result());
    assert!(rec.metrics.is_empty());
}

#[test]
fn bad_input_is_a_clear_error() {
    let refused = |out: Output, needles: &[&str]| {
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "stderr lacks {n:?}: {err}");
        }
    };
    refused(
        probe(&["--encoder", "random", "--protocol", "knn"]),
        &["--preset"],
    );
    refused(
        probe(&["--encoder", "nope.safetensors"]),
        &["nope.safetensors", "no such file"],
    );
    refused(
        probe(&["--encoder", "random", "--preset", "test", "--layer", "2"]),
        &["--layer 2", "2 blocks"],
    );
    refused(
        probe(&[
            "--encoder",
            "random",
            "--preset",
            "test",
            "--label-fraction",
            "1.5",
        ]),
        &["--label-fraction"],
    );
    refused(
        probe(&[
            "--encoder",
            "random",
            "--preset",
            "test",
            "--eval-every",
            "0",
        ]),
        &["--eval-every"],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("train/a")).unwrap();
    refused(
        run(&[
            "linear-probe",
            "--encoder",
            "random",
            "--preset",
            "test",
            "--data",
            dir.path().to_str().unwrap(),
        ]),
        &[dir.path().to_str().unwrap()],
    );
    // An encoder file without a config needs a preset, and names the file.
    let bare = dir.path().join("bare.safetensors");
    let src = fixtures().join("beit_shared.safetensors"); // a raw checkpoint, not an encoder file
    std::fs::copy(&src, &bare).unwrap();
    refused(
        probe(&["--encoder", bare.to_str().unwrap(), "--protocol", "knn"]),
        &["bare.safetensors", "--preset"],
    );
    // Import: a wrong layout names the file and what is missing.
    refused(
        run(&[
            "import",
            "--from",
            "cae",
            fixtures().join("vit_learned.pth").to_str().unwrap(),
            "--out",
            dir.path().join("x.safetensors").to_str().unwrap(),
            "--num-heads",
            "2",
        ]),
        &["vit_learned.pth", "cls_token"],
    );
}

#[test]
fn heads_topk_agrees_with_the_metrics_library() {
    use cae_bench::metrics::classification::topk_accuracy;
    use cae_heads::metrics::TopK;
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let (n, c) = (500, 10);
    // Coarse scores so that ties happen.
    let scores: Vec<f32> = (0..n * c).map(|_| (next() * 8.0).floor()).collect();
    let labels: Vec<usize> = (0..n).map(|_| (next() * c as f32) as usize % c).collect();
    let want = topk_accuracy(&scores, c, &labels, &[1, 5]).unwrap();
    let mut got = TopK::default();
    got.update(&scores, c, &labels);
    assert!((got.top1_pct() / 100.0 - want[0]).abs() < 1e-12);
    assert!((got.top5_pct() / 100.0 - want[1]).abs() < 1e-12);
}

/// The features one process extracts are shared by its later runs of the same encoder (the
/// quickstart's seeds, kNN after the linear probe): a run served from that cache gives exactly
/// the record of a fresh process, per image.
#[test]
fn features_shared_within_a_process_give_the_numbers_of_a_fresh_process() {
    use cae_bench::protocols::classification::{EncoderSource, ProbeRequest, Protocol, run_probe};
    let dir = tempfile::tempdir().unwrap();
    let in_process = |protocol: Protocol, name: &str| {
        let mut req = ProbeRequest::new(EncoderSource::Random, world(), protocol);
        req.preset = Some("test".into());
        req.seed = 7;
        req.out = Some(dir.path().join(name));
        run_probe(&req).unwrap();
        RunRecord::read(&dir.path().join(name).join("record.json")).unwrap()
    };
    // kNN extracts and keeps the features; the linear probe then takes them from the cache.
    let knn = in_process(Protocol::Knn, "knn");
    let cached = in_process(Protocol::Linear, "linear");
    let fresh_dir = dir.path().join("fresh");
    ok(&run(&[
        "linear-probe",
        "--data",
        world().to_str().unwrap(),
        "--encoder",
        "random",
        "--preset",
        "test",
        "--protocol",
        "linear",
        "--seed",
        "7",
        "--out",
        fresh_dir.to_str().unwrap(),
    ]));
    let fresh = RunRecord::read(&fresh_dir.join("record.json")).unwrap();
    assert_eq!(cached.metrics, fresh.metrics);
    assert_eq!(cached.per_image, fresh.per_image);
    assert!(cached.per_image.is_some() && knn.per_image.is_some());
}
