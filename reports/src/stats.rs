//! Differences with 95% intervals: a paired bootstrap over evaluation images, and Welch's
//! interval over seeds.
//!
//! A comparison of two encoders is a difference, never two means side by side. Which interval
//! fits depends on what varies: when both encoders were measured on the same images (the
//! classification probes record every validation image's top-1, `RunRecord::per_image`), the
//! paired bootstrap resamples images and keeps each image's pair together, so the image-to-image
//! variation both encoders share cancels; when the variation is the seed (pretraining seeds of an
//! ablation cell), Welch's interval over the per-seed values says what another seed would give.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A difference `a − b` with its 95% interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// The estimate, `mean(a) − mean(b)`.
    pub estimate: f64,
    /// Lower end of the 95% interval.
    pub lo: f64,
    /// Upper end of the 95% interval.
    pub hi: f64,
    /// How the interval was made (`paired bootstrap over 2400 images, 10000 resamples`).
    pub method: String,
}

impl Difference {
    /// Whether the interval lies entirely on one side of zero.
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }

    /// `+8.1 [+6.4, +9.8]` with `decimals` digits.
    pub fn text(&self, decimals: usize) -> String {
        format!(
            "{:+.d$} [{:+.d$}, {:+.d$}]",
            self.estimate,
            self.lo,
            self.hi,
            d = decimals
        )
    }

    /// What the interval says, in words, for `a` against `b`.
    pub fn words(&self, a: &str, b: &str) -> String {
        if self.lo > 0.0 {
            format!("the interval excludes zero: {a} is better than {b}")
        } else if self.hi < 0.0 {
            format!("the interval excludes zero: {a} is worse than {b}")
        } else {
            format!("the interval includes zero: no difference between {a} and {b} is shown")
        }
    }
}

/// The resamples of [`paired_bootstrap`] by default.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The `q`-quantile (0..1) of sorted values, linearly interpolated (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() {
        sorted[i] * (1.0 - f) + sorted[i + 1] * f
    } else {
        sorted[i]
    }
}

/// `mean(a) − mean(b)` over paired observations (`a[i]` and `b[i]` measured on the same image)
/// with the percentile interval of `resamples` bootstrap resamples of the pairs (ChaCha8 seeded
/// with `seed`, so the interval is the same on every run). `None` when the lengths differ or
/// there are fewer than two pairs.
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<Difference> {
    if a.len() != b.len() || a.len() < 2 || resamples == 0 {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Some(Difference {
        estimate: mean(&d),
        lo: quantile(&means, 0.025),
        hi: quantile(&means, 0.975),
        method: format!("paired bootstrap over {n} images, {resamples} resamples, percentile"),
    })
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error below 1e-13).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |s, (i, c)| s + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// The regularised incomplete beta function `I_x(a, b)` (the continued fraction of Lentz's
/// method, evaluated on the side where it converges fast).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(1.0 - x, b, a);
    }
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..300 {
        let m = f64::from(m);
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = 1.0 + num / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * f / a
}

