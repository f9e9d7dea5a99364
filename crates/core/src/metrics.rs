//! From a simulation's streamed statistics to a run's summary: latency distributions,
//! throughput over the measurement window, utilisation, queue lengths, batch sizes and a
//! stability verdict. Per-request helpers serve outputs that keep records.

use serde::Serialize;

use crate::engine::{BatchKind, KindStats, RequestRecord, SimOutput};
use crate::prefix::CacheStats;
use crate::stats::{StreamingDist, mean};
use crate::workload::Request;

/// Mean, percentiles and maximum of a latency (seconds). Percentiles are within 0.05% of an
/// order statistic (see [`StreamingDist`]); every field is `NaN`, written `null` in JSON,
/// when no request got that far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Dist {
    /// Mean (seconds).
    pub mean: f64,
    /// Median (seconds).
    pub p50: f64,
    /// 90th percentile (seconds).
    pub p90: f64,
    /// 95th percentile (seconds).
    pub p95: f64,
    /// 99th percentile (seconds).
    pub p99: f64,
    /// Maximum (seconds).
    pub max: f64,
}

impl Dist {
    /// Summarises a streamed distribution.
    pub fn of(d: &StreamingDist) -> Self {
        let [p50, p90, p95, p99] = d
            .quantiles([0.50, 0.90, 0.95, 0.99])
            .unwrap_or([f64::NAN; 4]);
        Dist {
            mean: d.mean().unwrap_or(f64::NAN),
            p50,
            p90,
            p95,
            p99,
            max: d.max().unwrap_or(f64::NAN),
        }
    }
}

/// Sizes of the batches of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BatchSizes {
    /// Number of batches run.
    pub batches: u64,
    /// Mean tokens per batch (tokens).
    pub mean_tokens: f64,
    /// Mean entries (requests or chunks) per batch.
    pub mean_entries: f64,
}

impl From<KindStats> for BatchSizes {
    fn from(k: KindStats) -> Self {
        let per = |x: u64| {
            if k.batches == 0 {
                0.0
            } else {
                x as f64 / k.batches as f64
            }
        };
        BatchSizes {
            batches: k.batches,
            mean_tokens: per(k.tokens),
            mean_entries: per(k.entries),
        }
    }
}

/// Batch sizes by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BatchMix {
    /// Prefill-only batches.
    pub prefill: BatchSizes,
    /// Decode-only batches.
    pub decode: BatchSizes,
    /// Batches holding both.
    pub mixed: BatchSizes,
}

/// One replication's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Measured requests (all but the warm-up) that completed: all of them, unless the run
    /// was overloaded and stopped at its last arrival.
    pub completed: u64,
    /// Requests completed per second inside the measurement window (requests/s).
    pub throughput_rps: f64,
    /// Output tokens emitted per second inside the window (tokens/s).
    pub tokens_per_s: f64,
    /// Fraction of the window the GPUs were busy, averaged over GPUs.
    pub utilization: f64,
    /// True when the load exceeds capacity: the number in system grew over the window.
    pub unstable: bool,
    /// Time to first token (seconds).
    pub ttft: Dist,
    /// Per-request mean time between tokens, TPOT (seconds); requests with `B >= 1` only.
    pub tbt: Dist,
    /// All inter-token gaps (seconds).
    pub itl: Dist,
    /// End-to-end latency, arrival to last token (seconds).
    pub e2e: Dist,
    /// Time-average number of requests in the system over the window.
    pub mean_in_system: f64,
    /// Time-average number of requests waiting for their first batch over the window.
    pub mean_in_queue: f64,
    /// Mean batch sizes by kind.
    pub batches: BatchMix,
    /// Busy fraction of the window, per GPU.
    pub gpu_utilization: Vec<f64>,
    /// Requests routed to each GPU.
    pub gpu_requests: Vec<u64>,
    /// Max over mean of per-GPU busy time (1 = perfectly balanced).
    pub load_imbalance: f64,
    /// Length of the measurement window (seconds).
    pub window_s: f64,
    /// Time-average fraction of the KV cache in use over the window, averaged over GPUs
    /// (0 with an unlimited cache).
    pub kv_utilization: f64,
    /// Largest fraction of one GPU's KV cache in use at any time of the run (0 with an
    /// unlimited cache).
    pub kv_peak_utilization: f64,
    /// Preemptions by recompute over the whole run, all GPUs.
    pub preemptions: u64,
    /// Tokens whose KV cache was dropped by preemptions and processed again (tokens).
    pub recomputed_tokens: u64,
    /// Preemptions by swapping over the whole run, all GPUs: KV caches moved to host memory.
    pub swaps_out: u64,
    /// KV caches moved back from host memory over the whole run, all GPUs.
    pub swaps_in: u64,
    /// Bytes moved over the swap link, both directions, all GPUs (bytes).
    pub swap_bytes: f64,
    /// Batch time spent on swap transfers, all GPUs (seconds).
    pub swap_seconds: f64,
    /// The prefix cache's results, when it is on (absent from the JSON otherwise, so a run
    /// without it prints what it always did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_cache: Option<PrefixSummary>,
}

/// What the prefix caches did, over the whole run and all GPUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixSummary {
    /// Fraction of looked-up prompt tokens found cached (`NaN`, JSON null, when no request
    /// had a prefix identity).
    pub token_hit_rate: f64,
    /// Fraction of looked-up full prompt blocks found cached (`NaN` when none).
    pub block_hit_rate: f64,
    /// Prompt tokens of the requests looked up: the prefill work asked for (tokens).
    pub prompt_tokens: u64,
    /// Of those, tokens prefilled, the rest being cache hits (tokens; recomputes after
    /// preemption are counted by `recomputed_tokens`, and a request's hit counts at its
    /// first admission).
    pub computed_tokens: u64,
    /// Cached blocks evicted to make room (blocks).
    pub evictions: u64,
    /// Time-average fraction of the KV cache holding cached blocks, referenced or not, over
    /// the window, averaged over GPUs.
    pub kv_share: f64,
    /// The CPU tier's results, when it is on (absent from the JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_tier: Option<CpuTierSummary>,
}

