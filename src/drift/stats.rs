//! The drift statistics, computed the way scipy 1.13 and Evidently 0.4.22 compute them so results
//! can be compared digit for digit. Pure functions on sorted samples or category counts: no
//! knowledge of columns, tables or reports.
//!
//! Only the distributions' survival functions come from `statrs` (chi-squared); everything else is
//! computed here because statrs' own tests differ from scipy (see NOTES.md).

use statrs::distribution::{ChiSquared, ContinuousCDF};

pub use super::ks::{KsMethod, KsResult, ks_2samp};

/// A sample's values reduced to what the categorical path of the statistics needs: the count of
/// each category, in one shared key order for reference and current.
#[derive(Debug, Clone, PartialEq)]
pub struct CountPair {
    pub reference: Vec<u64>,
    pub current: Vec<u64>,
}

impl CountPair {
    pub fn reference_total(&self) -> u64 {
        self.reference.iter().sum()
    }

    pub fn current_total(&self) -> u64 {
        self.current.iter().sum()
    }
}

/// Chi-squared goodness of fit of the current counts against the reference frequencies scaled to
/// the current size (Evidently's `chisquare` test: `f_exp = ref * n_cur / n_ref`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ChiSquare {
    pub statistic: f64,
    pub dof: u64,
    pub p_value: f64,
}

/// Chi-squared test. A category that appears only in the current batch has an expected count of
/// zero: the statistic is infinite and the p-value 0 (as in scipy), which reads as drift. With a
/// single category there are no degrees of freedom: the distributions cannot differ and the
/// p-value is 1 (scipy would return NaN).
pub fn chi_square(counts: &CountPair) -> ChiSquare {
    let n_ref = counts.reference_total() as f64;
    let n_cur = counts.current_total() as f64;
    let k_norm = n_cur / n_ref;
    let mut statistic = 0.0;
    for (&r, &c) in counts.reference.iter().zip(&counts.current) {
        let expected = r as f64 * k_norm;
        let d = c as f64 - expected;
        statistic += d * d / expected;
    }
    let dof = counts.reference.len().saturating_sub(1) as u64;
    let p_value = if dof == 0 {
        1.0
    } else if statistic.is_infinite() {
        0.0
    } else {
        chi2_sf(statistic, dof as f64)
    };
    ChiSquare {
        statistic,
        dof,
        p_value,
    }
}

fn chi2_sf(x: f64, dof: f64) -> f64 {
    match ChiSquared::new(dof) {
        Ok(d) => d.sf(x),
        Err(_) => f64::NAN,
    }
}

/// Two-proportion Z-test (pooled variance) on the share of the first category.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ZTest {
    pub statistic: f64,
    pub p_value: f64,
}

/// Z-test comparing the proportion of values other than category `first` (index into the counts)
/// between reference and current, as Evidently codes them (`0 if x == first else 1`). When both samples hold one and the same single value the p-value is 1 (as in
/// Evidently) rather than 0/0.
pub fn z_test(counts: &CountPair, first: usize) -> ZTest {
    let n1 = counts.reference_total() as f64;
    let n2 = counts.current_total() as f64;
    let ref_kinds = counts.reference.iter().filter(|&&c| c > 0).count();
    let cur_kinds = counts.current.iter().filter(|&&c| c > 0).count();
    let same_single = ref_kinds == 1
        && cur_kinds == 1
        && counts
            .reference
            .iter()
            .zip(&counts.current)
            .any(|(&r, &c)| r > 0 && c > 0);
    if same_single {
        return ZTest {
            statistic: 0.0,
            p_value: 1.0,
        };
    }
    let p1 = (counts.reference_total() - counts.reference[first]) as f64 / n1;
    let p2 = (counts.current_total() - counts.current[first]) as f64 / n2;
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    ZTest {
        statistic: z,
        p_value: normal_two_sided(z),
    }
}

