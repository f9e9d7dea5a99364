//! The two per-request traces: Scheduler A's overloaded baseline and Scheduler B in light
//! traffic. One row per measured request (warm-up removed) of every replication.

use serde_json::json;

use super::grid::{Ctx, RepRun, Setup};
use super::table::{Cell, Table};
use llmsim::engine::RequestRecord;
use llmsim::metrics::{request_tbt, request_ttft};
use llmsim::scheduler::SchedulerSpec;
use llmsim::stats::mean;
use llmsim::theory;
use llmsim::workload::Request;

/// Scheduler A's baseline rate (requests/s): the seed's, above A's capacity of ~1.19/s.
const BASELINE_RATE: f64 = 2.0;
/// The light-traffic rate (requests/s).
const LIGHT_RATE: f64 = 0.1;
/// Scheduler B's K in light traffic.
const LIGHT_K: u32 = 8;

/// A request is *isolated* when the system is empty at its arrival and the next arrival
/// comes more than this long after it (seconds). A request's service takes 0.84 s on
/// average (L = 128, B = 64) and exceeds 3 s with probability below 1e-7, so an isolated
/// request is all but certainly served alone: its TTFT is one draw of `S(L)` and its TBT
/// the mean of `B` draws of `S(1)`. The condition looks only at arrivals and at earlier
/// requests, never at the request's own service draws, so isolated rows are an unbiased
/// sample of those laws (conditioning on "finished before the next arrival" would favour
/// short services).
pub const ISOLATION_HORIZON_S: f64 = 3.0;

/// A per-request column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Arrival,
    Start,
    Completion,
    Ttft,
    Tbt,
    FirstToken,
    E2e,
    Rep,
    Request,
    Prompt,
    Decode,
    Unstable,
    Isolated,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Arrival => "arrival_times",
            Field::Start => "start_times",
            Field::Completion => "completion_times",
            Field::Ttft => "ttft",
            Field::Tbt => "tbt",
            Field::FirstToken => "first_token_times",
            Field::E2e => "e2e",
            Field::Rep => "rep",
            Field::Request => "request",
            Field::Prompt => "prompt_tokens",
            Field::Decode => "decode_tokens",
            Field::Unstable => "unstable",
            Field::Isolated => "isolated",
        }
    }
}

/// Our columns after the seed's, in this order.
const OURS: [Field; 12] = [
    Field::Arrival,
    Field::Start,
    Field::Completion,
    Field::Ttft,
    Field::Tbt,
    Field::FirstToken,
    Field::E2e,
    Field::Rep,
    Field::Request,
    Field::Prompt,
    Field::Decode,
    Field::Unstable,
];

/// For each of `reqs` (in arrival order, served as `records` say): is it isolated (see
/// [`ISOLATION_HORIZON_S`])?
fn isolated(reqs: &[Request], records: &[RequestRecord]) -> Vec<bool> {
    let mut busy_until = f64::NEG_INFINITY;
    (0..reqs.len())
        .map(|i| {
            let alone = busy_until <= reqs[i].arrival
                && reqs
                    .get(i + 1)
                    .is_none_or(|n| n.arrival - reqs[i].arrival > ISOLATION_HORIZON_S);
            busy_until = busy_until.max(records[i].completion);
            alone
        })
        .collect()
}

/// One row per measured request: the `seed` columns, then the rest of [`OURS`], then
/// `isolated` if asked.
fn request_table(
    runs: &[RepRun],
    seed: &[Field],
    with_isolated: bool,
) -> (Vec<&'static str>, Vec<Vec<Cell>>) {
    let mut fields: Vec<Field> = seed.to_vec();
    fields.extend(OURS.iter().filter(|f| !seed.contains(f)));
    if with_isolated {
        fields.push(Field::Isolated);
    }
    let mut rows = Vec::new();
    for run in runs {
        let iso = if with_isolated {
            isolated(&run.requests, &run.out.records)
        } else {
            Vec::new()
        };
        let first = run.out.window.first_measured;
        for (i, (req, rec)) in run
            .requests
            .iter()
            .zip(&run.out.records)
            .enumerate()
            .skip(first)
        {
            rows.push(
                fields
                    .iter()
                    .map(|f| match f {
                        Field::Arrival => req.arrival.into(),
                        Field::Start => rec.start.into(),
                        Field::Completion => rec.completion.into(),
                        Field::Ttft => request_ttft(req, rec).into(),
                        Field::Tbt => request_tbt(req, rec).into(),
                        Field::FirstToken => rec.first_token.into(),
                        Field::E2e => (rec.completion - req.arrival).into(),
                        Field::Rep => run.rep.into(),
                        Field::Request => i.into(),
                        Field::Prompt => req.prompt.into(),
                        Field::Decode => req.decode.into(),
                        Field::Unstable => run.summary.unstable.into(),
                        Field::Isolated => iso[i].into(),
                    })
                    .collect(),
            );
        }
    }
    (fields.iter().map(|f| f.name()).collect(), rows)
}

/// Replication means of a per-replication statistic, averaged.
fn rep_mean(runs: &[RepRun], f: impl Fn(&RepRun) -> f64) -> f64 {
    mean(&runs.iter().map(f).collect::<Vec<_>>())
}

