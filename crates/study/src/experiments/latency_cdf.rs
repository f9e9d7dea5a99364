//! The whole TTFT and TBT distributions of Schedulers A and B at one load, on the same
//! requests: quantiles of every measured request pooled over the replications, for CDF
//! figures (the seed compared means only, which hide how differently the tails behave).

use serde_json::json;

use super::Scale;
use super::grid::{Ctx, RepRun, Setup};
use super::table::{Cell, Table};
use llmsim::metrics::{request_tbt, request_ttft};
use llmsim::scheduler::SchedulerSpec;
use llmsim::stats::quantile_sorted;

/// The common load (requests/s): 84% of Scheduler A's capacity, 19% of B's.
pub const CDF_RATE: f64 = 1.0;
/// Quantile levels 0, 0.01, ..., 1.
const LEVELS: usize = 101;

pub fn planned_runs(scale: &Scale) -> u64 {
    2 * u64::from(scale.reps)
}

/// TTFTs and TBTs (seconds) of every measured request of every replication, ascending.
fn pooled(runs: &[RepRun]) -> (Vec<f64>, Vec<f64>) {
    let (mut ttft, mut tbt) = (Vec::new(), Vec::new());
    for run in runs {
        let first = run.out.window.first_measured;
        for (req, rec) in run.requests[first..].iter().zip(&run.out.records[first..]) {
            ttft.push(request_ttft(req, rec));
            tbt.extend(request_tbt(req, rec));
        }
    }
    ttft.sort_unstable_by(f64::total_cmp);
    tbt.sort_unstable_by(f64::total_cmp);
    (ttft, tbt)
}

pub fn run(ctx: &Ctx) -> Table {
    let mut rows = Vec::new();
    let mut points = Vec::new();
    let mut medians = Vec::new();
    for (name, scheduler) in [
        ("A", SchedulerSpec::A),
        ("B", Setup::seed_defaults(CDF_RATE).scheduler),
    ] {
        let setup = Setup {
            scheduler,
            ..Setup::seed_defaults(CDF_RATE)
        };
        let runs = ctx.records(&setup);
        let unstable = runs.iter().any(|r| r.summary.unstable);
        let (ttft, tbt) = pooled(&runs);
        for i in 0..LEVELS {
            let q = i as f64 / (LEVELS - 1) as f64;
            rows.push(vec![
                Cell::from(name),
                q.into(),
                quantile_sorted(&ttft, q).into(),
                quantile_sorted(&tbt, q).into(),
                CDF_RATE.into(),
                (CDF_RATE / setup.capacity()).into(),
                unstable.into(),
            ]);
        }
        medians.push(format!(
            "{name}: median TTFT {:.3} s, p99 {:.3} s",
            quantile_sorted(&ttft, 0.5),
            quantile_sorted(&ttft, 0.99)
        ));
        points.push(setup.describe());
    }
    Table {
        name: "latency_cdf",
        header: vec![
            "scheduler",
            "quantile",
            "ttft",
            "tbt",
            "arrival_rate",
            "load",
            "unstable",
        ],
        rows,
        meta: json!({
            "study": ctx.describe(),
            "pooled": "quantiles of all measured requests of all replications",
            "points": points,
        }),
        headline: format!("lambda {CDF_RATE}: {}", medians.join("; ")),
    }
}
