//! `cae-bench coco-eval`, run as a binary: the oracle numbers, the output formats, and bad input
//! (a clear error naming the file and entry, a non-zero exit and nothing on stdout).

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{Run, assert_refused, cae_bench};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/coco")
}

fn coco_eval(gt: &Path, dt: &Path, iou: &str, json: bool) -> Run {
    let mut args = vec![
        "coco-eval",
        "--gt",
        gt.to_str().unwrap(),
        "--dt",
        dt.to_str().unwrap(),
        "--iou-type",
        iou,
    ];
    if json {
        args.push("--json");
    }
    cae_bench(&args)
}

#[test]
fn summary_is_pycocotools_printout() {
    let printed = std::fs::read_to_string(fixtures().join("oracle_output.txt")).unwrap();
    for iou in ["bbox", "segm"] {
        let run = coco_eval(
            &fixtures().join("gt.json"),
            &fixtures().join(format!("dt_{iou}.json")),
            iou,
            false,
        );
        assert!(run.ok, "{}", run.stderr);
        let header = format!("===== iouType={iou} =====\n");
        let start = printed.find(&header).unwrap() + header.len();
        let want: Vec<&str> = printed[start..].lines().take(12).collect();
        let got: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(got, want, "{iou}");
    }
}

#[test]
fn json_has_the_twelve_stats_and_per_category_ap() {
    let oracle: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("oracle_stats.json")).unwrap(),
    )
    .unwrap();
    for iou in ["bbox", "segm"] {
        let run = coco_eval(
            &fixtures().join("gt.json"),
            &fixtures().join(format!("dt_{iou}.json")),
            iou,
            true,
        );
        assert!(run.ok, "{}", run.stderr);
        assert_eq!(
            run.stdout.lines().count(),
            1,
            "one JSON object: {}",
            run.stdout
        );
        let got: Value = serde_json::from_str(&run.stdout).unwrap();
        let want = &oracle[iou];
        for name in [
            "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
        ] {
            let (g, w) = (
                got[name].as_f64().unwrap(),
                want["stats"][name].as_f64().unwrap(),
            );
            assert!((g - w).abs() <= 1e-12, "{iou} {name}: {g} vs {w}");
        }
        let cats = got["per_category"].as_array().unwrap();
        assert_eq!(cats.len(), 2);
        for cat in cats {
            let id = cat["id"].as_u64().unwrap().to_string();
            let w = want["per_category_AP"][&id].as_f64().unwrap();
            assert!((cat["AP"].as_f64().unwrap() - w).abs() <= 1e-12);
        }
        assert_eq!(cats[0]["name"], "cat_a");
        assert_eq!(got["iou_type"], iou);
    }
}

#[test]
fn random_case_through_the_binary() {
    let dir = fixtures().join("random_small");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for iou in ["bbox", "segm"] {
        let run = coco_eval(
            &dir.join("gt.json"),
            &dir.join(format!("dt_{iou}.json")),
            iou,
            true,
        );
        assert!(run.ok, "{}", run.stderr);
        let got: Value = serde_json::from_str(&run.stdout).unwrap();
        let (g, w) = (
            got["AP"].as_f64().unwrap(),
            expected[iou]["AP"].as_f64().unwrap(),
        );
        assert!((g - w).abs() <= 1e-12, "{iou}: {g} vs {w}");
    }
}

#[test]
fn per_category_table_follows_the_summary() {
    let run = cae_bench(&[
        "coco-eval",
        "--gt",
        fixtures().join("gt.json").to_str().unwrap(),
        "--dt",
        fixtures().join("dt_bbox.json").to_str().unwrap(),
        "--iou-type",
        "bbox",
        "--per-category",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 12 + 1 + 3);
    assert!(
        lines[14].contains("cat_a") && lines[14].contains("0.485"),
        "{}",
        lines[14]
    );
    assert!(
        lines[15].contains("cat_b") && lines[15].contains("0.767"),
        "{}",
        lines[15]
    );
}

/// Writes `value` as JSON into a fresh temp dir and returns (dir, path).
fn write_json(name: &str, value: &Value) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, serde_json::to_string(value).unwrap()).unwrap();
    (dir, path)
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

