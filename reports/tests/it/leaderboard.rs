//! The leaderboard: grouping, mean ± std checked by hand, incomplete runs, malformed files,
//! metric filter, formats, order.

use std::path::Path;

use cae_reports::csv;
use cae_reports::leaderboard::{
    Leaderboard, LeaderboardOptions, LeaderboardRow, Malformed, find_records, load_runs,
};

use crate::common::{close, fixture_copy, fixture_runs};

fn board() -> Leaderboard {
    Leaderboard::from_dir(&fixture_runs(), &LeaderboardOptions::default()).unwrap()
}

fn row<'a>(
    lb: &'a Leaderboard,
    protocol: &str,
    encoder: &str,
    pooling: &str,
    metric: &str,
) -> &'a LeaderboardRow {
    let found: Vec<_> = lb
        .rows
        .iter()
        .filter(|r| {
            r.key.protocol == protocol
                && r.key.encoder == encoder
                && r.key.pooling.as_deref() == Some(pooling)
                && r.metric == metric
        })
        .collect();
    assert_eq!(found.len(), 1, "{protocol} {encoder} {pooling} {metric}");
    found[0]
}

#[test]
fn finds_every_record_recursively_in_path_order() {
    let found = find_records(&fixture_runs()).unwrap();
    assert_eq!(found.len(), 13);
    let mut sorted = found.clone();
    sorted.sort();
    assert_eq!(found, sorted);
    let set = load_runs(&fixture_runs(), Malformed::Error).unwrap();
    assert_eq!(set.complete.len(), 11);
    assert_eq!(set.incomplete.len(), 2);
    assert!(set.skipped.is_empty());
}

#[test]
fn mean_and_sample_std_over_seeds_match_hand_values() {
    let lb = board();
    assert_eq!(lb.rows.len(), 11);
    assert_eq!(lb.complete_runs, 11);
    let sqrt8 = 0.0008f64.sqrt();
    // (protocol, encoder, pooling, metric, n, mean, std, seeds)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        usize,
        f64,
        Option<f64>,
        &'a [u64],
    );
    let cases: [Case; 11] = [
        (
            "linear",
            "cae-600",
            "cls",
            "top1",
            3,
            0.52,
            Some(0.02),
            &[0, 1, 2],
        ),
        (
            "linear",
            "cae-600",
            "cls",
            "top5",
            3,
            0.85,
            Some(0.05),
            &[0, 1, 2],
        ),
        ("linear", "cae-600", "mean", "top1", 1, 0.48, None, &[0]),
        ("linear", "cae-600", "mean", "top5", 1, 0.78, None, &[0]),
        ("linear", "cae-300", "cls", "top1", 1, 0.45, None, &[0]),
        ("linear", "cae-300", "cls", "top5", 1, 0.75, None, &[0]),
        (
            "linear",
            "random-init",
            "cls",
            "top1",
            2,
            0.32,
            Some(sqrt8),
            &[0, 1],
        ),
        (
            "linear",
            "random-init",
            "cls",
            "top5",
            2,
            0.62,
            Some(sqrt8),
            &[0, 1],
        ),
        // kNN on an encoder file draws nothing from the seed: two identical runs, one
        // measurement.
        ("knn", "cae-600", "cls", "top1", 1, 0.42, None, &[0, 1]),
        ("finetune", "cae-600", "cls", "top1", 1, 0.60, None, &[0]),
        (
            "finetune",
            "random-init",
            "cls",
            "top1",
            1,
            0.35,
            None,
            &[0],
        ),
    ];
    for (protocol, encoder, pooling, metric, n, mean, std, seeds) in cases {
        let r = row(&lb, protocol, encoder, pooling, metric);
        let what = format!("{protocol} {encoder} {pooling} {metric}");
        assert_eq!(r.n, n, "{what}");
        assert!(close(r.mean, mean), "{what}: mean {}", r.mean);
        match (r.std, std) {
            (Some(a), Some(b)) => assert!(close(a, b), "{what}: std {a} vs {b}"),
            (None, None) => {}
            (a, b) => panic!("{what}: std {a:?} vs {b:?}"),
        }
        assert_eq!(r.seeds(), seeds, "{what}");
    }
    let r = row(&lb, "linear", "cae-600", "cls", "top1");
    assert!(close(r.min, 0.50) && close(r.max, 0.54));
    assert_eq!(r.key.pretrain_steps, Some(600));
    assert_eq!(r.key.epochs, Some(10));
    assert_eq!(r.key.effective_batch, Some(64));
    assert_eq!(r.key.lr, Some(0.1));
    assert_eq!(r.key.cached_features, Some(true));
}

