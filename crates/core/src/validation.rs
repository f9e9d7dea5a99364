//! The simulator against closed forms: each check runs independent replications of one
//! configuration and compares a replication-averaged metric with its theoretical value.
//!
//! A check passes when the theory lies inside the 99.9% Student-t interval of the
//! replication mean, so a correct simulator fails a given check with probability 0.1%,
//! while a bias larger than the interval shows. The table reports 95% intervals.

use std::sync::Arc;

use crate::cost::{CostDist, LinearCost};
use crate::dist::LengthDist;
use crate::engine::{EngineConfig, simulate_to_last_arrival};
use crate::kv::KvConfig;
use crate::metrics::Summary;
use crate::router::RouterSpec;
use crate::scheduler::SchedulerSpec;
use crate::sim::{RunConfig, map_reps};
use crate::stats::{MeanCi, QUANTILE_RELATIVE_ERROR, half_width, mean};
use crate::theory;
use crate::workload::{ArrivalKind, Request, SyntheticWorkload, Workload};

/// Base seed of every validation run (fixed, so the table is reproducible).
pub const SEED: u64 = 20_261_127;

/// Confidence level of the pass/fail interval.
pub const PASS_LEVEL: f64 = 0.999;

/// One simulated-versus-theory comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// The configuration, e.g. "M/M/1 (Scheduler A, c = 0.4, B = 0)".
    pub model: String,
    /// The metric compared, with its unit.
    pub metric: String,
    /// Replication mean and 95% half-width.
    pub simulated: MeanCi,
    /// The closed-form value.
    pub theory: f64,
    /// Half-width of the 99.9% interval, the pass tolerance.
    pub tolerance: f64,
    /// Whether the theory lies within the tolerance of the simulated mean.
    pub pass: bool,
}

impl Check {
    /// Compares per-replication values `xs` with `theory`.
    pub fn new(model: &str, metric: &str, xs: &[f64], theory: f64) -> Self {
        let simulated = MeanCi::of(xs);
        let tolerance = half_width(xs, PASS_LEVEL);
        Check {
            model: model.into(),
            metric: metric.into(),
            simulated,
            theory,
            tolerance,
            pass: (mean(xs) - theory).abs() <= tolerance,
        }
    }

    /// [`Check::new`] for a percentile, which runs read from a histogram: the tolerance also
    /// allows the histogram's largest relative error ([`QUANTILE_RELATIVE_ERROR`]).
    pub fn quantile(model: &str, metric: &str, xs: &[f64], theory: f64) -> Self {
        let mut check = Check::new(model, metric, xs, theory);
        check.tolerance += QUANTILE_RELATIVE_ERROR * theory.abs();
        check.pass = (check.simulated.mean - theory).abs() <= check.tolerance;
        check
    }
}

/// Sizes of the validation runs.
#[derive(Debug, Clone, Copy)]
pub struct Effort {
    /// Replications per configuration.
    pub reps: u32,
    /// Requests per replication.
    pub requests: usize,
}

impl Effort {
    /// Enough for tight intervals in a few seconds.
    pub const FULL: Effort = Effort {
        reps: 20,
        requests: 20_000,
    };
}

fn config(
    scheduler: SchedulerSpec,
    cost: LinearCost,
    rate: f64,
    prompt: LengthDist,
    decode: LengthDist,
    effort: Effort,
) -> RunConfig {
    RunConfig {
        workload: Workload::Synthetic(SyntheticWorkload {
            rate,
            arrivals: ArrivalKind::Poisson,
            prompt,
            decode,
            requests: effort.requests,
            lengths_from: None,
        }),
        engine: EngineConfig {
            scheduler,
            cost: Arc::new(cost),
            gpus: 1,
            router: RouterSpec::RoundRobin,
            kv: KvConfig::unlimited(),
            prefix_cache: false,
            cpu_kv: None,
        },
        seed: SEED,
        reps: effort.reps,
        warmup: effort.requests / 10,
    }
}

