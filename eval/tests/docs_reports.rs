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

/// Every plot of a rendered report and its data equal the committed files, byte for byte (the
/// drawing is deterministic).
fn assert_files_same(dir: &Path, doc: &cae_reports::document::Document) {
    assert!(!doc.files.is_empty());
    for (rel, bytes) in &doc.files {
        let committed = std::fs::read(dir.join(rel))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(rel).display()));
        assert!(
            committed == *bytes,
            "{rel} differs from what its records render"
        );
    }
}

#[test]
fn the_committed_quickstart_report_is_what_its_records_render() {
    let dir = docs("quickstart");
    let doc = cae_bench::commands::quickstart::render_report(&dir)
        .unwrap_or_else(|e| panic!("rendering {}: {e:#}", dir.display()));
    assert_same(&dir.join("report.md"), &doc.markdown);
    assert_same(&dir.join("leaderboard.csv"), &doc.csv);
    assert_files_same(&dir, &doc);
    // report.html is the Markdown with those images embedded.
    let html =
        cae_reports::html::markdown_to_html(&doc.markdown, &dir, "cae-bench quickstart").unwrap();
    assert_same(&dir.join("report.html"), &html);
}

#[test]
fn the_committed_ablation_report_is_what_its_records_render() {
    let dir = docs("ablation");
    let doc =
        cae_bench::commands::report::document_of(&dir, &dir, "cae-bench ablation", Vec::new())
            .unwrap_or_else(|e| panic!("rendering {}: {e:#}", dir.display()));
    assert_same(&dir.join("report.md"), &doc.markdown);
    assert_files_same(&dir, &doc);
    // 3 × 3 values × 2 seeds, each with its pretraining, linear and kNN records, all complete.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ablation.json")).unwrap()).unwrap();
    assert_eq!(m["cells"].as_array().unwrap().len(), 18);
    assert!(!doc.markdown.contains("Not in the tables"));
}

/// The text of the README section that starts with `heading`, up to the next `## `.
fn readme_section(heading: &str) -> String {
    let readme = std::fs::read_to_string(docs("").join("../README.md")).unwrap();
    readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("the README has a section {heading}"))
        .split("\n## ")
        .next()
        .unwrap()
        .to_string()
}

/// A docs folder's leaderboard rendered again from its committed records (`cae-bench
/// leaderboard --runs docs/SUB/runs [--metrics M] --out docs/SUB/leaderboard.md`, run from the
/// repository root), and every "… (n=2)" cell of the README section `section`, when given, is
/// one of it.
fn check_docs_leaderboard(sub: &str, runs: usize, metrics: &[&str], section: Option<&str>) {
    use cae_reports::leaderboard::{Leaderboard, LeaderboardOptions};
    let dir = docs(sub);
    let options = LeaderboardOptions {
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    };
    let lb = Leaderboard::from_dir(&dir.join("runs"), &options)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(lb.complete_runs, runs);
    // The title names the folder as given on the command line; the rest must match exactly.
    let rendered = lb.to_markdown();
    let body = |t: &str| {
        t.split_once('\n')
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    };
    let committed_path = dir.join("leaderboard.md");
    let committed = std::fs::read_to_string(&committed_path).unwrap();
    assert!(committed.starts_with(&format!("# Leaderboard: runs under `docs/{sub}/runs`")));
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), body(&committed)).unwrap();
    assert_same(tmp.path(), &body(&rendered));

    // The README's numbers come from these rows.
    let Some(section) = section else {
        return;
    };
    let text = readme_section(section);
    let quoted: Vec<&str> = text
        .split('|')
        .map(str::trim)
        .filter(|c| c.ends_with("(n=2)"))
        .collect();
    assert!(quoted.len() >= 4, "the README quotes the rows: {quoted:?}");
    for q in quoted {
        assert!(
            committed.contains(q),
            "README quotes `{q}`, which docs/{sub}/leaderboard.md does not hold"
        );
    }
}

/// `docs/segment/`: the earlier segmentation runs on the world without stuff classes
/// (`docs/segment/run.sh`, log in `run.log`; 6 configurations × 2 seeds).
#[test]
fn the_committed_segmentation_leaderboard_is_what_its_records_render() {
    check_docs_leaderboard("segment", 12, &[], None);
}

/// `docs/segment/stuff/`: the segmentation runs quoted in the README, on a world with stuff
/// classes (`docs/segment/stuff/run.sh`, log in `run.log`; 2 encoders × 2 protocols × 2 seeds).
#[test]
fn the_committed_stuff_segmentation_leaderboard_is_what_its_records_render() {
    check_docs_leaderboard(
        "segment/stuff",
        8,
        &[],
        Some("## Semantic segmentation (ADE20K)"),
    );
}

/// `docs/detect/`: the detection runs quoted in the README (`docs/detect/run.sh`, log in
/// `run.log`; 2 encoders × 2 seeds; the leaderboard keeps box and mask AP and AP50).
#[test]
fn the_committed_detection_leaderboard_is_what_its_records_render() {
    check_docs_leaderboard(
        "detect",
        4,
        &["bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50"],
        Some("## Object detection and instance segmentation (COCO)"),
    );
}

/// `docs/calibration/<run>/`: the long-horizon calibrations quoted in the README
/// (`docs/calibration/run.sh`, log in `run.log`): each folder's `calibration.md`, `calibration.csv`
/// and curves drawn again from its `calibration.json` and the records it lists, and every number
/// of the README's calibration table is one of them.
#[test]
fn the_committed_calibrations_are_what_their_records_render() {
    let root = docs("calibration");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("calibration.json").exists())
        .collect();
    folders.sort();
    assert!(
        folders.len() >= 2,
        "a CAE and a BEiT calibration are committed: {folders:?}"
    );
    let mut all_md = String::new();
    for dir in &folders {
        let plots = tempfile::tempdir().unwrap();
        let (md, csv) = cae_bench::commands::calibrate::render(dir, plots.path())
            .unwrap_or_else(|e| panic!("rendering {}: {e:#}", dir.display()));
        assert_same(&dir.join("calibration.md"), &md);
        assert_same(&dir.join("calibration.csv"), &csv);
        let mut drawn = 0;
        for f in std::fs::read_dir(plots.path()).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap();
            let committed = std::fs::read(dir.join(name))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()));
            assert!(
                committed == std::fs::read(&f).unwrap(),
                "{} differs from what its records render",
                dir.join(name).display()
            );
            drawn += 1;
        }
        assert!(drawn >= 6, "a curve and its data per protocol");
        all_md.push_str(&md);
    }
    // The README's calibration table quotes these reports.
    let text = readme_section("## Calibration: when does pretraining pay");
    let quoted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .flat_map(|l| l.split('|'))
        .map(str::trim)
        .filter(|c| c.contains(" ± "))
        .collect();
    assert!(
        quoted.len() >= 4,
        "the README quotes the tables: {quoted:?}"
    );
    for q in quoted {
        assert!(
            all_md.contains(q),
            "the README quotes `{q}`, which no docs/calibration/*/calibration.md holds"
        );
    }
}
