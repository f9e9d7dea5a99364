//! Throughput against arrival rate for each scheduler: the seed's two sweeps.

use super::grid::{Col, Ctx, Measured, Metric, Setup, linspace, point_table, runs_for};
use super::table::Table;
use super::{Experiment, Scale};
use llmsim::scheduler::SchedulerSpec;

/// The sweep's name, scheduler and rates (requests/s).
fn design(which: Experiment) -> (&'static str, SchedulerSpec, Vec<f64>) {
    match which {
        Experiment::SchedulerAThroughputSweep => (
            "scheduler_a_throughput_sweep",
            SchedulerSpec::A,
            linspace(0.5, 3.0, 20),
        ),
        Experiment::SchedulerBThroughputSweep => (
            "scheduler_b_throughput_sweep",
            SchedulerSpec::B {
                k: 4,
                max_decode_batch: None,
            },
            linspace(0.5, 8.0, 10),
        ),
        other => unreachable!("{other} is not a throughput sweep"),
    }
}

pub fn planned_runs(which: Experiment, scale: &Scale) -> u64 {
    runs_for(design(which).2.len(), scale)
}

/// "stable up to X; peak Y at Z; falls to W at the top rate" for a headline.
pub fn describe_curve(points: &[Measured]) -> String {
    let cap = points[0].capacity;
    let last_stable = points.iter().rfind(|m| !m.unstable());
    let peak = points
        .iter()
        .max_by(|a, b| {
            let t = |m: &Measured| m.stat(Metric::Throughput).mean;
            t(a).total_cmp(&t(b))
        })
        .expect("a sweep has points");
    let top = points.last().expect("a sweep has points");
    format!(
        "capacity {cap:.3} req/s; stable up to lambda {}; peak throughput {:.3} at lambda {:.2}; {:.3} at lambda {:.2}",
        last_stable.map_or("(none)".into(), |m| format!("{:.2}", m.setup.rate)),
        peak.stat(Metric::Throughput).mean,
        peak.setup.rate,
        top.stat(Metric::Throughput).mean,
        top.setup.rate
    )
}

/// One row per arrival rate: throughput with its interval, utilisation and latencies.
pub fn sweep(which: Experiment, ctx: &Ctx) -> Table {
    let (name, scheduler, rates) = design(which);
    let points = ctx.measure(
        rates
            .into_iter()
            .map(|rate| Setup {
                scheduler: scheduler.clone(),
                ..Setup::seed_defaults(rate)
            })
            .collect(),
    );
    let seed = [
        ("arrival_rate", Col::Rate),
        ("throughput", Col::Mean(Metric::Throughput)),
    ];
    let ours = [
        ("throughput_ci", Col::Ci(Metric::Throughput)),
        ("utilization", Col::Mean(Metric::Utilization)),
        ("utilization_ci", Col::Ci(Metric::Utilization)),
        ("mean_TTFT", Col::Mean(Metric::TtftMean)),
        ("mean_TTFT_ci", Col::Ci(Metric::TtftMean)),
        ("p95_TTFT", Col::Mean(Metric::TtftP95)),
        ("p95_TTFT_ci", Col::Ci(Metric::TtftP95)),
        ("mean_TBT", Col::Mean(Metric::TbtMean)),
        ("mean_TBT_ci", Col::Ci(Metric::TbtMean)),
    ];
    let headline = describe_curve(&points);
    point_table(name, ctx, &points, &[&seed, &ours], headline)
}
