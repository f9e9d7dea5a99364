//! Figures as SVG text, drawn with plotters' SVG backend (no system fonts needed: the
//! browser lays out the text).

use plotters::coord::Shift;
use plotters::prelude::*;

/// One `(x, y)` observation with the half-width of its 95% interval (0: none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Horizontal value, in the chart's x unit (or a category index).
    pub x: f64,
    /// Vertical value, in the chart's y unit.
    pub y: f64,
    /// Half-width of the 95% confidence interval of `y`.
    pub ci: f64,
}

impl Point {
    /// A point with an interval.
    pub fn new(x: f64, y: f64, ci: f64) -> Self {
        Point { x, y, ci }
    }
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Simulation: solid line with markers and a shaded confidence band.
    Simulated,
    /// Closed form: dashed line, no markers.
    Theory,
    /// Markers with error bars and no line (categories, scatter).
    Markers,
}

/// A named series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Observations, in x order for lines.
    pub points: Vec<Point>,
    /// How to draw it.
    pub style: Style,
}

impl Series {
    /// A series from its parts.
    pub fn new(name: impl Into<String>, style: Style, points: Vec<Point>) -> Self {
        Series {
            name: name.into(),
            points,
            style,
        }
    }
}

/// An XY chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// x axis label, with unit.
    pub x_label: String,
    /// y axis label, with unit.
    pub y_label: String,
    /// The series, drawn in order.
    pub series: Vec<Series>,
    /// Names for integer x positions 0, 1, ... (a categorical axis); empty for numeric x.
    pub categories: Vec<String>,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Clip the y axis at this value (for curves that blow up near capacity).
    pub y_max: Option<f64>,
}

const PALETTE: [RGBColor; 7] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

/// Why a figure could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("figure '{title}': {why}")]
pub struct PlotError {
    title: String,
    why: String,
}

