//! `cae-bench detect` end to end on a tiny synthetic world: a run writes both COCO results files
//! and a complete record whose numbers `cae-bench coco-eval` gives again from those files; a run
//! stopped after a checkpoint and resumed writes the same checkpoint bytes as one that never
//! stopped; the leaderboard shows a detection table; and bad input (an annotation pointing at a
//! missing image, a degenerate box, a polygon of fewer than 3 points, an empty split) is refused
//! naming the file or handled as COCO does, never with a panic or a complete record.

mod common;

use std::path::{Path, PathBuf};

use cae_bench::protocols::coco::{DetRequest, run_detect};
use cae_bench::protocols::encoder::EncoderSource;
use common::{
    cae_bench, checkpoint_dtypes, copy_tree, per_epoch_losses, record_status, refused, small_world,
};

fn world(dir: &Path) -> PathBuf {
    small_world(dir).join("coco")
}

fn request(data: &Path, out: &Path) -> DetRequest {
    let mut r = DetRequest::new(EncoderSource::Random, data, out);
    r.preset = "test".into();
    r.seed = 1;
    r
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn detect_writes_results_that_coco_eval_scores_alike_and_resumes_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let a = dir.path().join("a");
    let full = run_detect(&request(&data, &a)).unwrap();
    assert!(full.complete);
    assert_eq!(record_status(&a).as_deref(), Some("complete"));
    let record = json(&a.join("record.json"));
    assert_eq!(record["protocol"]["name"], "coco-mask-rcnn");
    assert_eq!(record["per_class"].as_array().unwrap().len(), 8);
    assert_eq!(record["per_class"][0]["name"], "disc");
    let gt = data.join("annotations/instances_val2017.json");
    for (iou, file) in [
        ("bbox", "detections_bbox.json"),
        ("segm", "detections_segm.json"),
    ] {
        let rows = json(&a.join(file));
        assert!(
            !rows.as_array().unwrap().is_empty(),
            "an untrained detector still scores boxes above 0.05"
        );
        let eval = cae_bench(&[
            "coco-eval",
            "--gt",
            gt.to_str().unwrap(),
            "--dt",
            a.join(file).to_str().unwrap(),
            "--iou-type",
            iou,
            "--json",
        ]);
        assert!(eval.ok, "{}", eval.stderr);
        let scored: serde_json::Value = serde_json::from_str(&eval.stdout).unwrap();
        for name in ["AP", "AP50", "AP75", "APs", "AR1", "AR100"] {
            assert_eq!(
                scored[name].as_f64().unwrap(),
                record["metrics"][format!("{iou}_{name}")].as_f64().unwrap(),
                "{iou} {name}"
            );
        }
    }

    // Stopped after iteration 2's checkpoint (a kill), then resumed: the same bytes.
    let b = dir.path().join("b");
    let mut stop = request(&data, &b);
    stop.stop_after = Some(2);
    let part = run_detect(&stop).unwrap();
    assert!(!part.complete && part.bbox.is_none());
    assert_eq!(record_status(&b).as_deref(), Some("running"));
    let mut again = request(&data, &b);
    again.resume = true;
    let resumed = run_detect(&again).unwrap();
    assert_eq!(resumed.resumed_from, 2);
    let ckpt = "checkpoints/ckpt-00000004.safetensors";
    assert!(
        std::fs::read(a.join(ckpt)).unwrap() == std::fs::read(b.join(ckpt)).unwrap(),
        "kill + resume must write the same checkpoint bytes"
    );
    assert_eq!(
        std::fs::read(a.join("detections_segm.json")).unwrap(),
        std::fs::read(b.join("detections_segm.json")).unwrap()
    );
    let err = run_detect(&request(&data, &a)).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");

    // The leaderboard has a detection table.
    let board = cae_bench(&["leaderboard", "--runs", dir.path().to_str().unwrap()]);
    assert!(board.ok, "{}", board.stderr);
    assert!(board.stdout.contains("coco-mask-rcnn"), "{}", board.stdout);
    assert!(board.stdout.contains("bbox_AP50"), "{}", board.stdout);
    assert!(board.stdout.contains("segm_AP"), "{}", board.stdout);
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v = json(path);
    f(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

fn detect_cli(data: &Path, out: &Path) -> common::Run {
    cae_bench(&[
        "detect",
        "--encoder",
        "random",
        "--preset",
        "test",
        "--iters",
        "2",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ])
}

#[test]
fn bad_coco_input_is_refused_naming_the_file_or_handled_as_coco_does() {
    let dir = tempfile::tempdir().unwrap();
    let clean = world(dir.path());
    let case = |name: &str| {
        let d = dir.path().join(name);
        copy_tree(&clean, &d);
        d
    };
    // An annotation pointing at a missing image.
    let d = case("missing");
    let first = json(&d.join("annotations/instances_train2017.json"))["images"][0]["file_name"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(d.join("train2017").join(&first)).unwrap();
    let out = d.join("run");
    refused(&detect_cli(&d, &out), &[&first]);
    assert_ne!(record_status(&out).as_deref(), Some("complete"));

    // A box of negative width: refused, naming the annotation file.
    let d = case("negative-box");
    edit_json(&d.join("annotations/instances_train2017.json"), |v| {
        v["annotations"][0]["bbox"][2] = serde_json::json!(-3.0);
    });
    refused(
        &detect_cli(&d, &d.join("run")),
        &["instances_train2017.json", "bbox"],
    );

    // A polygon of fewer than 3 points.
    let d = case("polygon");
    edit_json(&d.join("annotations/instances_train2017.json"), |v| {
        v["annotations"][0]["segmentation"] = serde_json::json!([[1.0, 1.0, 5.0, 5.0]]);
    });
    refused(
        &detect_cli(&d, &d.join("run")),
        &["instances_train2017.json"],
    );

    // An empty validation split.
    let d = case("empty");
    edit_json(&d.join("annotations/instances_val2017.json"), |v| {
        v["images"] = serde_json::json!([]);
        v["annotations"] = serde_json::json!([]);
    });
    refused(
        &detect_cli(&d, &d.join("run")),
        &["instances_val2017.json", "no images"],
    );

    // A zero-width box is skipped as mmdet / COCO do, and an image without objects is a
    // negative: both train.
    let d = case("degenerate");
    edit_json(&d.join("annotations/instances_train2017.json"), |v| {
        v["annotations"][0]["bbox"][2] = serde_json::json!(0.0);
        let img = v["images"][1]["id"].clone();
        let anns = v["annotations"].as_array_mut().unwrap();
        anns.retain(|a| a["image_id"] != img);
    });
    let out = d.join("run");
    let run = detect_cli(&d, &out);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(record_status(&out).as_deref(), Some("complete"));
}

/// CAE's DETR-style AutoAugment branch trains through the real code path (the crop itself is
/// unit-tested in `cae_datasets::transforms::det`), and the record says it was on.
#[test]
fn the_crop_branch_trains_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let out = dir.path().join("crop");
    let mut req = request(&data, &out);
    req.overrides.iters = Some(2);
    req.overrides
        .set
        .push(("crop_branch".into(), "true".into()));
    let done = run_detect(&req).unwrap();
    assert!(done.complete && done.iters == 2);
    let record = std::fs::read_to_string(out.join("record.json")).unwrap();
    assert!(record.contains("DETR-style branch"), "{record}");
    let plain = dir.path().join("plain");
    let mut req = request(&data, &plain);
    req.overrides.iters = Some(2);
    run_detect(&req).unwrap();
    let record = std::fs::read_to_string(plain.join("record.json")).unwrap();
    assert!(!record.contains("DETR-style branch"));
}

/// `--set precision=bf16` (bf16 autocast, `cae_pretrain::autocast`): the run completes with box
/// and mask stats, its record names the setting while an f32 run's does not (as records
/// written before the setting existed), its losses differ from the f32 run's (bf16 did run),
/// and its checkpoints hold no bf16 tensor: master weights and AdamW's moments stay f32. The
/// losses are compared loosely (within half): a rounding can flip the detector's discrete
/// choices (top-k proposals, NMS, RoI sampling), so the two runs train on other RoIs; the
/// products' own accuracy is tested in `cae-heads`.
#[test]
fn a_bf16_run_is_its_own_setting() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let run = |name: &str, set: &[(&str, &str)]| {
        let out = dir.path().join(name);
        let mut r = request(&data, &out);
        r.overrides.set = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let o = run_detect(&r).unwrap();
        assert!(o.complete && o.bbox.is_some() && o.segm.is_some());
        (json(&out.join("record.json")), out)
    };
    let (a, _) = run("f32", &[]);
    let (b, b_out) = run("bf16", &[("precision", "bf16")]);
    let settings = |r: &serde_json::Value| r["protocol"]["settings"].clone();
    assert!(settings(&a)["iters"].is_number(), "{a}");
    assert!(settings(&a).get("precision").is_none(), "{a}");
    assert_eq!(settings(&b)["precision"], "bf16", "{b}");
    let (la, lb) = (per_epoch_losses(&a), per_epoch_losses(&b));
    assert!(!la.is_empty() && la.len() == lb.len(), "{la:?} {lb:?}");
    assert!(la != lb, "the bf16 run gave the f32 losses: {la:?}");
    for (x, y) in la.iter().zip(&lb) {
        assert!(
            y.is_finite() && (x - y).abs() < 0.5 * x.abs(),
            "{la:?} vs {lb:?}"
        );
    }
    let dtypes = checkpoint_dtypes(&b_out);
    assert!(dtypes.contains(&safetensors::Dtype::F32));
    assert!(!dtypes.contains(&safetensors::Dtype::BF16), "{dtypes:?}");
}
