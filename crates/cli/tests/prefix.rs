//! Prefix caching: the simulated hit count against an offline count of reuse computed here
//! independently, monotonicity in capacity, a conversation's second turn, the cache off
//! changing nothing, and invariants over random workloads with shared prefixes (KV use
//! with the cache counted never above capacity; every request served in full; hit and
//! computed tokens adding up to the prompts), with and without the CPU tier; the CPU tier
//! by hand (a prefix the GPU evicted loaded back, its LRU order over written blocks).

mod common;

use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;

use llmsim::cost::{CostDist, LinearCost};
use llmsim::engine::{EngineConfig, SimOutput, simulate, simulate_observed, simulate_records};
use llmsim::kv::KvConfig;
use llmsim::prefix::{CpuKv, Prefix};
use llmsim::router::RouterSpec;
use llmsim::scheduler::{BatchLimits, SchedulerSpec, SwapLink};
use llmsim::workload::Request;

const BLOCK: u32 = 16;

fn config(scheduler: SchedulerSpec, kv_tokens: u64, cache: bool) -> EngineConfig {
    EngineConfig {
        scheduler,
        cost: Arc::new(LinearCost::new(0.01, 0.0001, 0.0, CostDist::Deterministic)),
        gpus: 1,
        router: RouterSpec::RoundRobin,
        kv: KvConfig::with_tokens(kv_tokens, BLOCK),
        prefix_cache: cache,
        cpu_kv: None,
    }
}

fn vllm() -> SchedulerSpec {
    SchedulerSpec::Vllm(BatchLimits {
        max_tokens: 1 << 20,
        ..BatchLimits::default()
    })
}

/// Cache hits over the run (tokens) and prompt tokens looked up.
fn hits(out: &SimOutput) -> (u64, u64) {
    out.gpus.iter().fold((0, 0), |(h, r), g| {
        (h + g.prefix.hit_tokens, r + g.prefix.requested_tokens)
    })
}

/// The offline reuse count: for each request in order, the longest prefix of its prompt's
/// full KV blocks (short of its last token) that some earlier request's prompt also had
/// in full, where a KV block is identified by the ids of every 512-token chunk up to the
/// one holding its last token and that token's offset, as the trace format defines.
fn offline_hits(requests: &[Request]) -> u64 {
    let mut seen: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut total = 0;
    for r in requests {
        let p = r.prefix.as_ref().unwrap();
        let key = |j: u32| {
            let last = j * BLOCK + BLOCK - 1;
            let chunk = (last / p.block_tokens) as usize;
            (p.ids[..=chunk].to_vec(), last % p.block_tokens)
        };
        let hit = (0..(r.prompt - 1) / BLOCK)
            .take_while(|&j| seen.contains(&key(j)))
            .count() as u64;
        total += hit * u64::from(BLOCK);
        seen.extend((0..r.prompt / BLOCK).map(key));
    }
    total
}

/// Requests sharing prefixes: each picks a random earlier request (or none) and keeps a
/// random number of its leading chunks, then adds fresh ones.
fn shared_prefixes(lens: &[(u32, u32, usize, u32)], chunk: u32, gap: f64) -> Vec<Request> {
    let mut next_id = 0u64;
    let mut made: Vec<Vec<u64>> = Vec::new();
    lens.iter()
        .enumerate()
        .map(|(i, &(prompt, decode, parent, keep))| {
            let need = prompt.div_ceil(chunk) as usize;
            let mut ids: Vec<u64> = match made.get(parent.min(i.saturating_sub(1))) {
                Some(p) if i > 0 => p.iter().take(keep as usize).copied().collect(),
                _ => Vec::new(),
            };
            ids.truncate(need);
            while ids.len() < need {
                ids.push(next_id);
                next_id += 1;
            }
            made.push(ids.clone());
            Request {
                arrival: i as f64 * gap,
                prompt,
                decode,
                prefix: Some(Arc::new(Prefix {
                    block_tokens: chunk,
                    ids: ids.into(),
                    session: None,
                })),
                next: None,
            }
        })
        .collect()
}

