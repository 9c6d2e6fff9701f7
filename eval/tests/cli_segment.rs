//! `cae-bench segment` end to end on a tiny synthetic world: a run writes its predictions and a
//! complete record scored from them; a run stopped after a checkpoint and resumed writes the same
//! checkpoint bytes as one that never stopped; the linear protocol and the leaderboard; and bad
//! input (missing annotation, annotation of another size, label values out of range, an empty
//! split, an encoder that does not fit) is refused naming the file, with no complete record.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cae_bench::protocols::ade20k::{SegProtocol, SegRequest, run_segment};
use cae_bench::protocols::encoder::EncoderSource;
use common::{
    cae_bench, checkpoint_dtypes, copy_tree, per_epoch_losses, record_status, refused, small_world,
    small_world_with,
};

/// The small synthetic world's `ade` folder.
fn world(dir: &Path) -> PathBuf {
    small_world(dir).join("ade")
}

fn request(data: &Path, out: &Path, protocol: SegProtocol) -> SegRequest {
    let mut r = SegRequest::new(EncoderSource::Random, data, out);
    r.preset = "test".into();
    r.protocol = protocol;
    r.seed = 1;
    r
}

#[test]
fn segment_scores_its_predictions_and_resumes_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let a = dir.path().join("a");
    let full = run_segment(&request(&data, &a, SegProtocol::Upernet)).unwrap();
    assert!(full.complete);
    let miou = full.m_iou.expect("a complete run has an mIoU");
    assert!((0.0..=100.0).contains(&miou));
    assert_eq!(record_status(&a).as_deref(), Some("complete"));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("record.json")).unwrap()).unwrap();
    assert_eq!(record["protocol"]["name"], "ade20k-upernet");
    assert_eq!(record["metrics"]["mIoU"].as_f64().unwrap(), miou);
    assert_eq!(record["per_class"].as_array().unwrap().len(), 8);
    assert_eq!(
        record["per_class"][0]["name"], "disc",
        "the world's class names"
    );
    assert!(record["protocol"]["details"]["majority_class_mIoU"].is_number());
    // One prediction per validation image, named as its annotation; `ade-eval` agrees.
    let val = data.join("ADEChallengeData2016/annotations/validation");
    let n_val = std::fs::read_dir(&val).unwrap().count();
    assert_eq!(
        std::fs::read_dir(a.join("predictions")).unwrap().count(),
        n_val
    );
    let eval = cae_bench(&[
        "ade-eval",
        "--gt",
        val.to_str().unwrap(),
        "--pred",
        a.join("predictions").to_str().unwrap(),
        "--num-classes",
        "8",
        "--json",
    ]);
    assert!(eval.ok, "{}", eval.stderr);
    let scored: serde_json::Value = serde_json::from_str(&eval.stdout).unwrap();
    assert_eq!(scored["mIoU"].as_f64().unwrap(), miou);

    // Stopped after iteration 2's checkpoint (a kill), then resumed: the same bytes.
    let b = dir.path().join("b");
    let mut stop = request(&data, &b, SegProtocol::Upernet);
    stop.stop_after = Some(2);
    let part = run_segment(&stop).unwrap();
    assert!(!part.complete && part.m_iou.is_none());
    assert_eq!(record_status(&b).as_deref(), Some("running"));
    let mut again = request(&data, &b, SegProtocol::Upernet);
    again.resume = true;
    let resumed = run_segment(&again).unwrap();
    assert_eq!(resumed.resumed_from, 2);
    assert_eq!(resumed.m_iou, full.m_iou);
    let ckpt = "checkpoints/ckpt-00000004.safetensors";
    assert!(
        std::fs::read(a.join(ckpt)).unwrap() == std::fs::read(b.join(ckpt)).unwrap(),
        "kill + resume must write the same checkpoint bytes"
    );
    // A finished folder is not overwritten without --resume.
    let err = run_segment(&request(&data, &a, SegProtocol::Upernet)).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    // Another seed does not resume this one's checkpoint.
    let mut other = request(&data, &b, SegProtocol::Upernet);
    other.resume = true;
    other.seed = 2;
    let err = run_segment(&other).unwrap_err();
    assert!(err.to_string().contains("another request"), "{err}");
}