/// `2 * P(Z > |z|)` for a standard normal, without the cancellation of `2 * (1 - cdf)`.
pub fn normal_two_sided(z: f64) -> f64 {
    statrs::function::erf::erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// Normed Wasserstein distance: the first Wasserstein distance between the two empirical
/// distributions divided by the reference's population standard deviation (floored at 0.001, as
/// Evidently does, so a constant reference still yields a finite, large distance when the current
/// batch moves). Both samples must be sorted and non-empty.
pub fn wasserstein_norm(reference: &[f64], current: &[f64]) -> f64 {
    let norm = population_std(reference).max(0.001);
    wasserstein(reference, current) / norm
}

/// First Wasserstein distance between two sorted samples: the area between their ECDFs.
pub fn wasserstein(u: &[f64], v: &[f64]) -> f64 {
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    let mut prev: Option<f64> = None;
    // Walk the merged sorted values; between consecutive values both ECDFs are constant.
    while i < u.len() || j < v.len() {
        let x = match (u.get(i), v.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        if let Some(p) = prev {
            // ECDFs just before x (counts of values <= p).
            let fu = i as f64 / nu;
            let fv = j as f64 / nv;
            total += (fu - fv).abs() * (x - p);
        }
        while i < u.len() && u[i] == x {
            i += 1;
        }
        while j < v.len() && v[j] == x {
            j += 1;
        }
        prev = Some(x);
    }
    total
}

/// Population (ddof = 0) standard deviation, as `numpy.std`.
pub fn population_std(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

/// Jensen–Shannon distance (natural logarithm) between two frequency vectors, each normalised to
/// sum to one first (`scipy.spatial.distance.jensenshannon`).
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    let mut left = 0.0;
    let mut right = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        left += rel_entr(a, m);
        right += rel_entr(b, m);
    }
    ((left + right) / 2.0).sqrt()
}

/// Kullback–Leibler divergence `sum p ln(p/q)` of normalised frequency vectors
/// (`scipy.stats.entropy(p, q)`). Infinite when `q` is zero where `p` is not.
pub fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    p.iter()
        .zip(q)
        .map(|(&a, &b)| rel_entr(a / sp, b / sq))
        .sum()
}

/// Population Stability Index `sum (r - c) ln(r / c)` over bins (no normalisation: the inputs are
/// already shares, zero shares replaced as Evidently does).
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| (r - c) * (r / c).ln())
        .sum()
}

/// `scipy.special.rel_entr`.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Shares per bin of reference and current, as Evidently's `get_binned_data` computes them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Binned {
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
    /// Histogram edges when the numeric path was taken; empty for per-value bins.
    pub edges: Vec<f64>,
}

/// Numeric binning: Sturges' rule on the combined sample (`numpy.histogram_bin_edges(...,
/// bins="sturges")`), then each side's histogram divided by its size. Samples must be sorted.
pub fn histogram_shares(reference: &[f64], current: &[f64]) -> Binned {
    let edges = sturges_edges(reference, current);
    let r = histogram(reference, &edges);
    let c = histogram(current, &edges);
    let (nr, nc) = (reference.len() as f64, current.len() as f64);
    Binned {
        reference: r.iter().map(|&k| k as f64 / nr).collect(),
        current: c.iter().map(|&k| k as f64 / nc).collect(),
        edges,
    }
}

/// Evidently's binning of a numeric column: the Sturges histogram when the reference has more
/// than 20 distinct values, per-value shares otherwise. Samples must be sorted and non-empty.
pub fn numeric_shares(reference: &[f64], current: &[f64]) -> Binned {
    if distinct_sorted(reference) > 20 {
        return histogram_shares(reference, current);
    }
    category_shares(&value_counts(reference, current).1)
}

/// Number of distinct values of a sorted sample.
pub fn distinct_sorted(xs: &[f64]) -> usize {
    if xs.is_empty() {
        return 0;
    }
    1 + xs.windows(2).filter(|w| w[0] != w[1]).count()
}