#[test]
fn incomplete_and_failed_runs_are_never_results_and_are_listed() {
    let lb = board();
    // The killed seed 3 reported top1 0.99; it must not move the mean.
    for r in &lb.rows {
        assert!(
            !r.seeds().contains(&3) && !r.seeds().contains(&4),
            "{}",
            r.id
        );
        for run in &r.runs {
            assert!(!run.path.starts_with("cae-600/linear/seed3"));
            assert!(!run.path.starts_with("cae-600/linear/seed4"));
        }
    }
    assert_eq!(lb.incomplete.len(), 2);
    let md = lb.to_markdown();
    assert!(md.contains("incomplete runs: 2"), "{md}");
    assert!(
        md.contains("`cae-600/linear/seed3/record.json`: running (unfinished or killed)"),
        "{md}"
    );
    assert!(
        md.contains("`cae-600/linear/seed4/record.json`: failed"),
        "{md}"
    );
    assert!(md.contains("non-finite loss at epoch 2"), "{md}");
    assert!(!md.contains("0.99"), "{md}");
    let lines = lb.incomplete_lines();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("cae-600/linear/seed3/record.json: running"));
    // CSV holds results only.
    let text = lb.to_csv();
    assert!(!text.contains("seed3") && !text.contains("0.99"));
}

#[test]
fn markdown_is_a_table_with_protocol_details_and_a_reading_note() {
    let md = board().to_markdown();
    assert!(md.starts_with("# Leaderboard: runs under `"));
    assert!(md.contains("**How to read these tables.**"));
    assert!(md.contains("mean ± sample standard deviation"));
    assert!(md.contains(
        "| id | encoder | method | arch | pretrain steps | pooling | layer | epochs | eff. batch | lr | optimizer | cached features | settings | top1: mean ± std (n) | seeds | what varies | provenance |"
    ));
    // Ranked by mean inside the linear top1 section.
    assert!(md.contains("## `linear` · top1 · dataset `synth-world` · all labels"));
    assert!(md.contains(
        "| R4 | cae-600 (`abababab`) | cae | vit-tiny | 600 | cls | final | 10 | 64 | 0.1 | sgd | yes | – | 0.5200 ± 0.0200 (n=3) | 0, 1, 2 | seed → probe; one encoder file (pretraining seed fixed) | this run |"
    ), "{md}");
    assert!(md.contains(
        "| R5 | cae-600 (`abababab`) | cae | vit-tiny | 600 | mean | final | 10 | 64 | 0.1 | sgd | yes | – | 0.4800 (n=1) | 0 | seed → probe; one encoder file (pretraining seed fixed) | this run |"
    ), "{md}");
    assert!(md.contains(
        "| R7 | random-init | random | vit-tiny | – | cls | final | 10 | 64 | 0.1 | sgd | yes | – | 0.3200 ± 0.0283 (n=2) | 0, 1 | seed → encoder init, probe | this run |"
    ), "{md}");
    assert!(md.contains("## `finetune` · top1 · dataset `synth-world` · 10% of the labels"));
    assert!(md.contains("## `knn` · top1"));
    assert!(md.contains("| R3 | cae-600 (`abababab`) | cae | vit-tiny | 600 | cls | final | – | – | – | sgd | yes | – | 0.4200 (n=1) | 0, 1 | nothing: deterministic given the encoder (2 identical runs) | this run |"), "{md}");
    // A single seed never shows ±.
    for line in md.lines().filter(|l| l.contains("(n=1)")) {
        assert!(!line.contains('±'), "{line}");
    }
    // Provenance: seeds, records, machine, versions.
    assert!(md.contains("## Provenance of each row"));
    assert!(md.contains("- **R4** (cae-600 · top1): seeds 0, 1, 2; records `cae-600/linear/seed0/record.json`, `cae-600/linear/seed1/record.json`, `cae-600/linear/seed2/record.json`; encoder sha256 `abababababab…`; dataset `/data/synth-world`; varies: seed → probe; one encoder file (pretraining seed fixed); machine Test CPU @ 2.0GHz, 2 cores, 2 threads, device cpu, linux x86_64; versions burn 0.22.1, cae-bench 0.1.0, cae-reports 0.1.0"), "{md}");
    // Sections in order: finetune, knn, linear top1, linear top5; ids in display order.
    let pos = |s: &str| md.find(s).unwrap_or_else(|| panic!("{s}"));
    assert!(pos("## `finetune`") < pos("## `knn`"));
    assert!(pos("## `knn`") < pos("## `linear` · top1"));
    assert!(pos("## `linear` · top1") < pos("## `linear` · top5"));
    assert!(pos("| R1 |") < pos("| R2 |") && pos("| R10 |") < pos("| R11 |"));
}