#[test]
fn linear_protocol_through_the_cli_and_the_leaderboard() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let runs = dir.path().join("runs");
    for seed in ["0", "1"] {
        let out = runs.join(format!("linear-{seed}"));
        let run = cae_bench(&[
            "segment",
            "--encoder",
            "random",
            "--preset",
            "test",
            "--protocol",
            "linear",
            "--data",
            data.to_str().unwrap(),
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert!(run.ok, "{}", run.stderr);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert!(v["mIoU"].as_f64().is_some());
        assert_eq!(record_status(&out).as_deref(), Some("complete"));
    }
    // Multi-scale + flip test through --set.
    let out = runs.join("linear-tta");
    let run = cae_bench(&[
        "segment",
        "--encoder",
        "random",
        "--preset",
        "test",
        "--protocol",
        "linear",
        "--data",
        data.to_str().unwrap(),
        "--seed",
        "0",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "test_ratios=[0.75,1.0,1.5]",
        "--set",
        "test_flip=true",
        "--json",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap()).unwrap();
    assert!(
        record["protocol"]["details"]["test"]
            .as_str()
            .unwrap()
            .contains("softmax averaged over scales [0.75, 1.0, 1.5] and their flips"),
        "{}",
        record["protocol"]["details"]["test"]
    );
    let board = cae_bench(&["leaderboard", "--runs", runs.to_str().unwrap()]);
    assert!(board.ok, "{}", board.stderr);
    assert!(board.stdout.contains("ade20k-linear"), "{}", board.stdout);
    assert!(board.stdout.contains("mIoU"), "{}", board.stdout);
}

#[test]
fn an_encoder_built_for_another_size_is_moved_to_the_crop() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    // The `mini` encoder is built for 32 px; the `test` preset trains on 16-px crops.
    let cfg = cae_pretrain::config::CaeConfig::preset("mini").unwrap();
    let enc = cae_pretrain::encoder_file::random_encoder(&cfg, 0, &burn::tensor::Device::flex());
    let file = dir.path().join("mini32.safetensors");
    cae_pretrain::encoder_file::save_encoder(&enc, &cfg, &file, &HashMap::new()).unwrap();
    let out = dir.path().join("run");
    let mut req = request(&data, &out, SegProtocol::Linear);
    req.encoder = EncoderSource::File(file);
    let o = run_segment(&req).unwrap();
    assert!(o.complete && o.m_iou.is_some());
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap()).unwrap();
    assert_eq!(
        record["protocol"]["details"]["position_table"],
        "built for 32 px, pretrained sin-cos table resampled bicubically (cls slot kept, frozen) for 16 px"
    );
    assert_eq!(record["config"]["model"]["encoder"]["img_size"], 16);
}

/// Runs `segment` on `data` and expects a refusal naming `needles`.
fn refuse(data: &Path, out: &Path, encoder: &str, needles: &[&str]) {
    let run = cae_bench(&[
        "segment",
        "--encoder",
        encoder,
        "--preset",
        "test",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ]);
    refused(&run, needles);
    assert_ne!(record_status(out).as_deref(), Some("complete"));
}

