//! What a leaderboard row is: one encoder file (by sha256, whatever its name), one set of
//! protocol settings, several seeds; a random initialisation over its seeds; a deterministic
//! protocol as one measurement; the same seed twice flagged. Records are written here, into a
//! temporary runs folder, as `heads::probe` and `cae-bench pretrain` write them.

use std::collections::BTreeMap;
use std::path::Path;

use cae_reports::csv;
use cae_reports::leaderboard::{Leaderboard, LeaderboardOptions};
use cae_reports::record::{
    DatasetInfo, EncoderInfo, MachineInfo, ProtocolInfo, RunRecord, RunStatus, sha256_file,
};

use crate::common::close;

fn machine() -> MachineInfo {
    MachineInfo {
        cores: 2,
        cpu: Some("Test CPU".into()),
        gpu: None,
        os: "linux x86_64".into(),
        device: "cpu".into(),
        threads: Some(2),
    }
}

/// A complete probe record of `encoder` (a file, or `None` = random init) with `settings`.
fn probe_record(
    encoder: Option<&Path>,
    protocol: &str,
    settings: &[(&str, serde_json::Value)],
    seed_varies: &[&str],
    seed: u64,
    top1: f64,
) -> RunRecord {
    let mut r = RunRecord::start(
        "linear-probe",
        vec!["cae-bench".into(), "linear-probe".into()],
        serde_json::json!({}),
        seed,
        ProtocolInfo {
            name: protocol.into(),
            pooling: Some("cls".into()),
            epochs: Some(10),
            effective_batch: Some(64),
            lr: Some(0.1),
            optimizer: Some("lars".into()),
            cached_features: Some(true),
            label_fraction: Some(1.0),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            seed_varies: Some(seed_varies.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        },
        machine(),
    );
    r.started_unix = 1_760_000_000;
    r.encoder = Some(match encoder {
        // The default label of a file is its stem: `encoder` for every pretraining run.
        Some(path) => EncoderInfo {
            label: path.file_stem().unwrap().to_string_lossy().into_owned(),
            path: Some(path.display().to_string()),
            sha256: Some(sha256_file(path).unwrap()),
            method: "cae".into(),
            arch: "mini".into(),
            pretrain_steps: Some(500),
        },
        None => EncoderInfo {
            label: "random-init-mini".into(),
            method: "random".into(),
            arch: "mini".into(),
            ..Default::default()
        },
    });
    r.dataset = Some(DatasetInfo {
        path: "/data/world".into(),
        ..Default::default()
    });
    r.status = RunStatus::Complete;
    r.metrics = BTreeMap::from([("top1".to_string(), top1)]);
    r
}

fn write(dir: &Path, rel: &str, r: &RunRecord) {
    r.write(&dir.join(rel).join("record.json")).unwrap();
}

/// Two pretraining runs (say λ = 0 and λ = 2) whose encoders are both `encoder.safetensors`.
fn two_encoders(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let a = dir.join("pretrain/lambda0/encoder.safetensors");
    let b = dir.join("pretrain/lambda2/encoder.safetensors");
    for (p, bytes) in [(&a, b"weights of lambda 0"), (&b, b"weights of lambda 2")] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    (a, b)
}

const LINEAR: [&str; 2] = ["head init", "batch order"];

#[test]
fn two_encoders_named_encoder_safetensors_are_two_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_encoders(dir.path());
    let runs = dir.path().join("runs");
    for seed in 0..3 {
        let s = seed as f64;
        write(
            &runs,
            &format!("a/linear/seed-{seed}"),
            &probe_record(Some(&a), "linear", &[], &LINEAR, seed, 20.0 + s),
        );
        write(
            &runs,
            &format!("b/linear/seed-{seed}"),
            &probe_record(Some(&b), "linear", &[], &LINEAR, seed, 30.0 + s),
        );
    }
    let lb = Leaderboard::from_dir(&runs, &LeaderboardOptions::default()).unwrap();
    assert_eq!(lb.rows.len(), 2, "{}", lb.to_markdown());
    for (row, mean) in lb.rows.iter().zip([31.0, 21.0]) {
        assert_eq!(row.key.encoder, "encoder");
        assert_eq!((row.n, row.seeds()), (3, vec![0, 1, 2]));
        assert!(close(row.mean, mean) && close(row.std.unwrap(), 1.0));
        assert!(row.duplicate_seeds.is_empty());
        assert!(row.varies_text().contains("one encoder file"));
    }
    let sha_b = sha256_file(&b).unwrap();
    assert_eq!(lb.rows[0].key.encoder_sha256(), Some(sha_b.as_str()));
    // The two rows say which file is which.
    let md = lb.to_markdown();
    assert!(
        md.contains(&format!("| R1 | encoder (`{}`) |", &sha_b[..8])),
        "{md}"
    );
    let rows = csv::parse(&lb.to_csv()).unwrap();
    let sha_col = Leaderboard::CSV_COLUMNS
        .iter()
        .position(|c| *c == "encoder_sha256")
        .unwrap();
    assert_eq!(rows[1][sha_col], sha_b);
}