#[test]
fn csv_is_machine_readable_and_complete() {
    let lb = board();
    let rows = csv::parse(&lb.to_csv()).unwrap();
    assert_eq!(rows[0], Leaderboard::CSV_COLUMNS.map(String::from).to_vec());
    assert_eq!(rows.len(), 1 + 11);
    let col = |name: &str| {
        Leaderboard::CSV_COLUMNS
            .iter()
            .position(|c| *c == name)
            .unwrap()
    };
    let r4 = &rows[4];
    assert_eq!(r4[col("id")], "R4");
    assert_eq!(r4[col("protocol")], "linear");
    assert_eq!(r4[col("metric")], "top1");
    assert_eq!(r4[col("n")], "3");
    assert!(close(r4[col("mean")].parse().unwrap(), 0.52));
    assert!(close(r4[col("std")].parse().unwrap(), 0.02));
    assert_eq!(r4[col("seeds")], "0;1;2");
    assert_eq!(r4[col("values")], "0.5;0.52;0.54");
    assert_eq!(r4[col("layer")], "");
    assert_eq!(r4[col("cached_features")], "true");
    assert_eq!(r4[col("dataset")], "/data/synth-world");
    assert_eq!(
        r4[col("records")],
        "cae-600/linear/seed0/record.json;cae-600/linear/seed1/record.json;cae-600/linear/seed2/record.json"
    );
    assert_eq!(r4[col("encoder_sha256")], "ab".repeat(32));
    let r5 = &rows[5];
    assert_eq!((r5[col("n")].as_str(), r5[col("std")].as_str()), ("1", ""));
    assert_eq!(r4[col("runs")], "3");
    assert_eq!(r4[col("deterministic")], "false");
    assert_eq!(r4[col("seed_draws")], "probe");
    assert_eq!(r4[col("duplicate_seeds")], "");
    assert_eq!(r4[col("settings")], "{}");
    // kNN on an encoder file: two runs, one measurement.
    let r3 = &rows[3];
    assert_eq!(r3[col("protocol")], "knn");
    assert_eq!(
        (
            r3[col("n")].as_str(),
            r3[col("runs")].as_str(),
            r3[col("std")].as_str(),
            r3[col("deterministic")].as_str(),
            r3[col("seed_draws")].as_str()
        ),
        ("1", "2", "", "true", "")
    );
    let r1 = &rows[1];
    assert_eq!(r1[col("label_fraction")], "0.1");
    assert_eq!(r1[col("protocol")], "finetune");
}

#[test]
fn output_is_deterministic_and_independent_of_the_folder_location() {
    let a = board();
    let copy = fixture_copy();
    let b = Leaderboard::from_dir(copy.path(), &LeaderboardOptions::default()).unwrap();
    assert_eq!(a.to_csv(), b.to_csv());
    let strip = |s: String| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(a.to_markdown()), strip(b.to_markdown()));
    assert_eq!(a.to_markdown(), board().to_markdown());
}

#[test]
fn metric_filter_keeps_the_asked_metrics() {
    let opts = LeaderboardOptions {
        metrics: vec!["top5".into()],
        ..Default::default()
    };
    let lb = Leaderboard::from_dir(&fixture_runs(), &opts).unwrap();
    assert_eq!(lb.rows.len(), 4);
    assert!(lb.rows.iter().all(|r| r.metric == "top5"));
    assert_eq!(lb.without_metrics.len(), 4); // knn ×2, finetune ×2
    let md = lb.to_markdown();
    assert!(
        md.contains("complete runs without the metrics asked for (top5)"),
        "{md}"
    );
}

