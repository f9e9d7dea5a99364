//! Invariants of the engine that must hold for any workload: conservation of requests and
//! tokens, batch limits, one batch at a time per GPU, FCFS for Scheduler A, whatever the
//! router.

use proptest::prelude::*;
use std::sync::Arc;

use llmsim::cost::{CostDist, LinearCost};
use llmsim::dist::LengthDist;
use llmsim::engine::{EngineConfig, simulate_observed, simulate_records};
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
                    prefix: None,
                    next: None,
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

/// Any router; `power-of-d` with `d` clamped to the cluster size by [`cluster`].
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

/// One to three GPUs under Scheduler A or B behind any router (a `power-of-d` clamped to
/// the cluster), with linear costs `c = 0.05`, `a = 0.01`, `b0 = 4`, deterministic or
/// exponential.
fn cluster() -> impl Strategy<Value = EngineConfig> {
    let dist = prop_oneof![Just(CostDist::Deterministic), Just(CostDist::Exponential)];
    (scheduler(), 1usize..4, router(), dist).prop_map(|(spec, gpus, router, dist)| EngineConfig {
        scheduler: spec,
        cost: Arc::new(LinearCost::new(0.05, 0.01, 4.0, dist)),
        gpus,
        router: match router {
            RouterSpec::PowerOfD(d) => RouterSpec::PowerOfD(d.min(gpus as u32)),
            r => r,
        },
        kv: KvConfig::unlimited(),
        prefix_cache: false,
        cpu_kv: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_request_completes_once_with_all_its_tokens(
        requests in workload(),
        config in cluster(),
        seed in 0u64..1000,
    ) {
        let (spec, gpus, router) = (config.scheduler.clone(), config.gpus, config.router);
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Steady decodes (Scheduler A's lone request, Scheduler B's decoding set with no
    /// prompt waiting) run in a tight loop when nobody observes the batches; an observer
    /// turns that off, so the two runs must agree to the last bit on every record and
    /// statistic, whatever the router and the timing of arrivals.
    #[test]
    fn steady_decodes_run_in_a_tight_loop_exactly_as_event_by_event(
        requests in workload(),
        config in cluster(),
        seed in 0u64..1000,
        warmup in 0usize..3,
    ) {
        let fast = simulate_records(&requests, &config, seed, 0, warmup);
        let mut batches = 0;
        let slow = simulate_observed(&requests, &config, seed, 0, warmup, &mut |_| batches += 1);
        prop_assert_eq!(batches, slow.gpus.iter().map(|g| g.batches).sum::<u64>());
        // Debug prints every float exactly (shortest round-trip form).
        prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
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

    let b = SchedulerSpec::B {
        k: 4,
        max_decode_batch: None,
    };
    // Several GPUs run their steady decodes ahead of one another's events: the run must
    // still end exactly at the last arrival.
    for (spec, rate, gpus, router) in [
        (SchedulerSpec::A, 2.0, 1, RouterSpec::RoundRobin),
        (b.clone(), 6.0, 1, RouterSpec::RoundRobin),
        (SchedulerSpec::A, 5.0, 3, RouterSpec::LeastWork),
        (b, 20.0, 3, RouterSpec::Jsq),
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
            gpus,
            router,
            kv: KvConfig::unlimited(),
            prefix_cache: false,
            cpu_kv: None,
        };
        let full = simulate(&requests, &config, 5, 0, 300);
        let cut = simulate_to_last_arrival(&requests, &config, 5, 0, 300);
        let (f, c) = (summarize(&full), summarize(&cut));
        assert_eq!(f.throughput_rps, c.throughput_rps);
        assert_eq!(f.utilization, c.utilization);
        assert_eq!(f.tokens_per_s, c.tokens_per_s);
        assert!(growth_detected(&full) && growth_detected(&cut));
        assert!(
            c.completed < f.completed,
            "the cut run left work unfinished"
        );
        assert_eq!(
            cut.end_time,
            requests.last().unwrap().arrival,
            "{gpus} GPUs"
        );
    }
}

/// A workload of `n` requests (L uniform 16..256, B geometric mean 32) at `rate`.
fn synthetic(rate: f64, n: usize) -> llmsim::workload::SyntheticWorkload {
    llmsim::workload::SyntheticWorkload {
        rate,
        arrivals: llmsim::workload::ArrivalKind::Poisson,
        prompt: "uniform:16:256".parse().unwrap(),
        decode: "geometric:32:256".parse().unwrap(),
        requests: n,
        lengths_from: None,
    }
}

/// The streamed summary is the one the per-request records give: the same counts, window
/// rates and number in system at both ends of the window (the stability verdict), means to
/// rounding, and percentiles within the histogram's documented precision of the order
/// statistic of rank `ceil(q n)`. Keeping records changes nothing else.
#[test]
fn streamed_summary_matches_the_per_request_records() {
    use llmsim::engine::{simulate, simulate_records, simulate_to_last_arrival};
    use llmsim::metrics::{Summary, request_tbt, request_ttft, summarize};
    use llmsim::scheduler::{BatchLimits, Preemption};
    use llmsim::stats::{QUANTILE_RELATIVE_ERROR, mean};

    let vllm = SchedulerSpec::Vllm(BatchLimits {
        max_seqs: 16,
        max_tokens: 512,
        watermark: 0.01,
        preemption: Preemption::Recompute,
    });
    let b = SchedulerSpec::B {
        k: 4,
        max_decode_batch: None,
    };
    // A stable vLLM run that preempts, and an overloaded Scheduler B run stopped at its last
    // arrival (unfinished requests, a growing queue).
    for (spec, rate, stop) in [(vllm, 2.0, false), (b, 16.0, true)] {
        let requests = synthetic(rate, 4_000).generate(11, 0);
        let config = EngineConfig {
            scheduler: spec.clone(),
            cost: Arc::new(LinearCost::new(0.01, 0.001, 0.0, CostDist::Exponential)),
            gpus: 2,
            router: RouterSpec::Central,
            kv: KvConfig::with_tokens(1_024, 16),
            prefix_cache: false,
            cpu_kv: None,
        };
        let warmup = 400;
        let out = if stop {
            let mut out = simulate_records(&requests, &config, 11, 0, warmup);
            // The records of a stopped run: those of a full run, cut at the stop.
            let cut = simulate_to_last_arrival(&requests, &config, 11, 0, warmup);
            let end = cut.end_time;
            for r in &mut out.records {
                for t in [&mut r.start, &mut r.first_token, &mut r.completion] {
                    if *t > end {
                        *t = f64::NAN;
                    }
                }
            }
            (out.records, cut)
        } else {
            let out = simulate_records(&requests, &config, 11, 0, warmup);
            let plain = simulate(&requests, &config, 11, 0, warmup);
            let json = |s: &Summary| serde_json::to_string(s).unwrap();
            assert_eq!(json(&summarize(&out)), json(&summarize(&plain)));
            (out.records.clone(), out)
        };
        let (records, out) = out;
        let s = summarize(&out);
        let what = spec.name();
        let w = out.window;
        let pairs = || requests.iter().zip(&records).skip(warmup);
        let exact = |mut xs: Vec<f64>, d: &llmsim::metrics::Dist, name: &str| {
            xs.retain(|x| !x.is_nan());
            xs.sort_by(f64::total_cmp);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
            assert!(close(d.mean, mean(&xs)), "{what} {name} mean");
            assert_eq!(d.max, *xs.last().unwrap(), "{what} {name} max");
            for (q, got) in [(0.5, d.p50), (0.9, d.p90), (0.95, d.p95), (0.99, d.p99)] {
                let want = xs[(q * xs.len() as f64).ceil() as usize - 1];
                assert!(
                    (got - want).abs() <= QUANTILE_RELATIVE_ERROR * want + 1e-9,
                    "{what} {name} p{q}: {got} vs {want}"
                );
            }
            xs.len() as u64
        };
        let completed = exact(
            pairs().map(|(r, rec)| rec.completion - r.arrival).collect(),
            &s.e2e,
            "E2E",
        );
        assert_eq!(s.completed, completed, "{what}");
        exact(
            pairs().map(|(r, rec)| request_ttft(r, rec)).collect(),
            &s.ttft,
            "TTFT",
        );
        exact(
            pairs().filter_map(|(r, rec)| request_tbt(r, rec)).collect(),
            &s.tbt,
            "TBT",
        );
        let in_window = records
            .iter()
            .filter(|r| r.completion >= w.start && r.completion <= w.end)
            .count();
        assert_eq!(s.throughput_rps, in_window as f64 / w.len(), "{what}");
        let until = |t: f64| if t.is_nan() { out.end_time } else { t };
        let area: f64 = requests
            .iter()
            .zip(&records)
            .map(|(r, rec)| w.overlap(r.arrival, until(rec.completion)))
            .sum();
        assert!(
            (s.mean_in_system * w.len() - area).abs() <= 1e-9 * area,
            "{what}"
        );
        let in_system = |t: f64| {
            requests
                .iter()
                .zip(&records)
                .take_while(|(r, _)| r.arrival <= t)
                .filter(|(_, rec)| rec.completion.is_nan() || rec.completion > t)
                .count() as u64
        };
        let g = out.growth;
        assert_eq!(
            (g.arrivals, g.at_start, g.at_end),
            (
                (requests.len() - warmup) as u64,
                in_system(w.start),
                in_system(w.end)
            ),
            "{what}"
        );
        assert_eq!(s.unstable, stop, "{what}");
    }
}

/// Memory does not grow with the length of a run: the engine holds only the requests in
/// flight (before, every request's size, progress and record: 200,000 of them here).
#[test]
fn memory_holds_only_the_requests_in_flight() {
    use llmsim::engine::simulate;
    let config = EngineConfig {
        scheduler: SchedulerSpec::B {
            k: 4,
            max_decode_batch: None,
        },
        cost: Arc::new(LinearCost::new(0.01, 0.001, 0.0, CostDist::Exponential)),
        gpus: 1,
        router: RouterSpec::RoundRobin,
        kv: KvConfig::unlimited(),
        prefix_cache: false,
        cpu_kv: None,
    };
    // About 85% busy: a stable queue, whose length is stationary.
    let w = synthetic(1.7, 200_000);
    let out = simulate(w.iter(3, 0), &config, 3, 0, 20_000);
    assert!(out.records.is_empty());
    assert_eq!(out.e2e.count(), 180_000);
    assert!(
        out.peak_in_flight < 2_000,
        "{} requests held at once",
        out.peak_in_flight
    );
}

/// A run in which no measured request got a token reports its latencies as `null`, not 0;
/// and a percentile never exceeds the maximum, even when every value is the same (before,
/// the top of the histogram bucket was reported: ITL p50 0.0057713 s above a maximum of
/// 0.0057700 s).
#[test]
fn latencies_without_values_are_null_and_percentiles_stay_below_the_maximum() {
    use llmsim::engine::{simulate, simulate_to_last_arrival};
    use llmsim::metrics::summarize;
    let config = |c: f64| EngineConfig {
        scheduler: SchedulerSpec::A,
        cost: Arc::new(LinearCost::new(c, 0.0, 0.0, CostDist::Deterministic)),
        gpus: 1,
        router: RouterSpec::RoundRobin,
        kv: KvConfig::unlimited(),
        prefix_cache: false,
        cpu_kv: None,
    };
    let requests: Vec<Request> = (0..3)
        .map(|i| Request {
            arrival: f64::from(i),
            prompt: 8,
            decode: 10,
            prefix: None,
            next: None,
        })
        .collect();
    // Each batch takes 100 s: nothing measured finishes by the last arrival, at 2 s.
    let out = simulate_to_last_arrival(&requests, &config(100.0), 0, 0, 1);
    let json = serde_json::to_value(summarize(&out)).unwrap();
    for key in ["ttft", "tbt", "itl", "e2e"] {
        for field in ["mean", "p50", "p99", "max"] {
            assert!(
                json[key][field].is_null(),
                "{key}.{field}: {}",
                json[key][field]
            );
        }
    }
    assert_eq!(json["completed"], 0);
    // Every gap is 5.77 ms, to rounding of the clock.
    let s = summarize(&simulate(&requests, &config(0.00577), 0, 0, 1));
    for (d, name) in [(s.itl, "ITL"), (s.tbt, "TBT")] {
        for p in [d.p50, d.p90, d.p99] {
            assert!(
                p <= d.max && (p - 0.00577).abs() < 1e-12,
                "{name}: {p} > {}",
                d.max
            );
        }
    }
}
