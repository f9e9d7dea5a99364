//! Closed-loop conversations: a turn arrives its think time after the turn before it
//! completes. A hand-computed run, then properties over random conversations on random
//! clusters (every turn after its predecessor's completion plus think time exactly,
//! session affinity kept, every request served, the time in system conserved), and the
//! multi-turn workload the same whatever the thread count.

mod common;

use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

use llmsim::cost::{CostDist, LinearCost};
use llmsim::engine::{EngineConfig, simulate_observed, simulate_records};
use llmsim::kv::KvConfig;
use llmsim::prefix::Prefix;
use llmsim::request::NextTurn;
use llmsim::router::RouterSpec;
use llmsim::scheduler::{BatchLimits, SchedulerSpec};
use llmsim::workload::Request;

fn config(gpus: usize, router: RouterSpec, cache: bool) -> EngineConfig {
    EngineConfig {
        scheduler: SchedulerSpec::Vllm(BatchLimits {
            max_tokens: 1 << 20,
            ..BatchLimits::default()
        }),
        // 0.5 s a batch plus 1/128 s a token: every time below is a binary fraction.
        cost: Arc::new(LinearCost::new(
            0.5,
            1.0 / 128.0,
            0.0,
            CostDist::Deterministic,
        )),
        gpus,
        router,
        kv: if cache {
            KvConfig::with_tokens(1 << 20, 16)
        } else {
            KvConfig::unlimited()
        },
        prefix_cache: cache,
        cpu_kv: None,
    }
}

/// A session's first turn arriving at `arrival`, carrying the rest: `(think before the
/// turn, prompt, decode)` each (the first's think unused). Prompt ids are unique to the
/// turn, so nothing is shared and each prefill is the whole prompt.
fn session(id: u64, arrival: f64, turns: &[Turn]) -> Request {
    let mut next = None;
    for (k, &(think_s, prompt, decode)) in turns.iter().enumerate().rev() {
        let request = Request {
            arrival,
            prompt,
            decode,
            prefix: Some(Arc::new(Prefix {
                block_tokens: 16,
                ids: (0..u64::from(prompt.div_ceil(16)))
                    .map(|c| id << 40 | (k as u64) << 20 | c)
                    .collect(),
                session: Some(id),
            })),
            next,
        };
        next = Some(Box::new(NextTurn { think_s, request }));
    }
    next.unwrap().request
}

/// One session alone on one GPU: every turn is served as it arrives, so each arrival,
/// first token and completion follows by hand from the cost model.
#[test]
fn a_lone_session_waits_its_think_time_after_each_reply() {
    let first = session(0, 1.0, &[(0.0, 128, 2), (2.0, 256, 2), (0.25, 128, 0)]);
    let out = simulate_records([first], &config(1, RouterSpec::RoundRobin, false), 1, 0, 0);
    let times: Vec<[f64; 3]> = out
        .records
        .iter()
        .map(|r| [r.arrival, r.first_token, r.completion])
        .collect();
    // Turn 1: prefill 0.5 + 128/128 = 1.5 s, then two decodes of 0.5 + 1/128 s.
    // Turn 2 arrives 2 s after turn 1's reply: 2.515625 + 2; prefill 0.5 + 2 s.
    // Turn 3 arrives 0.25 s after turn 2's reply, and its prefill is its only batch.
    assert_eq!(
        times,
        [
            [1.0, 2.5, 3.515625],
            [5.515625, 8.015625, 9.03125],
            [9.28125, 10.78125, 10.78125],
        ]
    );
    // The window ends at the last turn's arrival, known only once turn 2 completed.
    assert_eq!((out.window.start, out.window.end), (1.0, 9.28125));
    assert_eq!(out.completions_in_window, 2);
}

/// A turn: the think time before it (seconds), its prompt and decode budget (tokens).
type Turn = (f64, u32, u32);

