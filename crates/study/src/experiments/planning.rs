//! `capacity_planning`: the planner (`llmsim::plan`) on the seed's workload and cost model,
//! for the report's "Capacity planning" section: Schedulers A and B (K of 2 and 8) on 1 to
//! 5 GPUs, p99 TTFT at most [`SLO_TTFT_S`] at [`TARGET_RPS`], one dollar per GPU-hour.
//! Small on purpose (a few seconds): it shows the answer's form, the study's other
//! experiments measure the policies.

use super::grid::Ctx;
use super::table::Table;
use crate::files::Disk;
use crate::report::planning;
use llmsim::config::Config;
use llmsim::plan::{Bound, Metric, Plan, Slo, Space};
use llmsim::scheduler::SchedulerKind;

/// The rate to serve (requests/s).
pub const TARGET_RPS: f64 = 4.0;
/// p99 TTFT objective (seconds).
pub const SLO_TTFT_S: f64 = 2.0;
/// Requests per replication.
const REQUESTS: usize = 2_000;
/// Replications of every search.
const REPS: u32 = 3;

/// The question asked.
pub fn plan(seed: u64) -> Plan {
    Plan {
        base: Config {
            requests: Some(REQUESTS),
            seed,
            ..Config::default()
        },
        slo: Slo {
            bounds: vec![Bound {
                metric: Metric::Ttft,
                percentile: 99,
                max_s: SLO_TTFT_S,
            }],
            ..Slo::default()
        },
        space: Space {
            schedulers: vec![SchedulerKind::A, SchedulerKind::B],
            ks: vec![2, 8],
            gpu_counts: (1..=5).collect(),
            ..Space::default()
        },
        target_rate: Some(TARGET_RPS),
        reps: REPS,
        ..Plan::default()
    }
}

/// Deployments searched (for the progress bar).
pub fn planned_runs() -> u64 {
    15
}

pub fn run(ctx: &Ctx) -> Table {
    let plan = plan(ctx.study.seed);
    let (deployments, skipped) = plan.deployments(&Disk).expect("the study's plan is valid");
    let result = plan.run(&deployments, skipped, &|n| ctx.tick(n));
    let headline = match result.cheapest {
        Some(i) => format!(
            "cheapest deployment for p99 TTFT <= {SLO_TTFT_S} s at {TARGET_RPS} req/s: {}",
            result.points[i].label
        ),
        None => "no deployment meets the objective".into(),
    };
    let all: Vec<usize> = (0..result.points.len()).collect();
    planning::table(
        "capacity_planning",
        &result,
        &all,
        planning::describe(&plan, &result),
        headline,
    )
}
