//! Multi-GPU clusters: one GPU is one GPU whatever the router, every request is served
//! exactly once, the queueing-theory checks fail when their premise is broken (that they
//! pass is asserted with every other check in `tests/validation.rs`), and the routers rank
//! as theory says on paired replications.

use std::sync::Arc;

use llmsim::cost::{CostDist, LinearCost};
use llmsim::engine::{EngineConfig, simulate};
use llmsim::kv::KvConfig;
use llmsim::metrics::{Summary, summarize};
use llmsim::router::RouterSpec;
use llmsim::scheduler::SchedulerSpec;
use llmsim::sim::RunConfig;
use llmsim::stats::{half_width, mean};
use llmsim::validation::{self, Effort};
use llmsim::workload::{ArrivalKind, SyntheticWorkload, Workload};

const ROUTERS: [RouterSpec; 6] = [
    RouterSpec::Random,
    RouterSpec::RoundRobin,
    RouterSpec::Jsq,
    RouterSpec::LeastWork,
    RouterSpec::PowerOfD(1),
    RouterSpec::Central,
];

fn schedulers() -> [SchedulerSpec; 2] {
    [
        SchedulerSpec::A,
        SchedulerSpec::B {
            k: 4,
            max_decode_batch: None,
        },
    ]
}

/// Scheduler-A-friendly lengths (L uniform 16..256, B geometric mean 32) with the seed's exp
/// costs (c = 0.01 s, a = 0.001 s/token), arriving at `load` times the cluster's
/// closed-form capacity.
fn config(
    scheduler: SchedulerSpec,
    load: f64,
    gpus: usize,
    router: RouterSpec,
    reps: u32,
    requests: usize,
) -> RunConfig {
    let mut workload = SyntheticWorkload {
        rate: 1.0,
        arrivals: ArrivalKind::Poisson,
        prompt: "uniform:16:256".parse().unwrap(),
        decode: "geometric:32:256".parse().unwrap(),
        requests,
        lengths_from: None,
    };
    let mut cfg = RunConfig {
        workload: Workload::Synthetic(workload.clone()),
        engine: EngineConfig {
            scheduler,
            cost: Arc::new(LinearCost::new(0.01, 0.001, 0.0, CostDist::Exponential)),
            gpus,
            router,
            kv: KvConfig::unlimited(),
        },
        seed: 99,
        reps,
        warmup: requests / 10,
    };
    workload.rate = load * cfg.capacity().expect("a closed-form capacity");
    cfg.workload = Workload::Synthetic(workload);
    cfg
}

#[test]
fn one_gpu_behind_any_router_is_exactly_one_gpu() {
    for sched in schedulers() {
        let single = config(sched.clone(), 0.8, 1, RouterSpec::RoundRobin, 2, 5_000).run();
        for router in ROUTERS {
            let routed = config(sched.clone(), 0.8, 1, router, 2, 5_000).run();
            assert!(
                routed == single,
                "scheduler {}, router {router}",
                sched.name()
            );
        }
    }
}

#[test]
fn every_request_is_routed_once_and_completed_once() {
    for sched in schedulers() {
        for router in ROUTERS
            .into_iter()
            .chain([RouterSpec::PowerOfD(2), RouterSpec::PowerOfD(5)])
        {
            let gpus = 5;
            let cfg = config(sched.clone(), 0.8, gpus, router, 1, 4_000);
            let reqs = cfg.workload.generate(cfg.seed, 0);
            let out = simulate(&reqs, &cfg.engine, cfg.seed, 0, cfg.warmup);
            let what = format!("scheduler {}, router {router}", sched.name());
            let mut per_gpu = vec![0u64; gpus];
            for (r, rec) in reqs.iter().zip(&out.records) {
                assert!((rec.gpu as usize) < gpus, "{what}: unrouted request");
                per_gpu[rec.gpu as usize] += 1;
                assert!(
                    r.arrival <= rec.start
                        && rec.start <= rec.first_token
                        && rec.first_token <= rec.completion,
                    "{what}: timestamps out of order or missing: {r:?} {rec:?}"
                );
            }
            let counted: Vec<u64> = out.gpus.iter().map(|g| g.requests).collect();
            assert_eq!(
                counted, per_gpu,
                "{what}: per-GPU counts disagree with the records"
            );
            assert_eq!(
                summarize(&reqs, &out).gpu_requests.iter().sum::<u64>(),
                reqs.len() as u64,
                "{what}"
            );
            // Every prompt and decode token is processed exactly once, on some GPU.
            let tokens: u64 = out.kinds.iter().map(|k| k.tokens).sum();
            let owed: u64 = reqs
                .iter()
                .map(|r| u64::from(r.prompt) + u64::from(r.decode))
                .sum();
            assert_eq!(tokens, owed, "{what}");
            if !matches!(router, RouterSpec::PowerOfD(1)) {
                assert!(
                    per_gpu.iter().all(|&n| n > 0),
                    "{what}: a GPU got nothing: {per_gpu:?}"
                );
            }
        }
    }
}

/// The checks have power: routing that breaks their premise is caught. Round-robin feeds each
/// GPU Erlang-4 gaps, which wait less than Poisson ones (P-K overstates the wait); random
/// routing makes each GPU its own M/M/1 queue, which waits far longer than M/M/c.
#[test]
fn cluster_theory_checks_fail_when_routing_breaks_their_premise() {
    let pk = validation::routed_mg1(Effort::FULL, RouterSpec::RoundRobin);
    assert!(pk.iter().all(|c| !c.pass), "{pk:#?}");
    let erlang = validation::routed_mmc(Effort::FULL, RouterSpec::Random);
    assert!(erlang.iter().all(|c| !c.pass), "{erlang:#?}");
}

/// One latency figure of a replication's summary (seconds).
type Metric = fn(&Summary) -> f64;

/// Lower end of the 99.9% interval of the paired differences `worse - better`, which share
/// seeds and so the same arrivals and lengths (common random numbers).
fn paired_lower_bound(worse: &[Summary], better: &[Summary], metric: Metric) -> f64 {
    let d: Vec<f64> = worse
        .iter()
        .zip(better)
        .map(|(w, b)| metric(w) - metric(b))
        .collect();
    mean(&d) - half_width(&d, 0.999)
}

#[test]
fn load_aware_routing_beats_random_at_80_percent_load() {
    let gpus = 8;
    let sched = SchedulerSpec::A;
    let run = |router| config(sched.clone(), 0.8, gpus, router, 10, 20_000).run();
    let (random, pod2, jsq, central) = (
        run(RouterSpec::Random),
        run(RouterSpec::PowerOfD(2)),
        run(RouterSpec::Jsq),
        run(RouterSpec::Central),
    );
    let metrics: [(&str, Metric); 2] = [("mean E2E", |s| s.e2e.mean), ("p99 E2E", |s| s.e2e.p99)];
    for (name, metric) in metrics {
        for (label, worse, better) in [
            ("random - jsq", &random, &jsq),
            ("random - central", &random, &central),
            ("random - power-of-d:2", &random, &pod2),
            ("power-of-d:2 - jsq", &pod2, &jsq),
        ] {
            let lo = paired_lower_bound(worse, better, metric);
            assert!(
                lo > 0.0,
                "{name}, {label}: 99.9% interval of the difference reaches {lo}"
            );
        }
    }
}