/// Random conversations: (gap before the session starts, its turns).
fn conversations() -> impl Strategy<Value = Vec<(f64, Vec<Turn>)>> {
    let turn = (prop_oneof![Just(0.0), 0.0f64..3.0], 1u32..600, 0u32..30);
    prop::collection::vec((0.0f64..2.0, prop::collection::vec(turn, 1..6)), 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_turn_arrives_before_its_reply_plus_think(
        sessions in conversations(),
        gpus in 1usize..4,
        router in prop_oneof![
            Just(RouterSpec::RoundRobin),
            Just(RouterSpec::Jsq),
            Just(RouterSpec::Session),
            Just(RouterSpec::PrefixAware),
        ],
        cache: bool,
        warmup in 0usize..5,
    ) {
        let mut at = 0.0;
        let mut firsts = Vec::new();
        // Each turn by its (unique) prompt length: (session, turn).
        let mut turn_of = HashMap::new();
        let mut prompt = 0;
        let sessions: Vec<(f64, Vec<Turn>)> = sessions
            .into_iter()
            .map(|(gap, turns)| {
                let turns: Vec<Turn> = turns
                    .into_iter()
                    .map(|(t, p, d)| {
                        prompt += 1 + p;
                        (t, prompt, d)
                    })
                    .collect();
                (gap, turns)
            })
            .collect();
        for (s, (gap, turns)) in sessions.iter().enumerate() {
            at += gap;
            firsts.push(session(s as u64, at, turns));
            for (k, t) in turns.iter().enumerate() {
                turn_of.insert(t.1, (s, k));
            }
        }
        let total: usize = sessions.iter().map(|s| s.1.len()).sum();
        // Which request id is which turn: an unshared prompt's first prefill is all of it.
        let mut id_turn = HashMap::new();
        let cfg = config(gpus, router, cache);
        let out = simulate_observed(&firsts, &cfg, 3, 0, warmup, &mut |ev| {
            for e in ev.batch.entries() {
                if let Some(&t) = turn_of.get(&e.tokens) {
                    id_turn.entry(e.id).or_insert(t);
                }
            }
        });
        prop_assert_eq!(out.records.len(), total);
        prop_assert_eq!(id_turn.len(), total);
        let mut rec = vec![Vec::new(); sessions.len()];
        for (id, &(s, k)) in &id_turn {
            rec[s].push((k, out.records[*id as usize]));
        }
        for (s, (_, turns)) in sessions.iter().enumerate() {
            rec[s].sort_by_key(|r| r.0);
            let r: Vec<_> = rec[s].iter().map(|r| r.1).collect();
            prop_assert_eq!(r[0].arrival, firsts[s].arrival);
            for k in 1..r.len() {
                prop_assert!(r[k - 1].completion.is_finite());
                prop_assert_eq!(r[k].arrival, r[k - 1].completion + turns[k].0);
                prop_assert!(r[k].arrival >= r[k - 1].completion);
                if router == RouterSpec::Session {
                    prop_assert_eq!(r[k].gpu, r[0].gpu);
                }
            }
        }
        // Requests are numbered in order of arrival; all complete.
        prop_assert!(out.records.windows(2).all(|p| p[0].arrival <= p[1].arrival));
        prop_assert!(out.records.iter().all(|r| r.completion >= r.first_token));
        // The window ends at the last arrival, and the time in system it integrated is
        // each request's stay inside it (Little's law's conservation).
        let last = out.records.last().unwrap().arrival;
        prop_assert_eq!(out.window.end, last);
        let stays: f64 = out
            .records
            .iter()
            .map(|r| out.window.overlap(r.arrival, r.completion))
            .sum();
        prop_assert!(
            (stays - out.in_system_seconds).abs() <= 1e-9 * stays.max(1.0),
            "{} vs {}", stays, out.in_system_seconds
        );
    }
}

/// The multi-turn workload's output, closed loop included, does not depend on the thread
/// count that runs its replications.
#[test]
fn conversations_are_the_same_whatever_the_thread_count() {
    let run = |threads: &str| {
        let out = common::succeed(
            common::llmsim()
                .args([
                    "run",
                    "--workload",
                    "multiturn",
                    "--rate",
                    "1",
                    "--turns",
                    "4",
                    "--think",
                    "5",
                    "--requests",
                    "800",
                    "--reps",
                    "4",
                    "--scheduler",
                    "vllm",
                    "--gpus",
                    "2",
                    "--router",
                    "session",
                    "--kv-capacity",
                    "20000",
                    "--prefix-cache",
                    "on",
                    "--json",
                ])
                .env("RAYON_NUM_THREADS", threads),
        );
        out.stdout
    };
    assert_eq!(run("1"), run("4"));
}

/// A multi-turn run's per-request records (as Python's `requests()` reads them) list every
/// turn as it arrived, each turn after its predecessor's reply.
#[test]
fn records_of_a_conversation_run_list_every_turn() {
    use llmsim::dist::LengthDist;
    use llmsim::multiturn::MultiTurn;
    use llmsim::sim::RunConfig;
    use llmsim::workload::Workload;
    let mt = MultiTurn {
        session_rate: 2.0,
        turns: 3,
        think_s: 1.0,
        user: LengthDist::Fixed(40),
        decode: LengthDist::Fixed(9),
        system_tokens: 0,
        system_prompts: 1,
        requests: 300,
    };
    let run = RunConfig {
        workload: Workload::MultiTurn(mt),
        engine: config(2, RouterSpec::Session, true),
        seed: 4,
        reps: 1,
        warmup: 30,
    };
    let (requests, out) = run.simulate_records(0);
    assert_eq!((requests.len(), out.records.len()), (300, 300));
    for (q, r) in requests.iter().zip(&out.records) {
        assert_eq!(
            (q.arrival, q.prompt, q.decode),
            (r.arrival, r.prompt, r.decode)
        );
        assert!(r.completion >= r.arrival);
    }
    // Prompts of 40, 90 and 140 tokens, a hundred of each.
    for p in [40, 90, 140] {
        assert_eq!(requests.iter().filter(|q| q.prompt == p).count(), 100);
    }
}
