//! Scheduler B over the batch size K at lambda = 1.5: the seed's batching-scale study.

use super::Scale;
use super::grid::{Col, Ctx, Metric, Setup, THROUGHPUT_AND_TTFT, point_table, runs_for};
use super::table::Table;
use llmsim::scheduler::SchedulerSpec;

/// The arrival rate (requests/s).
const RATE: f64 = 1.5;
/// The batch sizes studied.
const KS: [u32; 6] = [1, 2, 4, 8, 16, 32];

pub fn planned_runs(scale: &Scale) -> u64 {
    runs_for(KS.len(), scale)
}

pub fn run(ctx: &Ctx) -> Table {
    let points = ctx.measure(
        KS.iter()
            .map(|&k| Setup {
                scheduler: SchedulerSpec::B {
                    k,
                    max_decode_batch: None,
                },
                ..Setup::seed_defaults(RATE)
            })
            .collect(),
    );
    let tbt = [
        ("mean_TBT_mean", Col::Mean(Metric::TbtMean)),
        ("mean_TBT_ci", Col::Ci(Metric::TbtMean)),
        ("p95_TBT_mean", Col::Mean(Metric::TbtP95)),
        ("p95_TBT_ci", Col::Ci(Metric::TbtP95)),
    ];
    let ours = [
        ("arrival_rate", Col::Rate),
        ("utilization_mean", Col::Mean(Metric::Utilization)),
        ("utilization_ci", Col::Ci(Metric::Utilization)),
    ];
    let ttft = |i: usize| points[i].stat(Metric::TtftMean).mean;
    let headline = format!(
        "lambda {RATE}: mean TTFT {:.3} s at K = {} .. {:.3} s at K = {}; all K stable: {}",
        ttft(0),
        KS[0],
        ttft(KS.len() - 1),
        KS[KS.len() - 1],
        points.iter().all(|m| !m.unstable())
    );
    let columns: [&[(&str, Col)]; 4] = [&[("K", Col::K)], &THROUGHPUT_AND_TTFT, &tbt, &ours];
    point_table("batching_scale", ctx, &points, &columns, headline)
}
