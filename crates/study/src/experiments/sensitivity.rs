//! Sensitivity of Scheduler B (K = 4, lambda = 1.5) to the cost parameters and to the
//! request lengths: the seed's two labelled comparisons.

use super::grid::{Col, Ctx, Measured, Metric, Setup, point_table, runs_for};
use super::table::Table;
use super::{Experiment, Scale};

/// The arrival rate (requests/s).
const RATE: f64 = 1.5;

/// The labelled setups of each study.
fn design(which: Experiment) -> Vec<Setup> {
    let base = Setup::seed_defaults(RATE);
    match which {
        Experiment::SensitivityCa => vec![
            Setup {
                label: "baseline",
                ..base.clone()
            },
            Setup {
                label: "half_c",
                c: base.c / 2.0,
                ..base.clone()
            },
            Setup {
                label: "double_a",
                a: base.a * 2.0,
                ..base
            },
        ],
        Experiment::SensitivityRegime => vec![
            Setup {
                label: "short",
                prompt: 64,
                decode: 16,
                ..base.clone()
            },
            Setup {
                label: "long",
                prompt: 256,
                decode: 128,
                ..base
            },
        ],
        other => unreachable!("{other} is not a sensitivity study"),
    }
}

pub fn planned_runs(which: Experiment, scale: &Scale) -> u64 {
    runs_for(design(which).len(), scale)
}

/// "label: TTFT x s, ..." for the headline.
fn describe(points: &[Measured]) -> String {
    points
        .iter()
        .map(|m| {
            format!(
                "{}: mean TTFT {:.3} s, TBT {:.4} s",
                m.setup.label,
                m.stat(Metric::TtftMean).mean,
                m.stat(Metric::TbtMean).mean
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn run(which: Experiment, ctx: &Ctx) -> Table {
    let points = ctx.measure(design(which));
    let headline = describe(&points);
    let common = [
        ("throughput_ci", Col::Ci(Metric::Throughput)),
        ("mean_TTFT_ci", Col::Ci(Metric::TtftMean)),
        ("c", Col::C),
        ("a", Col::A),
        ("L", Col::Prompt),
        ("B", Col::Decode),
        ("K", Col::K),
        ("arrival_rate", Col::Rate),
    ];
    match which {
        Experiment::SensitivityCa => {
            let seed = [
                ("label", Col::Label),
                ("throughput", Col::Mean(Metric::Throughput)),
                ("mean_TTFT", Col::Mean(Metric::TtftMean)),
                ("mean_TBT", Col::Mean(Metric::TbtMean)),
            ];
            let ours = [
                ("mean_TBT_ci", Col::Ci(Metric::TbtMean)),
                ("p95_TTFT", Col::Mean(Metric::TtftP95)),
                ("p95_TTFT_ci", Col::Ci(Metric::TtftP95)),
            ];
            point_table(
                "sensitivity_ca",
                ctx,
                &points,
                &[&seed, &common, &ours],
                headline,
            )
        }
        _ => {
            let seed = [
                ("label", Col::Label),
                ("throughput", Col::Mean(Metric::Throughput)),
                ("mean_TTFT", Col::Mean(Metric::TtftMean)),
                ("p95_TTFT", Col::Mean(Metric::TtftP95)),
            ];
            let ours = [
                ("p95_TTFT_ci", Col::Ci(Metric::TtftP95)),
                ("mean_TBT", Col::Mean(Metric::TbtMean)),
                ("mean_TBT_ci", Col::Ci(Metric::TbtMean)),
            ];
            point_table(
                "sensitivity_regime",
                ctx,
                &points,
                &[&seed, &common, &ours],
                headline,
            )
        }
    }
}
