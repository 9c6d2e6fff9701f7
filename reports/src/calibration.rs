//! Calibration: a downstream metric against pretraining steps, next to a random initialisation,
//! and the smallest budget at which pretraining pays.
//!
//! "Pays" is decided per protocol: at a step count, the pretrained encoder's mean over seeds
//! exceeds the random encoder's mean by more than two standard deviations, the standard
//! deviation being the pooled per-run one, `sqrt((s_pre² + s_rand²) / 2)` (sample standard
//! deviations over seeds). With one seed there is no standard deviation and nothing is decided.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::csv::row;
use crate::error::ReportError;
use crate::plot::{CurvePoint, CurveSeries, PlotFiles, SeriesStyle, curve_png};
use crate::record::RunRecord;

/// One measured number.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The protocol's key (`linear`, `knn`, `finetune-10pct`).
    pub protocol: String,
    /// Pretraining steps; `None` for the random initialisation.
    pub step: Option<u64>,
    /// Seed of the run.
    pub seed: u64,
    /// The metric.
    pub value: f64,
}

impl Observation {
    /// The observation of a complete record (`None` for an incomplete one or a missing metric).
    pub fn of(record: &RunRecord, protocol: &str, step: Option<u64>, metric: &str) -> Option<Self> {
        if !record.is_result() {
            return None;
        }
        Some(Self {
            protocol: protocol.to_string(),
            step,
            seed: record.seed,
            value: *record.metrics.get(metric)?,
        })
    }
}

/// Mean and sample standard deviation of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Number of values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (`None` for fewer than two values).
    pub std: Option<f64>,
}

impl Stat {
    /// Of `values` (at least one).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        });
        Self { n, mean, std }
    }

    fn text(&self) -> String {
        match self.std {
            Some(s) => format!("{:.1} ± {:.1}", self.mean, s),
            None => format!("{:.1}", self.mean),
        }
    }
}

/// One protocol's curve.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolCurve {
    /// The protocol's key.
    pub protocol: String,
    /// The random initialisation.
    pub random: Option<Stat>,
    /// The pretrained encoder at each step count, ascending.
    pub points: Vec<(u64, Stat)>,
}

impl ProtocolCurve {
    /// Gap to random in pooled standard deviations at a point (`None` without both spreads).
    pub fn gap_sigmas(&self, s: &Stat) -> Option<f64> {
        let r = self.random?;
        let pooled = ((s.std?.powi(2) + r.std?.powi(2)) / 2.0).sqrt();
        if pooled == 0.0 {
            return Some(if s.mean > r.mean { f64::INFINITY } else { 0.0 });
        }
        Some((s.mean - r.mean) / pooled)
    }

    /// The smallest step count at which the pretrained encoder beats random by more than two
    /// pooled standard deviations.
    pub fn first_win(&self) -> Option<u64> {
        self.points
            .iter()
            .find(|(_, s)| self.gap_sigmas(s).is_some_and(|g| g > 2.0))
            .map(|(step, _)| *step)
    }
}

/// Groups observations into one curve per protocol (in the order protocols first appear).
pub fn curves(obs: &[Observation]) -> Vec<ProtocolCurve> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<(String, Option<u64>), Vec<f64>> = BTreeMap::new();
    for o in obs {
        if !order.contains(&o.protocol) {
            order.push(o.protocol.clone());
        }
        groups
            .entry((o.protocol.clone(), o.step))
            .or_default()
            .push(o.value);
    }
    order
        .into_iter()
        .map(|p| {
            let random = groups.get(&(p.clone(), None)).map(|v| Stat::of(v));
            let points = groups
                .iter()
                .filter_map(|((q, step), v)| match step {
                    Some(s) if *q == p => Some((*s, Stat::of(v))),
                    _ => None,
                })
                .collect();
            ProtocolCurve {
                protocol: p,
                random,
                points,
            }
        })
        .collect()
}

