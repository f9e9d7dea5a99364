//! Multi-GPU clusters: one GPU is one GPU whatever the router, every request is served
//! exactly once, the queueing-theory checks fail when their premise is broken (that they
//! pass is asserted with every other check in `tests/validation.rs`), and the routers rank
//! as theory says on paired replications.

use std::sync::Arc;

use llmsim::cost::{CostDist, LinearCost};
use llmsim::engine::{EngineConfig, simulate_observed, simulate_records};
use llmsim::kv::KvConfig;
use llmsim::metrics::{Summary, summarize};
use llmsim::router::RouterSpec;
use llmsim::scheduler::{
    BatchLimits, DisaggSpec, Preemption, SchedulerKind, SchedulerSpec, SwapLink,
};
use llmsim::sim::RunConfig;
use llmsim::stats::{half_width, mean};
use llmsim::validation::{self, Effort};
use llmsim::workload::{ArrivalKind, Request, SyntheticWorkload, Workload};

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
            prefix_cache: false,
            cpu_kv: None,
        },
        seed: 99,
        reps,
        warmup: requests / 10,
    };
    workload.rate = load * cfg.capacity().expect("a closed-form capacity");
    cfg.workload = Workload::Synthetic(workload);
    cfg
}

/// Every policy, with a KV cache small enough that the memory-aware ones preempt, and a
/// disaggregated cluster of one prefill and one decode GPU.
fn every_policy() -> Vec<SchedulerSpec> {
    let limits = BatchLimits {
        max_seqs: 16,
        max_tokens: 512,
        watermark: 0.01,
        preemption: Preemption::Recompute,
    };
    let swap = BatchLimits {
        preemption: Preemption::Swap(SwapLink {
            gbytes_per_s: 25.0,
            kv_bytes_per_token: 131_072.0,
        }),
        ..limits
    };
    let mut all = schedulers().to_vec();
    all.extend([
        SchedulerSpec::Static { k: 8 },
        SchedulerSpec::Orca(limits),
        SchedulerSpec::Vllm(limits),
        SchedulerSpec::Vllm(swap),
        SchedulerSpec::Sarathi(limits),
        SchedulerSpec::DecodeFirst(limits),
        SchedulerSpec::DecodeFirst(swap),
        SchedulerSpec::Disagg(DisaggSpec {
            limits,
            prefill_gpus: 1,
            decode_gpus: 1,
            link_gbps: 100.0,
            link_latency: 1e-4,
            kv_bytes_per_token: 131_072.0,
        }),
    ]);
    assert_eq!(
        all.iter().map(|s| s.kind()).collect::<Vec<_>>(),
        [
            SchedulerKind::A,
            SchedulerKind::B,
            SchedulerKind::Static,
            SchedulerKind::Orca,
            SchedulerKind::Vllm,
            SchedulerKind::Vllm,
            SchedulerKind::Sarathi,
            SchedulerKind::DecodeFirst,
            SchedulerKind::DecodeFirst,
            SchedulerKind::Disagg
        ],
        "every policy is covered"
    );
    all
}

/// `sched` on one GPU that takes arrivals (plus one decode GPU under disaggregation) behind
/// `router`, at `rate` requests/s with a 1,024-token KV cache per GPU.
fn one_gpu(sched: &SchedulerSpec, router: RouterSpec, rate: f64) -> RunConfig {
    let mut cfg = config(SchedulerSpec::A, 0.5, 1, router, 2, 3_000);
    let Workload::Synthetic(w) = &mut cfg.workload else {
        unreachable!("config is synthetic")
    };
    w.rate = rate;
    cfg.engine.scheduler = sched.clone();
    cfg.engine.gpus = if sched.kind() == SchedulerKind::Disagg {
        2
    } else {
        1
    };
    cfg.engine.kv = KvConfig::with_tokens(1_024, 16);
    cfg
}

/// The README's promise: with one GPU every router gives exactly the single-GPU result, for
/// every policy. Under `central` the GPU takes from the shared queue what its policy admits
/// (before, a memory-aware policy took one request per iteration: vLLM formed prefill
/// batches of exactly one).
#[test]
fn one_gpu_behind_any_router_is_exactly_one_gpu() {
    for sched in every_policy() {
        // Scheduler A's capacity here is 2 requests/s; the others serve 2 with room.
        let rate = if sched.kind() == SchedulerKind::A {
            1.5
        } else {
            2.0
        };
        let summaries = |router| one_gpu(&sched, router, rate).run();
        let single = summaries(RouterSpec::RoundRobin);
        if matches!(sched, SchedulerSpec::Vllm(_) | SchedulerSpec::Sarathi(_)) {
            assert!(
                single.iter().all(|s| s.preemptions + s.swaps_out > 0),
                "{sched:?}: memory never ran short, so admission under pressure goes untested"
            );
        }
        let json = |runs: &[Summary]| serde_json::to_string(runs).expect("summaries serialise");
        for router in ROUTERS {
            assert!(
                json(&summaries(router)) == json(&single),
                "scheduler {sched:?}, router {router}"
            );
        }
    }
}