/// Scheduler A at the seed's lambda = 2, which is above its capacity: marked unstable.
pub fn scheduler_a_baseline(ctx: &Ctx) -> Table {
    let setup = Setup {
        scheduler: SchedulerSpec::A,
        ..Setup::seed_defaults(BASELINE_RATE)
    };
    let runs = ctx.records(&setup);
    let name = "scheduler_a_baseline";
    let seed = [
        Field::Arrival,
        Field::Start,
        Field::Completion,
        Field::Ttft,
        Field::Tbt,
    ];
    let (header, rows) = request_table(&runs, &seed, false);
    let cap = setup.capacity();
    let unstable = runs.iter().any(|r| r.summary.unstable);
    let headline = format!(
        "lambda {BASELINE_RATE} vs capacity {cap:.3} req/s: {}; throughput {:.3} req/s, mean TTFT {:.0} s (grows with run length)",
        if unstable {
            "OVERLOADED, marked unstable (as in the seed)"
        } else {
            "stable"
        },
        rep_mean(&runs, |r| r.summary.throughput_rps),
        rep_mean(&runs, |r| r.summary.ttft.mean),
    );
    Table {
        name,
        header,
        rows,
        meta: json!({
            "study": ctx.describe(),
            "setup": setup.describe(),
            "unstable": unstable,
            "note": "lambda = 2 exceeds Scheduler A's capacity 1/E[T]: the queue grows without bound, so TTFT and completion times depend on the run length and are not steady-state values",
        }),
        headline,
    }
}

/// Scheduler B (K = 8) at lambda = 0.1, where requests rarely meet: TTFT tends to E[S(L)]
/// and TBT to E[S(1)]; the `isolated` rows match them exactly.
pub fn light_traffic(ctx: &Ctx) -> Table {
    let setup = Setup {
        scheduler: SchedulerSpec::B {
            k: LIGHT_K,
            max_decode_batch: None,
        },
        ..Setup::seed_defaults(LIGHT_RATE)
    };
    let runs = ctx.records(&setup);
    let name = "validation_light_traffic";
    let seed = [Field::Arrival, Field::Completion, Field::Ttft, Field::Tbt];
    let (header, rows) = request_table(&runs, &seed, true);
    let cost = setup.cost();
    let prompt = llmsim::dist::LengthDist::Fixed(setup.prompt);
    let (s_l, s_1) = (
        theory::mean_prefill(&prompt, &cost),
        theory::mean_decode_step(&cost),
    );
    // (TTFT, TBT, isolated) of every measured request, for the headline.
    let samples: Vec<(f64, f64, bool)> = runs
        .iter()
        .flat_map(|run| {
            let flags = isolated(&run.requests, &run.out.records);
            let first = run.out.window.first_measured;
            (first..run.requests.len()).map(move |i| {
                let (req, rec) = (&run.requests[i], &run.out.records[i]);
                (
                    request_ttft(req, rec),
                    request_tbt(req, rec).unwrap_or(0.0),
                    flags[i],
                )
            })
        })
        .collect();
    let means = |only_isolated: bool| {
        let xs: Vec<&(f64, f64, bool)> = samples.iter().filter(|s| s.2 || !only_isolated).collect();
        let ttft: Vec<f64> = xs.iter().map(|s| s.0).collect();
        let tbt: Vec<f64> = xs.iter().map(|s| s.1).collect();
        (mean(&ttft), mean(&tbt), xs.len())
    };
    let ((iso_t, iso_b, iso_n), (all_t, all_b, all_n)) = (means(true), means(false));
    let headline = format!(
        "isolated requests ({iso_n} of {all_n}): TTFT {iso_t:.4} s vs E[S(L)] {s_l:.4}, TBT {iso_b:.5} s vs E[S(1)] {s_1:.5}; all: {all_t:.4} / {all_b:.5} s"
    );
    Table {
        name,
        header,
        rows,
        meta: json!({
            "study": ctx.describe(),
            "setup": setup.describe(),
            "theory": { "mean_prefill_s": s_l, "mean_decode_step_s": s_1 },
            "isolation_horizon_s": ISOLATION_HORIZON_S,
            "unstable": runs.iter().any(|r| r.summary.unstable),
        }),
        headline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(arrival: f64) -> Request {
        Request {
            arrival,
            prompt: 1,
            decode: 1,
            prefix: None,
            next: None,
        }
    }

    fn done(completion: f64) -> RequestRecord {
        RequestRecord {
            arrival: 0.0,
            prompt: 0,
            decode: 0,
            start: f64::NAN,
            first_token: f64::NAN,
            completion,
            gpu: 0,
        }
    }

    /// Isolation looks at the system at arrival and the next arrival, not at the request's
    /// own completion.
    #[test]
    fn isolation_depends_on_arrivals_and_earlier_requests_only() {
        let h = ISOLATION_HORIZON_S;
        let reqs = [at(0.0), at(h + 1.0), at(h + 2.0), at(3.0 * h + 10.0)];
        // Request 0 ends long after the next arrival: still isolated, its own service
        // does not count. Request 1 arrives while 0 is in the system. Request 2 has its next
        // arrival far away but arrives while 0 is still in the system too.
        let recs = [
            done(h + 5.0),
            done(h + 6.0),
            done(h + 7.0),
            done(3.0 * h + 11.0),
        ];
        assert_eq!(isolated(&reqs, &recs), [true, false, false, true]);
        // Now each request ends before the next arrives: 1 still is not isolated (2 comes
        // within the horizon), 2 now is (empty system, next arrival far away).
        let recs = [
            done(0.5),
            done(h + 1.5),
            done(h + 2.5),
            done(3.0 * h + 11.0),
        ];
        assert_eq!(isolated(&reqs, &recs), [true, false, true, true]);
    }
}
