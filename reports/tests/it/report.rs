//! `report.md`: measured here, published (with provenance), legend; written atomically.

use cae_reports::report::{ReportInput, Section, render_markdown, write_report};

use crate::common::fixture_runs;

fn input() -> ReportInput {
    let mut input = ReportInput::new(fixture_runs());
    input.title = "Quickstart report".into();
    input.sections.push(Section::image(
        "Calibration",
        "calibration.png",
        "top1 against pretraining steps",
    ));
    input
}

#[test]
fn report_has_measured_published_and_legend_sections_in_order() {
    let md = render_markdown(&input()).unwrap();
    assert!(md.starts_with("# Quickstart report\n"));
    assert!(
        md.contains("11 complete runs, 2 incomplete, 0 skipped"),
        "{md}"
    );
    let pos = |s: &str| {
        md.find(s)
            .unwrap_or_else(|| panic!("missing {s:?} in\n{md}"))
    };
    let calibration = pos("## Calibration");
    let measured = pos("## Measured here");
    let published =
        pos("## Published numbers (published, ViT-B/16 on ImageNet, not comparable in scale)");
    let legend = pos("## Legend and provenance");
    assert!(calibration < measured && measured < published && published < legend);
    assert!(md.contains("![top1 against pretraining steps](calibration.png)"));
    assert!(md.contains("[`calibration.csv`](calibration.csv)"));
    // Measured: the leaderboard with machine, versions and seeds, sections one level down.
    let measured_part = &md[measured..published];
    assert!(measured_part.contains("### `linear` · top1"));
    assert!(measured_part.contains("0.5200 ± 0.0200 (n=3)"));
    assert!(measured_part.contains("machine Test CPU @ 2.0GHz"));
    assert!(measured_part.contains("versions burn 0.22.1, cae-bench 0.1.0"));
    assert!(measured_part.contains("seeds 0, 1, 2"));
    assert!(measured_part.contains("incomplete runs: 2"));
    // Published: its own table, with provenance.
    let published_part = &md[published..legend];
    assert!(published_part.contains("not comparable in scale"));
    assert!(published_part.contains("| CAE | ViT-B/16 | 1600 | imagenet_linear | top1 | 70.3 |"));
    assert!(published_part.contains("| unverified |"));
    assert!(!published_part.contains("0.5200"));
    // Legend: every status explained.
    let legend_part = &md[legend..];
    for word in [
        "**this run** (measured here)",
        "**verified**",
        "**secondary**",
        "**unverified**",
        "**incomplete runs**",
    ] {
        assert!(legend_part.contains(word), "{word}");
    }
}

#[test]
fn without_a_baseline_filter_there_is_no_published_section() {
    let mut input = input();
    input.baselines = None;
    let md = render_markdown(&input).unwrap();
    assert!(!md.contains("## Published numbers"));
    assert!(md.contains("## Measured here"));
}

#[test]
fn write_report_writes_the_file_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/report.md");
    write_report(&input(), &out).unwrap();
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written, render_markdown(&input()).unwrap());
    let names: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["report.md"]);
}

#[test]
fn a_malformed_record_fails_the_report_naming_the_file() {
    let dir = crate::common::fixture_copy();
    std::fs::create_dir_all(dir.path().join("x")).unwrap();
    std::fs::write(dir.path().join("x/record.json"), "not json").unwrap();
    let mut input = input();
    input.runs_dir = dir.path().to_path_buf();
    let err = render_markdown(&input).unwrap_err().to_string();
    assert!(err.contains("x/record.json"), "{err}");
    assert!(!dir.path().join("report.md").exists());
}

#[test]
fn the_report_builder_orders_sections_and_labels_provenance() {
    use cae_reports::leaderboard::{Leaderboard, LeaderboardOptions};
    use cae_reports::report::Report;
    let lb = Leaderboard::from_dir(&fixture_runs(), &LeaderboardOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.md");
    Report::new("Quickstart", lb)
        .environment("machine", "2 cores, no GPU")
        .environment("command", "cae-bench quickstart")
        .image(
            "Calibration",
            "calibration.png",
            "top1 against pretraining steps",
        )
        .note("What this shows", "Small scale: read the README.")
        .write(&path)
        .unwrap();
    let md = std::fs::read_to_string(&path).unwrap();
    let pos = |s: &str| {
        md.find(s)
            .unwrap_or_else(|| panic!("missing {s:?} in\n{md}"))
    };
    let order = [
        pos("# Quickstart\n"),
        pos("## Environment and provenance"),
        pos("- **machine**: 2 cores, no GPU"),
        pos("- **command**: cae-bench quickstart"),
        pos("## Calibration"),
        pos("## Measured here (this run)"),
        pos("## Published numbers (published, ViT-B/16 on ImageNet"),
        pos("## What this shows"),
        pos("## Legend and provenance"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{md}");
    assert!(md.contains("![top1 against pretraining steps](calibration.png)"));
    // Every measured row says "this run"; every published row "published, <source>".
    let measured = &md[pos("## Measured here")..pos("## Published numbers")];
    let published = &md[pos("## Published numbers")..pos("## What this shows")];
    let measured_rows: Vec<&str> = measured.lines().filter(|l| l.starts_with("| R")).collect();
    assert_eq!(measured_rows.len(), 11);
    assert!(measured_rows.iter().all(|l| l.ends_with("| this run |")));
    let published_rows: Vec<&str> = published
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| method"))
        .collect();
    assert!(!published_rows.is_empty());
    assert!(published_rows.iter().all(|l| l.contains("| published, ")));
    // No published section when asked.
    let lb = Leaderboard::from_dir(&fixture_runs(), &LeaderboardOptions::default()).unwrap();
    let md = Report::new("T", lb).published(None).render().unwrap();
    assert!(!md.contains("## Published numbers"));
    assert!(!dir.path().read_dir().unwrap().any(|e| {
        let n = e.unwrap().file_name();
        n.to_string_lossy().contains(".tmp")
    }));
}
