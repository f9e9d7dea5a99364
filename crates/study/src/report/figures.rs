//! The report's figures, each built from the CSV files of a reproduce run (and, where a
//! closed form exists, the theory curve beside the simulation).

use super::data::{DataError, Table};
use super::plot::{Chart, Point, Series, Style};

/// Points `(x, y ± ci)` of `t`'s columns; `ci` may be absent.
pub fn points(t: &Table, x: &str, y: &str, ci: Option<&str>) -> Result<Vec<Point>, DataError> {
    let (xs, ys) = (t.numbers(x)?, t.numbers(y)?);
    let cis = match ci {
        Some(c) => t.numbers(c)?,
        None => vec![0.0; xs.len()],
    };
    Ok(xs
        .iter()
        .zip(&ys)
        .zip(&cis)
        .map(|((&x, &y), &c)| Point::new(x, y, c))
        .collect())
}

/// The rows of `t` whose `unstable` column is `false`: latencies of unstable rows grow with
/// the run's length and are not plotted as steady-state values.
pub fn stable(t: &Table) -> Result<Table, DataError> {
    t.filter("unstable", "false")
}

/// A horizontal theory line at `y` across `[x0, x1]`.
pub fn hline(name: impl Into<String>, y: f64, x0: f64, x1: f64) -> Series {
    Series::new(
        name,
        Style::Theory,
        vec![Point::new(x0, y, 0.0), Point::new(x1, y, 0.0)],
    )
}

/// Categorical markers: one point per row of `t`, at positions 0, 1, ...
pub fn categorical(
    t: &Table,
    y: &str,
    ci: &str,
    name: &str,
    shift: f64,
) -> Result<Series, DataError> {
    let (ys, cis) = (t.numbers(y)?, t.numbers(ci)?);
    Ok(Series::new(
        name,
        Style::Markers,
        ys.iter()
            .zip(&cis)
            .enumerate()
            .map(|(i, (&y, &c))| Point::new(i as f64 + shift, y, c))
            .collect(),
    ))
}

/// An empirical CDF from quantile levels and values: x = value, y = level.
pub fn cdf(t: &Table, value: &str, name: &str, style: Style) -> Result<Series, DataError> {
    let (q, v) = (t.numbers("quantile")?, t.numbers(value)?);
    Ok(Series::new(
        name,
        style,
        v.iter()
            .zip(&q)
            .map(|(&x, &y)| Point::new(x, y, 0.0))
            .collect(),
    ))
}

/// A chart with the common frame.
pub fn chart(title: &str, x_label: &str, y_label: &str, series: Vec<Series>) -> Chart {
    Chart {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        series,
        ..Default::default()
    }
}
