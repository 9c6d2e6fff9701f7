//! Parity with the reference libraries: Pillow's resize (exact), OpenCV's resize and 8-bit
//! HSV conversions. Fixtures: `tests/fixtures/datasets/resample/`, made by
//! `datasets/scripts/make_resample_fixtures.py`; every case listed in `cases.json` runs.

use std::path::PathBuf;

use cae_datasets::load_rgb;
use cae_datasets::transforms::photometric::{hsv_to_rgb, rgb_to_hsv};
use cae_datasets::transforms::resample::{
    Filter, Rect, resize_bilinear_cv, resize_nearest_cv, resize_pil,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/datasets/resample")
}

fn cases() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir().join("cases.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn pillow_resize_is_bit_exact() {
    let src = load_rgb(dir().join("src.png")).unwrap();
    let mut n = 0;
    for c in cases().iter().filter(|c| c["kind"] == "pil") {
        let filter = match c["filter"].as_str().unwrap() {
            "bilinear" => Filter::Bilinear,
            "bicubic" => Filter::Bicubic,
            "lanczos" => Filter::Lanczos,
            f => panic!("unknown filter {f}"),
        };
        let b = u32s(&c["crop"]);
        let s = u32s(&c["size"]);
        let crop = Rect {
            x: b[0],
            y: b[1],
            w: b[2] - b[0],
            h: b[3] - b[1],
        };
        let ours = resize_pil(&src, crop, s[0], s[1], filter);
        let theirs = load_rgb(dir().join(c["file"].as_str().unwrap())).unwrap();
        assert_eq!(ours, theirs, "case {c}");
        n += 1;
    }
    assert!(n >= 18, "only {n} Pillow cases");
}

#[test]
fn opencv_resize_rules() {
    let src = load_rgb(dir().join("src.png")).unwrap();
    let mut n = 0;
    for c in cases().iter().filter(|c| c["kind"] == "cv") {
        let s = u32s(&c["size"]);
        let theirs = load_rgb(dir().join(c["file"].as_str().unwrap())).unwrap();
        match c["interpolation"].as_str().unwrap() {
            "linear" => {
                let ours = resize_bilinear_cv(&src, s[0], s[1]);
                let worst = ours
                    .iter()
                    .zip(theirs.iter())
                    .map(|(a, b)| (*a as i32 - *b as i32).abs())
                    .max()
                    .unwrap();
                assert!(worst <= 1, "case {c}: off by {worst}");
            }
            "nearest" => {
                // Channel by channel through the single-channel path used for label maps.
                for ch in 0..3 {
                    let plane: Vec<u8> = src.pixels().map(|p| p.0[ch]).collect();
                    let ours = resize_nearest_cv(&plane, src.width(), src.height(), s[0], s[1]);
                    let want: Vec<u8> = theirs.pixels().map(|p| p.0[ch]).collect();
                    assert_eq!(ours, want, "case {c}");
                }
            }
            i => panic!("unknown interpolation {i}"),
        }
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn opencv_hsv_conversions() {
    let text = std::fs::read_to_string(dir().join("hsv.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let px = |key: &str| -> Vec<[u8; 3]> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let q = u32s(p);
                [q[0] as u8, q[1] as u8, q[2] as u8]
            })
            .collect()
    };
    for (rgb, hsv) in px("rgb").iter().zip(px("hsv")) {
        assert_eq!(rgb_to_hsv(*rgb), hsv, "rgb {rgb:?}");
    }
    // HSV -> RGB: OpenCV's float formula truncated; OpenCV 5 (the fixture's) rounds a few
    // pixels differently.
    let mut exact = 0;
    let all = px("hsv_in");
    for (hsv, rgb) in all.iter().zip(px("rgb_back")) {
        let ours = hsv_to_rgb(*hsv);
        for c in 0..3 {
            assert!(
                (ours[c] as i32 - rgb[c] as i32).abs() <= 1,
                "hsv {hsv:?}: {ours:?} vs {rgb:?}"
            );
        }
        exact += (ours == rgb) as usize;
    }
    assert!(
        exact * 100 >= all.len() * 99,
        "only {exact} of {} exact",
        all.len()
    );
}
