//! Invariants of the engine that must hold for any workload: conservation of requests and
//! tokens, batch limits, one batch at a time per GPU, FCFS for Scheduler A, whatever the
//! router.

use proptest::prelude::*;
use std::sync::Arc;

use llmsim::cost::{CostDist, LinearCost};
use llmsim::dist::LengthDist;
use llmsim::engine::{EngineConfig, simulate_observed};
use llmsim::kv::KvConfig;
use llmsim::router::RouterSpec;
use llmsim::scheduler::{Phase, SchedulerSpec};
use llmsim::workload::Request;

fn workload() -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec((0.0..2.0f64, 1u32..40, 0u32..12), 2..60).prop_map(|v| {
        let mut t = 0.0;
        v.into_iter()
            .map(|(gap, prompt, decode)| {
                t += gap;
                Request {
                    arrival: t,
                    prompt,
                    decode,
                }
            })
            .collect()
    })
}

fn scheduler() -> impl Strategy<Value = SchedulerSpec> {
    prop_oneof![
        Just(SchedulerSpec::A),
        (1u32..5, prop::option::of(1u32..4)).prop_map(|(k, max_decode_batch)| SchedulerSpec::B {
            k,
            max_decode_batch
        }),
    ]
}

/// Any router; `power-of-d` with `d` clamped to the cluster size by the test.
fn router() -> impl Strategy<Value = RouterSpec> {
    prop_oneof![
        Just(RouterSpec::Random),
        Just(RouterSpec::RoundRobin),
        Just(RouterSpec::Jsq),
        Just(RouterSpec::LeastWork),
        (1u32..4).prop_map(RouterSpec::PowerOfD),
        Just(RouterSpec::Central),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_request_completes_once_with_all_its_tokens(
        requests in workload(),
        spec in scheduler(),
        gpus in 1usize..4,
        router in router(),
        dist in prop_oneof![Just(CostDist::Deterministic), Just(CostDist::Exponential)],
        seed in 0u64..1000,
    ) {
        let config = EngineConfig {
            scheduler: spec.clone(),
            cost: Arc::new(LinearCost::new(0.05, 0.01, 4.0, dist)),
            gpus,
            router: match router {
                RouterSpec::PowerOfD(d) => RouterSpec::PowerOfD(d.min(gpus as u32)),
                r => r,
            },
            kv: KvConfig::unlimited(),
        };
        let n = requests.len();
        let mut tokens = vec![0u32; n];
        let mut prefilled = vec![0u32; n];
        let mut last_end = vec![0.0f64; gpus];
        let mut violations = Vec::new();
        let out = simulate_observed(&requests, &config, seed, 0, 1, &mut |ev| {
            if ev.start < last_end[ev.gpu] {
                violations.push(format!("GPU {} overlaps at {}", ev.gpu, ev.start));
            }
            last_end[ev.gpu] = ev.end;
            let entries = ev.batch.entries();
            let prefills = entries.iter().filter(|e| e.phase == Phase::Prefill).count();
            match spec {
                SchedulerSpec::A if entries.len() != 1 => violations.push("A ran a shared batch".into()),
                SchedulerSpec::B { k, max_decode_batch } => {
                    if prefills > k as usize {
                        violations.push(format!("{prefills} prefills > K = {k}"));
                    }
                    if prefills > 0 && prefills < entries.len() {
                        violations.push("B mixed prefill and decode".into());
                    }
                    if max_decode_batch.is_some_and(|m| entries.len() - prefills > m as usize) {
                        violations.push("decode cap exceeded".into());
                    }
                }
                _ => {}
            }
            for e in entries {
                let id = e.id as usize;
                if ev.start < requests[id].arrival {
                    violations.push(format!("request {id} ran before it arrived"));
                }
                match e.phase {
                    Phase::Prefill => {
                        prefilled[id] += e.tokens;
                        tokens[id] += u32::from(prefilled[id] == requests[id].prompt);
                    }
                    Phase::Decode => tokens[id] += 1,
                }
            }
        });
        prop_assert!(violations.is_empty(), "{:?}", violations);
        for (id, r) in requests.iter().enumerate() {
            prop_assert_eq!(tokens[id], r.decode + 1, "request {} tokens", id);
            prop_assert_eq!(prefilled[id], r.prompt);
            let rec = out.records[id];
            prop_assert!(r.arrival <= rec.start && rec.start <= rec.first_token);
            prop_assert!(rec.first_token <= rec.completion);
            prop_assert!((rec.gpu as usize) < gpus);
        }
        prop_assert_eq!(out.gpus.iter().map(|g| g.requests).sum::<u64>(), n as u64);
        if spec == SchedulerSpec::A && (gpus == 1 || router == RouterSpec::Central) {
            // FCFS, on one GPU or from one central queue: service starts in arrival order.
            prop_assert!(out.records.windows(2).all(|w| w[0].start <= w[1].start));
        }
    }
}

/// Stopping at the last arrival changes nothing inside the measurement window: the same
/// events happen up to it, so throughput, utilisation, token rate and the growth verdict
/// equal those of the run served to its end.
#[test]
fn stopping_at_the_last_arrival_keeps_every_window_metric() {
    use llmsim::engine::{simulate, simulate_to_last_arrival};
    use llmsim::metrics::{growth_detected, summarize};
    use llmsim::workload::{ArrivalKind, SyntheticWorkload};

    for (spec, rate) in [
        (SchedulerSpec::A, 2.0),
        (
            SchedulerSpec::B {
                k: 4,
                max_decode_batch: None,
            },
            6.0,
        ),
    ] {
        let requests = SyntheticWorkload {
            rate,
            arrivals: ArrivalKind::Poisson,
            prompt: LengthDist::Fixed(128),
            decode: LengthDist::Fixed(64),
            requests: 3_000,
            lengths_from: None,
        }
        .generate(5, 0);
        let config = EngineConfig {
            scheduler: spec,
            cost: Arc::new(LinearCost::new(0.01, 0.001, 0.0, CostDist::Exponential)),
            gpus: 1,
            router: RouterSpec::RoundRobin,
            kv: KvConfig::unlimited(),
        };
        let full = simulate(&requests, &config, 5, 0, 300);
        let cut = simulate_to_last_arrival(&requests, &config, 5, 0, 300);
        let (f, c) = (summarize(&requests, &full), summarize(&requests, &cut));
        assert_eq!(f.throughput_rps, c.throughput_rps);
        assert_eq!(f.utilization, c.utilization);
        assert_eq!(f.tokens_per_s, c.tokens_per_s);
        assert!(growth_detected(&requests, &full) && growth_detected(&requests, &cut));
        assert!(
            c.completed < f.completed,
            "the cut run left work unfinished"
        );
        assert!(cut.end_time <= requests.last().unwrap().arrival);
    }
}