fn column(runs: &[Summary], f: impl Fn(&Summary) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

/// M/M/1: Scheduler A with `a = 0`, `B = 0`: each job is one exponential batch of mean `c`.
pub fn mm1(effort: Effort) -> Vec<Check> {
    let (c, lambda) = (0.4, 2.0);
    let cfg = config(
        SchedulerSpec::A,
        LinearCost::new(c, 0.0, 0.0, CostDist::Exponential),
        lambda,
        LengthDist::Fixed(1),
        LengthDist::Fixed(0),
        effort,
    );
    let runs = cfg.run();
    let model = "M/M/1: Scheduler A, L = 1, B = 0, c = 0.4 s exp, a = 0, lambda = 2/s";
    let mu = 1.0 / c;
    let mut checks = vec![Check::new(
        model,
        "mean E2E (s)",
        &column(&runs, |s| s.e2e.mean),
        theory::mm1_mean_response(lambda, mu),
    )];
    for (q, name, f) in [
        (
            0.5,
            "p50 E2E (s)",
            (|s: &Summary| s.e2e.p50) as fn(&Summary) -> f64,
        ),
        (0.9, "p90 E2E (s)", |s| s.e2e.p90),
        (0.99, "p99 E2E (s)", |s| s.e2e.p99),
    ] {
        checks.push(Check::quantile(
            model,
            name,
            &column(&runs, f),
            theory::mm1_response_quantile(lambda, mu, q),
        ));
    }
    checks.push(Check::new(
        model,
        "utilisation",
        &column(&runs, |s| s.utilization),
        lambda / mu,
    ));
    checks
}

/// M/G/1: Scheduler A at general lengths and costs; mean TTFT and E2E from
/// Pollaczek-Khinchine with the job's moments computed from the model's parameters.
pub fn mg1(effort: Effort) -> Vec<Check> {
    let cases = [
        (
            "M/D/1: Scheduler A, L = 128, B = 64, det costs c = 0.01, a = 0.001, lambda = 0.9/s",
            LinearCost::new(0.01, 0.001, 0.0, CostDist::Deterministic),
            0.9,
            LengthDist::Fixed(128),
            LengthDist::Fixed(64),
        ),
        (
            "M/G/1: Scheduler A, L = uniform:16:256, B = geometric:32:256, exp costs, b0 = 32, lambda = 1.4/s",
            LinearCost::new(0.005, 0.001, 32.0, CostDist::Exponential),
            1.4,
            "uniform:16:256".parse().expect("valid spec"),
            "geometric:32:256".parse().expect("valid spec"),
        ),
    ];
    let mut checks = Vec::new();
    for (model, cost, lambda, prompt, decode) in cases {
        let job = theory::scheduler_a_job(&prompt, &decode, &cost);
        let wait = theory::pk_mean_wait(lambda, job);
        let ttft = wait + theory::mean_prefill(&prompt, &cost);
        let cfg = config(SchedulerSpec::A, cost, lambda, prompt, decode, effort);
        let runs = cfg.run();
        checks.push(Check::new(
            model,
            "mean TTFT (s)",
            &column(&runs, |s| s.ttft.mean),
            ttft,
        ));
        checks.push(Check::new(
            model,
            "mean E2E (s)",
            &column(&runs, |s| s.e2e.mean),
            wait + job.mean,
        ));
    }
    checks
}

/// Light traffic for Scheduler B: as lambda -> 0 a request never meets another, so its TTFT
/// is one prefill batch `E[S(L)]` and each gap one single-entry decode batch `E[S(1)]`.
pub fn light_traffic(effort: Effort) -> Vec<Check> {
    let cost = LinearCost::new(0.01, 0.001, 0.0, CostDist::Exponential);
    let (prompt, decode) = (LengthDist::Fixed(128), LengthDist::Fixed(64));
    let (ttft, tbt) = (
        theory::mean_prefill(&prompt, &cost),
        theory::mean_decode_step(&cost),
    );
    let cfg = config(
        SchedulerSpec::B {
            k: 8,
            max_decode_batch: None,
        },
        cost,
        0.001,
        prompt,
        decode,
        Effort {
            reps: effort.reps,
            requests: effort.requests / 10,
        },
    );
    let runs = cfg.run();
    let model = "light traffic: Scheduler B, K = 8, L = 128, B = 64, exp costs, lambda = 0.001/s";
    vec![
        Check::new(
            model,
            "mean TTFT (s)",
            &column(&runs, |s| s.ttft.mean),
            ttft,
        ),
        Check::new(model, "mean TBT (s)", &column(&runs, |s| s.tbt.mean), tbt),
    ]
}

/// Little's law (`L = lambda W`) on a batching run, and Scheduler A's capacity `1 / E[T]` as
/// the throughput of an overloaded GPU.
pub fn laws(effort: Effort) -> Vec<Check> {
    let cost = LinearCost::new(0.01, 0.001, 0.0, CostDist::Exponential);
    let (prompt, decode) = (LengthDist::Fixed(128), LengthDist::Fixed(64));
    let b = config(
        SchedulerSpec::B {
            k: 4,
            max_decode_batch: None,
        },
        cost.clone(),
        1.5,
        prompt.clone(),
        decode.clone(),
        effort,
    );
    let runs = b.run();
    let little = column(&runs, |s| s.mean_in_system - s.throughput_rps * s.e2e.mean);
    vec![
        Check::new(
            "Little's law: Scheduler B, K = 4, lambda = 1.5/s",
            "L - lambda W (requests)",
            &little,
            0.0,
        ),
        a_overloaded(
            "capacity: Scheduler A at twice its capacity",
            cost,
            prompt,
            decode,
            effort,
        ),
    ]
}

/// Requests waiting at time 0 in the backlog runs of [`free_tokens`]. While they are
/// prefilled more arrive, and together they make a decode backlog of about 2,700 (`b0 =
/// 128`) to 3,000 (`b0 = 64`) requests: past the fluid threshold above which Scheduler B's
/// cycle of one decode batch and the prefills it lets through lengthens at 1.03x capacity
/// (`lambda B (a b0 - c) / (rho - 1)` with `rho = 1.03`: about 670 and 1,600 requests),
/// and ten times the decode cap of 100 beyond which a capped backlog's batches are full.
const BACKLOG: usize = 1_000;

/// Poisson arrivals after the backlog, per replication of the backlog runs. At 0.97x
/// capacity the backlog drains at about 0.47 requests/s, within about 30,000 arrivals (all
/// of 40 trial replications had drained by then); at 1.03x it grows by thousands.
const BACKLOG_ARRIVALS: usize = 40_000;

/// Whether replication `rep` of `cfg`, started with [`BACKLOG`] requests waiting at time 0
/// (lengths drawn like the rest), holds more requests at its last arrival than at its
/// start. The run stops there: draining a grown backlog would cost more than the arrivals
/// and cannot change the count.
fn backlog_grew(cfg: &RunConfig, rep: u32) -> bool {
    let arrivals = || cfg.workload.iter(cfg.seed, rep);
    let backlog = arrivals()
        .take(BACKLOG)
        .map(|r| Request { arrival: 0.0, ..r });
    // Measured from time 0 (no warm-up), the window holds every arrival and ends at the
    // last one.
    let out = simulate_to_last_arrival(backlog.chain(arrivals()), &cfg.engine, cfg.seed, rep, 0);
    out.growth.at_end > BACKLOG as u64
}

/// Scheduler B with `b0` free tokens per batch, at most `k` prefills and `max_decode`
/// decodes per batch, the defaults of `llmsim run --scheduler b` otherwise (`L = 128`,
/// `B = 64`, `c = 0.01`, `a = 0.001`).
fn b_with_free_tokens(
    (k, max_decode, b0): (u32, Option<u32>, f64),
    dist: CostDist,
    rate: f64,
    effort: Effort,
) -> RunConfig {
    config(
        SchedulerSpec::B {
            k,
            max_decode_batch: max_decode,
        },
        LinearCost::new(0.01, 0.001, b0, dist),
        rate,
        LengthDist::Fixed(128),
        LengthDist::Fixed(64),
        effort,
    )
}

/// Capacities with free tokens per batch (`b0 > 0`).
///
/// Scheduler B's closed form `1 / (E[S(K prompts)] / K + E[B] d)` is the largest rate from
/// which every backlog drains: started with a backlog, runs at 0.97x of it drain and runs
/// at 1.03x grow, with `K = 4` and no decode cap (`d = a`) as with `K = 1` and a cap of
/// `D = 100` (`d = S(D) / D`). Costs are deterministic there, so that 40,000 arrivals
/// resolve a 3% margin (the threshold depends on mean costs alone). With `a b0 > c` it is
/// not a hard limit: from empty, the 5.7/s at `b0 = 64` (capacity 5.602/s) and
/// 7.2/s at `b0 = 128` (6.154/s) keep up, with exponential costs, and are not called
/// unstable. Scheduler A's `1 / E[T]` holds with `b0` too: it is an overloaded GPU's
/// throughput.
pub fn free_tokens(effort: Effort) -> Vec<Check> {
    let mut checks = Vec::new();
    for (b0, rate) in [(64.0, 5.7), (128.0, 7.2)] {
        let cfg = b_with_free_tokens((4, None, b0), CostDist::Exponential, rate, effort);
        let capacity = cfg
            .capacity()
            .expect("a fixed prompt length has a closed form");
        let runs = cfg.run();
        let model = format!(
            "Scheduler B, K = 4, L = 128, B = 64, exp costs, b0 = {b0}: capacity {capacity:.3}/s, lambda = {rate}/s from empty"
        );
        checks.push(Check::new(
            &model,
            "throughput (req/s)",
            &column(&runs, |s| s.throughput_rps),
            rate,
        ));
        checks.push(Check::new(
            &model,
            "unstable (rep share)",
            &column(&runs, |s| f64::from(u8::from(s.unstable))),
            0.0,
        ));
    }
    let size = Effort {
        reps: effort.reps,
        requests: BACKLOG_ARRIVALS,
    };
    for policy in [(4, None, 64.0), (4, None, 128.0), (1, Some(100), 64.0)] {
        let capacity = b_with_free_tokens(policy, CostDist::Deterministic, 1.0, size)
            .capacity()
            .expect("a fixed prompt length has a closed form");
        let (k, cap, b0) = policy;
        let cap = cap.map_or("no decode cap".into(), |d| format!("decode cap {d}"));
        for (load, grows) in [(0.97, false), (1.03, true)] {
            let cfg = b_with_free_tokens(policy, CostDist::Deterministic, load * capacity, size);
            let grew: Vec<f64> =
                map_reps(cfg.reps, |rep| f64::from(u8::from(backlog_grew(&cfg, rep))));
            checks.push(Check::new(
                &format!(
                    "Scheduler B, K = {k}, {cap}, L = 128, B = 64, det costs, b0 = {b0}: {load} x capacity {capacity:.3}/s after a backlog of {BACKLOG}"
                ),
                "backlog grew (rep share)",
                &grew,
                f64::from(u8::from(grows)),
            ));
        }
    }
    checks.push(a_overloaded(
        "capacity: Scheduler A at twice its capacity, L = uniform:16:256, B = geometric:32:256, exp costs, b0 = 32",
        LinearCost::new(0.005, 0.001, 32.0, CostDist::Exponential),
        "uniform:16:256".parse().expect("valid spec"),
        "geometric:32:256".parse().expect("valid spec"),
        effort,
    ));
    checks
}

/// Scheduler A at twice its capacity `1 / E[T]`: an overloaded GPU is never idle, so it
/// completes jobs at exactly that rate.
fn a_overloaded(
    model: &str,
    cost: LinearCost,
    prompt: LengthDist,
    decode: LengthDist,
    effort: Effort,
) -> Check {
    let capacity = theory::scheduler_a_capacity(&prompt, &decode, &cost);
    let over = config(
        SchedulerSpec::A,
        cost,
        2.0 * capacity,
        prompt,
        decode,
        effort,
    )
    .run();
    Check::new(
        model,
        "throughput (req/s)",
        &column(&over, |s| s.throughput_rps),
        capacity,
    )
}

/// `config` spread over `gpus` GPUs behind `router`.
fn on_cluster(mut cfg: RunConfig, gpus: usize, router: RouterSpec) -> RunConfig {
    cfg.engine.gpus = gpus;
    cfg.engine.router = router;
    cfg
}

/// Random routing over 4 GPUs running Scheduler A: uniform routing thins the Poisson stream
/// into 4 independent Poisson streams at `lambda / 4`, so each GPU is an M/G/1 queue and
/// mean TTFT and E2E follow Pollaczek-Khinchine at the per-GPU rate. Any other `router`
/// breaks the thinning argument (tests use that to show the check can fail).
pub fn routed_mg1(effort: Effort, router: RouterSpec) -> Vec<Check> {
    let gpus = 4;
    let per_gpu = 1.4;
    let cost = LinearCost::new(0.005, 0.001, 32.0, CostDist::Exponential);
    let prompt: LengthDist = "uniform:16:256".parse().expect("valid spec");
    let decode: LengthDist = "geometric:32:256".parse().expect("valid spec");
    let job = theory::scheduler_a_job(&prompt, &decode, &cost);
    let wait = theory::pk_mean_wait(per_gpu, job);
    let ttft = wait + theory::mean_prefill(&prompt, &cost);
    let cfg = config(
        SchedulerSpec::A,
        cost,
        per_gpu * gpus as f64,
        prompt,
        decode,
        effort,
    );
    let runs = on_cluster(cfg, gpus, router).run();
    let model = format!(
        "M/G/1 x {gpus} by {router} routing: Scheduler A, L = uniform:16:256, B = geometric:32:256, exp costs, b0 = 32, lambda = {}/s",
        per_gpu * gpus as f64
    );
    vec![
        Check::new(
            &model,
            "mean TTFT (s)",
            &column(&runs, |s| s.ttft.mean),
            ttft,
        ),
        Check::new(
            &model,
            "mean E2E (s)",
            &column(&runs, |s| s.e2e.mean),
            wait + job.mean,
        ),
    ]
}

/// A central queue in front of `c` = 2, 4 and 8 GPUs running Scheduler A with one
/// exponential batch per job (`a = 0`, `B = 0`, `L = 1`): the M/M/c queue, whose mean
/// wait is Erlang C's `C(c, a) / (c mu - lambda)`. With `B = 0` the job is its prefill
/// batch, so E2E = TTFT = wait + service and mean E2E = `Wq + 1 / mu`. Load is 80%.
pub fn routed_mmc(effort: Effort, router: RouterSpec) -> Vec<Check> {
    let (c, rho) = (0.4, 0.8);
    let mu = 1.0 / c;
    let mut checks = Vec::new();
    for servers in [2, 4, 8] {
        let lambda = rho * servers as f64 * mu;
        let cfg = config(
            SchedulerSpec::A,
            LinearCost::new(c, 0.0, 0.0, CostDist::Exponential),
            lambda,
            LengthDist::Fixed(1),
            LengthDist::Fixed(0),
            effort,
        );
        let runs = on_cluster(cfg, servers, router).run();
        let model = format!(
            "M/M/{servers} by {router} routing: Scheduler A, L = 1, B = 0, c = 0.4 s exp, a = 0, lambda = {lambda}/s"
        );
        checks.push(Check::new(
            &model,
            "mean E2E (s)",
            &column(&runs, |s| s.e2e.mean),
            theory::mmc_mean_wait(servers, lambda, mu) + 1.0 / mu,
        ));
    }
    checks
}

/// The cluster checks: P-K under random routing, Erlang C under a central queue.
pub fn cluster(effort: Effort) -> Vec<Check> {
    [
        routed_mg1(effort, RouterSpec::Random),
        routed_mmc(effort, RouterSpec::Central),
    ]
    .concat()
}

/// Every check, in the order `llmsim validate` prints them.
pub fn all(effort: Effort) -> Vec<Check> {
    [
        mm1(effort),
        mg1(effort),
        light_traffic(effort),
        laws(effort),
        free_tokens(effort),
        cluster(effort),
    ]
    .concat()
}
