//! COCO parity: every case under `tests/fixtures/coco` (or `$CAE_REFERENCE_DIR/coco`) must give
//! pycocotools' numbers.
//!
//! A case is a folder with `gt.json` and `dt_bbox.json` / `dt_segm.json`, plus either
//! `oracle_stats.json` (stats, per-category AP, recall per IoU threshold, a precision curve —
//! from `make_oracle.py`) or `expected.json` (the 12 stats per IoU type — from
//! `make_random_case.py`); `oracle_output.txt`, when present, is pycocotools' printed summary.
//! New cases can be dropped in without code changes.

use std::path::{Path, PathBuf};

use cae_bench::metrics::coco::{self, CocoGt, CocoStats, Detections, IouType};
use serde_json::Value;

/// Stats to this absolute tolerance (the bar; in practice they are bit-identical).
const STATS_TOL: f64 = 1e-12;
/// `oracle_stats.json` stores its arrays rounded to 10 decimals.
const ROUNDED_TOL: f64 = 1e-10 / 2.0 + 1e-15;

fn coco_root() -> PathBuf {
    match std::env::var_os("CAE_REFERENCE_DIR") {
        Some(dir) => PathBuf::from(dir).join("coco"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/coco"),
    }
}

/// Every folder at or below `root` that holds a `gt.json`.
fn cases(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        if dir.join("gt.json").is_file() {
            found.push(dir.clone());
        }
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn iou_types() -> [(IouType, &'static str); 2] {
    [
        (IouType::Bbox, "dt_bbox.json"),
        (IouType::Segm, "dt_segm.json"),
    ]
}

fn check_stats(case: &Path, iou: IouType, got: &CocoStats, want: &Value) {
    for name in CocoStats::NAMES {
        let w = want[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: no {iou} {name}", case.display()));
        let g = got.get(name).unwrap();
        assert!(
            (g - w).abs() <= STATS_TOL,
            "{} {iou} {name}: ours {g:?}, pycocotools {w:?}",
            case.display()
        );
    }
}

/// The printed summaries in `oracle_output.txt`, per IoU type.
fn printed_summaries(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("===== iouType=") {
            out.push((rest.trim_end_matches(" =====").to_owned(), Vec::new()));
        } else if line.starts_with(" Average ")
            && let Some((_, lines)) = out.last_mut()
        {
            lines.push(line.to_owned());
        }
    }
    out
}

#[test]
fn coco_cases_match_pycocotools() {
    let root = coco_root();
    let cases = cases(&root);
    assert!(
        !cases.is_empty(),
        "no COCO cases (folders with gt.json) under {}",
        root.display()
    );
    let mut evaluated = 0;
    let mut full_oracles = 0;
    for case in &cases {
        let gt = CocoGt::from_file(&case.join("gt.json")).unwrap();
        let oracle = case
            .join("oracle_stats.json")
            .is_file()
            .then(|| read_json(&case.join("oracle_stats.json")));
        let expected = case
            .join("expected.json")
            .is_file()
            .then(|| read_json(&case.join("expected.json")));
        assert!(
            oracle.is_some() || expected.is_some(),
            "{}: neither oracle_stats.json nor expected.json",
            case.display()
        );
        let printed = std::fs::read_to_string(case.join("oracle_output.txt"))
            .map(|t| printed_summaries(&t))
            .unwrap_or_default();
        for (iou, dt_file) in iou_types() {
            let dt_path = case.join(dt_file);
            if !dt_path.is_file() {
                continue;
            }
            let result =
                coco::evaluate(&gt, Detections::from_file(&dt_path).unwrap(), iou).unwrap();
            evaluated += 1;
            if let Some(want) = expected.as_ref().map(|e| &e[iou.as_str()]) {
                check_stats(case, iou, &result.stats, want);
            }
            if let Some(oracle) = &oracle {
                let o = &oracle[iou.as_str()];
                check_stats(case, iou, &result.stats, &o["stats"]);
                check_full_oracle(case, iou, &result, o);
                full_oracles += 1;
            }
            if let Some((_, lines)) = printed.iter().find(|(t, _)| t == iou.as_str()) {
                assert_eq!(
                    &coco::summary_lines(&result),
                    lines,
                    "{} {iou}: printed summary",
                    case.display()
                );
            }
        }
    }
    assert!(evaluated >= 2, "only {evaluated} COCO evaluations ran");
    if std::env::var_os("CAE_REFERENCE_DIR").is_none() {
        // The shipped fixtures: the hand-built oracle (bbox + segm) and random_small.
        assert!(cases.len() >= 2 && full_oracles == 2 && evaluated >= 4);
    }
}

/// Per-category AP, recall per (IoU threshold, category), and the IoU-0.5 precision curve of
/// the first category — all at area "all", 100 detections.
fn check_full_oracle(case: &Path, iou: IouType, result: &coco::CocoEval, o: &Value) {
    let curves = &result.curves;
    let all = curves.area_index("all").unwrap();
    let m100 = curves.max_dets_index(100).unwrap();

    let per_cat = o["per_category_AP"].as_object().unwrap();
    assert_eq!(per_cat.len(), result.per_category.len());
    for cat in &result.per_category {
        let want = per_cat[&cat.id.to_string()].as_f64().unwrap();
        let got = cat.ap.unwrap_or(-1.0);
        assert!(
            (got - want).abs() <= STATS_TOL,
            "{} {iou} category {}: AP {got:?} vs {want:?}",
            case.display(),
            cat.id
        );
    }

    let recall = o["recall_T_K_all_100"].as_array().unwrap();
    assert_eq!(recall.len(), curves.iou_thresholds.len());
    for (t, row) in recall.iter().enumerate() {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), curves.category_ids.len());
        for (k, want) in row.iter().enumerate() {
            let got = curves.recall(t, k, all, m100);
            let want = want.as_f64().unwrap();
            assert!(
                (got - want).abs() <= ROUNDED_TOL,
                "{} {iou} recall[t={t}, k={k}]: {got} vs {want}",
                case.display()
            );
        }
    }

    let t50 = curves.iou_index(0.5).unwrap();
    let curve = curves.precision_curve(t50, 0, all, m100);
    let want = o["precision_iou50_cat0_all_100"].as_array().unwrap();
    assert_eq!(want.len(), curve.len());
    for (r, (g, w)) in curve.iter().zip(want).enumerate() {
        let w = w.as_f64().unwrap();
        assert!(
            (g - w).abs() <= ROUNDED_TOL,
            "{} {iou} precision[t=.5, r={r}, k=0]: {g} vs {w}",
            case.display()
        );
    }
}
