//! Weighted linear least squares with non-negative coefficients, for fitting cost models
//! to measured profiles. Problems here are tiny (a handful of features, tens of rows), so
//! the normal equations are solved directly.

/// Coefficients `theta >= 0` minimising `sum_i w_i (x_i . theta - y_i)^2`.
///
/// Features that the rows cannot tell apart from earlier ones (an all-zero column, or one
/// collinear with columns before it) get coefficient 0, so a profile that lacks, say, decode
/// rows still fits the terms it does measure. Negative coefficients are removed one at a
/// time, most negative first, and the rest refitted: a cost term must not make a batch
/// cheaper, and with few features this simple active-set loop reaches the constrained optimum
/// in practice.
pub fn fit_nonneg(x: &[Vec<f64>], y: &[f64], w: &[f64]) -> Vec<f64> {
    let k = x.first().map_or(0, Vec::len);
    let mut active = vec![true; k];
    loop {
        let theta = solve(x, y, w, &active);
        let worst = theta
            .iter()
            .enumerate()
            .filter(|&(j, t)| active[j] && *t < 0.0)
            .min_by(|a, b| a.1.total_cmp(b.1));
        match worst {
            Some((j, _)) => active[j] = false,
            None => return theta,
        }
    }
}

/// Unconstrained weighted least squares over the `active` columns (others get 0).
fn solve(x: &[Vec<f64>], y: &[f64], w: &[f64], active: &[bool]) -> Vec<f64> {
    let k = active.len();
    let mut a = vec![vec![0.0; k]; k];
    let mut b = vec![0.0; k];
    for ((row, &yi), &wi) in x.iter().zip(y).zip(w) {
        for i in (0..k).filter(|&i| active[i]) {
            b[i] += wi * row[i] * yi;
            for j in (0..k).filter(|&j| active[j]) {
                a[i][j] += wi * row[i] * row[j];
            }
        }
    }
    // Scale to a unit diagonal: features differ by many orders of magnitude (1 versus
    // tokens squared), and the pivot test below must be relative.
    let scale: Vec<f64> = (0..k)
        .map(|i| if a[i][i] > 0.0 { a[i][i].sqrt() } else { 0.0 })
        .collect();
    let mut keep: Vec<bool> = (0..k).map(|i| active[i] && scale[i] > 0.0).collect();
    for i in 0..k {
        for j in 0..k {
            if keep[i] && keep[j] {
                a[i][j] /= scale[i] * scale[j];
            }
        }
        if keep[i] {
            b[i] /= scale[i];
        }
    }
    // Gauss-Jordan on the symmetric positive semi-definite system, in column order,
    // dropping a column whose pivot shows it is (nearly) a combination of earlier ones.
    for p in 0..k {
        if !keep[p] {
            continue;
        }
        if a[p][p] < 1e-10 {
            keep[p] = false;
            continue;
        }
        let pivot_row = a[p].clone();
        for r in (0..k).filter(|&r| r != p && keep[r]) {
            let f = a[r][p] / pivot_row[p];
            if f != 0.0 {
                for (x, y) in a[r].iter_mut().zip(&pivot_row) {
                    *x -= f * y;
                }
                b[r] -= f * b[p];
            }
        }
    }
    (0..k)
        .map(|i| {
            if keep[i] {
                b[i] / a[i][i] / scale[i]
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_an_exact_linear_law() {
        let x: Vec<Vec<f64>> = (0..10)
            .map(|i| vec![1.0, f64::from(i), f64::from(i * i)])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 + 0.5 * r[1] + 0.01 * r[2]).collect();
        let t = fit_nonneg(&x, &y, &[1.0; 10]);
        for (got, want) in t.iter().zip([2.0, 0.5, 0.01]) {
            assert!((got - want).abs() < 1e-9, "{t:?}");
        }
    }

    #[test]
    fn unmeasured_and_collinear_features_get_zero() {
        // Column 1 is all zero, column 2 duplicates column 0.
        let x: Vec<Vec<f64>> = (0..5).map(|i| vec![1.0, 0.0, 1.0, f64::from(i)]).collect();
        let y: Vec<f64> = x.iter().map(|r| 3.0 + r[3]).collect();
        let t = fit_nonneg(&x, &y, &[1.0; 5]);
        assert_eq!((t[1], t[2]), (0.0, 0.0));
        assert!(
            (t[0] - 3.0).abs() < 1e-9 && (t[3] - 1.0).abs() < 1e-9,
            "{t:?}"
        );
    }

    #[test]
    fn negative_coefficients_are_dropped() {
        // y falls with x: the best non-negative slope is 0, the intercept the mean.
        let x: Vec<Vec<f64>> = (0..4).map(|i| vec![1.0, f64::from(i)]).collect();
        let y = [4.0, 3.0, 2.0, 1.0];
        let t = fit_nonneg(&x, &y, &[1.0; 4]);
        assert_eq!(t[1], 0.0);
        assert!((t[0] - 2.5).abs() < 1e-12);
    }
}