/// What the prefix caches' CPU tiers did, over the whole run and all GPUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuTierSummary {
    /// Prompt tokens loaded from the CPU tiers, which the GPUs' caches then held for
    /// their requests' admissions: part of the prefix cache's hits (tokens).
    pub hit_tokens: u64,
    /// Requests that waited for a load (requests).
    pub loads: u64,
    /// Time the loads took on the host links, waits for a busy link excluded (seconds).
    pub load_seconds: f64,
    /// Blocks the CPU tiers evicted to make room (blocks).
    pub evictions: u64,
}

/// Whether the number in system grew over the window by more than a stable queue plausibly
/// could ([`Growth::detected`](crate::engine::Growth::detected)).
pub fn growth_detected(out: &SimOutput) -> bool {
    out.growth.detected()
}

/// One request's time to first token, arrival to the end of its prefill (seconds).
pub fn request_ttft(req: &Request, rec: &RequestRecord) -> f64 {
    rec.first_token - req.arrival
}

/// One request's mean time between tokens, TPOT: first to last token over its `B` decode
/// steps (seconds); `None` when it decodes nothing.
pub fn request_tbt(req: &Request, rec: &RequestRecord) -> Option<f64> {
    (req.decode > 0).then(|| (rec.completion - rec.first_token) / f64::from(req.decode))
}

/// Summarises one simulation. Latencies cover the measured requests that got that far: all
/// of them, unless the run stopped at its last arrival (an overloaded run, whose latencies
/// are not steady-state values).
pub fn summarize(out: &SimOutput) -> Summary {
    let kv_blocks = out.kv.blocks.map_or(f64::INFINITY, |b| b as f64);
    let w = out.window;
    let len = if w.is_empty() { f64::NAN } else { w.len() };
    let busy: Vec<f64> = out.gpus.iter().map(|g| g.busy_in_window).collect();
    let mean_busy = mean(&busy);
    let imbalance = if mean_busy > 0.0 {
        busy.iter().copied().fold(0.0, f64::max) / mean_busy
    } else {
        1.0
    };
    Summary {
        completed: out.e2e.count(),
        throughput_rps: out.completions_in_window as f64 / len,
        tokens_per_s: out.tokens_in_window as f64 / len,
        utilization: mean_busy / len,
        unstable: growth_detected(out),
        ttft: Dist::of(&out.ttft),
        tbt: Dist::of(&out.tbt),
        itl: Dist::of(&out.itl),
        e2e: Dist::of(&out.e2e),
        mean_in_system: out.in_system_seconds / len,
        mean_in_queue: out.in_queue_seconds / len,
        batches: BatchMix {
            prefill: out.kinds[BatchKind::Prefill as usize].into(),
            decode: out.kinds[BatchKind::Decode as usize].into(),
            mixed: out.kinds[BatchKind::Mixed as usize].into(),
        },
        gpu_utilization: busy.iter().map(|b| b / len).collect(),
        gpu_requests: out.gpus.iter().map(|g| g.requests).collect(),
        load_imbalance: imbalance,
        window_s: w.len(),
        kv_utilization: mean(
            &out.gpus
                .iter()
                .map(|g| g.kv_block_seconds / len)
                .collect::<Vec<_>>(),
        ) / kv_blocks,
        kv_peak_utilization: out.gpus.iter().map(|g| g.kv_peak_blocks).max().unwrap_or(0) as f64
            / kv_blocks,
        preemptions: out.gpus.iter().map(|g| g.preemptions).sum(),
        recomputed_tokens: out.gpus.iter().map(|g| g.recomputed_tokens).sum(),
        swaps_out: out.gpus.iter().map(|g| g.swaps_out).sum(),
        swaps_in: out.gpus.iter().map(|g| g.swaps_in).sum(),
        swap_bytes: out.gpus.iter().map(|g| g.swap_bytes).sum(),
        swap_seconds: out.gpus.iter().map(|g| g.swap_seconds).sum(),
        prefix_cache: out.prefix_cache.then(|| {
            let s = |f: fn(&CacheStats) -> u64| out.gpus.iter().map(|g| f(&g.prefix)).sum();
            let prompt: u64 = s(|c| c.requested_tokens);
            let hit: u64 = s(|c| c.hit_tokens);
            let cached: Vec<f64> = out
                .gpus
                .iter()
                .map(|g| g.cache_block_seconds / len)
                .collect();
            PrefixSummary {
                token_hit_rate: hit as f64 / prompt as f64,
                block_hit_rate: s(|c| c.hit_blocks) as f64 / s(|c| c.requested_blocks) as f64,
                prompt_tokens: prompt,
                computed_tokens: prompt - hit,
                evictions: s(|c| c.evictions),
                kv_share: mean(&cached) / kv_blocks,
                cpu_tier: out.cpu_kv.map(|c| {
                    let tokens: u64 = s(|c| c.cpu_hit_tokens);
                    CpuTierSummary {
                        hit_tokens: tokens,
                        loads: s(|c| c.cpu_loads),
                        load_seconds: tokens as f64 * c.link.kv_bytes_per_token
                            / (c.link.gbytes_per_s * 1e9),
                        evictions: s(|c| c.cpu_evictions),
                    }
                }),
            }
        }),
    }
}
