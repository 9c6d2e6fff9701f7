//! Bad input to the downstream protocols, through the real `cae-bench` binary: a damaged encoder
//! file and a validation split with classes the training split lacks are refused with a message
//! naming the file or folder and what is wrong; nothing panics and no record claims a result.

mod common;

use std::path::{Path, PathBuf};

use common::{cae_bench, copy_tree, record_status, refused, small_world};

/// The small synthetic world's `imagefolder` folder.
fn world(dir: &Path) -> PathBuf {
    small_world(dir).join("imagefolder")
}

#[test]
fn a_damaged_encoder_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    // Garbage, and a real safetensors file cut in the middle of its tensors.
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"\x07\x00\x00\x00\x00\x00\x00\x00{oops}").unwrap();
    let whole = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/import/beit_shared.safetensors"),
    )
    .unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    for (file, name) in [(&garbage, "garbage.safetensors"), (&cut, "cut.safetensors")] {
        let out = dir.path().join(format!("run-{name}"));
        let run = cae_bench(&[
            "linear-probe",
            "--encoder",
            file.to_str().unwrap(),
            "--preset",
            "test",
            "--data",
            data.to_str().unwrap(),
            "--protocol",
            "knn",
            "--out",
            out.to_str().unwrap(),
        ]);
        refused(&run, &[name]);
        assert_ne!(record_status(&out).as_deref(), Some("complete"));
    }
}

#[test]
fn a_validation_class_missing_from_training_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = world(dir.path());
    let copy = dir.path().join("extra-class");
    copy_tree(&data, &copy);
    // One more class in val/ only, with a real image in it.
    let some_class = std::fs::read_dir(copy.join("val"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let image = std::fs::read_dir(&some_class)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    std::fs::create_dir_all(copy.join("val/zebra")).unwrap();
    std::fs::copy(
        &image,
        copy.join("val/zebra").join(image.file_name().unwrap()),
    )
    .unwrap();
    let out = dir.path().join("run");
    let run = cae_bench(&[
        "linear-probe",
        "--encoder",
        "random",
        "--preset",
        "test",
        "--data",
        copy.to_str().unwrap(),
        "--protocol",
        "knn",
        "--out",
        out.to_str().unwrap(),
    ]);
    refused(&run, &["extra-class", "only in val: [zebra]"]);
    assert_ne!(record_status(&out).as_deref(), Some("complete"));
}
