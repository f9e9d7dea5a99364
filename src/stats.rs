//! Small statistics helpers: numpy-compatible quantiles and Student-t confidence intervals.

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