fn lens() -> impl Strategy<Value = Vec<(u32, u32, usize, u32)>> {
    prop::collection::vec((1u32..400, 0u32..20, 0usize..40, 0u32..12), 2..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arrivals far apart (each request done before the next arrives) and a cache that
    /// never evicts: the simulated hits are exactly the offline reuse count.
    #[test]
    fn spaced_hits_equal_the_offline_reuse_count(lens in lens(), chunk in 1u32..70) {
        let requests = shared_prefixes(&lens, chunk, 1000.0);
        let out = simulate(&requests, &config(vllm(), 1 << 30, true), 1, 0, 0);
        let (hit, asked) = hits(&out);
        prop_assert_eq!(hit, offline_hits(&requests));
        prop_assert_eq!(asked, requests.iter().map(|r| u64::from(r.prompt)).sum::<u64>());
        prop_assert_eq!(out.gpus[0].prefix.evictions, 0);
    }

    /// Concurrent requests in a small cache, under each paged policy: see
    /// [`check_small_cache`].
    #[test]
    fn kv_within_capacity_and_tokens_conserved(
        lens in lens(),
        chunk in 1u32..70,
        kv_tokens in 800u64..4000,
        policy in 0usize..3,
    ) {
        check_small_cache(&lens, chunk, kv_tokens, policy, None)?;
    }

    /// The same with a CPU tier of random size: loads are waited for, never break the
    /// cache's capacity, and the tokens they bring are hits, never prefilled.
    #[test]
    fn with_a_cpu_tier_kv_within_capacity_and_tokens_conserved(
        lens in lens(),
        chunk in 1u32..70,
        kv_tokens in 800u64..4000,
        policy in 0usize..3,
        cpu_blocks in 1u64..300,
    ) {
        check_small_cache(&lens, chunk, kv_tokens, policy, Some(tier(cpu_blocks)))?;
    }

    /// A GPU cache that never evicts leaves a CPU tier nothing to add: every record and
    /// statistic is the run's without the tier, bit for bit.
    #[test]
    fn a_cpu_tier_behind_a_cache_that_never_evicts_changes_nothing(
        lens in lens(),
        chunk in 1u32..70,
        gap in 0.001f64..2.0,
        policy in 0usize..3,
        cpu_blocks in 1u64..300,
    ) {
        let requests = shared_prefixes(&lens, chunk, gap);
        let off = config(paged(policy), 1 << 30, true);
        let on = EngineConfig { cpu_kv: Some(tier(cpu_blocks)), ..off.clone() };
        let (a, b) = (simulate_records(&requests, &off, 5, 0, 1), simulate_records(&requests, &on, 5, 0, 1));
        prop_assert_eq!(b.gpus[0].prefix.cpu_hit_tokens, 0);
        prop_assert_eq!(format!("{:?}", a.records), format!("{:?}", b.records));
        prop_assert_eq!(format!("{:?}", (&a.ttft, &a.e2e, &a.itl)), format!("{:?}", (&b.ttft, &b.e2e, &b.itl)));
        prop_assert_eq!(a.gpus[0].prefix.hit_tokens, b.gpus[0].prefix.hit_tokens);
    }

    /// Steady decodes run in a tight loop with the cache on too, evicting for each batch's
    /// growth as a batch started event by event does; an observer turns the loop off, so
    /// both runs must agree to the last bit on every record and statistic (hits,
    /// evictions and cached block-seconds included), on caches tight enough to evict and
    /// preempt, on one GPU or several behind any router.
    #[test]
    fn steady_decodes_with_the_cache_run_exactly_as_event_by_event(
        lens in prop::collection::vec((1u32..400, 0u32..300, 0usize..40, 0u32..12), 2..40),
        chunk in 1u32..70,
        gap in 0.001f64..0.5,
        kv_tokens in 800u64..8000,
        policy in 0usize..3,
        gpus in 1usize..4,
        router in 0usize..4,
        seed in 0u64..1000,
    ) {
        let router = [
            RouterSpec::RoundRobin,
            RouterSpec::Jsq,
            RouterSpec::Session,
            RouterSpec::PrefixAware,
        ][router];
        let requests = shared_prefixes(&lens, chunk, gap);
        check_steady(&requests, policy, kv_tokens, (gpus, router), None, seed)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Loads from the CPU tier bound a GPU's run of steady decodes like any other event:
    /// with the tier on, the tight loop and the event-by-event path agree to the last bit.
    #[test]
    fn steady_decodes_with_a_cpu_tier_run_exactly_as_event_by_event(
        lens in prop::collection::vec((1u32..400, 0u32..300, 0usize..40, 0u32..12), 2..40),
        chunk in 1u32..70,
        gap in 0.001f64..0.5,
        kv_tokens in 800u64..8000,
        policy in 0usize..3,
        gpus in 1usize..4,
        cpu_blocks in 1u64..300,
        seed in 0u64..1000,
    ) {
        let requests = shared_prefixes(&lens, chunk, gap);
        let tier = Some(tier(cpu_blocks));
        check_steady(&requests, policy, kv_tokens, (gpus, RouterSpec::Session), tier, seed)?;
    }
}

/// `requests` under paged policy `policy` in a KV cache of `kv_tokens` tokens on `gpus`
/// GPUs behind a router, with the CPU tier `cpu` if given, costs drawn from `seed`: steady
/// decodes in the tight loop and event by event (an observer turns the loop off) agree
/// to the last bit on every record and statistic.
fn check_steady(
    requests: &[Request],
    policy: usize,
    kv_tokens: u64,
    (gpus, router): (usize, RouterSpec),
    cpu: Option<CpuKv>,
    seed: u64,
) -> Result<(), TestCaseError> {
    let cfg = EngineConfig {
        cost: Arc::new(LinearCost::new(0.01, 0.0001, 0.0, CostDist::Exponential)),
        gpus,
        router,
        cpu_kv: cpu,
        ..config(paged(policy), kv_tokens, true)
    };
    let fast = simulate_records(requests, &cfg, seed, 0, 1);
    let slow = simulate_observed(requests, &cfg, seed, 0, 1, &mut |_| {});
    // Debug prints every float exactly (shortest round-trip form).
    prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
    Ok(())
}

/// A CPU tier of `blocks` blocks over a 1 GB/s link carrying 1 MB per token, so that a
/// block of 16 tokens loads in 16 ms.
fn tier(blocks: u64) -> CpuKv {
    CpuKv {
        blocks,
        link: SwapLink {
            gbytes_per_s: 1.0,
            kv_bytes_per_token: 1e6,
        },
    }
}

/// Paged policy `policy` (vllm, sarathi, decode-first) with at most 8 requests running and
/// Sarathi's chunks under 512 tokens.
fn paged(policy: usize) -> SchedulerSpec {
    let limits = BatchLimits {
        max_tokens: 512,
        max_seqs: 8,
        ..BatchLimits::default()
    };
    [
        SchedulerSpec::Vllm(BatchLimits {
            max_tokens: 1 << 20,
            ..limits
        }),
        SchedulerSpec::Sarathi(limits),
        SchedulerSpec::DecodeFirst(BatchLimits {
            max_tokens: 1 << 20,
            ..limits
        }),
    ][policy]
        .clone()
}

/// Requests `lens` sharing prefixes of `chunk`-token ids, 10 ms apart, in a KV cache of
/// `kv_tokens` tokens under paged policy `policy` (vllm, sarathi, decode-first), with the
/// CPU tier `cpu` if given: the blocks in use plus the unreferenced cached ones never
/// exceed capacity, every request emits its `B + 1` tokens, tokens computed plus hit make
/// up the prompts, and no request finds more than its prompt less one token cached.
fn check_small_cache(
    lens: &[(u32, u32, usize, u32)],
    chunk: u32,
    kv_tokens: u64,
    policy: usize,
    cpu: Option<CpuKv>,
) -> Result<(), TestCaseError> {
    let spec = paged(policy);
    let requests = shared_prefixes(lens, chunk, 0.01);
    let cfg = EngineConfig {
        cpu_kv: cpu,
        ..config(spec, kv_tokens, true)
    };
    let cap = cfg.kv.blocks.unwrap();
    let (mut prefill, mut decodes) = (0u64, 0u64);
    let out = simulate_observed(&requests, &cfg, 3, 0, 0, &mut |ev| {
        assert!(
            ev.kv_used + ev.kv_evictable <= cap,
            "{} + {} > {cap}",
            ev.kv_used,
            ev.kv_evictable
        );
        for e in ev.batch.entries() {
            match e.phase {
                llmsim::scheduler::Phase::Prefill => prefill += u64::from(e.tokens),
                llmsim::scheduler::Phase::Decode => decodes += 1,
            }
        }
    });
    let unserved: Vec<usize> = (0..out.records.len())
        .filter(|&i| !out.records[i].completion.is_finite())
        .collect();
    prop_assert!(unserved.is_empty(), "never completed: {unserved:?}");
    let g = &out.gpus[0];
    let prompts: u64 = requests.iter().map(|r| u64::from(r.prompt)).sum();
    // A recompute after the first token also rebuilds the latest emitted token, which was
    // never in the dropped cache: one token more per such preemption. A recompute skips
    // what it finds cached again.
    let hit = g.prefix.hit_tokens + g.prefix.preempted_hit_tokens;
    let base = prompts - hit + g.recomputed_tokens;
    prop_assert!(
        prefill >= base && prefill <= base + g.preemptions,
        "{prefill} vs {base}"
    );
    // Each request emits B + 1 tokens: one by its prefill, the rest by decodes, less one
    // per preemption past the first token (its recompute emits that one).
    let budget: u64 = requests.iter().map(|r| u64::from(r.decode)).sum();
    prop_assert!(decodes <= budget && decodes + g.preemptions >= budget);
    // Whole blocks short of the last token, from the GPU or loaded from the CPU.
    let most: u64 = requests
        .iter()
        .map(|r| u64::from((r.prompt - 1) / BLOCK * BLOCK))
        .sum();
    prop_assert!(g.prefix.hit_tokens <= most && g.prefix.cpu_hit_tokens <= most);
    if cpu.is_none() {
        prop_assert_eq!((g.prefix.cpu_hit_tokens, g.prefix.cpu_loads), (0, 0));
    }
    Ok(())
}

/// The case the property test found (seed in `prefix.proptest-regressions`): when requests
/// looked the cache up on arrival and kept their hits referenced while they waited, the
/// waiting ones pinned enough cached blocks (46 of 60 in use, 9 evictable, at 0.198 s)
/// that the head of the queue no longer fitted while nothing ran, and requests 9 to 17
/// never started. A waiting request now holds nothing: it looks the cache up when admitted.
#[test]
fn waiting_requests_pin_no_cached_blocks() {
    let lens = [
        (256, 5, 0, 0),
        (224, 1, 0, 0),
        (352, 2, 0, 5),
        (128, 1, 1, 0),
        (31, 2, 0, 0),
        (1, 0, 0, 0),
        (95, 2, 0, 2),
        (127, 2, 0, 0),
        (209, 0, 0, 2),
        (353, 0, 1, 5),
        (209, 0, 14, 9),
        (168, 16, 3, 1),
        (157, 18, 29, 4),
        (322, 0, 35, 10),
        (58, 15, 15, 8),
        (354, 12, 20, 8),
        (260, 16, 3, 11),
        (399, 2, 0, 8),
    ];
    check_small_cache(&lens, 43, 974, 1, None).unwrap();
}

/// The second case the property test found (seed in `prefix.proptest-regressions`), under
/// vllm: at 0.2606 s request 8 is preempted while request 7 still references the two
/// cached blocks of their common prefix; crediting the policy with all of request 8's
/// blocks put 77 blocks in use in a cache of 75. The policy is now credited only with the
/// blocks the preemption frees.
#[test]
fn a_victims_shared_cached_blocks_stay_in_use() {
    let lens = [
        (327, 10, 0, 0),
        (7, 10, 0, 0),
        (151, 10, 1, 0),
        (1, 3, 0, 0),
        (375, 10, 0, 3),
        (17, 0, 0, 0),
        (1, 0, 5, 0),
        (321, 10, 5, 0),
        (32, 7, 7, 2),
    ];
    check_small_cache(&lens, 22, 1200, 0, None).unwrap();
}

/// A conversation's second turn (its first turn's prompt and reply, then a new message)
/// finds at least the first turn's full prompt blocks when nothing was evicted.
#[test]
fn a_second_turn_hits_the_first_turns_full_blocks() {
    let turn = |arrival: f64, prompt: u32| Request {
        arrival,
        prompt,
        decode: 50,
        // One id per 16 tokens of the conversation, the same in both turns.
        prefix: Some(Arc::new(Prefix {
            block_tokens: 16,
            ids: (0..u64::from(prompt.div_ceil(16))).collect(),
            session: None,
        })),
        next: None,
    };
    let requests = [turn(0.0, 100), turn(100.0, 100 + 51 + 30)];
    let out = simulate(&requests, &config(vllm(), 1 << 20, true), 1, 0, 0);
    assert_eq!(hits(&out), (96, 281));
    // An unlimited KV cache keeps everything.
    let unlimited = EngineConfig {
        kv: KvConfig::unlimited(),
        ..config(vllm(), 0, true)
    };
    assert_eq!(hits(&simulate(&requests, &unlimited, 1, 0, 0)), (96, 281));
}

/// A finished request's full blocks of generated tokens stay cached, unmatched, ahead of
/// its prompt in the eviction order, and push prompts out of a small cache as vLLM's do.
/// One request at a time, 16-token blocks: A (prompt 64 = 4 blocks, 63 decodes: context
/// 127, 7 full blocks, 3 of them generated) finishes leaving 3 retired then 4 prompt
/// blocks evictable; X (prompt 16, 111 decodes: 8 blocks at its peak, 6 retired) and Y
/// (prompt 16, 95 decodes: 7 blocks, 5 retired) run; then B repeats A's prompt, whose
/// lookup stops short of its last token: 3 blocks, 48 tokens, if A's are still there.
/// In 12 blocks X evicts A's 3 retired (7 + 8 = 15), Y then needs 4 + 6 + 1 + 7 = 18 and
/// evicts A's 4 prompt blocks and 2 of X's retired, so B hits nothing and evicts 3 more
/// (Y's retired 5 and prompt 1 join X's 4 and 1: 11 + 4 = 15): 12 evictions. Caching
/// prompts only, Y would find 4 + 1 + 7 = 12 and evict nothing, and B would hit 48. In 18
/// blocks X evicts nothing, Y evicts A's 3 retired blocks (14 + 7 = 21), which go first,
/// so B still hits 48 (3 prompt blocks revived, 1 allocated: 4 + 14 = 18).
/// A (prompt 64, 63 decodes), X (16, 111), Y (16, 95), then B (A's prompt, no decode),
/// 100 s apart: one request at a time.
fn a_x_y_b() -> [Request; 4] {
    let request = |arrival: f64, ids: &[u64], prompt: u32, decode: u32| Request {
        arrival,
        prompt,
        decode,
        prefix: Some(Arc::new(Prefix {
            block_tokens: 16,
            ids: ids.into(),
            session: None,
        })),
        next: None,
    };
    [
        request(0.0, &[0, 1, 2, 3], 64, 63),
        request(100.0, &[100], 16, 111),
        request(200.0, &[200], 16, 95),
        request(300.0, &[0, 1, 2, 3], 64, 0),
    ]
}

#[test]
fn generated_blocks_stay_cached_and_evict_prompts_first_in_their_turn() {
    let requests = a_x_y_b();
    let prompts = 64 + 16 + 16 + 64;
    for (blocks, hit, evictions) in [(12u64, 0, 12), (18, 48, 3)] {
        let out = simulate(
            &requests,
            &config(vllm(), blocks * u64::from(BLOCK), true),
            1,
            0,
            0,
        );
        assert_eq!(hits(&out), (hit, prompts), "{blocks} blocks");
        assert_eq!(out.gpus[0].prefix.evictions, evictions, "{blocks} blocks");
    }
}

/// The CPU tier by hand, on the requests of the test above in 12 GPU blocks, where B finds
/// none of A's prompt on the GPU. Every full block computed is written to the tier: A's 4
/// prompt blocks when its prefill ends ([A3 A2 A1 A0], least recently used first, its
/// head most recent), its 3 generated ones when it finishes, then its prompt touched
/// ([a a a A3 A2 A1 A0]); X adds 1 prompt and 6 generated blocks, Y 1 and 5, each
/// finishing with its prompt touched: 20 writes, the last 5 of them Y's. B's lookup (cap:
/// 3 blocks, short of its last token) finds A0 to A2 in a tier of 16 blocks or more (a
/// a a A3 evicted), A0 and A1 in 15, A0 in 14, nothing in 13 (evictions start at X's
/// finish, 14 writes) or 12. Each block loaded saves 16 prefilled tokens and costs 16 MB
/// over 1 GB/s, 16 ms: B's TTFT is the load, then one batch of C + A x (64 - hit) with C
/// = 10 ms, A = 0.1 ms per token. The first three requests run as without the tier.
#[test]
fn a_prefix_the_gpu_evicted_is_loaded_from_the_cpu_tier() {
    let requests = a_x_y_b();
    let run = |cpu: Option<u64>| {
        let cfg = EngineConfig {
            cpu_kv: cpu.map(tier),
            ..config(vllm(), 12 * u64::from(BLOCK), true)
        };
        let mut prefilled = 0;
        let out = simulate_observed(&requests, &cfg, 1, 0, 0, &mut |ev| {
            for e in ev.batch.entries() {
                if e.phase == llmsim::scheduler::Phase::Prefill {
                    prefilled += u64::from(e.tokens);
                }
            }
        });
        (out, prefilled)
    };
    let (off, off_prefilled) = run(None);
    assert_eq!((hits(&off), off_prefilled), ((0, 160), 160));
    for (blocks, loaded) in [(100, 3u32), (16, 3), (15, 2), (14, 1), (13, 0), (12, 0)] {
        let (on, prefilled) = run(Some(blocks));
        let tokens = loaded * 16;
        let p = &on.gpus[0].prefix;
        assert_eq!(
            (p.cpu_hit_tokens, p.cpu_loads, p.hit_tokens),
            (u64::from(tokens), u64::from(loaded > 0), u64::from(tokens)),
            "{blocks} blocks"
        );
        assert_eq!(prefilled, 160 - u64::from(tokens), "{blocks} blocks");
        let load = f64::from(tokens) * 1e6 / 1e9;
        let ttft = on.records[3].first_token - 300.0;
        let want = load + 0.01 + 0.0001 * f64::from(64 - tokens);
        assert!(
            (ttft - want).abs() < 1e-9,
            "{blocks} blocks: {ttft} vs {want}"
        );
        assert_eq!(
            format!("{:?}", &on.records[..3]),
            format!("{:?}", &off.records[..3])
        );
    }
    assert!((off.records[3].first_token - 300.0 - 0.0164).abs() < 1e-9);
}

/// Hits never fall as the cache grows, on the Mooncake conversation trace's first 1,500
/// requests replayed one at a time (LRU is a stack algorithm: a larger cache holds a
/// superset of a smaller one's blocks for the same sequence of requests).
#[test]
fn hits_grow_with_capacity_on_the_mooncake_trace() {
    let Some(path) = common::shared("traces/mooncake_conversation_trace.jsonl") else {
        return;
    };
    let trace = llmsim_study::files::read_mooncake(&path).unwrap();
    let requests: Vec<Request> = trace.requests[..1500]
        .iter()
        .enumerate()
        .map(|(i, r)| Request {
            arrival: i as f64 * 1000.0,
            ..r.clone()
        })
        .collect();
    let mut seen = Vec::new();
    for kv_tokens in [200_000u64, 400_000, 800_000, 1_600_000, 1 << 40] {
        let out = simulate(&requests, &config(vllm(), kv_tokens, true), 1, 0, 0);
        let (hit, _) = hits(&out);
        assert!(
            seen.last().is_none_or(|&l| hit >= l),
            "{kv_tokens} tokens: {hit} < {seen:?}"
        );
        seen.push(hit);
    }
    let last = *seen.last().unwrap();
    // The smallest cache evicts what a later request would have hit.
    assert!(seen[0] < last, "{seen:?}");
    // Never evicting, the hits are the offline reuse count.
    assert_eq!(last, offline_hits(&requests));
    assert!(last > 0);
}

/// With no request carrying a prefix, the cache changes no latency.
#[test]
fn without_prefixes_the_cache_changes_nothing() {
    let requests: Vec<Request> = (0..300)
        .map(|i| Request {
            arrival: f64::from(i) * 0.05,
            prompt: 50 + (i * 37) % 300,
            decode: (i * 13) % 40,
            prefix: None,
            next: None,
        })
        .collect();
    let off = simulate(&requests, &config(vllm(), 3000, false), 1, 0, 0);
    let on = simulate(&requests, &config(vllm(), 3000, true), 1, 0, 0);
    assert_eq!(format!("{:?}", off.ttft), format!("{:?}", on.ttft));
    assert_eq!(format!("{:?}", off.e2e), format!("{:?}", on.e2e));
    assert_eq!(off.end_time, on.end_time);
}

/// Bad input exits 2 naming the flag, or the file, line and field.
#[test]
fn bad_input_exits_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.jsonl");
    std::fs::write(
        &trace,
        "{\"timestamp\": 0, \"input_length\": 700, \"output_length\": 3, \"hash_ids\": [1, 2]}\n\
         {\"timestamp\": 10, \"input_length\": 700, \"output_length\": 3, \"hash_ids\": [1]}\n",
    )
    .unwrap();
    let workload = format!("mooncake:{}", trace.display());
    let run = |args: &[&str]| {
        let out = common::llmsim().arg("run").args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--workload", &workload, "--scheduler", "vllm"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("line 2, field hash_ids") && err.contains("t.jsonl"),
        "{err}"
    );
    for (args, says) in [
        (
            &["--scheduler", "orca", "--kv-capacity", "10000"][..],
            "vllm, sarathi or decode-first",
        ),
        (&["--scheduler", "vllm"][..], "finite KV cache"),
        (
            &[
                "--scheduler",
                "vllm",
                "--kv-capacity",
                "10000",
                "--gpus",
                "2",
                "--router",
                "central",
            ][..],
            "not central",
        ),
    ] {
        let mut all = vec!["--prefix-cache", "on", "--requests", "10"];
        all.extend_from_slice(args);
        let (code, err) = run(&all);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--prefix-cache") && err.contains(says),
            "{args:?}: {err}"
        );
    }
    let (code, err) = run(&["--prefix-cache", "maybe"]);
    assert_eq!(code, Some(2), "{err}");
}

