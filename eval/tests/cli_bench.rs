//! `cae-bench bench`: the pretraining step and the dense heads' ops report times as JSON.

mod common;

use common::{assert_refused, cae_bench};

#[test]
fn bench_ops_reports_each_selected_row_and_refuses_zero_repetitions() {
    let run = cae_bench(&[
        "--threads",
        "1",
        "bench",
        "ops",
        "--only",
        "max-pool",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let ops = v["ops"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{v}");
    assert!(ops[0]["op"].as_str().unwrap().starts_with("max-pool"));
    assert!(ops[0]["ms"].as_f64().unwrap() > 0.0);
    assert_refused(
        &cae_bench(&["bench", "ops", "--reps", "0"]),
        &["--reps must be at least 1"],
    );
}

#[test]
fn bench_pretrain_times_a_step() {
    let run = cae_bench(&[
        "--threads",
        "2",
        "bench",
        "pretrain",
        "--preset",
        "test",
        "--batch",
        "4",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert!(v["img_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["last_loss"].as_f64().unwrap().is_finite(), "{v}");
}