#[test]
fn malformed_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, "[{\"image_id\": 1, \"category_id\": 1,").unwrap();
    let run = coco_eval(&fixtures().join("gt.json"), &bad, "bbox", true);
    assert_refused(&run, &["broken.json", "not valid COCO JSON", "line 1"]);

    let bad_gt = dir.path().join("gt_broken.json");
    std::fs::write(&bad_gt, "{\"images\": [}").unwrap();
    let run = coco_eval(&bad_gt, &fixtures().join("dt_bbox.json"), "bbox", false);
    assert_refused(&run, &["gt_broken.json", "not valid COCO JSON"]);

    // Well-formed, but not a list of detections.
    let obj = dir.path().join("object.json");
    std::fs::write(&obj, "{\"annotations\": []}").unwrap();
    let run = coco_eval(&fixtures().join("gt.json"), &obj, "bbox", false);
    assert_refused(&run, &["object.json", "expected a JSON array"]);

    let run = coco_eval(
        &fixtures().join("gt.json"),
        &dir.path().join("nope.json"),
        "bbox",
        false,
    );
    assert_refused(&run, &["cannot read", "nope.json"]);
}

#[test]
fn a_detection_on_an_unknown_image_is_refused() {
    let mut dets = fixture_json("dt_bbox.json");
    dets[4]["image_id"] = Value::from(99);
    let (_dir, path) = write_json("dt_unknown_image.json", &dets);
    for json in [false, true] {
        let run = coco_eval(&fixtures().join("gt.json"), &path, "bbox", json);
        assert_refused(
            &run,
            &[
                "dt_unknown_image.json",
                "detection #4 (image_id 99",
                "not in the ground truth",
            ],
        );
    }
}

#[test]
fn an_unknown_category_and_a_missing_score_are_refused() {
    let mut dets = fixture_json("dt_bbox.json");
    dets[2]["category_id"] = Value::from(2);
    let (_dir, path) = write_json("dt.json", &dets);
    let run = coco_eval(&fixtures().join("gt.json"), &path, "bbox", false);
    assert_refused(
        &run,
        &["detection #2", "category_id 2 is not in the ground truth"],
    );

    let mut dets = fixture_json("dt_bbox.json");
    dets[7].as_object_mut().unwrap().remove("score");
    let (_dir, path) = write_json("dt.json", &dets);
    let run = coco_eval(&fixtures().join("gt.json"), &path, "bbox", false);
    assert_refused(&run, &["detection #7", "no `score`"]);
}

#[test]
fn a_mask_of_the_wrong_size_is_refused() {
    // Detection 5 is on image 2 (240 x 320); give it the 4 x 5 mask from the RLE docs.
    let mut dets = fixture_json("dt_segm.json");
    dets[5]["segmentation"] = serde_json::json!({"size": [4, 5], "counts": "5220003"});
    let (_dir, path) = write_json("dt_segm_bad.json", &dets);
    let run = coco_eval(&fixtures().join("gt.json"), &path, "segm", true);
    assert_refused(
        &run,
        &[
            "dt_segm_bad.json",
            "detection #5 (image_id 2",
            "mask size [h, w] = [4, 5] differs from its image's size [240, 320]",
        ],
    );

    // The same check on the ground truth: the crowd RLE of annotation 6.
    let mut gt = fixture_json("gt.json");
    gt["annotations"][5]["segmentation"]["size"] = serde_json::json!([240, 321]);
    let (_dir, gt_path) = write_json("gt_bad.json", &gt);
    let run = coco_eval(&gt_path, &fixtures().join("dt_segm.json"), "segm", false);
    assert_refused(
        &run,
        &[
            "gt_bad.json",
            "annotations[5] (id 6, image_id 2)",
            "[240, 321]",
        ],
    );
}

#[test]
fn a_bad_iou_type_is_a_usage_error() {
    let run = coco_eval(
        &fixtures().join("gt.json"),
        &fixtures().join("dt_bbox.json"),
        "keypoints",
        false,
    );
    assert_refused(&run, &["keypoints"]);
}
