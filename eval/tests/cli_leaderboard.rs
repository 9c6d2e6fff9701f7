//! `cae-bench leaderboard`, run as a binary on the hand-written records of
//! `reports/tests/fixtures/runs`: Markdown and CSV output, `--metric`, `--out`, incomplete runs,
//! malformed records (an error naming the file, or skipped with `--skip-malformed`), a missing
//! folder, and the same bytes on every run.

use std::path::{Path, PathBuf};

mod common;
use common::{cae_bench, copy_tree};

fn fixture_runs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/tests/fixtures/runs")
}

#[test]
fn markdown_shows_mean_std_over_seeds_and_lists_incomplete_runs() {
    let runs = fixture_runs();
    let run = cae_bench(&["leaderboard", "--runs", runs.to_str().unwrap()]);
    assert!(run.ok, "{}", run.stderr);
    let md = &run.stdout;
    assert!(md.starts_with("# Leaderboard: runs under `"), "{md}");
    assert!(md.contains("**How to read these tables.**"));
    assert!(md.contains("| 0.5200 ± 0.0200 (n=3) | 0, 1, 2 |"), "{md}");
    assert!(md.contains("| 0.8500 ± 0.0500 (n=3) | 0, 1, 2 |"), "{md}");
    assert!(md.contains("| 0.4500 (n=1) | 0 |"), "{md}");
    assert!(md.contains("incomplete runs: 2"), "{md}");
    assert!(
        md.contains("cae-600/linear/seed3/record.json`: running"),
        "{md}"
    );
    assert!(!md.contains("0.99"));
    // Same bytes every time.
    let again = cae_bench(&["leaderboard", "--runs", runs.to_str().unwrap()]);
    assert_eq!(run.stdout, again.stdout);
}

#[test]
fn csv_to_a_file_with_one_metric() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("board.csv");
    let runs = fixture_runs();
    let run = cae_bench(&[
        "leaderboard",
        "--runs",
        runs.to_str().unwrap(),
        "--format",
        "csv",
        "--metric",
        "top1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    // Incomplete runs are named on stderr, not written as rows.
    assert!(
        run.stderr.contains("incomplete run, not a result"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("seed4/record.json: failed"),
        "{}",
        run.stderr
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let rows = cae_reports::csv::parse(&text).unwrap();
    assert_eq!(
        rows[0][..8],
        [
            "id",
            "protocol",
            "dataset",
            "label_fraction",
            "metric",
            "n",
            "mean",
            "std"
        ]
    );
    assert_eq!(rows.len(), 1 + 7);
    assert!(rows[1..].iter().all(|r| r[4] == "top1"));
    let linear = rows.iter().find(|r| r[0] == "R4").unwrap();
    assert_eq!((linear[1].as_str(), linear[5].as_str()), ("linear", "3"));
    assert!((linear[6].parse::<f64>().unwrap() - 0.52).abs() < 1e-12);
    assert!((linear[7].parse::<f64>().unwrap() - 0.02).abs() < 1e-12);
    assert!(!text.contains("seed3"));
}

#[test]
fn a_malformed_record_is_an_error_naming_it_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture_runs(), dir.path());
    let bad = dir.path().join("broken/record.json");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, "{\"schema_version\": 1,").unwrap();
    let runs = dir.path().to_str().unwrap();

    let run = cae_bench(&["leaderboard", "--runs", runs]);
    assert!(!run.ok);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains(&bad.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("malformed run record"),
        "{}",
        run.stderr
    );

    let run = cae_bench(&["leaderboard", "--runs", runs, "--skip-malformed"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("skipped malformed record broken/record.json"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("`broken/record.json`"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("0.5200 ± 0.0200 (n=3)"));
}

#[test]
fn a_missing_or_empty_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-runs");
    let run = cae_bench(&["leaderboard", "--runs", missing.to_str().unwrap()]);
    assert!(!run.ok);
    assert!(run.stderr.contains("no-such-runs"), "{}", run.stderr);
    let run = cae_bench(&["leaderboard", "--runs", dir.path().to_str().unwrap()]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("no record.json under"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn the_same_seed_twice_is_flagged_in_the_output_and_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture_runs(), dir.path());
    // A re-run of seed 0 of the same configuration, in another folder.
    let rerun = dir.path().join("cae-600/linear/rerun-seed0");
    copy_tree(&dir.path().join("cae-600/linear/seed0"), &rerun);
    let runs = dir.path().to_str().unwrap();
    let run = cae_bench(&["leaderboard", "--runs", runs]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("(n=4) ⚠ duplicate seed 0 |"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("## Duplicate seeds"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("duplicate seed: R4 (cae-600 · linear · top1): seed 0 in 2 records"),
        "{}",
        run.stderr
    );
    let run = cae_bench(&["leaderboard", "--runs", runs, "--format", "csv"]);
    assert!(run.ok, "{}", run.stderr);
    let rows = cae_reports::csv::parse(&run.stdout).unwrap();
    let col = rows[0].iter().position(|c| c == "duplicate_seeds").unwrap();
    assert!(rows.iter().any(|r| r[col] == "0"), "{}", run.stdout);
}
