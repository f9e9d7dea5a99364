//! The ranges of a run's settings inside which the simulator's arithmetic is exact and its
//! memory bounded, as checks that name the setting at fault.
//!
//! Times are `f64` seconds from the start of a run: up to [`MAX_HORIZON_S`] they resolve
//! 0.2 us, far below any iteration's cost, so latencies (differences of times) keep their
//! digits. A request's token counts (prompt, decode budget, progress, context) are `u32`:
//! bounding each prompt and decode budget by [`MAX_TOKENS`] keeps every sum of them far
//! from wrapping, and every request's work finite. Counts of requests,
//! GPUs and replications are bounded before anything is allocated for them.
//!
//! The command line maps a [`RangeError`] to exit code 2 with the setting's flag; a library
//! caller gets the same checks and messages.

use crate::cost::BatchShape;
use crate::engine::EngineConfig;
use crate::router::RouterSpec;
use crate::scheduler::{BatchLimits, DisaggSpec, Preemption, ReqId, SchedulerSpec};
use crate::workload::Workload;

/// A setting outside its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct RangeError {
    /// The setting, named as its command-line flag without the leading dashes
    /// (`rate`, `prefill-gpus`).
    pub field: &'static str,
    /// What is wrong and the allowed range.
    pub why: String,
}

/// Fails with `why` about `field` unless `ok`.
pub fn require(ok: bool, field: &'static str, why: impl Into<String>) -> Result<(), RangeError> {
    if ok {
        Ok(())
    } else {
        Err(RangeError {
            field,
            why: why.into(),
        })
    }
}

/// Most tokens in one prompt, and in one decode budget (2^24 = 16,777,216, above the
/// longest context windows of current models).
pub const MAX_TOKENS: u32 = 1 << 24;
/// Most requests per replication: each needs a [`ReqId`].
pub const MAX_REQUESTS: usize = ReqId::MAX as usize;
/// Most GPUs in a cluster (the largest training clusters hold about 100,000).
pub const MAX_GPUS: u64 = 100_000;
/// Most replications of one configuration (a 95% interval from 10,000 is already 70x
/// narrower than from 2).
pub const MAX_REPS: u32 = 10_000;
/// Longest arrival horizon (seconds, about 32 years), where `f64` times resolve 0.2 us.
pub const MAX_HORIZON_S: f64 = 1e9;
/// Lowest and highest arrival rate (requests per second): a gap of 30 years, or of a
/// nanosecond.
pub const RATE: (f64, f64) = (1e-9, 1e9);
/// Lowest and highest transfer bandwidth of a link (GB/s or Gbit/s).
pub const BANDWIDTH: (f64, f64) = (1e-3, 1e6);
/// Longest fixed latency of one KV transfer (seconds).
pub const MAX_LINK_LATENCY_S: f64 = 3600.0;
/// Lowest and highest coefficient of variation of gamma arrival gaps. Above 10 (shape
/// below 0.01) most gaps are below 1e-16 of the clock and vanish when added to it, so the
/// process degenerates into simultaneous bursts; below 0.001 use `det`.
pub const ARRIVAL_CV: (f64, f64) = (1e-3, 10.0);

/// A number as a message shows it: plain digits for ordinary magnitudes, scientific
/// notation for very large or small ones (never 309 digits for 1e308).
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && a.is_finite() && !(1e-4..1e7).contains(&a) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// A count of `what` from `lo` to `hi` (inclusive).
pub fn count(
    field: &'static str,
    n: u64,
    (lo, hi): (u64, u64),
    what: &str,
) -> Result<(), RangeError> {
    require(
        (lo..=hi).contains(&n),
        field,
        format!("must be at least {lo} and at most {hi} {what} (got {n})"),
    )
}

/// A finite number from `lo` to `hi` of `unit`.
pub fn within(
    field: &'static str,
    x: f64,
    (lo, hi): (f64, f64),
    unit: &str,
) -> Result<(), RangeError> {
    require(
        x >= lo && x <= hi,
        field,
        format!(
            "must be from {} to {} {unit} (got {})",
            num(lo),
            num(hi),
            num(x)
        ),
    )
}

/// Requests per replication: at least 2 (one measured gap), at most [`MAX_REQUESTS`].
pub fn requests(n: usize) -> Result<(), RangeError> {
    count("requests", n as u64, (2, MAX_REQUESTS as u64), "requests")
}

/// Warm-up requests: fewer than `requests - 1`, so at least 2 requests are measured.
pub fn warmup(warmup: usize, requests: usize) -> Result<(), RangeError> {
    require(
        warmup < requests.saturating_sub(1),
        "warmup",
        format!(
            "must leave at least 2 measured requests: below --requests - 1 = {} (got {warmup})",
            requests.saturating_sub(1)
        ),
    )
}

