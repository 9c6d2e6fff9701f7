//! The reports committed under `docs/` are outputs of real runs. These tests render them again
//! from the run records committed beside them and compare with the files, so a report can never
//! drift from its records (nor from the code that renders it): change the renderer, and the
//! committed report must be regenerated (`cae-bench quickstart --out docs/quickstart
//! --report-only`).

use std::path::{Path, PathBuf};

fn docs(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
        .join(sub)
}

/// Asserts equality line by line, naming the first line that differs.
fn assert_same(path: &Path, rendered: &str) {
    let committed =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if committed == rendered {
        return;
    }
    let (i, (a, b)) = committed
        .lines()
        .zip(rendered.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .unwrap_or((
            committed.lines().count().min(rendered.lines().count()),
            ("<end>", "<end>"),
        ));
    panic!(
        "{} differs from what its records render, first at line {}:\n  committed: {a}\n  rendered:  {b}\n\
         Regenerate it from its records (see this test's module docs).",
        path.display(),
        i + 1
    );
}

#[test]
fn the_committed_quickstart_report_is_what_its_records_render() {
    let dir = docs("quickstart");
    let (md, csv) = cae_bench::commands::quickstart::render_report(&dir)
        .unwrap_or_else(|e| panic!("rendering {}: {e:#}", dir.display()));
    assert_same(&dir.join("report.md"), &md);
    assert_same(&dir.join("leaderboard.csv"), &csv);
}
