//! The committed model zoo (`zoo/NAME/`): every entry's encoder file is the one its pretraining
//! record describes (sha256), the records are finished pretraining runs of the `mini` preset,
//! `cae-bench zoo list` says so, and `--encoder zoo:NAME` measures that file (and refuses one
//! that changed), through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cae_bench::zoo::{entries, zoo_dir};
use cae_reports::record::{RunStatus, sha256_file};
use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cae-bench"));
    c.env_remove("RUST_LOG")
        .env_remove("CAE_BENCH_ZOO")
        .env("CAE_BENCH_THREADS", "2");
    c
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../zoo")
}

#[test]
fn every_committed_encoder_is_the_file_its_record_describes() {
    assert_eq!(
        zoo_dir().canonicalize().unwrap(),
        committed().canonicalize().unwrap()
    );
    let all = entries(&committed()).unwrap();
    let methods: Vec<&str> = all.iter().map(|e| e.method()).collect();
    assert!(
        methods.contains(&"cae") && methods.contains(&"beit"),
        "the zoo holds a CAE and a BEiT encoder: {methods:?}"
    );
    for e in &all {
        let rec = &e.record;
        assert_eq!(rec.kind, "pretrain", "{}", e.name);
        assert_eq!(rec.status, RunStatus::Complete, "{}", e.name);
        let enc = rec.encoder.as_ref().unwrap();
        assert_eq!(enc.arch, "mini", "{}", e.name);
        // The sha256 is recomputed from the bytes, not read from anywhere else.
        let sha = sha256_file(&e.encoder).unwrap();
        assert_eq!(
            Some(sha.as_str()),
            e.sha256(),
            "{}: the committed file is not the record's",
            e.name
        );
        e.verify().unwrap();
        // The name says the method, the budget and the pretraining seed the record holds.
        let steps = e.steps().unwrap();
        assert_eq!(
            e.name,
            format!("{}-mini-{}k-s{}", e.method(), steps / 1000, rec.seed),
            "zoo names are METHOD-mini-STEPSk-sSEED"
        );
        // The run's own files travel with it.
        let dir = e.encoder.parent().unwrap();
        for f in ["config.toml", "metrics.jsonl"] {
            assert!(dir.join(f).is_file(), "{}: {f} is missing", e.name);
        }
        let logged = std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count() as u64;
        assert!(
            logged >= steps,
            "{}: metrics.jsonl logs {logged} lines for {steps} steps",
            e.name
        );
        // And the zoo's table names every file by its sha256.
        let table = std::fs::read_to_string(committed().join("README.md")).unwrap();
        assert!(
            table.contains(&format!("`{}`", e.name)) && table.contains(&sha),
            "zoo/README.md lists {} with its sha256",
            e.name
        );
    }

    // `zoo list` checks them too.
    let out = bin()
        .args(["zoo", "list", "--json"])
        .output()
        .expect("run cae-bench");
    let listed: Vec<Value> = ok(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), all.len());
    for (v, e) in listed.iter().zip(&all) {
        assert_eq!(v["name"], e.name.as_str());
        assert_eq!(v["sha256"], e.sha256().unwrap());
        assert_eq!(v["ok"], true);
    }
}

#[test]
fn zoo_names_are_measured_as_their_files_and_a_changed_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("w");
    ok(&bin()
        .args([
            "data",
            "synth",
            "--out",
            world.to_str().unwrap(),
            "--images",
            "64",
            "--size",
            "32",
            "--seed",
            "4",
        ])
        .output()
        .unwrap());
    let data = world.join("imagefolder");
    let e = entries(&committed())
        .unwrap()
        .into_iter()
        .find(|e| e.method() == "cae")
        .unwrap();
    let probe = |encoder: &str, zoo: Option<&Path>| {
        let mut c = bin();
        if let Some(z) = zoo {
            c.env("CAE_BENCH_ZOO", z);
        }
        c.args([
            "linear-probe",
            "--data",
            data.to_str().unwrap(),
            "--encoder",
            encoder,
            "--protocol",
            "knn",
            "--k",
            "5",
            "--json",
        ])
        .output()
        .unwrap()
    };
    let by_name: Value =
        serde_json::from_str(&ok(&probe(&format!("zoo:{}", e.name), None))).unwrap();
    let by_file: Value =
        serde_json::from_str(&ok(&probe(e.encoder.to_str().unwrap(), None))).unwrap();
    assert_eq!(by_name["encoder"]["sha256"], e.sha256().unwrap());
    assert_eq!(by_name["encoder"]["method"], "cae");
    assert_eq!(by_name["encoder"]["arch"], "mini");
    assert_eq!(by_name["encoder"]["pretrain_steps"], e.steps().unwrap());
    // kNN draws nothing: the name and the path give the same numbers bit for bit.
    for k in ["top1", "top5", "train_images", "val_images"] {
        assert_eq!(by_name[k], by_file[k], "{k}");
    }
    assert!(by_name["top1"].as_f64().unwrap() > 0.0);

    // A copy of the entry with one byte of the weights changed is refused, naming the file.
    let zoo = dir.path().join("zoo");
    let copy = zoo.join(&e.name);
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["record.json", "config.toml", "encoder.safetensors"] {
        std::fs::copy(e.encoder.with_file_name(f), copy.join(f)).unwrap();
    }
    let w = copy.join("encoder.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&w, bytes).unwrap();
    let out = probe(&format!("zoo:{}", e.name), Some(&zoo));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("encoder.safetensors") && err.contains(e.sha256().unwrap()),
        "{err}"
    );
    // An unknown name lists the entries.
    let out = probe("zoo:nope", Some(&zoo));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has no entry `nope`") && err.contains(&e.name),
        "{err}"
    );
}
