//! Writes `OUT/report.md` and `OUT/calibration.png` (+ `.csv`) for a runs folder: what the
//! quickstart does at its end.
//!
//! ```text
//! cargo run -p cae-reports --example report -- reports/tests/fixtures/runs /tmp/report
//! ```

use std::path::PathBuf;

use cae_reports::leaderboard::{Leaderboard, LeaderboardOptions};
use cae_reports::plot::{curves_from_leaderboard, draw_curves};
use cae_reports::report::Report;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(runs), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: report RUNS_DIR OUT_DIR".into());
    };
    let out = PathBuf::from(out);
    let lb = Leaderboard::from_dir(runs.as_ref(), &LeaderboardOptions::default())?;
    let plot = curves_from_leaderboard(&lb, "top1", "top1 against pretraining steps");
    let files = draw_curves(&plot, &out.join("calibration.png"))?;
    Report::new("cae-bench report", lb)
        .environment("runs", runs.as_str())
        .image(
            "Calibration",
            "calibration.png",
            "top1 (mean ± std over seeds) against pretraining steps; random init dashed",
        )
        .write(&out.join("report.md"))?;
    eprintln!(
        "wrote {}, {} and {}",
        out.join("report.md").display(),
        files.png.display(),
        files.csv.display()
    );
    Ok(())
}
