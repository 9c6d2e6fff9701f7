//! The progress bar of long loops (pretraining steps, probe epochs): one style for the workspace.

use indicatif::{ProgressBar, ProgressStyle};

/// The template: spinner, elapsed time, bar, `pos/len UNIT`, message, ETA.
fn template(unit: &str) -> String {
    format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  ETA {{eta}}"
    )
}

/// A progress bar on stderr over `total` items named `unit` (`steps`, `images+steps`), starting
/// at `start` (a resumed run); hidden when `show` is false (`--no-progress`, `--json`, suites).
pub fn bar(show: bool, total: u64, start: u64, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    // The template is built from a fixed pattern; a unit with braces is shown without a style.
    if let Ok(style) = ProgressStyle::with_template(&template(unit)) {
        pb.set_style(style);
    }
    pb.set_position(start);
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_valid_and_hidden_bars_stay_hidden() {
        for unit in ["steps", "images+steps"] {
            assert!(ProgressStyle::with_template(&template(unit)).is_ok());
        }
        let pb = bar(false, 10, 3, "steps");
        assert!(pb.is_hidden());
        let pb = bar(true, 10, 3, "steps");
        assert_eq!((pb.position(), pb.length()), (3, Some(10)));
    }
}
