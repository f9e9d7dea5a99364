//! Small statistics helpers: numpy-compatible quantiles, streaming latency distributions
//! and Student-t confidence intervals.

use hdrhistogram::Histogram;
use serde_json::{Map, Value};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The `q`-quantile of ascending `sorted` data by linear interpolation between order
/// statistics (numpy's default, so a pandas notebook reproduces our numbers). 0 if empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => {
            let h = (n - 1) as f64 * q;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// Significant decimal digits the latency histograms keep: a recorded value is known to
/// within one part in 10^3 of itself.
pub const HISTOGRAM_DIGITS: u8 = 3;

/// Largest relative error of a [`StreamingDist`] quantile against the order statistic it
/// stands for (half a histogram bucket), for values above a microsecond (below, 1 ns).
pub const QUANTILE_RELATIVE_ERROR: f64 = 5e-4;

/// A latency distribution kept in fixed memory, however many values a run records: exact
/// count, sum (so the mean), minimum and maximum, and quantiles from a histogram of
/// [`HISTOGRAM_DIGITS`] significant digits over whole nanoseconds.
///
/// A quantile is the middle of the histogram bucket holding the order statistic of rank
/// `ceil(q n)` (HdrHistogram's definition), clamped to the exact minimum and maximum: within
/// [`QUANTILE_RELATIVE_ERROR`] (and 1 ns) of that order statistic, where numpy's default
/// interpolates between the two order statistics around `q (n - 1)`, and never outside the
/// recorded values.
#[derive(Debug, Clone)]
pub struct StreamingDist {
    /// Values recorded per histogram bucket, indexed as the histogram indexes them
    /// ([`bucket_index`]); grown to the largest bucket used.
    counts: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for StreamingDist {
    fn default() -> Self {
        StreamingDist {
            counts: Vec::new(),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

/// A value (seconds, finite and not negative) in whole nanoseconds, as the histogram keeps
/// it. Adding a half and truncating rounds to the nearest without a call to libm's `round`
/// on every token; the conversion to i64 saturates and is cheaper than to u64. Past 2^62 ns
/// (146 years) values share the last bucket; the clamp of quantiles to the exact maximum
/// keeps them right there.
#[inline]
fn nanos(x: f64) -> u64 {
    ((x * 1e9 + 0.5) as i64 as u64).min(1 << 62)
}

/// Bits of a bucket's offset: an HdrHistogram of [`HISTOGRAM_DIGITS`] = 3 digits splits
/// every power of two above 2048 ns into 1024 buckets (2048 sub-buckets, the lower half of
/// each range after the first shared with the range below).
const HALF_BITS: u32 = 10;

/// The power-of-two range holding `ns` nanoseconds in the histogram's layout: its buckets
/// there are `2^range` ns wide.
#[inline]
fn range_of(ns: u64) -> u32 {
    63 - HALF_BITS - (ns | ((2 << HALF_BITS) - 1)).leading_zeros()
}

/// The histogram's bucket index of `ns` nanoseconds: HdrHistogram's own (a lowest
/// discernible value of 1 ns, [`HISTOGRAM_DIGITS`] digits), computed here because the
/// crate's `record` costs about five times as much on the engine's hottest path, one call
/// per decode iteration. A test checks both give the same histogram.
#[inline]
fn bucket_index(ns: u64) -> usize {
    let range = range_of(ns);
    (((range + 1) << HALF_BITS) as usize) + (ns >> range) as usize - (1 << HALF_BITS)
}

/// The middle of the bucket holding `ns` (nanoseconds), as HdrHistogram's
/// `median_equivalent` gives it.
fn bucket_middle(ns: u64) -> u64 {
    let range = range_of(ns);
    ((ns >> range) << range) + ((1 << range) >> 1)
}

/// The smallest value (nanoseconds) of the bucket at `index`, which [`bucket_index`] maps
/// back to `index`.
fn bucket_low(index: usize) -> u64 {
    let half = 1usize << HALF_BITS;
    let (range, sub) = match (index >> HALF_BITS).checked_sub(1) {
        Some(r) => (r, (index & (half - 1)) + half),
        None => (0, index),
    };
    (sub as u64) << range
}

impl StreamingDist {
    /// Records one value (seconds, finite and not negative).
    pub fn record(&mut self, x: f64) {
        self.record_n(x, 1);
    }

    /// Records `n` equal values at once (seconds, finite and not negative): one histogram
    /// update instead of `n`.
    #[inline]
    pub fn record_n(&mut self, x: f64, n: u64) {
        if n == 0 {
            return;
        }
        debug_assert!(x >= 0.0, "latencies are never negative: {x}");
        self.count += n;
        self.sum += x * n as f64;
        // Plain comparisons: values are never NaN, and `f64::min`'s NaN handling costs
        // several instructions on every token.
        if x < self.min {
            self.min = x;
        }
        if x > self.max {
            self.max = x;
        }
        let i = bucket_index(nanos(x));
        if i >= self.counts.len() {
            self.grow(i);
        }
        self.counts[i] += n;
    }

    /// Makes room for bucket `i`, rarely: the buckets in use settle early in a run.
    #[cold]
    fn grow(&mut self, i: usize) {
        self.counts.resize(i + 1, 0);
    }

    /// Adds every value `other` recorded, as if recorded here after this one's.
    pub fn merge(&mut self, other: &StreamingDist) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c += o;
        }
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values (seconds).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The mean (seconds); `None` when nothing was recorded.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The exact maximum (seconds); `None` when nothing was recorded.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The counts as an HdrHistogram, which computes the quantiles.
    fn histogram(&self) -> Histogram<u64> {
        let mut h = Histogram::new(HISTOGRAM_DIGITS).expect("3 significant digits is valid");
        for (i, &c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            // The histogram resizes itself, so it cannot fail below `nanos`'s bound.
            let _ = h.record_n(bucket_low(i), c);
        }
        h
    }

    /// The `q`-quantiles for each `q` of `qs` (seconds, see the type's documentation);
    /// `None` when nothing was recorded.
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> Option<[f64; N]> {
        if self.count == 0 {
            return None;
        }
        let h = self.histogram();
        Some(qs.map(|q| {
            let mid = h.median_equivalent(h.value_at_quantile(q)) as f64 * 1e-9;
            mid.clamp(self.min, self.max)
        }))
    }

    /// The `q`-quantile (seconds, see the type's documentation); `None` when nothing was
    /// recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles([q]).map(|[x]| x)
    }

    /// Whether a quantile whose order statistic is `x` (seconds) is above `bound` however
    /// the other values fall: `x` is, and so is the middle of its bucket. Both tests only
    /// grow with `x`, so once more than `n - ceil(q n)` of a distribution's `n` values pass
    /// this, its `q`-quantile is above `bound` ([`StreamingDist::values_past_allowed`]).
    pub fn reports_above(&self, x: f64, bound: f64) -> bool {
        x > bound && bucket_middle(nanos(x)) as f64 * 1e-9 > bound
    }

    /// How many of `n` values may pass [`StreamingDist::reports_above`] with the
    /// `q`-quantile still at or below the bound: `n` less the rank of the quantile's order
    /// statistic (computed as the histogram does). Grows with `n`, so an upper bound on the
    /// values to come gives a limit that is never too strict.
    pub fn values_past_allowed(n: u64, q: f64) -> u64 {
        n.saturating_sub(((q * n as f64).ceil() as u64).max(1))
    }
}

/// The mean of `xs`, 0 if empty.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// The sample standard deviation of `xs` (n - 1 denominator), 0 for fewer than two values.
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// The two-sided Student-t critical value for `level` (e.g. 0.95) with `n - 1` degrees of
/// freedom; infinite for fewer than two observations.
pub fn t_critical(n: usize, level: f64) -> f64 {
    if n < 2 {
        return f64::INFINITY;
    }
    StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("positive degrees of freedom")
        .inverse_cdf(0.5 + level / 2.0)
}

/// Half-width of the Student-t interval at `level` for the mean of independent
/// observations `xs`; infinite for fewer than two (no interval can be formed).
pub fn half_width(xs: &[f64], level: f64) -> f64 {
    t_critical(xs.len(), level) * std_dev(xs) / (xs.len() as f64).sqrt()
}

/// A mean with the half-width of its 95% Student-t confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MeanCi {
    /// Sample mean.
    pub mean: f64,
    /// Half-width of the 95% interval (0 for a single observation).
    pub ci95: f64,
}

impl MeanCi {
    /// Mean and 95% half-width of independent observations `xs`.
    pub fn of(xs: &[f64]) -> Self {
        let ci95 = if xs.len() < 2 {
            0.0
        } else {
            half_width(xs, 0.95)
        };
        MeanCi {
            mean: mean(xs),
            ci95,
        }
    }

