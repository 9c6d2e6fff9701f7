//! Fixture helpers.

use std::path::{Path, PathBuf};

/// The hand-written runs folder.
pub fn fixture_runs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs")
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A temporary copy of the fixture runs.
pub fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture_runs(), dir.path());
    dir
}

/// `a ≈ b` to 1e-12.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}
