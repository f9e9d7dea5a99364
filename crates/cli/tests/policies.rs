//! Invariants of the memory-aware policies (static, orca, vllm, sarathi, decode-first) over
//! random small workloads and KV caches: every request completes exactly once with its
//! `B + 1` tokens; the KV cache never holds more blocks than it has, as re-derived here
//! from the batches alone; token and sequence limits hold; each policy's batch shape
//! (whole or chunked prefills, mixing, stall-free decodes, no joins for static) and its
//! FCFS admission order hold; preemption by recompute re-processes exactly the dropped
//! context and emits nothing twice; preemption by swapping (vllm, decode-first) recomputes
//! nothing, frees and restores exactly the swapped context, resumes each swapped request
//! where it left off, and lengthens its batch by the transfer time.

use proptest::prelude::*;
use std::sync::Arc;

use llmsim::cost::{CostDist, LinearCost};
use llmsim::engine::{EngineConfig, simulate_observed, simulate_records};
use llmsim::kv::KvConfig;
use llmsim::router::RouterSpec;
use llmsim::scheduler::{
    BatchLimits, DisaggSpec, Entry, Phase, Preemption, SchedulerSpec, SwapLink,
};
use llmsim::workload::Request;

const MAX_PROMPT: u32 = 40;
const MAX_DECODE: u32 = 12;

/// The swap link of the property test: 0.1 GB/s at Llama-3.1-8B's 128 KiB per token, so a
/// swap of one token takes 1.31 ms, comparable with the batches' costs.
const LINK: SwapLink = SwapLink {
    gbytes_per_s: 0.1,
    kv_bytes_per_token: 131_072.0,
};

fn workload() -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec((0.0..1.0f64, 1u32..=MAX_PROMPT, 0u32..=MAX_DECODE), 2..60).prop_map(
        |v| {
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
        },
    )
}

/// A policy with limits that let every request of the workload finish (the same
/// conditions `llmsim run` enforces), and a KV cache `spare` blocks above the least such.
fn setup() -> impl Strategy<Value = (SchedulerSpec, KvConfig)> {
    (
        0usize..7,
        1u32..8,
        1u32..120,
        prop_oneof![Just(0.0), Just(0.05)],
        1u32..9,
        0u64..40,
    )
        .prop_map(|(which, max_seqs, tokens, watermark, block, spare)| {
            let longest = u64::from(MAX_PROMPT + MAX_DECODE);
            let whole = match which {
                1 => MAX_PROMPT,
                2 | 4..=6 => MAX_PROMPT + MAX_DECODE - 1,
                _ => 0,
            };
            let limits = BatchLimits {
                max_seqs,
                max_tokens: tokens.max(max_seqs).max(whole),
                watermark,
                preemption: if which >= 5 {
                    Preemption::Swap(LINK)
                } else {
                    Preemption::Recompute
                },
            };
            let need = longest.div_ceil(u64::from(block));
            // The watermark is a fraction of all blocks: solve need + ceil(w x) <= x.
            let blocks = ((need as f64 + 1.0) / (1.0 - watermark)).ceil() as u64 + spare;
            let spec = match which {
                0 => SchedulerSpec::Static { k: max_seqs },
                1 => SchedulerSpec::Orca(limits),
                2 => SchedulerSpec::Vllm(limits),
                3 => SchedulerSpec::Sarathi(limits),
                5 => SchedulerSpec::Vllm(limits),
                _ => SchedulerSpec::DecodeFirst(limits),
            };
            let kv = KvConfig {
                block_size: block,
                blocks: Some(blocks),
            };
            (spec, kv)
        })
}

/// `gpus` GPUs under `spec` with the KV cache `kv`, fed by the central router or round
/// robin, with linear costs `c = 0.05`, `a = 0.01`, `b0 = 4`, exponential.
fn cluster(spec: SchedulerSpec, kv: KvConfig, gpus: usize, central: bool) -> EngineConfig {
    EngineConfig {
        scheduler: spec,
        cost: Arc::new(LinearCost::new(0.05, 0.01, 4.0, CostDist::Exponential)),
        gpus,
        router: if central {
            RouterSpec::Central
        } else {
            RouterSpec::RoundRobin
        },
        kv,
        prefix_cache: false,
        cpu_kv: None,
    }
}

