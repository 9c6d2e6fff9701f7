//! The model zoo: encoder files committed under `zoo/NAME/` with the pretraining run's own
//! records (`encoder.safetensors`, `record.json`, `config.toml`, `metrics.jsonl`), named on the
//! command line as `--encoder zoo:NAME`.
//!
//! An entry is a folder; its `record.json` is the `cae-bench pretrain` record that made the file
//! (config, seed, data fingerprint, versions, machine) and carries the file's sha256. Resolving
//! an entry checks the file against that sha256, so a number measured on `zoo:NAME` is a number
//! of the file the record describes, and the leaderboard keys it by that sha256 as any other
//! encoder file.
//!
//! The zoo folder is `$CAE_BENCH_ZOO` when set, else the `zoo/` folder of the source tree the
//! binary was built from.

use std::path::{Path, PathBuf};

use cae_reports::record::{RunRecord, sha256_file};

use crate::protocols::encoder::EncoderSource;

/// Why a zoo entry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// The zoo folder is missing.
    #[error(
        "the model zoo {0} does not exist (set CAE_BENCH_ZOO to the zoo/ folder of a cae-bench checkout)"
    )]
    NoZoo(PathBuf),
    /// No entry of that name.
    #[error("the model zoo {zoo} has no entry `{name}` (entries: {known})")]
    Unknown {
        /// The zoo folder.
        zoo: PathBuf,
        /// The name asked for.
        name: String,
        /// The entries there.
        known: String,
    },
    /// A file of an entry cannot be read or parsed.
    #[error("{path}: {what}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The encoder file is not the one its record describes.
    #[error(
        "{path}: sha256 {actual} is not the {expected} its record.json gives: the file changed after the run that made it"
    )]
    Mismatch {
        /// The encoder file.
        path: PathBuf,
        /// The record's sha256.
        expected: String,
        /// The file's.
        actual: String,
    },
}

/// One zoo entry, as its record describes it.
#[derive(Debug, Clone)]
pub struct ZooEntry {
    /// The folder name (`--encoder zoo:NAME`).
    pub name: String,
    /// `zoo/NAME/encoder.safetensors`.
    pub encoder: PathBuf,
    /// The pretraining record (`zoo/NAME/record.json`).
    pub record: RunRecord,
}

impl ZooEntry {
    /// The sha256 the record gives for the encoder file.
    pub fn sha256(&self) -> Option<&str> {
        self.record.encoder.as_ref()?.sha256.as_deref()
    }

    /// Pretraining method (`cae`, `beit`).
    pub fn method(&self) -> &str {
        self.record
            .encoder
            .as_ref()
            .map_or("?", |e| e.method.as_str())
    }

    /// Pretraining steps.
    pub fn steps(&self) -> Option<u64> {
        self.record.encoder.as_ref()?.pretrain_steps
    }

    /// Checks the encoder file against the record's sha256.
    pub fn verify(&self) -> Result<(), ZooError> {
        let expected = self.sha256().ok_or_else(|| ZooError::Bad {
            path: self.encoder.with_file_name("record.json"),
            what: "the record gives no sha256 for its encoder".into(),
        })?;
        let actual = sha256_file(&self.encoder).map_err(|e| ZooError::Bad {
            path: self.encoder.clone(),
            what: e.to_string(),
        })?;
        if actual != expected {
            return Err(ZooError::Mismatch {
                path: self.encoder.clone(),
                expected: expected.to_string(),
                actual,
            });
        }
        Ok(())
    }
}

/// The zoo folder: `$CAE_BENCH_ZOO`, else the source tree's `zoo/`.
pub fn zoo_dir() -> PathBuf {
    match std::env::var_os("CAE_BENCH_ZOO") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../zoo"),
    }
}

/// Every entry of the zoo at `dir` (folders holding an `encoder.safetensors`), by name.
pub fn entries(dir: &Path) -> Result<Vec<ZooEntry>, ZooError> {
    let read = std::fs::read_dir(dir).map_err(|_| ZooError::NoZoo(dir.to_path_buf()))?;
    let mut names: Vec<String> = read
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("encoder.safetensors").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.iter().map(|n| entry(dir, n)).collect()
}