/// Mean arrival rate (requests/s): within [`RATE`].
pub fn rate(rate: f64) -> Result<(), RangeError> {
    within("rate", rate, RATE, "requests/s")
}

/// The time `requests` arrivals span (seconds, `span_s`) is at most [`MAX_HORIZON_S`].
pub fn horizon(requests: usize, span_s: f64) -> Result<(), RangeError> {
    require(
        span_s <= MAX_HORIZON_S,
        "rate",
        format!(
            "{requests} requests would arrive over about {} s; at most {} s (about 32 years) keeps times exact to 0.2 us: raise --rate or lower --requests",
            num(span_s),
            num(MAX_HORIZON_S)
        ),
    )
}

/// GPUs in a cluster: 1 to [`MAX_GPUS`].
pub fn gpus(field: &'static str, n: u64) -> Result<(), RangeError> {
    count(field, n, (1, MAX_GPUS), "GPUs")
}

/// Independent replications: 1 to [`MAX_REPS`].
pub fn reps(n: u32) -> Result<(), RangeError> {
    count(
        "reps",
        u64::from(n),
        (1, u64::from(MAX_REPS)),
        "replications",
    )
}

/// A link's bandwidth, within [`BANDWIDTH`] (`unit` GB/s or Gbit/s).
pub fn bandwidth(field: &'static str, x: f64, unit: &str) -> Result<(), RangeError> {
    within(field, x, BANDWIDTH, unit)
}

/// A KV transfer's fixed latency: 0 to [`MAX_LINK_LATENCY_S`] seconds.
pub fn link_latency(x: f64) -> Result<(), RangeError> {
    within("kv-link-latency", x, (0.0, MAX_LINK_LATENCY_S), "seconds")
}

/// A number of tokens in one prompt or decode budget: at most [`MAX_TOKENS`].
pub fn tokens(field: &'static str, n: u64) -> Result<(), RangeError> {
    require(
        n <= u64::from(MAX_TOKENS),
        field,
        format!("{n} tokens is more than the {MAX_TOKENS} a request may ask for"),
    )
}

/// The fraction of KV blocks an admission must leave free: in `[0, 1)`.
pub fn watermark(w: f64) -> Result<(), RangeError> {
    require(
        (0.0..1.0).contains(&w),
        "watermark",
        format!("must lie in [0, 1) (got {})", num(w)),
    )
}

/// A continuous-batching policy's limits: at least one running request, a token budget
/// that lets each decode at once, the watermark and the swap link.
pub fn batch_limits(l: &BatchLimits) -> Result<(), RangeError> {
    require(
        l.max_seqs >= 1,
        "max-seqs",
        format!("must be at least 1 (got {})", l.max_seqs),
    )?;
    require(
        l.max_tokens >= l.max_seqs,
        "max-batched-tokens",
        format!(
            "must be at least --max-seqs = {}, so that every running request can decode in one iteration (got {})",
            l.max_seqs, l.max_tokens
        ),
    )?;
    watermark(l.watermark)?;
    match l.preemption {
        Preemption::Swap(link) => bandwidth("swap-gbps", link.gbytes_per_s, "GB/s"),
        Preemption::Recompute => Ok(()),
    }
}

/// Disaggregated serving's pools (at most [`MAX_GPUS`] in all, added without wrapping)
/// and KV link.
pub fn disagg(d: &DisaggSpec) -> Result<(), RangeError> {
    gpus("prefill-gpus", u64::from(d.prefill_gpus))?;
    gpus("decode-gpus", u64::from(d.decode_gpus))?;
    let total = u64::from(d.prefill_gpus) + u64::from(d.decode_gpus);
    require(
        total <= MAX_GPUS,
        "prefill-gpus",
        format!("prefill and decode GPUs add up to {total}; at most {MAX_GPUS} in all"),
    )?;
    bandwidth("kv-link-gbps", d.link_gbps, "Gbit/s")?;
    link_latency(d.link_latency)
}