fn write_broken(dir: &Path) -> std::path::PathBuf {
    let bad = dir.join("broken/seed0/record.json");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, "{\"schema_version\": 1, \"kind\": ").unwrap();
    bad
}

#[test]
fn a_malformed_record_is_an_error_naming_the_file_or_skipped_on_request() {
    let dir = fixture_copy();
    let bad = write_broken(dir.path());
    let err = Leaderboard::from_dir(dir.path(), &LeaderboardOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("malformed run record"), "{err}");

    let opts = LeaderboardOptions {
        malformed: Malformed::Skip,
        ..Default::default()
    };
    let lb = Leaderboard::from_dir(dir.path(), &opts).unwrap();
    assert_eq!(lb.rows.len(), 11);
    assert_eq!(lb.skipped.len(), 1);
    assert_eq!(lb.skipped[0].path, Path::new("broken/seed0/record.json"));
    let md = lb.to_markdown();
    assert!(md.contains("skipped files (malformed"), "{md}");
    assert!(md.contains("`broken/seed0/record.json`"), "{md}");
}

#[test]
fn a_record_from_a_newer_schema_or_with_wrong_fields_is_refused() {
    let dir = fixture_copy();
    let path = dir.path().join("cae-300/linear/seed0/record.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"schema_version\": 1", "\"schema_version\": 99"),
    )
    .unwrap();
    let err = Leaderboard::from_dir(dir.path(), &LeaderboardOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("schema_version 99") && err.contains("cae-300"),
        "{err}"
    );

    std::fs::write(&path, text.replace("\"seed\": 0,", "\"seed\": \"zero\",")).unwrap();
    let err = Leaderboard::from_dir(dir.path(), &LeaderboardOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cae-300/linear/seed0/record.json") && err.contains("seed"),
        "{err}"
    );
}

#[test]
fn empty_and_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let lb = Leaderboard::from_dir(dir.path(), &LeaderboardOptions::default()).unwrap();
    assert!(lb.rows.is_empty());
    assert!(
        lb.to_markdown()
            .contains("No complete run has a headline metric to show.")
    );
    assert_eq!(csv::parse(&lb.to_csv()).unwrap().len(), 1);
    let missing = dir.path().join("nope");
    let err = Leaderboard::from_dir(&missing, &LeaderboardOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn from_records_matches_from_dir_and_keeps_incomplete_runs_out() {
    let paths = cae_reports::leaderboard::find_records(&fixture_runs()).unwrap();
    let records: Vec<cae_reports::RunRecord> = paths
        .iter()
        .map(|p| cae_reports::RunRecord::read(p).unwrap())
        .collect();
    let from_mem = Leaderboard::from_records(&records, &[]).unwrap();
    let from_dir = board();
    assert_eq!(from_mem.complete_runs, 11);
    assert_eq!(from_mem.incomplete.len(), 2);
    assert_eq!(from_mem.rows.len(), from_dir.rows.len());
    for (a, b) in from_mem.rows.iter().zip(&from_dir.rows) {
        assert_eq!(
            (&a.id, &a.key, &a.metric, a.n),
            (&b.id, &b.key, &b.metric, b.n)
        );
        assert!(close(a.mean, b.mean));
        assert_eq!(a.std.is_some(), b.std.is_some());
    }
    // The killed run's tempting 0.99 is never a result.
    assert!(
        from_mem
            .rows
            .iter()
            .all(|r| r.runs.iter().all(|x| !close(x.value, 0.99)))
    );
    let md = from_mem.to_markdown();
    assert!(md.starts_with("# Leaderboard\n"), "{md}");
    assert!(md.contains("Incomplete runs"), "{md}");
    // Only complete runs count: with the complete ones alone the rows are the same.
    let complete: Vec<_> = records.iter().filter(|r| r.is_result()).cloned().collect();
    let only = Leaderboard::from_records(&complete, &["top1".to_string()]).unwrap();
    assert!(only.incomplete.is_empty());
    assert!(only.rows.iter().all(|r| r.metric == "top1"));
}
