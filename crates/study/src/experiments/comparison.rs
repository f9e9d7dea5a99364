//! Schedulers A and B side by side over lambda = 0.5 .. 2, on the same requests (replication
//! `r` of both draws the same arrivals and lengths), so their difference is estimated
//! replication by replication, with a narrower interval than the two intervals combined.

use serde_json::json;

use super::Scale;
use super::grid::{Ctx, Measured, Metric, Setup, linspace, runs_for};
use super::table::{Cell, Table, mean_ci};
use llmsim::dist::LengthDist;
use llmsim::scheduler::SchedulerSpec;
use llmsim::stats::MeanCi;
use llmsim::theory;

fn rates() -> Vec<f64> {
    linspace(0.5, 2.0, 10)
}

pub fn planned_runs(scale: &Scale) -> u64 {
    runs_for(2 * rates().len(), scale)
}

/// Scheduler A's mean TTFT from Pollaczek-Khinchine: the M/G/1 wait plus one prefill
/// (seconds); `None` at or above capacity.
fn pk_ttft(setup: &Setup) -> Option<f64> {
    let (prompt, decode) = (
        LengthDist::Fixed(setup.prompt),
        LengthDist::Fixed(setup.decode),
    );
    let cost = setup.cost();
    let job = theory::scheduler_a_job(&prompt, &decode, &cost);
    let wait = theory::pk_mean_wait(setup.rate, job);
    wait.is_finite()
        .then(|| wait + theory::mean_prefill(&prompt, &cost))
}

/// Paired difference `B - A` of a metric, replication by replication.
fn paired(a: &Measured, b: &Measured, metric: Metric) -> MeanCi {
    let d: Vec<f64> = a
        .runs
        .iter()
        .zip(&b.runs)
        .map(|(x, y)| metric.of(y) - metric.of(x))
        .collect();
    MeanCi::of(&d)
}

pub fn run(ctx: &Ctx) -> Table {
    let mut setups = Vec::new();
    for rate in rates() {
        setups.push(Setup {
            scheduler: SchedulerSpec::A,
            ..Setup::seed_defaults(rate)
        });
        setups.push(Setup::seed_defaults(rate));
    }
    let measured = ctx.measure(setups);
    let header = vec![
        "lambda",
        "A_ttft_mean",
        "A_ttft_ci",
        "A_tbt_mean",
        "A_tbt_ci",
        "B_ttft_mean",
        "B_ttft_ci",
        "B_tbt_mean",
        "B_tbt_ci",
        "A_ttft_pk",
        "ttft_diff_mean",
        "ttft_diff_ci",
        "tbt_diff_mean",
        "tbt_diff_ci",
        "A_throughput",
        "A_throughput_ci",
        "B_throughput",
        "B_throughput_ci",
        "A_capacity",
        "B_capacity",
        "A_unstable",
        "B_unstable",
        "A_ttft_p95",
        "A_ttft_p95_ci",
        "A_tbt_p95",
        "A_tbt_p95_ci",
        "B_ttft_p95",
        "B_ttft_p95_ci",
        "B_tbt_p95",
        "B_tbt_p95_ci",
    ];
    let mut rows = Vec::new();
    for pair in measured.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let mut row: Vec<Cell> = vec![a.setup.rate.into()];
        for m in [a, b] {
            row.extend(mean_ci(m.stat(Metric::TtftMean)));
            row.extend(mean_ci(m.stat(Metric::TbtMean)));
        }
        row.push(pk_ttft(&a.setup).into());
        row.extend(mean_ci(paired(a, b, Metric::TtftMean)));
        row.extend(mean_ci(paired(a, b, Metric::TbtMean)));
        row.extend(mean_ci(a.stat(Metric::Throughput)));
        row.extend(mean_ci(b.stat(Metric::Throughput)));
        row.extend([a.capacity.into(), b.capacity.into()]);
        row.extend([a.unstable().into(), b.unstable().into()]);
        for m in [a, b] {
            row.extend(mean_ci(m.stat(Metric::TtftP95)));
            row.extend(mean_ci(m.stat(Metric::TbtP95)));
        }
        rows.push(row);
    }
    // The highest rate at which Scheduler A is stable, with B beside it.
    let headline = match measured.chunks(2).rfind(|p| !p[0].unstable()) {
        Some([a, b]) => format!(
            "A stable up to lambda {:.2} (capacity {:.3}); there B's mean TTFT is {:.3} s vs A's {:.3} s",
            a.setup.rate,
            a.capacity,
            b.stat(Metric::TtftMean).mean,
            a.stat(Metric::TtftMean).mean
        ),
        _ => "A is unstable at every rate".into(),
    };
    Table {
        name: "scheduler_comparison",
        header,
        rows,
        meta: json!({
            "study": ctx.describe(),
            "common_random_numbers": "replication r of A and B serves the same requests (same seed and rep)",
            "points": measured.iter().map(|m| m.setup.describe()).collect::<Vec<_>>(),
        }),
        headline,
    }
}
