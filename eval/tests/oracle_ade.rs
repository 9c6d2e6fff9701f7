//! ADE20K parity: every case under `tests/fixtures/ade` (or `$CAE_REFERENCE_DIR/ade`) must give
//! mmsegmentation's `IoUMetric` numbers.
//!
//! A case is a folder with `annotations/validation/*.png`, `predictions/*.png` and
//! `expected.json` (aAcc, mIoU, mAcc in percent, per-class IoU and Acc with null for NaN, and
//! `num_classes`), as `make_oracle.py` writes it. New cases can be dropped in without code
//! changes.

use std::path::{Path, PathBuf};

use cae_bench::metrics::semseg::{FolderEvalConfig, LabelEncoding, evaluate_folders};
use serde_json::Value;

const TOL: f64 = 1e-9;

fn ade_root() -> PathBuf {
    match std::env::var_os("CAE_REFERENCE_DIR") {
        Some(dir) => PathBuf::from(dir).join("ade"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ade"),
    }
}

fn cases(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        if dir.join("expected.json").is_file() && dir.join("predictions").is_dir() {
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

fn close(case: &Path, what: &str, got: f64, want: &Value) {
    match want.as_f64() {
        Some(w) => assert!(
            (got - w).abs() <= TOL,
            "{} {what}: ours {got:?}, mmseg {w:?}",
            case.display()
        ),
        None => {
            assert!(want.is_null(), "{} {what}: {want}", case.display());
            assert!(
                got.is_nan(),
                "{} {what}: ours {got}, mmseg NaN",
                case.display()
            );
        }
    }
}

#[test]
fn ade_cases_match_mmseg() {
    let root = ade_root();
    let cases = cases(&root);
    assert!(!cases.is_empty(), "no ADE cases under {}", root.display());
    for case in &cases {
        let want: Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap())
                .unwrap();
        let num_classes = want["num_classes"].as_u64().unwrap() as usize;
        assert_eq!(want["reduce_zero_label"], Value::Bool(true));
        let config = FolderEvalConfig {
            num_classes,
            encoding: LabelEncoding::ReduceZeroLabel,
            ignore_index: want["ignore_index"].as_u64().unwrap() as u8,
        };
        let out = evaluate_folders(
            &case.join("annotations/validation"),
            &case.join("predictions"),
            &config,
        )
        .unwrap();
        if let Some(n) = want["num_images"].as_u64() {
            assert_eq!(out.num_images as u64, n);
        }
        let m = &out.metrics;
        close(case, "aAcc", m.a_acc * 100.0, &want["aAcc"]);
        close(case, "mIoU", m.m_iou * 100.0, &want["mIoU"]);
        close(case, "mAcc", m.m_acc * 100.0, &want["mAcc"]);
        let (iou, acc) = (
            want["IoU"].as_array().unwrap(),
            want["Acc"].as_array().unwrap(),
        );
        assert_eq!((iou.len(), acc.len()), (num_classes, num_classes));
        for k in 0..num_classes {
            close(case, &format!("IoU[{k}]"), m.iou[k] * 100.0, &iou[k]);
            close(case, &format!("Acc[{k}]"), m.acc[k] * 100.0, &acc[k]);
        }
    }
}
