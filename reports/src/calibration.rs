//! Calibration: a downstream metric against pretraining steps, next to a random initialisation,
//! and the smallest budget at which pretraining pays.
//!
//! "Pays" is decided per protocol: at a step count, the pretrained encoder's mean over seeds
//! exceeds the random encoder's mean by more than two standard deviations, the standard
//! deviation being the pooled per-run one, `sqrt((s_pre² + s_rand²) / 2)` (sample standard
//! deviations over seeds).
//!
//! A point whose seed draws nothing (kNN on a checkpoint: [`RunRecord::is_deterministic`]) and
//! whose runs all gave the same value is **one measurement**: n = 1 and no standard deviation, so
//! it never enters a pooled σ as a zero. Against it, σ is the other side's standard deviation
//! alone (the random initialisation's spread over the encoders its seeds draw), and the gap is
//! marked `σ_rand`; the pretrained side's own spread over pretraining seeds is not measured by a
//! calibration (its checkpoints come from one pretraining run). With no spread on either side
//! (one seed, both deterministic, or a standard deviation of exactly 0) nothing is decided and
//! the table says "no spread to compare".

use std::collections::{BTreeMap, BTreeSet};
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
    /// The seed draws nothing in this run ([`RunRecord::is_deterministic`]).
    pub deterministic: bool,
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
            deterministic: record.is_deterministic(),
        })
    }
}

/// Mean and sample standard deviation of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Independent measurements (1 for a deterministic point, whatever its runs).
    pub n: usize,
    /// Runs behind it.
    pub runs: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (`None` when n < 2).
    pub std: Option<f64>,
    /// The seed draws nothing and every run gave the same value: one measurement.
    pub deterministic: bool,
}

impl Stat {
    /// Of `values` (at least one), each an independent measurement.
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        });
        Self {
            n,
            runs: n,
            mean,
            std,
            deterministic: false,
        }
    }

    /// Of runs whose seed draws nothing when `deterministic`: if they all agree they are one
    /// measurement (n = 1, no standard deviation); if they differ, each counts.
    pub fn of_runs(values: &[f64], deterministic: bool) -> Self {
        let first = values[0];
        if deterministic && values.iter().all(|v| *v == first) {
            Self {
                n: 1,
                runs: values.len(),
                mean: first,
                std: None,
                deterministic: true,
            }
        } else {
            Self::of(values)
        }
    }

    fn text(&self) -> String {
        match self.std {
            Some(s) => format!("{:.1} ± {:.1}", self.mean, s),
            None if self.deterministic => format!("{:.1} (deterministic)", self.mean),
            None => format!("{:.1} (n={})", self.mean, self.n),
        }
    }
}

/// Which standard deviation a gap is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigmaBasis {
    /// `sqrt((s_pre² + s_rand²) / 2)`: both sides have a spread over seeds.
    Pooled,
    /// The random initialisation's alone: the pretrained point is one deterministic measurement.
    Random,
    /// The pretrained point's alone: the random point is one deterministic measurement.
    Pretrained,
}

impl SigmaBasis {
    /// `pooled`, `random`, `pretrained` (the CSV's `sigma` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pooled => "pooled",
            Self::Random => "random",
            Self::Pretrained => "pretrained",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Pooled => "σ",
            Self::Random => "σ_rand",
            Self::Pretrained => "σ_pre",
        }
    }
}

