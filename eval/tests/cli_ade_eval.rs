//! `cae-bench ade-eval`, run as a binary: the oracle numbers, the output formats, and bad input
//! (a clear error naming the file, a non-zero exit and nothing on stdout).

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{Run, assert_refused, cae_bench};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ade")
}

fn ade_eval(gt: &Path, pred: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "ade-eval",
        "--gt",
        gt.to_str().unwrap(),
        "--pred",
        pred.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    cae_bench(&args)
}

/// A writable copy of the fixture case: (tempdir, gt dir, pred dir).
fn copy_case() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let gt = dir.path().join("gt");
    let pred = dir.path().join("pred");
    for (from, to) in [
        (fixtures().join("annotations/validation"), &gt),
        (fixtures().join("predictions"), &pred),
    ] {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
    (dir, gt, pred)
}

fn write_png(path: &Path, width: u32, height: u32, data: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(data).unwrap();
}

fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height, buf)
}

#[test]
fn json_matches_mmseg() {
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let run = ade_eval(
        &fixtures().join("annotations/validation"),
        &fixtures().join("predictions"),
        &["--json"],
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "one JSON object");
    let got: Value = serde_json::from_str(&run.stdout).unwrap();
    for key in ["aAcc", "mIoU", "mAcc"] {
        let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        assert!((g - w).abs() <= 1e-9, "{key}: {g} vs {w}");
    }
    for key in ["IoU", "Acc"] {
        let (g, w) = (got[key].as_array().unwrap(), want[key].as_array().unwrap());
        assert_eq!(g.len(), 150);
        for (k, (g, w)) in g.iter().zip(w).enumerate() {
            match (g.as_f64(), w.as_f64()) {
                (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-9, "{key}[{k}]"),
                _ => assert!(g.is_null() && w.is_null(), "{key}[{k}]: {g} vs {w}"),
            }
        }
    }
    assert_eq!(got["classes"][0], "wall");
    assert_eq!(got["num_images"], 6);
}

#[test]
fn table_names_the_ade_classes() {
    let run = ade_eval(
        &fixtures().join("annotations/validation"),
        &fixtures().join("predictions"),
        &[],
    );
    assert!(run.ok, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 150 + 2);
    assert!(lines[1].starts_with("wall "), "{}", lines[1]);
    assert!(lines[150].starts_with("flag "), "{}", lines[150]);
    let last = lines.last().unwrap();
    assert!(
        last.contains("aAcc: 75.68")
            && last.contains("mIoU: 13.84")
            && last.contains("mAcc: 76.84"),
        "{last}"
    );
    // A class never labelled nor predicted is nan in both columns.
    assert!(run.stdout.contains("nan"));
}

#[test]
fn a_value_above_the_class_count_is_refused() {
    let (_dir, gt, pred) = copy_case();
    let path = pred.join("ADE_val_00000003.png");
    let (w, h, mut data) = read_png(&path);
    data[w as usize + 2] = 151; // row 1, column 2
    write_png(&path, w, h, &data);
    let run = ade_eval(&gt, &pred, &["--json"]);
    assert_refused(
        &run,
        &[
            "ADE_val_00000003.png",
            "prediction value 151 is out of range",
            "x=2, y=1",
        ],
    );
    // 255 is not out of range: it is the ignore index.
    data[w as usize + 2] = 255;
    write_png(&path, w, h, &data);
    assert!(ade_eval(&gt, &pred, &["--json"]).ok);

    // In the ground truth, with a smaller class count.
    let run = ade_eval(&gt, &pred, &["--num-classes", "20"]);
    assert_refused(
        &run,
        &["gt/ADE_val_0000000", "label value", "classes 1..=20"],
    );
}

#[test]
fn missing_and_extra_prediction_files_are_refused() {
    let (_dir, gt, pred) = copy_case();
    std::fs::remove_file(pred.join("ADE_val_00000004.png")).unwrap();
    let run = ade_eval(&gt, &pred, &[]);
    assert_refused(&run, &["lacks 1 prediction(s)", "ADE_val_00000004.png"]);

    std::fs::copy(
        gt.join("ADE_val_00000004.png"),
        pred.join("ADE_val_00000004.png"),
    )
    .unwrap();
    std::fs::copy(
        gt.join("ADE_val_00000004.png"),
        pred.join("ADE_val_00000099.png"),
    )
    .unwrap();
    let run = ade_eval(&gt, &pred, &["--json"]);
    assert_refused(
        &run,
        &["no ground truth of the same name", "ADE_val_00000099.png"],
    );
}

#[test]
fn mismatched_sizes_are_refused() {
    let (_dir, gt, pred) = copy_case();
    let path = pred.join("ADE_val_00000001.png");
    let (w, h, data) = read_png(&path);
    write_png(&path, w, h - 1, &data[..(w * (h - 1)) as usize]);
    let run = ade_eval(&gt, &pred, &["--json"]);
    assert_refused(
        &run,
        &[
            "ADE_val_00000001.png",
            &format!("the prediction is {w}x{}", h - 1),
            &format!("is {w}x{h}"),
        ],
    );
}

#[test]
fn unreadable_and_non_png_files_are_refused() {
    let (_dir, gt, pred) = copy_case();
    std::fs::write(pred.join("ADE_val_00000002.png"), b"not a png").unwrap();
    let run = ade_eval(&gt, &pred, &[]);
    assert_refused(&run, &["ADE_val_00000002.png", "cannot decode PNG"]);

    let run = ade_eval(&gt.join("missing"), &pred, &[]);
    assert_refused(&run, &["cannot read", "missing"]);
}