/// The engine's progress, re-derived from the batches the observer sees.
#[derive(Clone, Copy, Default)]
struct Shadow {
    prefilled: u32,
    decoded: u32,
    recompute: u32,
    emitted: u32,
    gpu: Option<usize>,
    /// Context swapped out to host memory, while it is there.
    swapped: Option<u32>,
}

impl Shadow {
    fn target(&self, r: &Request) -> u32 {
        r.prompt + self.recompute
    }
    fn context(&self) -> u32 {
        self.prefilled + self.decoded - self.recompute
    }
    fn decodable(&self, r: &Request) -> bool {
        self.prefilled == self.target(r)
            && self.emitted > 0
            && self.decoded < r.decode
            && self.swapped.is_none()
    }
    fn done(&self, r: &Request) -> bool {
        self.emitted == r.decode + 1
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// vllm's, sarathi's and orca's steady decodes (nothing waiting or swapped, every
    /// running request past its prefill) and decode-first's (the same, whatever waits) run
    /// in a tight loop that counts the KV cache's growth,
    /// unless an observer watches the batches: both runs must agree to the last bit, on
    /// tight caches that preempt as on roomy ones.
    #[test]
    fn steady_decodes_under_paged_memory_run_exactly_as_event_by_event(
        requests in workload(),
        (spec, kv) in setup(),
        gpus in 1usize..3,
        central in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let config = cluster(spec, kv, gpus, central);
        let fast = simulate_records(&requests, &config, seed, 0, 1);
        let slow = simulate_observed(&requests, &config, seed, 0, 1, &mut |_| {});
        // Debug prints every float exactly (shortest round-trip form).
        prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn memory_aware_policies_keep_their_invariants(
        requests in workload(),
        (spec, kv) in setup(),
        gpus in 1usize..3,
        central in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let config = cluster(spec.clone(), kv, gpus, central);
        let n = requests.len();
        let mut sh = vec![Shadow::default(); n];
        let mut recomputed = 0u64;
        let mut preemptions = 0u64;
        let (mut swaps_out, mut swaps_in, mut swap_seconds) = (0u64, 0u64, 0.0);
        let swapping = spec.swap_link().is_some();
        let mut v: Vec<String> = Vec::new();
        // Static: the requests of the batch each GPU is running.
        let mut static_batch: Vec<Vec<usize>> = vec![Vec::new(); gpus];
        let out = simulate_observed(&requests, &config, seed, 0, 1, &mut |ev| {
            let g = ev.gpu;
            let b = ev.batch;
            for &id in b.preempted() {
                let s = &mut sh[id as usize];
                if s.gpu != Some(g) || s.context() == 0 || s.done(&requests[id as usize]) {
                    v.push(format!("preempted {id}, which holds no KV on GPU {g}"));
                }
                recomputed += u64::from(s.context());
                preemptions += 1;
                // Past its prefill, its recompute covers every emitted token and emits the
                // next one, standing in for a decode step (vLLM).
                if s.prefilled == s.target(&requests[id as usize]) {
                    s.decoded += 1;
                    s.recompute = s.decoded;
                }
                s.prefilled = 0;
            }
            let mut swap_time = 0.0;
            for &id in b.swapped_out() {
                let (s, r) = (&mut sh[id as usize], &requests[id as usize]);
                if !swapping || s.gpu != Some(g) || !s.decodable(r) {
                    v.push(format!("swapped out {id}, which is not decoding on GPU {g}"));
                }
                s.swapped = Some(s.context());
                swap_time += LINK.time(s.context());
                swaps_out += 1;
            }
            for &id in b.swapped_in() {
                let s = &mut sh[id as usize];
                if s.gpu != Some(g) || s.swapped != Some(s.context()) {
                    v.push(format!("swapped in {id}, which did not come back as it left"));
                }
                s.swapped = None;
                swap_time += LINK.time(s.context());
                swaps_in += 1;
                if !b.entries().iter().any(|e| e.id == id && e.phase == Phase::Decode) {
                    v.push(format!("{id} swapped in without decoding"));
                }
            }
            swap_seconds += swap_time;
            // The cost model's time is never negative: the batch lasts at least its swaps.
            if ev.end - ev.start < swap_time - 1e-12 {
                v.push(format!("batch of {} s shorter than its swaps ({swap_time} s)", ev.end - ev.start));
            }
            let decodable: Vec<usize> = (0..n)
                .filter(|&i| sh[i].gpu == Some(g) && sh[i].decodable(&requests[i]))
                .collect();
            let entries = b.entries();
            let prefills = entries.iter().filter(|e| e.phase == Phase::Prefill).count();
            let tokens: u32 = entries.iter().map(|e| e.tokens).sum();
            for e in entries {
                let (id, r) = (e.id as usize, &requests[e.id as usize]);
                let s = &mut sh[id];
                if ev.start < r.arrival {
                    v.push(format!("request {id} ran before it arrived"));
                }
                if *s.gpu.get_or_insert(g) != g {
                    v.push(format!("request {id} moved GPU"));
                }
                match e.phase {
                    Phase::Prefill => {
                        let left = s.target(r) - s.prefilled;
                        if e.tokens == 0 || e.tokens > left {
                            v.push(format!("request {id}: chunk {} of {left} left", e.tokens));
                        }
                        let whole = !matches!(spec, SchedulerSpec::Sarathi(_));
                        if whole && e.tokens != left {
                            v.push(format!("{} chunked a prefill", spec.name()));
                        }
                        s.prefilled += e.tokens;
                        if s.prefilled == s.target(r) {
                            s.emitted += 1;
                            if s.emitted != s.decoded + 1 {
                                v.push(format!("request {id}: {} tokens after {} decodes", s.emitted, s.decoded));
                            }
                        }
                    }
                    Phase::Decode => {
                        if !s.decodable(r) {
                            v.push(format!("request {id} decoded out of turn"));
                        }
                        s.decoded += 1;
                        s.emitted += 1;
                    }
                }
            }
            // KV use while the batch runs: every unfinished request on this GPU holds its
            // context after the batch (finished ones free theirs when it ends).
            let in_batch = |i: usize| entries.iter().any(|e| e.id as usize == i);
            let live = |i: &usize| {
                sh[*i].gpu == Some(g)
                    && sh[*i].swapped.is_none()
                    && (in_batch(*i) || !sh[*i].done(&requests[*i]))
            };
            let held: u64 = (0..n)
                .filter(live)
                .map(|i| kv.blocks_for(u64::from(sh[i].context())))
                .sum();
            if held != ev.kv_used {
                v.push(format!("engine counts {} KV blocks, batches imply {held}", ev.kv_used));
            }
            if held > kv.capacity_blocks() {
                v.push(format!("{held} KV blocks in use > {}", kv.capacity_blocks()));
            }
            match &spec {
                SchedulerSpec::Static { k } => {
                    if entries.len() > *k as usize {
                        v.push(format!("static batch of {} > K = {k}", entries.len()));
                    }
                    let cur = &mut static_batch[g];
                    if prefills > 0 {
                        if prefills != entries.len() {
                            v.push("static mixed prefill and decode".into());
                        }
                        if cur.iter().any(|&i| !sh[i].done(&requests[i])
                            && !in_batch(i)) {
                            v.push("a request joined a running static batch".into());
                        }
                        *cur = entries.iter().map(|e| e.id as usize).collect();
                    } else if entries.iter().any(|e| !cur.contains(&(e.id as usize))) {
                        v.push("static decoded a request outside its batch".into());
                    }
                }
                spec => {
                    let l = spec.limits().expect("continuous policy");
                    if tokens > l.max_tokens {
                        v.push(format!("{tokens} tokens > budget {}", l.max_tokens));
                    }
                    let running = (0..n)
                        .filter(live)
                        .filter(|&i| sh[i].context() > 0)
                        .count();
                    if running > l.max_seqs as usize {
                        v.push(format!("{running} running > max_seqs {}", l.max_seqs));
                    }
                    let mixed = prefills > 0 && prefills < entries.len();
                    let pure = matches!(spec, SchedulerSpec::Vllm(_) | SchedulerSpec::DecodeFirst(_));
                    if pure && mixed {
                        v.push(format!("{} mixed prefill and decode", spec.name()));
                    }
                    // Which policies must decode every decodable request in this batch.
                    let all_decode = match spec {
                        SchedulerSpec::Orca(_) | SchedulerSpec::Sarathi(_) => true,
                        SchedulerSpec::DecodeFirst(_) => true,
                        SchedulerSpec::Vllm(_) => prefills == 0,
                        _ => false,
                    };
                    if all_decode && decodable.iter().any(|&i| !in_batch(i)) {
                        v.push(format!("{} stalled a decodable request", spec.name()));
                    }
                }
            }
        });
        prop_assert!(v.is_empty(), "{} {:?}: {:?}", spec.name(), kv, &v[..v.len().min(5)]);
        for (id, r) in requests.iter().enumerate() {
            prop_assert_eq!(sh[id].emitted, r.decode + 1, "request {} tokens", id);
            prop_assert_eq!(sh[id].prefilled, sh[id].target(r));
            let rec = out.records[id];
            prop_assert!(r.arrival <= rec.start && rec.start <= rec.first_token);
            prop_assert!(rec.first_token <= rec.completion);
        }
        let stats = |f: fn(&llmsim::engine::GpuStats) -> u64| out.gpus.iter().map(f).sum::<u64>();
        prop_assert_eq!(stats(|g| g.preemptions), preemptions);
        prop_assert_eq!(stats(|g| g.recomputed_tokens), recomputed);
        prop_assert_eq!(stats(|g| g.swaps_out), swaps_out);
        prop_assert_eq!(stats(|g| g.swaps_in), swaps_in);
        // Every swapped request came back (it completed).
        prop_assert_eq!(swaps_in, swaps_out);
        let secs: f64 = out.gpus.iter().map(|g| g.swap_seconds).sum();
        prop_assert!((secs - swap_seconds).abs() <= 1e-9 * (1.0 + secs));
        if swapping {
            prop_assert_eq!(preemptions, 0, "{} recomputed under swap", spec.name());
        } else {
            prop_assert_eq!(swaps_out, 0);
        }
        prop_assert!(out.gpus.iter().all(|g| g.kv_peak_blocks <= kv.capacity_blocks()));
        if gpus == 1 {
            // Admission is FCFS in every policy: first service in arrival order.
            prop_assert!(out.records.windows(2).all(|w| w[0].start <= w[1].start));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Disaggregated serving: prefills only on prefill GPUs, decodes only on decode GPUs,
    /// every request's second token waits for its cache to cross the link, KV use stays
    /// within each GPU's cache, limits hold, and every request completes once.
    #[test]
    fn disaggregated_pools_keep_their_invariants(
        requests in workload(),
        prefill_gpus in 1u32..3,
        decode_gpus in 1u32..3,
        max_seqs in 1u32..8,
        tokens in 1u32..120,
        gbps in prop_oneof![Just(0.001), Just(1.0), Just(100.0)],
        latency in prop_oneof![Just(0.0), Just(0.2)],
        spare in 0u64..20,
        central in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let limits = BatchLimits {
            max_seqs,
            max_tokens: tokens.max(max_seqs).max(MAX_PROMPT),
            watermark: 0.0,
            preemption: Preemption::Recompute,
        };
        let spec = DisaggSpec {
            limits,
            prefill_gpus,
            decode_gpus,
            link_gbps: gbps,
            link_latency: latency,
            kv_bytes_per_token: 131_072.0,
        };
        let kv = KvConfig::with_tokens(u64::from(MAX_PROMPT + MAX_DECODE) + 4 * spare, 4);
        let gpus = (prefill_gpus + decode_gpus) as usize;
        let config = EngineConfig {
            scheduler: SchedulerSpec::Disagg(spec),
            cost: Arc::new(LinearCost::new(0.05, 0.01, 4.0, CostDist::Exponential)),
            gpus,
            router: if central { RouterSpec::Central } else { RouterSpec::RoundRobin },
            kv,
            prefix_cache: false,
            cpu_kv: None,
        };
        let n = requests.len();
        let mut emitted = vec![0u32; n];
        let mut second = vec![f64::NAN; n];
        let mut v: Vec<String> = Vec::new();
        let out = simulate_observed(&requests, &config, seed, 0, 1, &mut |ev| {
            let prefill_gpu = ev.gpu < prefill_gpus as usize;
            let entries = ev.batch.entries();
            let tokens: u32 = entries.iter().map(|e| e.tokens).sum();
            if tokens > limits.max_tokens || entries.len() > max_seqs as usize {
                v.push(format!("batch of {} entries, {tokens} tokens", entries.len()));
            }
            if ev.kv_used > kv.capacity_blocks() {
                v.push(format!("GPU {}: {} KV blocks in use", ev.gpu, ev.kv_used));
            }
            for e in entries {
                let id = e.id as usize;
                match e.phase {
                    Phase::Prefill if !prefill_gpu => v.push("prefill on a decode GPU".into()),
                    Phase::Decode if prefill_gpu => v.push("decode on a prefill GPU".into()),
                    Phase::Prefill => {
                        if e.tokens != requests[id].prompt {
                            v.push(format!("request {id}: partial prefill"));
                        }
                        emitted[id] += 1;
                    }
                    Phase::Decode => {
                        if emitted[id] == 1 {
                            second[id] = ev.end;
                        }
                        emitted[id] += 1;
                    }
                }
            }
        });
        prop_assert!(v.is_empty(), "{:?}", &v[..v.len().min(5)]);
        for (id, r) in requests.iter().enumerate() {
            prop_assert_eq!(emitted[id], r.decode + 1, "request {} tokens", id);
            let rec = out.records[id];
            prop_assert!(rec.first_token <= rec.completion);
            if r.decode > 0 {
                // The cache crosses the link before the first decode can start.
                let bits = f64::from(r.prompt) * 131_072.0 * 8.0;
                let moved = rec.first_token + latency + bits / (gbps * 1e9);
                prop_assert!(second[id] >= moved - 1e-9, "request {}: second token at {} < {}", id, second[id], moved);
            }
        }
        prop_assert!(out.gpus.iter().all(|g| g.kv_peak_blocks <= kv.capacity_blocks()));
        if prefill_gpus == 1 {
            prop_assert!(out.records.windows(2).all(|w| w[0].start <= w[1].start));
        }
    }
}

/// A cache that holds about two long requests forces vLLM and Sarathi to preempt; every
/// request still finishes, and the engine's counters agree with the summary.
#[test]
fn tight_memory_preempts_and_still_completes_everything() {
    let requests: Vec<Request> = (0..200)
        .map(|i| Request {
            arrival: f64::from(i) * 0.01,
            prompt: 32,
            decode: 64,
            prefix: None,
            next: None,
        })
        .collect();
    let limits = BatchLimits {
        max_seqs: 8,
        max_tokens: 128,
        watermark: 0.01,
        preemption: Preemption::Recompute,
    };
    for spec in [SchedulerSpec::Vllm(limits), SchedulerSpec::Sarathi(limits)] {
        let config = EngineConfig {
            scheduler: spec.clone(),
            cost: Arc::new(LinearCost::new(0.01, 0.0001, 0.0, CostDist::Deterministic)),
            gpus: 1,
            router: RouterSpec::RoundRobin,
            kv: KvConfig::with_tokens(256, 16),
            prefix_cache: false,
            cpu_kv: None,
        };
        let out = simulate_records(&requests, &config, 1, 0, 0);
        let s = llmsim::metrics::summarize(&out);
        assert!(s.preemptions > 0, "{}: no preemption", spec.name());
        assert!(s.recomputed_tokens >= 32 * s.preemptions, "{}", spec.name());
        assert!(s.kv_peak_utilization <= 1.0 && s.kv_utilization > 0.5);
        assert!(out.records.iter().all(|r| r.completion.is_finite()));
    }
}

/// Preemption by recompute step by step (vLLM, 1 s per batch, a cache of three 4-token
/// blocks): r1 is prefilled at [1, 2] and emits its first token at 2; the decode batch at 2
/// cannot give both requests a new block, so r1, the newest, is preempted with its 4-token
/// context. r0 decodes alone until it finishes at 8 (r1's 5-token recompute needs 2 blocks,
/// and r0 never leaves 2 free). At [8, 9] r1's recompute prefills its prompt and its first
/// token (5 tokens) and, as in vLLM, emits its second token at 9 in that same step; its last
/// decode is [9, 10]. (Before, the recompute emitted nothing and a separate decode [9, 10]
/// emitted the second token: r1 finished at 11.)
#[test]
fn recompute_emits_the_next_token_in_its_prefill() {
    let requests = [
        Request {
            arrival: 0.0,
            prompt: 4,
            decode: 6,
            prefix: None,
            next: None,
        },
        Request {
            arrival: 0.0,
            prompt: 4,
            decode: 2,
            prefix: None,
            next: None,
        },
    ];
    let config = EngineConfig {
        scheduler: SchedulerSpec::Vllm(BatchLimits {
            max_seqs: 2,
            max_tokens: 64,
            watermark: 0.0,
            preemption: Preemption::Recompute,
        }),
        cost: Arc::new(LinearCost::new(1.0, 0.0, 0.0, CostDist::Deterministic)),
        gpus: 1,
        router: RouterSpec::RoundRobin,
        kv: KvConfig::with_tokens(12, 4),
        prefix_cache: false,
        cpu_kv: None,
    };
    let mut batches = Vec::new();
    let out = simulate_observed(&requests, &config, 0, 0, 0, &mut |ev| {
        batches.push((
            (ev.start, ev.end),
            ev.batch.entries().to_vec(),
            ev.batch.preempted().to_vec(),
        ));
    });
    let spans: Vec<(f64, f64)> = batches.iter().map(|b| b.0).collect();
    let want: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), f64::from(i + 1))).collect();
    assert_eq!(spans, want);
    // At 2 r1 is preempted and r0 decodes alone.
    assert_eq!(batches[2].2, vec![1]);
    assert_eq!(batches[2].1.len(), 1);
    // The recompute: prompt plus the one token r1 had emitted.
    assert_eq!(
        batches[8].1,
        [Entry {
            id: 1,
            tokens: 5,
            phase: Phase::Prefill
        }]
    );
    assert_eq!(batches[9].1.len(), 1);
    assert_eq!(batches[9].1[0].phase, Phase::Decode);
    let (r0, r1) = (out.records[0], out.records[1]);
    assert_eq!((r0.first_token, r0.completion), (1.0, 8.0));
    assert_eq!((r1.first_token, r1.completion), (2.0, 10.0));
    assert_eq!(llmsim::metrics::request_tbt(&requests[1], &r1), Some(4.0));
    let g = &out.gpus[0];
    assert_eq!((g.preemptions, g.recomputed_tokens), (1, 4));
    assert_eq!(g.busy, 10.0);
    // r1's gaps are 7 s (2 to 9, across the preemption) and 1 s; r0's are 2 s (1 to 3, while
    // r1 prefilled) and five of 1 s.
    assert_eq!(
        (out.itl.count(), out.itl.max(), out.itl.sum()),
        (8, Some(7.0), 15.0)
    );
}

/// Under the same tight cache as above, vLLM and decode-first with swapping never
/// recompute: every preemption is a swap out, every swapped request comes back, and the
/// summary's bytes and seconds agree with the link.
#[test]
fn tight_memory_swaps_and_still_completes_everything() {
    let requests: Vec<Request> = (0..200)
        .map(|i| Request {
            arrival: f64::from(i) * 0.01,
            prompt: 32,
            decode: 64,
            prefix: None,
            next: None,
        })
        .collect();
    let limits = BatchLimits {
        max_seqs: 8,
        max_tokens: 128,
        watermark: 0.01,
        preemption: Preemption::Swap(LINK),
    };
    for spec in [
        SchedulerSpec::Vllm(limits),
        SchedulerSpec::DecodeFirst(limits),
    ] {
        let config = EngineConfig {
            scheduler: spec.clone(),
            cost: Arc::new(LinearCost::new(0.01, 0.0001, 0.0, CostDist::Deterministic)),
            gpus: 1,
            router: RouterSpec::RoundRobin,
            kv: KvConfig::with_tokens(256, 16),
            prefix_cache: false,
            cpu_kv: None,
        };
        let out = simulate_records(&requests, &config, 1, 0, 0);
        let s = llmsim::metrics::summarize(&out);
        assert!(s.swaps_out > 0, "{}: no swap", spec.name());
        assert_eq!(s.swaps_in, s.swaps_out, "{}", spec.name());
        assert_eq!(
            (s.preemptions, s.recomputed_tokens),
            (0, 0),
            "{}",
            spec.name()
        );
        let bytes = s.swap_bytes;
        assert!(bytes >= 2.0 * 32.0 * 131_072.0 * s.swaps_out as f64);
        assert!((s.swap_seconds - bytes / 1e8).abs() < 1e-9 * bytes);
        assert!(s.kv_peak_utilization <= 1.0);
        assert!(out.records.iter().all(|r| r.completion.is_finite()));
    }
}

/// Preemption by swapping step by step, in the setting of the recompute test above (vLLM,
/// 1 s per batch, three 4-token blocks) with a link that moves a token in 0.125 s (1e9
/// bytes/s, 1.25e8 bytes per token). [0,1] prefill r0; [1,2] prefill r1 (both emit their
/// first token); at 2 r1, the newest, cannot get a block and is swapped out with its 4
/// tokens (0.5 s): [2,3.5] decodes r0 alone. r0 decodes until it finishes at 8.5, never
/// leaving the 2 blocks r1 needs; at 8.5 r1 swaps back in (0.5 s) and decodes in the same
/// batch, [8.5,10], then [10,11]: its first token is not emitted again, and its TBT
/// includes the time it spent in host memory.
#[test]
fn swap_adds_its_transfer_time_to_the_batch() {
    let requests = [
        Request {
            arrival: 0.0,
            prompt: 4,
            decode: 6,
            prefix: None,
            next: None,
        },
        Request {
            arrival: 0.0,
            prompt: 4,
            decode: 2,
            prefix: None,
            next: None,
        },
    ];
    let link = SwapLink {
        gbytes_per_s: 1.0,
        kv_bytes_per_token: 1.25e8,
    };
    let config = EngineConfig {
        scheduler: SchedulerSpec::Vllm(BatchLimits {
            max_seqs: 2,
            max_tokens: 64,
            watermark: 0.0,
            preemption: Preemption::Swap(link),
        }),
        cost: Arc::new(LinearCost::new(1.0, 0.0, 0.0, CostDist::Deterministic)),
        gpus: 1,
        router: RouterSpec::RoundRobin,
        kv: KvConfig::with_tokens(12, 4),
        prefix_cache: false,
        cpu_kv: None,
    };
    let mut batches = Vec::new();
    let out = simulate_observed(&requests, &config, 0, 0, 0, &mut |ev| {
        let ids: Vec<u32> = ev.batch.entries().iter().map(|e| e.id).collect();
        batches.push((
            ev.start,
            ev.end,
            ids,
            ev.batch.swapped_out().to_vec(),
            ev.batch.swapped_in().to_vec(),
            ev.kv_used,
        ));
    });
    let spans: Vec<(f64, f64)> = batches.iter().map(|b| (b.0, b.1)).collect();
    assert_eq!(
        spans,
        [
            (0.0, 1.0),
            (1.0, 2.0),
            (2.0, 3.5),
            (3.5, 4.5),
            (4.5, 5.5),
            (5.5, 6.5),
            (6.5, 7.5),
            (7.5, 8.5),
            (8.5, 10.0),
            (10.0, 11.0)
        ]
    );
    // The swap out: r0 decodes alone, r1's block is freed (r0 holds 2 blocks).
    assert_eq!(batches[2].2, vec![0]);
    assert_eq!(batches[2].3, vec![1]);
    assert_eq!(batches[2].5, 2);
    // The swap in: r1 re-occupies its block and grows into a second one as it decodes.
    assert_eq!(batches[8].2, vec![1]);
    assert_eq!(batches[8].4, vec![1]);
    assert_eq!(batches[8].5, 2);
    assert!(
        batches
            .iter()
            .enumerate()
            .all(|(i, b)| { (i == 2) != b.3.is_empty() && (i == 8) != b.4.is_empty() })
    );
    let r1 = out.records[1];
    assert_eq!((r1.first_token, r1.completion), (2.0, 11.0));
    assert_eq!(out.records[0].completion, 8.5);
    assert_eq!(
        llmsim::metrics::request_tbt(&requests[1], &r1),
        Some(4.5),
        "TBT counts the time in host memory"
    );
    let g = &out.gpus[0];
    assert_eq!((g.swaps_out, g.swaps_in), (1, 1));
    assert_eq!((g.preemptions, g.recomputed_tokens), (0, 0));
    assert_eq!(g.swap_bytes, 1e9);
    assert_eq!(g.swap_seconds, 1.0);
    assert_eq!(g.busy, 11.0);
}
