//! Floating-point reductions in numpy's summation order.
//!
//! The reference tools average with `np.mean` / `np.nanmean`, and numpy adds a contiguous `f64`
//! array by pairwise reduction, not left to right. Float addition is not associative, so to give
//! the reference's numbers to the last bit the means here add in the same order.

/// Below this many values numpy adds left to right.
const UNROLL: usize = 8;
/// Up to this many values numpy adds in eight interleaved lanes; past it, it splits in two.
const BLOCK: usize = 128;

/// The sum of `values` in the order `np.add.reduce` uses on a contiguous `f64` array.
///
/// Shorter than 8: left to right from 0. Up to 128: eight lane sums over stride-8 elements,
/// combined as `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`, then the remainder added
/// in order. Longer: split at half the length rounded down to a multiple of 8, and the two
/// halves summed the same way.
pub(crate) fn pairwise_sum(values: &[f64]) -> f64 {
    let n = values.len();
    if n < UNROLL {
        let mut acc = 0.0;
        for &v in values {
            acc += v;
        }
        acc
    } else if n <= BLOCK {
        let mut lanes = [0.0f64; UNROLL];
        lanes.copy_from_slice(&values[..UNROLL]);
        let full = n - n % UNROLL;
        for chunk in values[UNROLL..full].chunks_exact(UNROLL) {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += v;
            }
        }
        let mut acc = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
            + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
        for &v in &values[full..] {
            acc += v;
        }
        acc
    } else {
        let half = n / 2;
        let split = half - half % UNROLL;
        pairwise_sum(&values[..split]) + pairwise_sum(&values[split..])
    }
}

/// `np.mean(values)`: the pairwise sum divided by the length; NaN for an empty slice.
pub(crate) fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    pairwise_sum(values) / values.len() as f64
}

/// `np.nanmean(values)`: NaNs replaced by 0 for the (pairwise) sum and left out of the count;
/// NaN when every value is NaN.
pub(crate) fn nanmean(values: &[f64]) -> f64 {
    let count = values.iter().filter(|v| !v.is_nan()).count();
    if count == 0 {
        return f64::NAN;
    }
    let zeroed: Vec<f64> = values
        .iter()
        .map(|&v| if v.is_nan() { 0.0 } else { v })
        .collect();
    pairwise_sum(&zeroed) / count as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(values: &[f64]) -> f64 {
        values.iter().fold(0.0, |acc, &v| acc + v)
    }

    /// One large value and many small ones: adding them one at a time loses every small one,
    /// a pairwise order keeps some.
    fn lopsided(n: usize) -> Vec<f64> {
        let mut v = vec![1e-16; n];
        v[0] = 1.0;
        v
    }

    #[test]
    fn short_sums_are_serial() {
        let v = lopsided(7);
        assert_eq!(pairwise_sum(&v).to_bits(), serial(&v).to_bits());
        assert_eq!(pairwise_sum(&[]), 0.0);
    }

    #[test]
    fn blocked_sums_use_eight_lanes() {
        // 19 values: lanes j = v[j] + v[j + 8] for j < 8, combined as a tree, then v[16..19]
        // added in order.
        let v: Vec<f64> = (0..19).map(|i| 1.0 / f64::from(i + 3)).collect();
        let l: Vec<f64> = (0..8).map(|j| v[j] + v[j + 8]).collect();
        let tree = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        let expected = ((tree + v[16]) + v[17]) + v[18];
        assert_eq!(pairwise_sum(&v).to_bits(), expected.to_bits());
        // A large value and small ones: serially every 1e-16 is lost, the lanes keep them.
        let w = lopsided(16);
        assert_eq!(serial(&w), 1.0);
        assert!(pairwise_sum(&w) > 1.0);
    }

    #[test]
    fn long_sums_split_at_a_multiple_of_eight() {
        // 300 values split as 144 + 156, and 156 again as 72 + 84.
        let v: Vec<f64> = (0..300).map(|i| 1.0 / f64::from(i + 1)).collect();
        let manual =
            pairwise_sum(&v[..144]) + (pairwise_sum(&v[144..216]) + pairwise_sum(&v[216..]));
        assert_eq!(pairwise_sum(&v).to_bits(), manual.to_bits());
        assert!((pairwise_sum(&v) - serial(&v)).abs() < 1e-12);
    }

    #[test]
    fn means_skip_nans_like_numpy() {
        assert_eq!(mean(&[1.0, 2.0, 4.0]), 7.0 / 3.0);
        assert!(mean(&[]).is_nan());
        assert_eq!(nanmean(&[1.0, f64::NAN, 3.0]), 2.0);
        assert!(nanmean(&[f64::NAN, f64::NAN]).is_nan());
    }
}