/// `--prefix-cache off` prints exactly what a run without the flag prints; `on` adds the
/// cache's figures to the JSON.
#[test]
fn off_is_the_default_and_on_reports_the_cache() {
    let run = |extra: &[&str]| {
        let out = common::llmsim()
            .args([
                "run",
                "--scheduler",
                "sarathi",
                "--kv-capacity",
                "4000",
                "--rate",
                "4",
            ])
            .args(["--requests", "2000", "--prompt", "uniform:10:300", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = run(&[]);
    assert_eq!(plain, run(&["--prefix-cache", "off"]));
    // Off, the summary has no cache section; the config echoes the setting.
    let off: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert!(off.get("prefix_cache").is_none());
    assert_eq!(off["config"]["prefix_cache"], false);
    let on: serde_json::Value = serde_json::from_str(&run(&["--prefix-cache", "on"])).unwrap();
    // Synthetic prompts share nothing: nothing is looked up, so no rate is defined.
    assert_eq!(on["prefix_cache"]["prompt_tokens"], 0.0);
    assert!(on["prefix_cache"]["token_hit_rate"].is_null());
}

/// `--cpu-kv-blocks` needs the prefix cache and a GPU (whose link loads the blocks), and
/// a size in range, each refused with exit 2 naming the flag and the fix; on, the JSON
/// echoes it and reports the tier, which extends the hits of conversations in a GPU cache
/// too small for them; off, neither appears.
#[test]
fn the_cpu_tier_flag_is_checked_and_reported() {
    let run = |extra: &[&str]| {
        let mut cmd = common::llmsim();
        cmd.args([
            "run",
            "--scheduler",
            "sarathi",
            "--requests",
            "600",
            "--json",
        ])
        .args(extra);
        cmd
    };
    for (args, says) in [
        (
            &[
                "--kv-capacity",
                "20000",
                "--gpu",
                "h100",
                "--cpu-kv-blocks",
                "10",
            ][..],
            "add --prefix-cache on",
        ),
        (
            &[
                "--kv-capacity",
                "20000",
                "--prefix-cache",
                "on",
                "--cpu-kv-blocks",
                "10",
            ][..],
            "give --gpu",
        ),
        (
            &[
                "--kv-capacity",
                "20000",
                "--prefix-cache",
                "on",
                "--gpu",
                "h100",
                "--cpu-kv-blocks",
                "0",
            ][..],
            "must be 1 to",
        ),
        (&["--cpu-kv-blocks", "lots"][..], "--cpu-kv-blocks"),
    ] {
        let out = run(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--cpu-kv-blocks") && err.contains(says),
            "{args:?}: {err}"
        );
    }
    let conversations = [
        "--workload",
        "multiturn",
        "--system-prompt",
        "2000",
        "--system-prompts",
        "8",
        "--rate",
        "1",
        "--prefix-cache",
        "on",
        "--gpu",
        "h100",
        "--kv-capacity",
        "40000",
    ];
    let json = |extra: &[&str]| -> serde_json::Value {
        let out = common::succeed(&mut run(&[&conversations[..], extra].concat()));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (off, on) = (json(&[]), json(&["--cpu-kv-blocks", "20000"]));
    assert!(off["config"].get("cpu_kv_blocks").is_none());
    assert!(off["prefix_cache"].get("cpu_tier").is_none());
    assert_eq!(on["config"]["cpu_kv_blocks"], 20000);
    let tier = &on["prefix_cache"]["cpu_tier"];
    let loaded = tier["hit_tokens"].as_f64().unwrap();
    assert!(
        loaded > 0.0 && tier["loads"].as_f64().unwrap() > 0.0,
        "{tier}"
    );
    // H100's PCIe 5 link (64 GB/s) and Llama-3.1-8B's 128 KiB per token.
    let secs = tier["load_seconds"].as_f64().unwrap();
    assert!(
        (secs - loaded * 131_072.0 / 64e9).abs() < 1e-9 * secs,
        "{tier}"
    );
    let computed = |v: &serde_json::Value| v["prefix_cache"]["computed_tokens"].as_f64().unwrap();
    assert!(computed(&on) < computed(&off));
}

/// On conversations spread over 4 GPUs, keeping a session on one GPU (session affinity,
/// or the prefix-aware router) hits far more than round-robin, which scatters its turns.
#[test]
fn routing_by_session_or_prefix_keeps_conversations_cached() {
    use llmsim::dist::LengthDist;
    use llmsim::multiturn::MultiTurn;
    let conversations = MultiTurn {
        session_rate: 2.0,
        turns: 6,
        think_s: 30.0,
        user: LengthDist::Fixed(200),
        decode: LengthDist::Fixed(100),
        system_tokens: 256,
        system_prompts: 4,
        requests: 6000,
    };
    let requests: Vec<Request> = conversations.iter(5, 0).collect();
    let rate = |router| {
        let cfg = EngineConfig {
            gpus: 4,
            router,
            ..config(vllm(), 40_000, true)
        };
        let (hit, asked) = hits(&simulate(&requests, &cfg, 5, 0, 0));
        hit as f64 / asked as f64
    };
    let scattered = rate(RouterSpec::RoundRobin);
    for router in [RouterSpec::Session, RouterSpec::PrefixAware] {
        let kept = rate(router);
        assert!(
            kept > scattered + 0.1,
            "{router}: {kept} vs round-robin {scattered}"
        );
    }
}