/// Prefix caching ([`EngineConfig::prefix_cache`]) needs a policy that allocates the KV
/// cache block by block as it goes (vllm, sarathi, decode-first: Orca, static batching and
/// disaggregated decode reserve whole requests up front), a finite KV cache (its size is
/// what the cache competes for), and a router that places each request on arrival
/// (`central` hands a request to a GPU only when that GPU takes it, which the prefix
/// cache's accounting of routed work does not follow).
pub fn prefix_cache(engine: &EngineConfig) -> Result<(), RangeError> {
    if let Some(c) = engine.cpu_kv {
        cpu_kv(c.blocks, engine.prefix_cache)?;
    }
    if !engine.prefix_cache {
        return Ok(());
    }
    require(
        matches!(
            engine.scheduler,
            SchedulerSpec::Vllm(_) | SchedulerSpec::Sarathi(_) | SchedulerSpec::DecodeFirst(_)
        ),
        "prefix-cache",
        format!(
            "'on' needs --scheduler vllm, sarathi or decode-first (paged KV allocated as \
             requests grow), not {}",
            engine.scheduler.name()
        ),
    )?;
    require(
        engine.kv.blocks.is_some(),
        "prefix-cache",
        "'on' needs a finite KV cache for the cache to share: give --kv-capacity or --gpu-mem-gb",
    )?;
    require(
        engine.router != RouterSpec::Central,
        "prefix-cache",
        "'on' needs a router that places requests on arrival, not central",
    )
}

/// Most blocks of a CPU tier: the prefix cache's slab numbers its blocks in 32 bits.
pub const MAX_CPU_KV_BLOCKS: u64 = 1 << 30;

/// Checks a CPU tier of `blocks` blocks (`--cpu-kv-blocks`) beside a prefix cache that is
/// on or not (`prefix_cache`): the tier extends that cache.
pub fn cpu_kv(blocks: u64, prefix_cache: bool) -> Result<(), RangeError> {
    require(
        (1..=MAX_CPU_KV_BLOCKS).contains(&blocks),
        "cpu-kv-blocks",
        format!("must be 1 to {MAX_CPU_KV_BLOCKS} blocks (got {blocks})"),
    )?;
    require(
        prefix_cache,
        "cpu-kv-blocks",
        "extends the GPU's prefix cache with a CPU tier: add --prefix-cache on (with vllm, sarathi or decode-first and a finite KV cache)",
    )
}

/// Whether replications of a run of `engine` can differ at all: a trace replays the same
/// requests every time, so they differ only when the cost model draws noise or the router
/// draws GPUs.
pub fn replications_vary(workload: &Workload, engine: &EngineConfig) -> bool {
    if !matches!(workload, Workload::Trace(_)) {
        return true;
    }
    let routed = match &engine.scheduler {
        SchedulerSpec::Disagg(d) => d.prefill_gpus as usize,
        _ => engine.gpus,
    };
    let random_router = matches!(engine.router, RouterSpec::Random | RouterSpec::PowerOfD(_));
    // A model without noise has zero variance for every batch; these two shapes cover a
    // prefill and a decode.
    let probes = [
        BatchShape {
            prefill_tokens: 128,
            prefill_entries: 1,
            ..BatchShape::default()
        },
        BatchShape {
            decode_entries: 1,
            kv_tokens: 128,
            ..BatchShape::default()
        },
    ];
    (random_router && routed > 1) || probes.iter().any(|p| engine.cost.variance(p) > 0.0)
}

/// Replications: 1 to [`MAX_REPS`], and only 1 when they cannot differ
/// ([`replications_vary`]): identical replications would print a 95% interval of zero
/// width that is no interval at all.
pub fn replications(workload: &Workload, engine: &EngineConfig, n: u32) -> Result<(), RangeError> {
    reps(n)?;
    require(
        n == 1 || replications_vary(workload, engine),
        "reps",
        format!(
            "a trace replay with a deterministic cost model and router is the same in every replication: use --reps 1, or add service noise (--noise-cv CV, or --cost linear with --cost-dist exp) to draw independent replications (got {n})"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_short() {
        assert_eq!(num(1e308), "1e308");
        assert_eq!(num(1e-320), "1e-320");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(2048.0), "2048");
        assert_eq!(num(-1.0), "-1");
        assert_eq!(num(f64::NAN), "NaN");
    }

    #[test]
    fn errors_name_the_field_and_range() {
        let e = rate(1e-320).unwrap_err();
        assert_eq!(e.field, "rate");
        assert!(e.why.contains("1e-320"), "{e}");
        let e = warmup(usize::MAX, 100).unwrap_err();
        assert_eq!(e.field, "warmup");
        assert!(warmup(98, 100).is_ok() && warmup(99, 100).is_err());
        assert!(warmup(0, 0).is_err());
        let e = gpus("prefill-gpus", 4_294_967_296).unwrap_err();
        assert!(e.why.contains("at least 1 and at most 100000 GPUs"), "{e}");
        assert!(horizon(100_000, 1e20).is_err() && horizon(100_000, 2e5).is_ok());
        assert!(within("x", f64::NAN, (0.0, 1.0), "s").is_err());
    }
}