/// A gap to random init in standard deviations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// `(mean_pretrained − mean_random) / σ`.
    pub sigmas: f64,
    /// Which σ.
    pub basis: SigmaBasis,
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
    /// Gap to random at a point, in the σ of [`SigmaBasis`] (see the module docs): pooled when
    /// both sides have a spread; one side's alone when the other is a deterministic measurement;
    /// `None` when there is no spread to compare (one seed, both deterministic, or σ = 0).
    pub fn gap(&self, s: &Stat) -> Option<Gap> {
        let r = self.random?;
        let (sigma, basis) = match (s.std, r.std) {
            (Some(a), Some(b)) => (((a * a + b * b) / 2.0).sqrt(), SigmaBasis::Pooled),
            (None, Some(b)) if s.deterministic => (b, SigmaBasis::Random),
            (Some(a), None) if r.deterministic => (a, SigmaBasis::Pretrained),
            _ => return None,
        };
        (sigma > 0.0).then(|| Gap {
            sigmas: (s.mean - r.mean) / sigma,
            basis,
        })
    }

    /// [`Self::gap`] in standard deviations.
    pub fn gap_sigmas(&self, s: &Stat) -> Option<f64> {
        self.gap(s).map(|g| g.sigmas)
    }

    /// The smallest step count at which the pretrained encoder beats random by more than two
    /// standard deviations ([`Self::gap`]).
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
    // Per (protocol, step): the values, and whether every run's seed draws nothing.
    let mut groups: BTreeMap<(String, Option<u64>), (Vec<f64>, bool)> = BTreeMap::new();
    for o in obs {
        if !order.contains(&o.protocol) {
            order.push(o.protocol.clone());
        }
        let g = groups
            .entry((o.protocol.clone(), o.step))
            .or_insert((Vec::new(), true));
        g.0.push(o.value);
        g.1 &= o.deterministic;
    }
    let stat = |(v, det): &(Vec<f64>, bool)| Stat::of_runs(v, *det);
    order
        .into_iter()
        .map(|p| {
            let random = groups.get(&(p.clone(), None)).map(stat);
            let points = groups
                .iter()
                .filter_map(|((q, step), v)| match step {
                    Some(s) if *q == p => Some((*s, stat(v))),
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
    let mut bases: BTreeSet<&'static str> = BTreeSet::new();
    let mut no_spread = false;
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
                    let gap = match (c.gap(st), c.random) {
                        (Some(g), _) => {
                            bases.insert(g.basis.as_str());
                            format!(" ({:+.1}{})", g.sigmas, g.basis.symbol())
                        }
                        (None, Some(_)) => {
                            no_spread = true;
                            " (no spread to compare)".to_string()
                        }
                        (None, None) => String::new(),
                    };
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
         s_random²) / 2)`; the gap is `(mean_pretrained − mean_random) / σ`.",
    );
    if bases.contains("random") || bases.contains("pretrained") {
        out.push_str(
            " \"(deterministic)\" marks a point whose seed draws nothing (kNN on a fixed \
             encoder): its runs gave one value, so it is one measurement (n = 1) with no standard \
             deviation of its own and does not enter a pooled σ. Its gap is in the other side's \
             σ alone (`σ_rand`: the spread of random initialisation over the encoders its seeds \
             draw); the spread of the pretrained encoder over pretraining seeds is not measured \
             here.",
        );
    }
    if no_spread {
        out.push_str(
            " \"no spread to compare\": neither side has a standard deviation (one seed, both \
             deterministic, or identical values), so no gap is computed and the point decides \
             nothing.",
        );
    }
    out.push('\n');
    out
}

/// The curves as CSV: `protocol,steps,minutes,n,mean_top1,std_top1,gap_sigmas,sigma,runs,
/// deterministic`, random init as step 0 (no gap), empty fields where a value does not exist;
/// minutes are steps × `seconds_per_step`; `sigma` names the σ of the gap ([`SigmaBasis`]); `n`
/// counts independent measurements, `runs` the runs behind them.
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
        "sigma",
        "runs",
        "deterministic",
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
                String::new(),
                r.runs.to_string(),
                r.deterministic.to_string(),
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
                c.gap(st)
                    .map_or(String::new(), |g| g.basis.as_str().to_string()),
                st.runs.to_string(),
                st.deterministic.to_string(),
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
                deterministic: false,
            })
            .collect()
    }

    fn det(mut o: Vec<Observation>) -> Vec<Observation> {
        for x in &mut o {
            x.deterministic = true;
        }
        o
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
    fn a_deterministic_point_is_one_measurement_measured_in_the_random_sigma() {
        // Random init varies the encoder (spread 1.0); kNN on a checkpoint is deterministic.
        let mut all = obs("knn", None, &[20.0, 21.0, 22.0]);
        all.extend(det(obs("knn", Some(100), &[23.5, 23.5, 23.5])));
        all.extend(det(obs("knn", Some(200), &[22.0, 22.0, 22.0])));
        let c = &curves(&all)[0];
        let (_, p) = c.points[0];
        assert_eq!((p.n, p.runs, p.std, p.deterministic), (1, 3, None, true));
        let g = c.gap(&p).unwrap();
        assert_eq!(g.basis, SigmaBasis::Random);
        assert!((g.sigmas - 2.5).abs() < 1e-9);
        assert_eq!(c.first_win(), Some(100));
        let md = markdown(std::slice::from_ref(c), "top1", 1.0);
        assert!(
            md.contains("| 100 | 100.0 | 23.5 (deterministic) (+2.5σ_rand) |"),
            "{md}"
        );
        assert!(md.contains("does not enter a pooled σ"), "{md}");
        assert!(!md.contains("± 0.0"), "{md}");
        let csv = to_csv(std::slice::from_ref(c), 60.0);
        assert!(
            csv.contains("knn,100,100,1,23.5,,2.5,random,3,true"),
            "{csv}"
        );
        // A deterministic protocol whose runs differ is not collapsed.
        let s = Stat::of_runs(&[1.0, 2.0], true);
        assert_eq!((s.n, s.deterministic), (2, false));
    }

    #[test]
    fn no_spread_on_either_side_decides_nothing_and_says_so() {
        let mut all = det(obs("knn", None, &[10.0, 10.0]));
        all.extend(det(obs("knn", Some(100), &[30.0, 30.0])));
        // Identical non-deterministic values: σ = 0 is no spread either.
        all.extend(obs("linear", None, &[10.0, 10.0]));
        all.extend(obs("linear", Some(100), &[30.0, 30.0]));
        let c = curves(&all);
        assert!(c.iter().all(|c| c.first_win().is_none()));
        let md = markdown(&c, "top1", 1.0);
        assert!(md.contains("(no spread to compare)"), "{md}");
        assert!(md.contains("No measured budget beats"), "{md}");
    }

    #[test]
    fn one_seed_decides_nothing() {
        let mut all = obs("linear", None, &[20.0]);
        all.extend(obs("linear", Some(100), &[90.0]));
        assert_eq!(curves(&all)[0].first_win(), None);
    }
}