/// The union of values of two sorted samples, ascending, with each side's count per value.
pub fn value_counts(r: &[f64], k: &[f64]) -> (Vec<f64>, CountPair) {
    let (mut i, mut j) = (0, 0);
    let mut values = Vec::new();
    let mut counts = CountPair {
        reference: Vec::new(),
        current: Vec::new(),
    };
    while i < r.len() || j < k.len() {
        let x = match (r.get(i), k.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        let (si, sj) = (i, j);
        while i < r.len() && r[i] == x {
            i += 1;
        }
        while j < k.len() && k[j] == x {
            j += 1;
        }
        values.push(x);
        counts.reference.push((i - si) as u64);
        counts.current.push((j - sj) as u64);
    }
    (values, counts)
}

/// Per-category shares (`count / size`) in the counts' key order.
pub fn category_shares(counts: &CountPair) -> Binned {
    let nr = counts.reference_total() as f64;
    let nc = counts.current_total() as f64;
    Binned {
        reference: counts.reference.iter().map(|&k| k as f64 / nr).collect(),
        current: counts.current.iter().map(|&k| k as f64 / nc).collect(),
        edges: Vec::new(),
    }
}

/// Evidently's zero filling for PSI and KL: a zero share becomes 1e-4, or a millionth of the
/// smallest non-zero share when that is itself at most 1e-4.
pub fn fill_zeroes(shares: &mut [f64]) {
    let min = shares
        .iter()
        .copied()
        .filter(|&s| s != 0.0)
        .fold(f64::INFINITY, f64::min);
    if !min.is_finite() {
        return;
    }
    let fill = if min <= 0.0001 { min / 1e6 } else { 0.0001 };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = fill;
    }
}

/// Bin edges by Sturges' rule over both sorted samples, as numpy computes them.
pub fn sturges_edges(a: &[f64], b: &[f64]) -> Vec<f64> {
    let lo = a[0].min(b[0]);
    let hi = a[a.len() - 1].max(b[b.len() - 1]);
    let size = (a.len() + b.len()) as f64;
    let (first, last) = if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let width = (hi - lo) / (size.log2() + 1.0);
    let bins = if width > 0.0 {
        ((last - first) / width).ceil() as usize
    } else {
        1
    };
    linspace(first, last, bins + 1)
}

/// `numpy.linspace(start, stop, num)` with the endpoint.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let step = (stop - start) / div;
    let mut out: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = out.last_mut() {
        *last = stop;
    }
    out
}

/// Counts of a sorted sample per bin: `[e_i, e_{i+1})`, the last bin closed (`numpy.histogram`).
pub fn histogram(sorted: &[f64], edges: &[f64]) -> Vec<u64> {
    let bins = edges.len() - 1;
    let mut out = Vec::with_capacity(bins);
    for i in 0..bins {
        let lo = sorted.partition_point(|&x| x < edges[i]);
        let hi = if i + 1 == bins {
            sorted.partition_point(|&x| x <= edges[i + 1])
        } else {
            sorted.partition_point(|&x| x < edges[i + 1])
        };
        out.push((hi - lo) as u64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasserstein_of_shifted_sample_is_the_shift() {
        let a = [1.0, 2.0, 3.0];
        let b = [2.0, 3.0, 4.0];
        assert!((wasserstein(&a, &b) - 1.0).abs() < 1e-15);
        assert_eq!(wasserstein(&a, &a), 0.0);
    }

    #[test]
    fn constant_reference_uses_the_floor() {
        let a = [5.0; 4];
        assert_eq!(wasserstein_norm(&a, &a), 0.0);
        assert!((wasserstein_norm(&a, &[6.0; 2]) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn category_only_in_current_makes_chi_square_certain_drift() {
        let c = CountPair {
            reference: vec![10, 10, 0],
            current: vec![5, 5, 1],
        };
        let r = chi_square(&c);
        assert!(r.statistic.is_infinite());
        assert_eq!(r.p_value, 0.0);
    }

    #[test]
    fn identical_single_value_z_test_is_no_evidence() {
        let c = CountPair {
            reference: vec![7],
            current: vec![3],
        };
        assert_eq!(z_test(&c, 0).p_value, 1.0);
    }

    #[test]
    fn zero_filling_follows_evidently() {
        let mut s = vec![0.5, 0.0, 0.5];
        fill_zeroes(&mut s);
        assert_eq!(s[1], 0.0001);
        let mut s = vec![0.00005, 0.0, 0.99995];
        fill_zeroes(&mut s);
        assert_eq!(s[1], 0.00005 / 1e6);
    }

    #[test]
    fn histogram_closes_the_last_bin() {
        let edges = [0.0, 1.0, 2.0];
        assert_eq!(histogram(&[0.0, 0.5, 1.0, 2.0], &edges), vec![2, 2]);
    }
}
