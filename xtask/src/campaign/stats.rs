//! Statistics of the table: mean and sample standard deviation over seeds, paired differences (same seed
//! = same data order, dropout stream and head), and Student t 95% confidence intervals of their mean;
//! for leave-one-out estimates (the FMA rows), the jackknife's interval.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::BTreeMap;

/// Mean and sample standard deviation (n - 1 in the denominator; none for n = 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub std: Option<f64>,
}

pub fn summary(v: &[f64]) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    Some(Summary { n, mean, std })
}

/// The two-sided `level` quantile of Student's t with `df` degrees of freedom (t such that
/// P(|T| <= t) = level).
pub fn t_quantile(df: usize, level: f64) -> f64 {
    let t = StudentsT::new(0.0, 1.0, df as f64).expect("df >= 1");
    t.inverse_cdf(0.5 + level / 2.0)
}

/// The mean of `v` with its Student t confidence interval (none for n = 1: one seed has no spread).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub n: usize,
    pub mean: f64,
    pub std: Option<f64>,
    pub level: f64,
    /// Half width of the interval: t(level, n-1) * std / sqrt(n).
    pub half_width: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    /// Whether the interval excludes 0 (the difference is real at this level); none without an interval.
    pub excludes_zero: Option<bool>,
    /// How the interval was computed: `t` (the values are independent) or `jackknife` (they are
    /// leave-one-out estimates; `std` is then the pseudo-values' standard deviation).
    pub method: &'static str,
}

pub const LEVEL: f64 = 0.95;

pub fn interval(v: &[f64], level: f64) -> Option<Interval> {
    let s = summary(v)?;
    Some(t_interval(s.n, s.mean, s.std, level, "t"))
}

fn t_interval(n: usize, mean: f64, std: Option<f64>, level: f64, method: &'static str) -> Interval {
    let half = std.map(|sd| t_quantile(n - 1, level) * sd / (n as f64).sqrt());
    let (lo, hi) = (half.map(|h| mean - h), half.map(|h| mean + h));
    Interval {
        n,
        mean,
        std,
        level,
        half_width: half,
        lo,
        hi,
        excludes_zero: lo.zip(hi).map(|(lo, hi)| lo > 0.0 || hi < 0.0),
        method,
    }
}

/// The mean of leave-one-out estimates with the jackknife's interval: `v[k]` is a statistic computed from
/// `seeds` - 1 of `seeds` seeds, leaving out a different seed each (some of them may be missing). Any two
/// such estimates share `seeds` - 2 seeds, so they are not independent and the t interval of their mean is
/// too narrow: where `v[k]` is the mean of per-seed values `d[j]` over the seeds it keeps, `v[k]`'s spread
/// is `d`'s divided by `seeds` - 1. The jackknife's pseudo-values `seeds * mean - (seeds - 1) * v[k]`
/// undo that (for such a mean they are the `d[k]` themselves), and their t interval is the jackknife's:
/// the t interval of `v` widened `seeds` - 1 times. For a statistic that is not a mean of per-seed
/// values the jackknife's variance errs on the wide side (Efron and Stein, 1981).
pub fn jackknife_interval(v: &[f64], seeds: usize, level: f64) -> Option<Interval> {
    assert!(seeds >= 2, "a leave-one-out estimate needs at least 2 seeds, got {seeds}");
    let s = summary(v)?;
    let widen = (seeds - 1) as f64;
    Some(t_interval(s.n, s.mean, s.std.map(|sd| sd * widen), level, "jackknife"))
}