    /// True when `x` lies within `widen` half-widths of the mean.
    pub fn covers(&self, x: f64, widen: f64) -> bool {
        (x - self.mean).abs() <= widen * self.ci95
    }
}

/// Combines replications' JSON summaries of the same shape: numbers become their mean,
/// booleans are true if any replication's is, and every object gains a `ci95` object with
/// the 95% half-widths of its numeric fields.
pub fn aggregate_json(reps: &[Value]) -> Value {
    match reps.first() {
        Some(Value::Object(first)) => {
            let mut out = Map::new();
            let mut ci = Map::new();
            for (key, v) in first {
                let column: Vec<Value> = reps.iter().map(|r| r[key].clone()).collect();
                if v.is_number() {
                    let xs: Vec<f64> = column.iter().filter_map(Value::as_f64).collect();
                    let m = MeanCi::of(&xs);
                    out.insert(key.clone(), Value::from(m.mean));
                    ci.insert(key.clone(), Value::from(m.ci95));
                } else {
                    out.insert(key.clone(), aggregate_json(&column));
                }
            }
            if reps.len() > 1 && !ci.is_empty() {
                out.insert("ci95".into(), Value::Object(ci));
            }
            Value::Object(out)
        }
        Some(Value::Array(first)) => Value::Array(
            (0..first.len())
                .map(|i| aggregate_json(&reps.iter().map(|r| r[i].clone()).collect::<Vec<_>>()))
                .collect(),
        ),
        Some(Value::Bool(_)) => Value::Bool(reps.iter().any(|r| r.as_bool() == Some(true))),
        Some(Value::Number(_)) => Value::from(mean(
            &reps.iter().filter_map(Value::as_f64).collect::<Vec<_>>(),
        )),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4], [0, 0.5, 0.9, 1]) = [1, 2.5, 3.7, 4]
        let xs = [1.0, 2.0, 3.0, 4.0];
        for (q, want) in [(0.0, 1.0), (0.5, 2.5), (0.9, 3.7), (1.0, 4.0)] {
            assert!((quantile_sorted(&xs, q) - want).abs() < 1e-12, "q = {q}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// The counts kept by bucket give exactly the quantiles of HdrHistogram recording
        /// the same values itself, before and after a merge, and the bucket middles it
        /// would report, from 0 ns to past 146 years.
        #[test]
        fn bucket_counts_are_hdrhistogram_s(
            values in prop::collection::vec((0u32..64, 0.0f64..1.0, 1u64..5), 1..200),
            split in 0usize..200,
        ) {
            let xs: Vec<(f64, u64)> = values
                .iter()
                .map(|&(bits, frac, n)| ((2f64.powi(bits as i32) * (1.0 + frac) - 1.0) * 1e-9, n))
                .collect();
            let mut direct = Histogram::<u64>::new(HISTOGRAM_DIGITS).unwrap();
            let (mut all, mut first, mut second) =
                (StreamingDist::default(), StreamingDist::default(), StreamingDist::default());
            for (i, &(x, n)) in xs.iter().enumerate() {
                direct.record_n(nanos(x), n).unwrap();
                prop_assert_eq!(bucket_middle(nanos(x)), direct.median_equivalent(nanos(x)));
                all.record_n(x, n);
                if i < split { first.record_n(x, n) } else { second.record_n(x, n) }
            }
            first.merge(&second);
            let (lo, hi) = (all.min, all.max);
            for q in [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let want = (direct.median_equivalent(direct.value_at_quantile(q)) as f64 * 1e-9)
                    .clamp(lo, hi);
                prop_assert_eq!(all.quantile(q), Some(want));
                prop_assert_eq!(first.quantile(q), Some(want));
            }
        }
    }

    /// Quantiles never leave the recorded range (before, the top of a bucket could exceed the
    /// maximum: ITL p50 0.0057713 s above a maximum of 0.0057700 s), and stay within the
    /// documented precision of the exact order statistic.
    #[test]
    fn streaming_quantiles_stay_within_the_recorded_range_and_precision() {
        let mut one = StreamingDist::default();
        one.record_n(0.00577, 10);
        for q in [0.0, 0.5, 0.99, 1.0] {
            assert_eq!(one.quantile(q), Some(0.00577), "q = {q}");
        }
        assert_eq!(StreamingDist::default().quantile(0.5), None);
        assert_eq!(StreamingDist::default().mean(), None);
        let mut d = StreamingDist::default();
        // 1 us to 1000 s, spread over nine decades.
        let xs: Vec<f64> = (0..10_000).map(|i| 1e-6 * 1.0021f64.powi(i)).collect();
        for &x in &xs {
            d.record(x);
        }
        for q in [0.01, 0.5, 0.9, 0.95, 0.99, 0.999] {
            let exact = xs[((q * xs.len() as f64).ceil() as usize).max(1) - 1];
            let got = d.quantile(q).unwrap();
            assert!(
                (got - exact).abs() <= QUANTILE_RELATIVE_ERROR * exact + 1e-9,
                "q = {q}: {got} vs {exact}"
            );
        }
        assert_eq!(d.max(), Some(xs[xs.len() - 1]));
        assert_eq!(d.count(), 10_000);
    }

    #[test]
    fn values_past_the_allowed_count_move_the_quantile_past_the_bound() {
        // `n` values, `above` of them past the bound 1 s: the quantile is above the bound
        // exactly when more than the allowed count are.
        for n in 1..=400_u64 {
            for q in [0.5, 0.9, 0.95, 0.99] {
                let allowed = StreamingDist::values_past_allowed(n, q);
                for above in [allowed, allowed + 1] {
                    let mut d = StreamingDist::default();
                    d.record_n(0.5, n - above);
                    d.record_n(1.5, above);
                    let past = d.quantile(q).unwrap() > 1.0;
                    assert_eq!(past, above > allowed, "n {n}, q {q}, {above} above");
                    assert!(d.reports_above(1.5, 1.0));
                }
            }
        }
        // Near 1 s buckets are 2^19 ns wide: [999817216, 1000341504) ns holds 1.0002 s and
        // 1.0003 s, and its middle, 1.00007936 s, is not above 1.0002 s. A quantile falling
        // there reports its middle unless clamped to the extremes, so 1.0003 s does not
        // count as past 1.0002 s, but 1.0004 s, in the next bucket, does.
        let d = StreamingDist::default();
        assert!(!d.reports_above(1.0003, 1.0002) && !d.reports_above(1.0001, 1.0002));
        assert!(d.reports_above(1.0004, 1.0002));
        let mut three = StreamingDist::default();
        for x in [1.0, 1.0003, 2.0] {
            three.record(x);
        }
        let median = three.quantile(0.5).unwrap();
        assert!((median - 1.00007936).abs() < 1e-12, "{median}");
    }

    #[test]
    fn t_interval_matches_tables() {
        // t_{0.975, 9} = 2.262 (standard tables)
        assert!((t_critical(10, 0.95) - 2.2622).abs() < 1e-3);
        let m = MeanCi::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        // s = 1.5811, t_{0.975,4} = 2.7764 -> 2.7764 * 1.5811 / sqrt(5) = 1.9632
        assert!((m.mean - 3.0).abs() < 1e-12 && (m.ci95 - 1.9632).abs() < 1e-3);
    }

    #[test]
    fn json_aggregation_averages_and_adds_half_widths() {
        let reps = [
            serde_json::json!({"x": 1.0, "u": false, "d": {"mean": 2.0}}),
            serde_json::json!({"x": 3.0, "u": true, "d": {"mean": 4.0}}),
        ];
        let a = aggregate_json(&reps);
        assert_eq!(a["x"], 2.0);
        assert_eq!(a["u"], true);
        assert_eq!(a["d"]["mean"], 3.0);
        // t_{0.975,1} = 12.706, s = sqrt(2), half-width = 12.706 * sqrt(2) / sqrt(2)
        assert!((a["ci95"]["x"].as_f64().unwrap() - 12.706).abs() < 1e-2);
    }
}
