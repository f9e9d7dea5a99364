//! Both schedulers on 1 to 8 GPUs behind a router at lambda = 4 (the seed's scaling study).

use super::Scale;
use super::grid::{Col, Ctx, Metric, Setup, THROUGHPUT_AND_TTFT, point_table, runs_for};
use super::table::Table;
use llmsim::router::RouterSpec;
use llmsim::scheduler::SchedulerSpec;

/// The router of the multi-GPU study: one shared FCFS queue that a GPU pulls from when it
/// can take work, which for Scheduler A is the seed's least-load dispatcher (a job goes to
/// the GPU that frees first).
pub const MULTI_GPU_ROUTER: RouterSpec = RouterSpec::Central;

/// The arrival rate over the whole cluster (requests/s).
const RATE: f64 = 4.0;
/// Cluster sizes studied.
const GPUS: [usize; 4] = [1, 2, 4, 8];

fn schedulers() -> [SchedulerSpec; 2] {
    [
        SchedulerSpec::A,
        SchedulerSpec::B {
            k: 4,
            max_decode_batch: None,
        },
    ]
}

pub fn planned_runs(scale: &Scale) -> u64 {
    runs_for(GPUS.len() * schedulers().len(), scale)
}

pub fn run(ctx: &Ctx) -> Table {
    let mut setups = Vec::new();
    for scheduler in schedulers() {
        for gpus in GPUS {
            setups.push(Setup {
                scheduler: scheduler.clone(),
                gpus,
                router: MULTI_GPU_ROUTER,
                ..Setup::seed_defaults(RATE)
            });
        }
    }
    let points = ctx.measure(setups);
    let ours = [
        ("scheduler", Col::Scheduler),
        ("router", Col::Router),
        ("K", Col::K),
        ("arrival_rate", Col::Rate),
        ("mean_TBT_mean", Col::Mean(Metric::TbtMean)),
        ("mean_TBT_ci", Col::Ci(Metric::TbtMean)),
        ("utilization_mean", Col::Mean(Metric::Utilization)),
        ("load_imbalance_mean", Col::Mean(Metric::LoadImbalance)),
    ];
    let fewest = |name: &str| {
        points
            .iter()
            .find(|m| m.setup.scheduler.name() == name && !m.unstable())
            .map_or("none".into(), |m| m.setup.gpus.to_string())
    };
    let headline = format!(
        "lambda {RATE}, router {MULTI_GPU_ROUTER}: fewest stable GPUs: A {}, B {}",
        fewest("a"),
        fewest("b")
    );
    let columns: [&[(&str, Col)]; 3] = [&[("num_gpus", Col::Gpus)], &THROUGHPUT_AND_TTFT, &ours];
    point_table("multigpu_scaling", ctx, &points, &columns, headline)
}
