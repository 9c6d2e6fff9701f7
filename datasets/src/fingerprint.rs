//! A fingerprint of a dataset folder: what a run's record keeps so that a result is reused only
//! on the data it was measured on.
//!
//! The fingerprint is a sha256 over every file below the folder, in sorted order of their paths
//! relative to it (hidden files and folders, whose names start with `.`, are left out: they are
//! temporary files of atomic writes and editors' state, not data):
//!
//! * **content** mode (the folder holds at most [`CONTENT_LIMIT`] bytes, the synthetic world and
//!   other small sets): the relative path, the size and the bytes of each file. Two folders with
//!   the same files give the same fingerprint wherever they are and whenever they were written.
//! * **listing** mode (larger folders, e.g. ImageNet, where reading every byte would take
//!   minutes): the relative path, the size and the modification time of each file. Any rewrite
//!   changes it, so it errs on the side of running again, never of reusing a result on other data.
//!
//! The text form is `MODE:FILES:BYTES:SHA256HEX`, so a record says how the fingerprint was taken.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{DatasetError, Result};

/// Folders up to this many bytes are fingerprinted by content (256 MiB).
pub const CONTENT_LIMIT: u64 = 256 << 20;

/// How a fingerprint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FingerprintMode {
    /// Paths, sizes and bytes.
    Content,
    /// Paths, sizes and modification times.
    Listing,
}

impl FingerprintMode {
    /// `content` or `listing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Content => "content",
            Self::Listing => "listing",
        }
    }
}

/// The fingerprint of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// How it was taken.
    pub mode: FingerprintMode,
    /// Files hashed.
    pub files: usize,
    /// Their total size in bytes.
    pub bytes: u64,
    /// sha256, hex.
    pub sha256: String,
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.mode.as_str(),
            self.files,
            self.bytes,
            self.sha256
        )
    }
}

/// Every non-hidden file below `dir` with its path relative to `dir`, sorted by that path.
fn files_below(dir: &Path) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| DatasetError::io(&d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| DatasetError::io(&d, e))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            // Follows symbolic links, as the readers do.
            let meta = std::fs::metadata(&path).map_err(|e| DatasetError::io(&path, e))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path, meta));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The fingerprint of the folder `dir` (see the module documentation).
pub fn fingerprint_dir(dir: &Path) -> Result<Fingerprint> {
    let meta = std::fs::metadata(dir).map_err(|e| DatasetError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(DatasetError::NotFound {
            path: dir.to_path_buf(),
            what: "dataset folder".into(),
        });
    }
    let files = files_below(dir)?;
    let bytes: u64 = files.iter().map(|(_, _, m)| m.len()).sum();
    let mode = if bytes <= CONTENT_LIMIT {
        FingerprintMode::Content
    } else {
        FingerprintMode::Listing
    };
    let mut h = Sha256::new();
    h.update(mode.as_str().as_bytes());
    let mut buf = vec![0u8; 1 << 16];
    for (rel, path, m) in &files {
        h.update((rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update(m.len().to_le_bytes());
        match mode {
            FingerprintMode::Content => {
                let mut f = std::fs::File::open(path).map_err(|e| DatasetError::io(path, e))?;
                loop {
                    let n = f.read(&mut buf).map_err(|e| DatasetError::io(path, e))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            FingerprintMode::Listing => {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                h.update(t.to_le_bytes());
            }
        }
    }
    Ok(Fingerprint {
        mode,
        files: files.len(),
        bytes,
        sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, bytes: &[u8]) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn same_files_same_fingerprint_anywhere() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            write(d, "train/cat/1.png", b"one");
            write(d, "train/dog/2.png", b"two");
            write(d, "val/cat/3.png", b"three");
        }
        let fa = fingerprint_dir(a.path()).unwrap();
        let fb = fingerprint_dir(b.path()).unwrap();
        assert_eq!(fa, fb);
        assert_eq!(fa.mode, FingerprintMode::Content);
        assert_eq!(fa.files, 3);
        assert_eq!(fa.bytes, 11);
        assert!(fa.to_string().starts_with("content:3:11:"));
    }

    #[test]
    fn a_changed_byte_a_renamed_file_or_a_new_file_changes_it() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "train/cat/1.png", b"one");
        write(d.path(), "train/dog/2.png", b"two");
        let base = fingerprint_dir(d.path()).unwrap();
        write(d.path(), "train/dog/2.png", b"twO");
        let changed = fingerprint_dir(d.path()).unwrap();
        assert_ne!(base, changed);
        write(d.path(), "train/dog/2.png", b"two");
        assert_eq!(base, fingerprint_dir(d.path()).unwrap());
        std::fs::rename(d.path().join("train/dog"), d.path().join("train/cow")).unwrap();
        assert_ne!(base, fingerprint_dir(d.path()).unwrap());
        std::fs::rename(d.path().join("train/cow"), d.path().join("train/dog")).unwrap();
        write(d.path(), "val/dog/3.png", b"");
        assert_ne!(base, fingerprint_dir(d.path()).unwrap());
    }

    #[test]
    fn hidden_files_do_not_count() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "train/cat/1.png", b"one");
        let base = fingerprint_dir(d.path()).unwrap();
        write(d.path(), "train/cat/.1.png.tmp42", b"partial");
        write(d.path(), ".cache/x", b"x");
        assert_eq!(base, fingerprint_dir(d.path()).unwrap());
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope");
        let err = fingerprint_dir(&missing).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        std::fs::write(d.path().join("file"), b"x").unwrap();
        let err = fingerprint_dir(&d.path().join("file"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dataset folder"), "{err}");
    }
}