/// `a[k] - b[k]` for every key both hold, in key order.
pub fn paired<K: Ord + Clone>(a: &BTreeMap<K, f64>, b: &BTreeMap<K, f64>) -> Vec<(K, f64)> {
    a.iter().filter_map(|(k, x)| b.get(k).map(|y| (k.clone(), x - y))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_quantiles_match_the_table() {
        // Two-sided 95%: the familiar table values.
        for (df, t) in
            [(1, 12.706204736174707), (2, 4.302652729911275), (4, 2.7764451051977987), (29, 2.045229642132703)]
        {
            assert!(close(t_quantile(df, 0.95), t, 1e-6), "df {df}: {} vs {t}", t_quantile(df, 0.95));
        }
    }

    #[test]
    fn n1_has_a_mean_and_no_spread_or_interval() {
        let s = summary(&[67.5]).unwrap();
        assert_eq!((s.n, s.mean, s.std), (1, 67.5, None));
        let i = interval(&[0.7], LEVEL).unwrap();
        assert_eq!((i.n, i.mean, i.half_width, i.lo, i.hi, i.excludes_zero), (1, 0.7, None, None, None, None));
        assert!(summary(&[]).is_none() && interval(&[], LEVEL).is_none());
    }

    #[test]
    fn n2_by_hand() {
        // [1, 3]: mean 2, sd sqrt(2); half width 12.7062 * sqrt(2) / sqrt(2) = 12.7062: includes 0.
        let i = interval(&[1.0, 3.0], LEVEL).unwrap();
        assert_eq!(i.mean, 2.0);
        assert!(close(i.std.unwrap(), 2f64.sqrt(), 1e-12));
        assert!(close(i.half_width.unwrap(), 12.706204736174707, 1e-6));
        assert!(close(i.lo.unwrap(), 2.0 - 12.706204736174707, 1e-6));
        assert_eq!(i.excludes_zero, Some(false));
        // Equal differences: sd 0, the interval is the point, which excludes 0.
        let i = interval(&[0.5, 0.5], LEVEL).unwrap();
        assert_eq!(
            (i.std, i.half_width, i.lo, i.hi, i.excludes_zero),
            (Some(0.0), Some(0.0), Some(0.5), Some(0.5), Some(true))
        );
    }

    #[test]
    fn n3_by_hand() {
        // [1, 2, 3]: mean 2, sd 1; half width 4.302653 / sqrt(3) = 2.484138: [-0.484138, 4.484138].
        let i = interval(&[1.0, 2.0, 3.0], LEVEL).unwrap();
        assert_eq!((i.mean, i.std), (2.0, Some(1.0)));
        assert!(close(i.half_width.unwrap(), 2.484138, 1e-6), "{:?}", i.half_width);
        assert_eq!(i.excludes_zero, Some(false));
        // [2, 3, 4]: mean 3, sd 1: [0.515862, 5.484138] excludes 0.
        let i = interval(&[2.0, 3.0, 4.0], LEVEL).unwrap();
        assert!(close(i.lo.unwrap(), 0.515862, 1e-6));
        assert_eq!(i.excludes_zero, Some(true));
        // All below 0 excludes it too.
        assert_eq!(interval(&[-2.0, -3.0, -4.0], LEVEL).unwrap().excludes_zero, Some(true));
    }

    #[test]
    fn jackknife_of_leave_one_out_means_is_the_t_interval_of_the_per_seed_values() {
        // Per-seed values d = [1, 2, 6] and their leave-one-out means (seed 1 left out: (2 + 6) / 2, ...).
        let d = [1.0, 2.0, 6.0];
        let loo: Vec<f64> = (0..3).map(|k| (d.iter().sum::<f64>() - d[k]) / 2.0).collect();
        assert_eq!(loo, [4.0, 3.5, 1.5]);
        let (j, t) = (jackknife_interval(&loo, 3, LEVEL).unwrap(), interval(&d, LEVEL).unwrap());
        assert_eq!((j.n, j.mean, j.method, t.method), (3, 3.0, "jackknife", "t"));
        assert!(close(j.std.unwrap(), t.std.unwrap(), 1e-12) && close(j.lo.unwrap(), t.lo.unwrap(), 1e-12));
        assert!(close(j.hi.unwrap(), t.hi.unwrap(), 1e-12) && j.excludes_zero == t.excludes_zero);
        // The plain t interval of the leave-one-out means is half as wide (seeds - 1 = 2): too narrow.
        let naive = interval(&loo, LEVEL).unwrap();
        assert!(close(j.half_width.unwrap(), 2.0 * naive.half_width.unwrap(), 1e-12));
        // [1.5, 2, 2.5] with 3 seeds: t would exclude 0 ([0.258, 3.242]); the jackknife does not.
        let i = [1.5, 2.0, 2.5];
        assert_eq!(interval(&i, LEVEL).unwrap().excludes_zero, Some(true));
        let j = jackknife_interval(&i, 3, LEVEL).unwrap();
        assert!(close(j.lo.unwrap(), 2.0 - 2.0 * 4.302652729911275 * 0.5 / 3f64.sqrt(), 1e-9));
        assert_eq!(j.excludes_zero, Some(false));
        // One estimate: a mean, no interval.
        let one = jackknife_interval(&[0.4], 3, LEVEL).unwrap();
        assert_eq!((one.mean, one.half_width, one.excludes_zero), (0.4, None, None));
    }

    #[test]
    fn pairs_only_common_seeds() {
        let a: BTreeMap<u64, f64> = [(1, 70.0), (2, 71.0), (3, 69.0)].into();
        let b: BTreeMap<u64, f64> = [(1, 69.0), (3, 69.5)].into();
        assert_eq!(paired(&a, &b), vec![(1, 1.0), (3, -0.5)]);
    }
}