/// The entry `name` of the zoo at `dir`, its record read (not yet verified).
pub fn entry(dir: &Path, name: &str) -> Result<ZooEntry, ZooError> {
    if !dir.is_dir() {
        return Err(ZooError::NoZoo(dir.to_path_buf()));
    }
    let folder = dir.join(name);
    let encoder = folder.join("encoder.safetensors");
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') || !encoder.is_file()
    {
        let known = entries(dir)?
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ZooError::Unknown {
            zoo: dir.to_path_buf(),
            name: name.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known
            },
        });
    }
    let path = folder.join("record.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ZooError::Bad {
        path: path.clone(),
        what: e.to_string(),
    })?;
    let record: RunRecord = serde_json::from_str(&text).map_err(|e| ZooError::Bad {
        path: path.clone(),
        what: format!("not a run record: {e}"),
    })?;
    if record.kind != "pretrain" {
        return Err(ZooError::Bad {
            path,
            what: format!("a `{}` record, not the pretraining run's", record.kind),
        });
    }
    Ok(ZooEntry {
        name: name.to_string(),
        encoder,
        record,
    })
}

/// The entry `name` of the zoo at `dir`, its file checked against its record.
pub fn resolve(dir: &Path, name: &str) -> Result<ZooEntry, ZooError> {
    let e = entry(dir, name)?;
    e.verify()?;
    Ok(e)
}

/// The encoder a command line names: `random`, `zoo:NAME` (checked against its record) or an
/// encoder file.
pub fn encoder_source(arg: &str) -> anyhow::Result<EncoderSource> {
    if arg == "random" {
        return Ok(EncoderSource::Random);
    }
    if let Some(name) = arg.strip_prefix("zoo:") {
        let e = resolve(&zoo_dir(), name)?;
        return Ok(EncoderSource::File(e.encoder));
    }
    let path = PathBuf::from(arg);
    anyhow::ensure!(
        path.is_file(),
        "--encoder {}: no such file (give an encoder file, `zoo:NAME` or `random`)",
        path.display()
    );
    Ok(EncoderSource::File(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sha: &str, kind: &str) -> String {
        let mut r: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/zoo_record.json")).unwrap();
        r["encoder"]["sha256"] = sha.into();
        r["kind"] = kind.into();
        r.to_string()
    }

    #[test]
    fn entries_resolve_only_when_the_file_is_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let zoo = dir.path();
        std::fs::create_dir_all(zoo.join("a")).unwrap();
        std::fs::write(zoo.join("a/encoder.safetensors"), b"weights").unwrap();
        let sha = sha256_file(&zoo.join("a/encoder.safetensors")).unwrap();
        std::fs::write(zoo.join("a/record.json"), record(&sha, "pretrain")).unwrap();
        std::fs::create_dir_all(zoo.join("notes")).unwrap(); // no encoder: not an entry
        let all = entries(zoo).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, "a");
        assert_eq!(all[0].method(), "cae");
        let e = resolve(zoo, "a").unwrap();
        assert_eq!(e.encoder, zoo.join("a/encoder.safetensors"));

        // One byte changed: refused, naming both hashes.
        std::fs::write(zoo.join("a/encoder.safetensors"), b"weightz").unwrap();
        let err = resolve(zoo, "a").unwrap_err().to_string();
        assert!(err.contains(&sha) && err.contains("file changed"), "{err}");

        // Unknown names list what is there; paths are not names.
        for bad in ["b", "../a", ""] {
            let err = resolve(zoo, bad).unwrap_err().to_string();
            assert!(
                err.contains("has no entry") && err.contains("(entries: a)"),
                "{err}"
            );
        }
        // A record that is not a pretraining run's.
        std::fs::write(zoo.join("a/record.json"), record(&sha, "probe")).unwrap();
        assert!(
            entry(zoo, "a")
                .unwrap_err()
                .to_string()
                .contains("not the pretraining")
        );
        std::fs::write(zoo.join("a/record.json"), "{").unwrap();
        assert!(
            entry(zoo, "a")
                .unwrap_err()
                .to_string()
                .contains("not a run record")
        );
        assert!(matches!(
            entries(&zoo.join("missing")),
            Err(ZooError::NoZoo(_))
        ));
    }
}