impl Chart {
    fn bounds(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self
            .series
            .iter()
            .flat_map(|s| &s.points)
            .filter(|p| p.y.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in pts {
            x0 = x0.min(p.x);
            x1 = x1.max(p.x);
            y0 = y0.min(p.y - p.ci);
            y1 = y1.max(p.y + p.ci);
        }
        if x0 > x1 {
            return ((0.0, 1.0), (0.0, 1.0));
        }
        if let Some(m) = self.y_max {
            y1 = y1.min(m);
        }
        if !self.categories.is_empty() {
            (x0, x1) = (-0.5, self.categories.len() as f64 - 0.5);
        } else if x1 <= x0 {
            (x0, x1) = (x0 - 1.0, x1 + 1.0);
        }
        if self.log_y {
            let lo = self
                .series
                .iter()
                .flat_map(|s| &s.points)
                .map(|p| p.y)
                .filter(|y| *y > 0.0)
                .fold(f64::MAX, f64::min);
            y0 = if lo == f64::MAX { 1e-3 } else { lo / 1.5 };
            y1 = (y1 * 1.5).max(y0 * 10.0);
        } else {
            let pad = 0.05 * (y1 - y0).max(y1.abs() * 0.1).max(1e-9);
            y0 = if y0 >= 0.0 { 0.0 } else { y0 - pad };
            y1 += pad;
        }
        ((x0, x1), (y0, y1))
    }

    /// The chart as a standalone SVG document, `width` x `height` pixels.
    pub fn to_svg(&self, width: u32, height: u32) -> Result<String, PlotError> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            self.draw(&root).map_err(|e| PlotError {
                title: self.title.clone(),
                why: e.to_string(),
            })?;
            root.present().map_err(|e| PlotError {
                title: self.title.clone(),
                why: e.to_string(),
            })?;
        }
        Ok(svg)
    }

    fn draw(
        &self,
        root: &DrawingArea<SVGBackend, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<<SVGBackend<'_> as DrawingBackend>::ErrorType>> {
        root.fill(&WHITE)?;
        let ((x0, x1), (y0, y1)) = self.bounds();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(72);
        if self.log_y {
            let mut chart = builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?;
            self.mesh(&mut chart)?;
            self.series_into(&mut chart, y1)
        } else {
            let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
            self.mesh(&mut chart)?;
            self.series_into(&mut chart, y1)
        }
    }

    fn mesh<'a, Y>(
        &self,
        chart: &mut ChartContext<
            'a,
            SVGBackend<'a>,
            Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
        >,
    ) -> Result<(), DrawingAreaErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>>
    where
        Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let cats = &self.categories;
        let fmt = |x: &f64| {
            if cats.is_empty() {
                format_tick(*x)
            } else {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    cats.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .axis_desc_style(("sans-serif", 15))
            .label_style(("sans-serif", 13))
            .x_label_formatter(&fmt)
            .y_label_formatter(&|y| format_tick(*y))
            .light_line_style(RGBColor(235, 235, 235));
        if !cats.is_empty() {
            mesh.x_labels(cats.len() * 2 + 1);
        }
        if self.log_y {
            // Enough labels that every decade and some values between are named.
            mesh.y_labels(20);
        }
        mesh.draw()
    }

    fn series_into<'a, Y>(
        &self,
        chart: &mut ChartContext<
            'a,
            SVGBackend<'a>,
            Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
        >,
        y_top: f64,
    ) -> Result<(), DrawingAreaErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>>
    where
        Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| p.y.is_finite() && p.y <= y_top && (!self.log_y || p.y > 0.0))
                .map(|p| (p.x, p.y))
                .collect();
            let band: Vec<&Point> = s
                .points
                .iter()
                .filter(|p| p.ci > 0.0 && p.y.is_finite())
                .collect();
            let clip = |y: f64| y.min(y_top);
            match s.style {
                Style::Simulated => {
                    if band.len() >= 2 {
                        let mut poly: Vec<(f64, f64)> =
                            band.iter().map(|p| (p.x, clip(p.y + p.ci))).collect();
                        poly.extend(band.iter().rev().map(|p| {
                            (
                                p.x,
                                clip((p.y - p.ci).max(if self.log_y {
                                    p.y / 10.0
                                } else {
                                    f64::MIN
                                })),
                            )
                        }));
                        chart.draw_series(std::iter::once(Polygon::new(
                            poly,
                            color.mix(0.18).filled(),
                        )))?;
                    }
                    chart
                        .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                        });
                    chart.draw_series(
                        pts.iter()
                            .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                    )?;
                }
                Style::Theory => {
                    chart
                        .draw_series(DashedLineSeries::new(
                            pts.iter().copied(),
                            6,
                            4,
                            color.stroke_width(2),
                        ))?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            // Two short strokes read as a dashed line in the legend.
                            EmptyElement::at((x, y))
                                + PathElement::new(vec![(0, 0), (7, 0)], color.stroke_width(2))
                                + PathElement::new(vec![(11, 0), (18, 0)], color.stroke_width(2))
                        });
                }
                Style::Markers => {
                    chart.draw_series(band.iter().map(|p| {
                        ErrorBar::new_vertical(
                            p.x,
                            clip(p.y - p.ci),
                            p.y,
                            clip(p.y + p.ci),
                            color.stroke_width(2),
                            8,
                        )
                    }))?;
                    chart
                        .draw_series(
                            pts.iter()
                                .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
                        )?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
    }
}

/// Tick labels short enough for an axis: 3 significant digits, no trailing zeros.
fn format_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_legend_and_band() {
        let chart = Chart {
            title: "Throughput".into(),
            x_label: "arrival rate (req/s)".into(),
            y_label: "throughput (req/s)".into(),
            series: vec![
                Series::new(
                    "simulated",
                    Style::Simulated,
                    (1..5)
                        .map(|i| Point::new(i as f64, i as f64, 0.1))
                        .collect(),
                ),
                Series::new(
                    "capacity",
                    Style::Theory,
                    vec![Point::new(1.0, 4.0, 0.0), Point::new(4.0, 4.0, 0.0)],
                ),
            ],
            ..Default::default()
        };
        let svg = chart.to_svg(640, 400).unwrap();
        for text in [
            "Throughput",
            "arrival rate (req/s)",
            "throughput (req/s)",
            "simulated",
            "capacity",
            "<polygon",
            "<polyline",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(format_tick(0.12345), "0.123");
        assert_eq!(format_tick(1500.0), "1500");
        assert_eq!(format_tick(2.50), "2.5");
    }
}