/// Under `central` a memory-aware GPU takes as many waiting requests as its policy admits:
/// on 2 GPUs decode-first and vLLM serve a load that round-robin serves (before, each GPU
/// took one request per iteration and decode-first fell to Scheduler A's capacity), with
/// prefill batches as large as under round-robin.
#[test]
fn memory_aware_policies_under_central_reach_their_capacity() {
    let limits = BatchLimits {
        max_seqs: 64,
        max_tokens: 2_048,
        watermark: 0.01,
        preemption: Preemption::Recompute,
    };
    for sched in [
        SchedulerSpec::DecodeFirst(limits),
        SchedulerSpec::Vllm(limits),
    ] {
        let run = |router| {
            let mut cfg = config(SchedulerSpec::A, 0.5, 2, router, 1, 20_000);
            let Workload::Synthetic(w) = &mut cfg.workload else {
                unreachable!("config is synthetic")
            };
            // Scheduler A's capacity on 2 GPUs is 4 requests/s; perfect batching would serve
            // 2 / (0.136 + 0.032 s of per-token work) = 11.9: 8 is two thirds of that.
            w.rate = 8.0;
            cfg.engine.scheduler = sched.clone();
            cfg.engine.kv = KvConfig::with_tokens(65_536, 16);
            cfg.run().remove(0)
        };
        let (central, rr) = (run(RouterSpec::Central), run(RouterSpec::RoundRobin));
        let name = sched.name();
        assert!(!rr.unstable, "{name}: round-robin is not stable at 8 req/s");
        assert!(!central.unstable, "{name}: central is unstable at 8 req/s");
        assert!(
            central.e2e.mean <= 1.5 * rr.e2e.mean,
            "{name}: mean E2E {} under central vs {} under round-robin",
            central.e2e.mean,
            rr.e2e.mean
        );
        assert!(
            central.batches.prefill.mean_entries >= 0.8 * rr.batches.prefill.mean_entries,
            "{name}: {} requests per prefill batch under central vs {} under round-robin",
            central.batches.prefill.mean_entries,
            rr.batches.prefill.mean_entries
        );
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
            let out = simulate_records(&reqs, &cfg.engine, cfg.seed, 0, cfg.warmup);
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
                summarize(&out).gpu_requests.iter().sum::<u64>(),
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

/// `least-work` hears of a preemption when it happens (its dropped context is work again),
/// not when the batch ends. vLLM on 2 GPUs, 1 s per batch, three 4-token KV blocks each:
/// r0 (4 + 6 tokens) and r2 (4 + 2, a tie at 10 tokens of work each) go to GPU 0, r1 (10 + 0)
/// to GPU 1. GPU 0 prefills r0 at [0, 1] and r2 at [1, 2]; at 2 it has 8 tokens of work
/// left, and preempting r2 (4 cached tokens) raises it to 12. r3 (4 + 6) arrives at 1.5 at
/// the idle GPU 1. At 2.4 r4 finds GPU 1 at 10 tokens: a router told of the preemption sends
/// it there; one told only at the end of GPU 0's batch sees 8 and sends it to GPU 0.
#[test]
fn least_work_hears_of_a_preemption_at_once() {
    let req = |arrival, prompt, decode| Request {
        arrival,
        prompt,
        decode,
        prefix: None,
        next: None,
    };
    let requests = [
        req(0.0, 4, 6),
        req(0.0, 10, 0),
        req(0.0, 4, 2),
        req(1.5, 4, 6),
        req(2.4, 4, 0),
    ];
    let config = EngineConfig {
        scheduler: SchedulerSpec::Vllm(BatchLimits {
            max_seqs: 2,
            max_tokens: 64,
            watermark: 0.0,
            preemption: Preemption::Recompute,
        }),
        cost: Arc::new(LinearCost::new(1.0, 0.0, 0.0, CostDist::Deterministic)),
        gpus: 2,
        router: RouterSpec::LeastWork,
        kv: KvConfig::with_tokens(12, 4),
        prefix_cache: false,
        cpu_kv: None,
    };
    let mut preempted_at = Vec::new();
    let out = simulate_observed(requests, &config, 0, 0, 0, &mut |ev| {
        if !ev.batch.preempted().is_empty() {
            preempted_at.push((ev.gpu, ev.start, ev.batch.preempted().to_vec()));
        }
    });
    assert_eq!(preempted_at[0], (0, 2.0, vec![2]));
    let gpus: Vec<u32> = out.records.iter().map(|r| r.gpu).collect();
    assert_eq!(gpus, [0, 1, 0, 1, 1]);
}