/// `P(T ≤ t)` for Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (any real `df ≥ 1`; the
/// half-width of a two-sided 95% interval in standard errors), by bisection of [`t_cdf`].
pub fn t975(df: f64) -> f64 {
    let df = df.max(1.0);
    let (mut lo, mut hi) = (1.9, 13.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < 0.975 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Sample variance (n − 1).
fn variance(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
}

/// `mean(a) − mean(b)` with Welch's 95% interval (unequal variances, Welch–Satterthwaite degrees
/// of freedom), for independent values such as one per seed. `None` with fewer than two values
/// on either side. When both sides have no spread the interval is the point itself.
pub fn welch(a: &[f64], b: &[f64]) -> Option<Difference> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (va, vb) = (variance(a) / a.len() as f64, variance(b) / b.len() as f64);
    let est = mean(a) - mean(b);
    let se = (va + vb).sqrt();
    let df = if se > 0.0 {
        (va + vb).powi(2)
            / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64)
                .max(f64::MIN_POSITIVE)
    } else {
        f64::INFINITY
    };
    let half = if se > 0.0 { t975(df) * se } else { 0.0 };
    Some(Difference {
        estimate: est,
        lo: est - half,
        hi: est + half,
        method: format!(
            "Welch over seeds (n = {} and {}, df {:.1})",
            a.len(),
            b.len(),
            df.min(1e9)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_equal_scipy() {
        // scipy.stats.t.ppf(0.975, df), scipy 1.17.1.
        for (df, want) in [
            (1.0, 12.706_204_736_174_7),
            (2.5, 3.574_654_842_003_681_7),
            (3.5, 2.940_088_637_982_728_2),
            (12.3, 2.172_933_481_758_962),
            (30.5, 2.040_869_445_186_32),
            (40.0, 2.021_075_390_306_273),
            (120.0, 1.979_930_405_082_440_2),
        ] {
            assert!(
                (t975(df) - want).abs() < 1e-9,
                "df {df}: {} vs {want}",
                t975(df)
            );
        }
        assert!((t975(1e9) - 1.959_963_985).abs() < 1e-6);
        assert!((t_cdf(0.0, 3.0) - 0.5).abs() < 1e-15);
        assert!((t_cdf(-2.0, 5.0) + t_cdf(2.0, 5.0) - 1.0).abs() < 1e-14);
    }

    #[test]
    fn welch_by_hand() {
        // a = 1, 2, 3 (mean 2, var 1); b = 0, 0, 0, 4 (mean 1, var 4).
        let d = welch(&[1.0, 2.0, 3.0], &[0.0, 0.0, 0.0, 4.0]).unwrap();
        let (va, vb) = (1.0 / 3.0, 4.0 / 4.0);
        let df = (va + vb) * (va + vb) / (va * va / 2.0 + vb * vb / 3.0);
        let half = t975(df) * (va + vb).sqrt();
        assert!((d.estimate - 1.0).abs() < 1e-12);
        assert!((d.lo - (1.0 - half)).abs() < 1e-12 && (d.hi - (1.0 + half)).abs() < 1e-12);
        assert!(!d.excludes_zero());
        assert!(welch(&[1.0], &[1.0, 2.0]).is_none());
        // No spread on either side: the interval is the point.
        let flat = welch(&[3.0, 3.0], &[1.0, 1.0]).unwrap();
        assert_eq!((flat.lo, flat.hi), (2.0, 2.0));
        assert!(flat.excludes_zero());
    }

    #[test]
    fn the_paired_bootstrap_sees_a_shift_the_unpaired_spread_hides() {
        // Image difficulty varies a lot (shared by both); `a` is right on 60 more images of 1000.
        let b: Vec<f64> = (0..1000).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let mut a = b.clone();
        for v in a.iter_mut().skip(1).step_by(2).take(60) {
            *v = 1.0;
        }
        let d = paired_bootstrap(&a, &b, 2000, 7).unwrap();
        assert!((d.estimate - 0.06).abs() < 1e-12);
        // Per-image differences are 0 or 1 with p = 0.06: se = sqrt(0.06 · 0.94 / 1000) ≈ 0.0075.
        assert!(d.lo > 0.04 && d.lo < 0.05, "{d:?}");
        assert!(d.hi > 0.07 && d.hi < 0.08, "{d:?}");
        assert!(d.excludes_zero());
        assert!(d.words("A", "B").contains("A is better than B"));
        // The same seed gives the same interval; equal inputs a zero-width one.
        assert_eq!(paired_bootstrap(&a, &b, 2000, 7), Some(d));
        let z = paired_bootstrap(&b, &b, 100, 1).unwrap();
        assert_eq!((z.lo, z.hi), (0.0, 0.0));
        assert!(!z.excludes_zero());
        assert!(paired_bootstrap(&a, &b[1..], 10, 0).is_none());
    }
}
