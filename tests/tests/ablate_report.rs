//! End to end: `cae-bench ablate` on a 2 × 2 grid (killed midway, then finished by a second
//! invocation that runs only the missing cells), `cae-bench report` on its folder, and the
//! report opened in headless Chromium: every table has rows and every image decodes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{cli, run_ok};

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn cells(out: &Path) -> usize {
    std::fs::read_to_string(out.join("ablation.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|m| m["cells"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// The headless browser: `$CAE_BENCH_BROWSER`, or chromium / chromium-browser / google-chrome
/// on the PATH.
fn browser() -> Option<PathBuf> {
    if let Ok(b) = std::env::var("CAE_BENCH_BROWSER") {
        return Some(PathBuf::from(b));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Opens `html` in headless Chromium and returns what a script counted once the page loaded:
/// (images, images decoded with a non-zero size, tables, tables with body rows and text).
fn browser_check(browser: &Path, html: &Path, work: &Path) -> (usize, usize, usize, usize) {
    let page = std::fs::read_to_string(html).unwrap();
    let script = r#"<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length;
  const tables = Array.from(document.querySelectorAll('table'));
  const full = tables.filter(t => t.querySelectorAll('tbody tr').length > 0
    && t.innerText.trim().length > 0).length;
  const d = document.createElement('pre');
  d.textContent = 'CAECHECK ' + imgs.length + ' ' + ok + ' ' + tables.length + ' ' + full + ' END';
  document.body.appendChild(d);
});
</script></body>"#;
    assert!(page.contains("</body>"));
    let checked = work.join("checked.html");
    std::fs::write(&checked, page.replace("</body>", script)).unwrap();
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", checked.display()))
        .stderr(Stdio::null())
        .output()
        .expect("starting the browser");
    let dom = String::from_utf8_lossy(&out.stdout);
    let line = dom
        // The last occurrence: the first is the script's own text.
        .rsplit("CAECHECK ")
        .next()
        .filter(|_| dom.matches("CAECHECK ").count() >= 2)
        .and_then(|r| r.split(" END").next())
        .unwrap_or_else(|| panic!("the page's check did not run; the browser printed:\n{dom}"));
    let n: Vec<usize> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    (n[0], n[1], n[2], n[3])
}

#[test]
fn ablate_finishes_only_missing_cells_and_its_report_opens_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let train = common::world(&dir.path().join("w"), 96, 5);
    let data = train.parent().unwrap().to_str().unwrap().to_string();
    let out = dir.path().join("abl");
    let out_s = out.to_str().unwrap().to_string();
    let args = [
        "ablate",
        "--data",
        &data,
        "--out",
        &out_s,
        "--param",
        "lambda=0,2",
        "--param",
        "mask-ratio=0.25,0.5",
        "--protocol",
        "linear,knn",
        "--seeds",
        "1",
        "--steps",
        "3",
        "--preset",
        "test",
        "--batch",
        "8",
        "--no-progress",
    ];

    // Killed as soon as the first cell is in the manifest.
    let mut child = cli()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if cells(&out) >= 1 {
            child.kill().unwrap();
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ablate ended ({status}) before the first cell was recorded");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no cell in 10 min"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait().unwrap();
    let done = cells(&out);
    assert!(
        done < 4,
        "the grid finished before the kill: nothing to resume"
    );
    let first = json(&out.join("ablation.json"))["cells"][0].clone();
    let first_linear = out
        .join(first["runs"]["linear"].as_str().unwrap())
        .join("record.json");
    let before = json(&first_linear);

    // The second invocation reuses the finished cells and runs the rest.
    let again = run_ok(&args);
    let err = String::from_utf8_lossy(&again.stderr);
    let reused_cells = err
        .lines()
        .filter(|l| l.starts_with("[cell ") && l.ends_with("(reused)"))
        .count();
    assert_eq!(reused_cells, done, "{err}");
    assert!(err.contains("[cell 4/4]"), "{err}");
    let m = json(&out.join("ablation.json"));
    let all = m["cells"].as_array().unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(json(&first_linear), before, "a finished cell ran again");
    let mut seen = Vec::new();
    for c in all {
        seen.push((
            c["values"]["lambda"].as_str().unwrap().to_string(),
            c["values"]["mask-ratio"].as_str().unwrap().to_string(),
        ));
        let pre = json(
            &out.join(c["pretrain"].as_str().unwrap())
                .join("record.json"),
        );
        assert_eq!(pre["status"], "complete");
        let cfg = &pre["config"]["model"];
        assert_eq!(
            cfg["align_loss_weight"].as_f64().unwrap(),
            c["values"]["lambda"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        );
        for p in ["linear", "knn"] {
            let r = json(&out.join(c["runs"][p].as_str().unwrap()).join("record.json"));
            assert_eq!(r["status"], "complete");
            assert!(!r["per_image"]["correct"].as_str().unwrap().is_empty());
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [("0", "0.25"), ("0", "0.5"), ("2", "0.25"), ("2", "0.5")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    // The ablation's own report: a table per protocol and a plot per option and protocol.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Ablation\n"), "{md}");
    assert!(md.contains("| lambda | mask-ratio | top1 |"), "{md}");
    assert!(md.contains("| 2 (paper) | 0.5 (paper) |"), "{md}");
    for p in ["linear", "knn"] {
        for o in ["lambda", "mask-ratio"] {
            let png = out.join(format!("plots/ablation-{p}-{o}.png"));
            assert!(png.exists(), "{} missing:\n{md}", png.display());
        }
    }

    // `cae-bench report` over the same folder, elsewhere: the same sections, and a page a
    // browser shows with every table and image.
    let rep = dir.path().join("rep");
    run_ok(&["report", "--runs", &out_s, "--out", rep.to_str().unwrap()]);
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    for needle in [
        "## Pretraining",
        "## Paired comparisons",
        "## Ablation `",
        "## Measured here",
        "## Published numbers",
        "paired bootstrap over",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
    let images = md.matches("![").count();
    assert!(images >= 3 + 4, "{images} images:\n{md}");
    let html = rep.join("report.html");
    match browser() {
        Some(b) => {
            let (imgs, decoded, tables, full) = browser_check(&b, &html, dir.path());
            assert_eq!(imgs, images, "images in the page");
            assert_eq!(decoded, imgs, "images that decoded");
            assert!(tables >= 4, "{tables} tables");
            assert_eq!(full, tables, "tables with rows");
        }
        None if std::env::var_os("CAE_BENCH_REQUIRE_BROWSER").is_some() => {
            panic!("CAE_BENCH_REQUIRE_BROWSER is set and no chromium is on the PATH")
        }
        None => eprintln!(
            "no chromium on the PATH: the browser check of report.html is skipped here (CI \
             installs it and sets CAE_BENCH_REQUIRE_BROWSER)"
        ),
    }
}