#[test]
fn every_protocol_setting_splits_rows_and_the_differing_ones_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = two_encoders(dir.path());
    let runs = dir.path().join("runs");
    let ft = ["head init", "batch order", "augmentation", "drop path"];
    for (name, dp) in [("dp1", 0.1), ("dp2", 0.2)] {
        for seed in 0..2 {
            let settings = [
                ("drop_path", serde_json::json!(dp)),
                ("layer_decay", serde_json::json!(0.65)),
            ];
            write(
                &runs,
                &format!("{name}/seed-{seed}"),
                &probe_record(
                    Some(&a),
                    "finetune",
                    &settings,
                    &ft,
                    seed,
                    10.0 * dp + seed as f64,
                ),
            );
        }
    }
    let lb = Leaderboard::from_dir(&runs, &LeaderboardOptions::default()).unwrap();
    assert_eq!(lb.rows.len(), 2);
    assert!(lb.rows.iter().all(|r| r.n == 2));
    let md = lb.to_markdown();
    // Only the setting that differs goes in the table; all of them under provenance.
    assert!(md.contains("| drop_path=0.2 |"), "{md}");
    assert!(md.contains("| drop_path=0.1 |"), "{md}");
    assert!(!md.contains("| drop_path=0.1, layer_decay"), "{md}");
    assert!(
        md.contains("settings drop_path=0.1, layer_decay=0.65"),
        "{md}"
    );
    let text = lb.to_csv();
    assert!(
        text.contains(r#""{""drop_path"":0.2,""layer_decay"":0.65}""#),
        "{text}"
    );
}

#[test]
fn a_random_init_is_one_row_over_its_seeds_and_says_the_seed_draws_the_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    for seed in 0..3 {
        // kNN: the seed draws only the encoder, which differs in every run.
        write(
            &runs,
            &format!("random/knn/seed-{seed}"),
            &probe_record(
                None,
                "knn",
                &[],
                &["encoder init"],
                seed,
                12.0 + seed as f64,
            ),
        );
    }
    let lb = Leaderboard::from_dir(&runs, &LeaderboardOptions::default()).unwrap();
    assert_eq!(lb.rows.len(), 1);
    let r = &lb.rows[0];
    assert_eq!((r.n, r.deterministic), (3, false));
    assert!(close(r.std.unwrap(), 1.0));
    assert_eq!(r.key.encoder_id, "random init");
    assert_eq!(r.varies_text(), "seed → encoder init");
    assert!(lb.to_markdown().contains("| seed → encoder init |"));
}