#[test]
fn bad_input_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let clean = world(dir.path());
    let variant = |name: &str| {
        let d = dir.path().join(name);
        copy_tree(&clean, &d);
        d
    };
    let ann = |root: &Path, split: &str, stem: &str| {
        root.join(format!(
            "ADEChallengeData2016/annotations/{split}/{stem}.png"
        ))
    };

    // A missing annotation.
    let d = variant("missing");
    std::fs::remove_file(ann(&d, "training", "ADE_train_00000003")).unwrap();
    refuse(
        &d,
        &dir.path().join("r1"),
        "random",
        &["ADE_train_00000003"],
    );

    // An annotation of another size than its image.
    let d = variant("size");
    let map = cae_datasets::io::LabelMap::filled(20, 32, 1);
    cae_datasets::io::save_label_png(&ann(&d, "validation", "ADE_val_00000002"), &map).unwrap();
    refuse(
        &d,
        &dir.path().join("r2"),
        "random",
        &["ADE_val_00000002.png"],
    );

    // Label values outside 0..=K and not 255.
    let d = variant("values");
    let mut map = cae_datasets::load_label_map(ann(&d, "training", "ADE_train_00000005")).unwrap();
    map.data[7] = 200;
    cae_datasets::io::save_label_png(&ann(&d, "training", "ADE_train_00000005"), &map).unwrap();
    refuse(
        &d,
        &dir.path().join("r3"),
        "random",
        &["ADE_train_00000005.png", "200"],
    );

    // An empty split.
    let d = variant("empty");
    for split in ["images", "annotations"] {
        let folder = d.join(format!("ADEChallengeData2016/{split}/validation"));
        std::fs::remove_dir_all(&folder).unwrap();
        std::fs::create_dir_all(&folder).unwrap();
    }
    refuse(&d, &dir.path().join("r4"), "random", &["validation"]);

    // Encoders that do not fit: a damaged file, and patches that do not tile the crop.
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"\x07\x00\x00\x00\x00\x00\x00\x00{oops}").unwrap();
    refuse(
        &clean,
        &dir.path().join("r5"),
        garbage.to_str().unwrap(),
        &["garbage.safetensors"],
    );
    let mut cfg = cae_pretrain::config::CaeConfig::test();
    cfg.encoder.patch_size = 6;
    cfg.encoder.img_size = 18;
    let enc = cae_pretrain::encoder_file::random_encoder(&cfg, 0, &burn::tensor::Device::flex());
    let odd = dir.path().join("patch6.safetensors");
    cae_pretrain::encoder_file::save_encoder(&enc, &cfg, &odd, &HashMap::new()).unwrap();
    refuse(
        &clean,
        &dir.path().join("r6"),
        odd.to_str().unwrap(),
        &["patch6.safetensors", "6-px patches"],
    );
}

/// A world with stuff classes (`data synth --stuff 4`): `segment` takes its 12 ADE classes from
/// `world.json` (shapes, then stuff) unless `--num-classes` says otherwise, and an explicit 8 is
/// refused on the first annotation holding a stuff value.
#[test]
fn a_world_with_stuff_brings_its_own_classes() {
    let dir = tempfile::tempdir().unwrap();
    let (root, printed) = small_world_with(dir.path(), &["--stuff", "4"]);
    assert!(printed.contains("sky, grass, wall, water"), "{printed}");
    let data = root.join("ade");
    let out = dir.path().join("lin");
    let run = run_segment(&request(&data, &out, SegProtocol::Linear)).unwrap();
    assert!(run.complete);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap()).unwrap();
    let names: Vec<&str> = record["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 12);
    assert_eq!(&names[..2], ["disc", "square"]);
    assert_eq!(&names[8..], ["sky", "grass", "wall", "water"]);

    let mut eight = request(&data, &dir.path().join("eight"), SegProtocol::Linear);
    eight.overrides.num_classes = Some(8);
    let err = run_segment(&eight).unwrap_err().to_string();
    assert!(err.contains(".png") && err.contains("8"), "{err}");
}

/// `--set precision=bf16` (bf16 autocast, `cae_pretrain::autocast`): the run completes, its
/// record names the setting while an f32 run's does not (as records written before the setting
/// existed), its losses differ from the f32 run's (bf16 did run) by less than 2e-2 relative
/// (bf16 rounds each product's operands by up to 2⁻⁹; UperNet has no discrete choice in
/// training that a rounding could flip), and its checkpoints hold no bf16 tensor: the master
/// weights and AdamW's moments are f32.
#[test]
fn a_bf16_run_is_its_own_setting_near_the_f32_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let run = |name: &str, set: &[(&str, &str)]| {
        let out = dir.path().join(name);
        let mut r = request(&data, &out, SegProtocol::Upernet);
        r.overrides.set = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(run_segment(&r).unwrap().complete);
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap())
                .unwrap();
        (record, out)
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
            (x - y).abs() < 2e-2 * x.abs(),
            "losses {la:?} (f32) vs {lb:?} (bf16)"
        );
    }
    let dtypes = checkpoint_dtypes(&b_out);
    assert!(dtypes.contains(&safetensors::Dtype::F32));
    assert!(!dtypes.contains(&safetensors::Dtype::BF16), "{dtypes:?}");
}