/// The table (one row per step count, one column per protocol: mean ± std and the gap to random
/// in σ) and the verdict, as Markdown. `minutes_per_step` turns steps into a time budget.
pub fn markdown(curves: &[ProtocolCurve], metric: &str, minutes_per_step: f64) -> String {
    let mut out = String::new();
    let _ = write!(out, "| pretraining steps | minutes |");
    for c in curves {
        let _ = write!(out, " {} {metric} (gap to random) |", c.protocol);
    }
    out.push('\n');
    out.push_str("|---|---|");
    for _ in curves {
        out.push_str("---|");
    }
    out.push('\n');
    let _ = write!(out, "| 0 (random init) | 0 |");
    for c in curves {
        let _ = write!(out, " {} |", c.random.map_or("–".into(), |s| s.text()));
    }
    out.push('\n');
    let mut steps: Vec<u64> = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|(s, _)| *s))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    for step in steps {
        let _ = write!(out, "| {step} | {:.1} |", step as f64 * minutes_per_step);
        for c in curves {
            match c.points.iter().find(|(s, _)| *s == step) {
                Some((_, st)) => {
                    let gap = c
                        .gap_sigmas(st)
                        .map_or(String::new(), |g| format!(" ({g:+.1}σ)"));
                    let _ = write!(out, " {}{gap} |", st.text());
                }
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out.push('\n');
    let wins: Vec<(String, u64)> = curves
        .iter()
        .filter_map(|c| c.first_win().map(|s| (c.protocol.clone(), s)))
        .collect();
    match wins.iter().min_by_key(|(_, s)| *s) {
        Some((p, s)) => {
            let _ = writeln!(
                out,
                "**Smallest budget at which pretraining beats random initialisation by more than \
                 2σ: {s} steps (≈ {:.1} min), on `{p}`.**",
                *s as f64 * minutes_per_step
            );
            for (p, s) in &wins {
                let _ = writeln!(out, "- `{p}`: from {s} steps");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "**No measured budget beats random initialisation by more than 2σ on any \
                 protocol.**"
            );
        }
    }
    out.push_str(
        "\nσ is the pooled per-run standard deviation over seeds, `sqrt((s_pretrained² + \
         s_random²) / 2)`; the gap is `(mean_pretrained − mean_random) / σ`.\n",
    );
    out
}

/// The curves as CSV: `protocol,steps,minutes,n,mean_top1,std_top1,gap_sigmas`, random init as
/// step 0 (no gap), empty fields where a value does not exist; minutes are steps × `seconds_per_step`.
pub fn to_csv(curves: &[ProtocolCurve], seconds_per_step: f64) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
    let mut out = row(&[
        "protocol",
        "steps",
        "minutes",
        "n",
        "mean_top1",
        "std_top1",
        "gap_sigmas",
    ]);
    for c in curves {
        if let Some(r) = &c.random {
            out.push_str(&row(&[
                c.protocol.clone(),
                "0".into(),
                "0".into(),
                r.n.to_string(),
                r.mean.to_string(),
                opt(r.std),
                String::new(),
            ]));
        }
        for (step, st) in &c.points {
            out.push_str(&row(&[
                c.protocol.clone(),
                step.to_string(),
                (*step as f64 * seconds_per_step / 60.0).to_string(),
                st.n.to_string(),
                st.mean.to_string(),
                opt(st.std),
                opt(c.gap_sigmas(st)),
            ]));
        }
    }
    out
}

/// Draws one PNG per protocol into `dir` (`calibration-<protocol>.png`, with its CSV).
pub fn plots(
    curves: &[ProtocolCurve],
    method: &str,
    metric: &str,
    dir: &Path,
) -> Result<Vec<PlotFiles>, ReportError> {
    let point = |x: f64, s: &Stat| CurvePoint {
        x,
        mean: s.mean,
        std: s.std,
        n: s.n,
    };
    curves
        .iter()
        .map(|c| {
            let mut series = vec![CurveSeries {
                name: format!("{method} · {}", c.protocol),
                style: SeriesStyle::Curve,
                points: c.points.iter().map(|(x, s)| point(*x as f64, s)).collect(),
            }];
            if let Some(r) = &c.random {
                series.push(CurveSeries {
                    name: format!("random init · {}", c.protocol),
                    style: SeriesStyle::Reference,
                    points: vec![point(0.0, r)],
                });
            }
            curve_png(
                &dir.join(format!("calibration-{}.png", c.protocol)),
                &format!("{} {metric} against pretraining steps", c.protocol),
                "pretraining steps",
                metric,
                &series,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(p: &str, step: Option<u64>, values: &[f64]) -> Vec<Observation> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Observation {
                protocol: p.into(),
                step,
                seed: i as u64,
                value: *v,
            })
            .collect()
    }

    #[test]
    fn the_first_win_needs_more_than_two_pooled_sigmas() {
        let mut all = obs("linear", None, &[20.0, 21.0, 22.0]);
        // +1σ: not a win.
        all.extend(obs("linear", Some(100), &[21.0, 22.0, 23.0]));
        // +3σ: a win.
        all.extend(obs("linear", Some(200), &[23.0, 24.0, 25.0]));
        all.extend(obs("knn", None, &[10.0, 10.0, 10.0]));
        all.extend(obs("knn", Some(100), &[10.0, 10.0, 10.0]));
        let c = curves(&all);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].protocol, "linear");
        assert_eq!(c[0].points.len(), 2);
        assert!((c[0].gap_sigmas(&c[0].points[0].1).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(c[0].first_win(), Some(200));
        assert_eq!(c[1].first_win(), None);
        let md = markdown(&c, "top1", 0.02);
        assert!(md.contains("200 steps (≈ 4.0 min), on `linear`"), "{md}");
        assert!(md.contains("| 200 | 4.0 | 24.0 ± 1.0 (+3.0σ) |"), "{md}");
    }

    #[test]
    fn no_win_is_said_plainly() {
        let mut all = obs("linear", None, &[20.0, 22.0]);
        all.extend(obs("linear", Some(100), &[19.0, 21.0]));
        let md = markdown(&curves(&all), "top1", 1.0);
        assert!(md.contains("No measured budget beats"), "{md}");
    }

    #[test]
    fn one_seed_decides_nothing() {
        let mut all = obs("linear", None, &[20.0]);
        all.extend(obs("linear", Some(100), &[90.0]));
        assert_eq!(curves(&all)[0].first_win(), None);
    }
}