#[test]
fn a_deterministic_protocol_is_one_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_encoders(dir.path());
    let runs = dir.path().join("runs");
    for seed in 0..3 {
        write(
            &runs,
            &format!("a/knn/seed-{seed}"),
            &probe_record(Some(&a), "knn", &[], &[], seed, 15.25),
        );
        // The same protocol on another file, with runs that disagree: not collapsed, and said.
        write(
            &runs,
            &format!("b/knn/seed-{seed}"),
            &probe_record(Some(&b), "knn", &[], &[], seed, 14.0 + seed as f64),
        );
    }
    let lb = Leaderboard::from_dir(&runs, &LeaderboardOptions::default()).unwrap();
    assert_eq!(lb.rows.len(), 2);
    let det = lb.rows.iter().find(|r| r.deterministic).unwrap();
    assert_eq!((det.n, det.std, det.runs.len()), (1, None, 3));
    assert!(close(det.mean, 15.25));
    let other = lb.rows.iter().find(|r| !r.deterministic).unwrap();
    assert_eq!(other.n, 3);
    assert!(other.varies_text().contains("yet the runs differ"));
    let md = lb.to_markdown();
    assert!(md.contains("| 15.25 (n=1) | 0, 1, 2 | nothing: deterministic given the encoder (3 identical runs) |"), "{md}");
    assert!(!md.contains("± 0.00"), "{md}");
}

#[test]
fn the_same_seed_twice_in_a_row_is_flagged_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = two_encoders(dir.path());
    let runs = dir.path().join("runs");
    write(
        &runs,
        "first/seed-0",
        &probe_record(Some(&a), "linear", &[], &LINEAR, 0, 20.0),
    );
    write(
        &runs,
        "rerun/seed-0",
        &probe_record(Some(&a), "linear", &[], &LINEAR, 0, 22.0),
    );
    write(
        &runs,
        "first/seed-1",
        &probe_record(Some(&a), "linear", &[], &LINEAR, 1, 21.0),
    );
    let lb = Leaderboard::from_dir(&runs, &LeaderboardOptions::default()).unwrap();
    assert_eq!(lb.rows.len(), 1);
    let r = &lb.rows[0];
    assert_eq!(r.duplicate_seeds, vec![0]);
    assert_eq!(r.seeds(), vec![0, 0, 1]);
    let md = lb.to_markdown();
    assert!(md.contains("(n=3) ⚠ duplicate seed 0 |"), "{md}");
    assert!(md.contains("## Duplicate seeds (check these rows)"), "{md}");
    assert!(
        md.contains("seed 0 in 2 records (`first/seed-0/record.json`, `rerun/seed-0/record.json`)"),
        "{md}"
    );
    let lines = lb.duplicate_lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("R1 (encoder · linear · top1): seed 0 in 2 records"));
    let rows = csv::parse(&lb.to_csv()).unwrap();
    let col = Leaderboard::CSV_COLUMNS
        .iter()
        .position(|c| *c == "duplicate_seeds")
        .unwrap();
    assert_eq!(rows[1][col], "0");
    // Without duplicates there is no such section.
    std::fs::remove_dir_all(runs.join("rerun")).unwrap();
    let lb = Leaderboard::from_dir(&runs, &LeaderboardOptions::default()).unwrap();
    assert!(!lb.to_markdown().contains("## Duplicate seeds"));
    assert!(lb.duplicate_lines().is_empty());
}

#[test]
fn two_datasets_written_in_turn_to_one_folder_are_two_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = two_encoders(dir.path());
    let runs = dir.path().join("runs");
    for (world, fp) in [("old", "content:10:100:aa"), ("new", "content:12:120:bb")] {
        for seed in 0..2 {
            let mut r = probe_record(Some(&a), "linear", &[], &LINEAR, seed, 20.0 + seed as f64);
            r.dataset.as_mut().unwrap().fingerprint = Some(fp.into());
            write(&runs, &format!("{world}/linear/seed-{seed}"), &r);
        }
    }
    let lb = Leaderboard::from_dir(&runs, &LeaderboardOptions::default()).unwrap();
    assert_eq!(lb.rows.len(), 2, "{}", lb.to_markdown());
    assert!(lb.rows.iter().all(|r| r.n == 2));
}
