//! **`prefix_caching`.** The Mooncake conversation trace (12,031 requests in an hour; read
//! from the shared folder) replayed at its recorded times on 1, 2, 4 and 8 H200s under the
//! built-in `h200-llama3.1-8b` preset (no noise: every replay is the same, so one
//! replication), the KV cache an H200's 141 GB leave beside Llama-3.1-8B, for vllm (whole
//! prefills) and sarathi (2,048-token chunks), with the prefix cache off and on, behind
//! round-robin, jsq, session affinity (the trace records no sessions, so it routes as
//! jsq) and prefix-aware routing. Each row gives the token hit rate, TTFT p50/p99 and TBT
//! p99, whether p99 TTFT is under [`SLO_TTFT_S`], and the mean number of requests waiting
//! for their first batch (how well the router spreads the load). A `--quick` run replays the first
//! [`QUICK_PREFIX`] requests.

use rayon::prelude::*;
use serde_json::json;
use std::sync::Arc;

use super::grid::Ctx;
use super::table::{Cell, Table};
use super::{Experiment, Scale};
use crate::files::read_mooncake;
use llmsim::cost::{CostModel, Parallel, Preset};
use llmsim::csvio::CsvError;
use llmsim::engine::{EngineConfig, Mode};
use llmsim::kv::{DEFAULT_BLOCK_SIZE, KvConfig, ModelShape};
use llmsim::router::RouterSpec;
use llmsim::scheduler::{BatchLimits, SchedulerSpec};
use llmsim::sim::RunConfig;
use llmsim::workload::{TraceReplay, Workload};

/// The trace, under the shared folder.
pub const TRACE: &str = "traces/mooncake_conversation_trace.jsonl";
/// The cost preset every GPU runs.
pub const PRESET: &str = "h200-llama3.1-8b";
/// GPU memory for the KV cache (GB): an H200.
pub const GPU_MEM_GB: f64 = 141.0;
/// p99 TTFT objective (seconds).
pub const SLO_TTFT_S: f64 = 2.0;
/// Cluster sizes.
pub const GPUS: [usize; 4] = [1, 2, 4, 8];
/// Routers compared.
pub const ROUTERS: [RouterSpec; 4] = [
    RouterSpec::RoundRobin,
    RouterSpec::Jsq,
    RouterSpec::Session,
    RouterSpec::PrefixAware,
];
/// Requests replayed by a smaller-than-full run (`--quick`): a prefix of the trace.
const QUICK_PREFIX: usize = 2_000;

/// The policies compared: vLLM's whole prefills get a budget holding the trace's longest
/// prompt (its 126,525 tokens), Sarathi-Serve chunks under 2,048 tokens.
fn policies() -> [SchedulerSpec; 2] {
    let whole = BatchLimits {
        max_tokens: 131_072,
        ..BatchLimits::default()
    };
    [
        SchedulerSpec::Vllm(whole),
        SchedulerSpec::Sarathi(BatchLimits {
            max_tokens: 2_048,
            ..whole
        }),
    ]
}

/// A configuration: policy, prefix cache on, router, GPUs.
type Job = (SchedulerSpec, bool, RouterSpec, usize);

/// Every row of the table with the index of the run that gives it, and the distinct runs:
/// one GPU is the same run behind any router, and session affinity routes the trace's
/// requests, which record no session, as jsq does, so each is run once.
fn plan() -> (Vec<(Job, usize)>, Vec<Job>) {
    let mut rows = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    for policy in policies() {
        for cache in [false, true] {
            for router in ROUTERS {
                for gpus in GPUS {
                    let runs_as = match router {
                        _ if gpus == 1 => RouterSpec::RoundRobin,
                        RouterSpec::Session => RouterSpec::Jsq,
                        r => r,
                    };
                    let job = (policy.clone(), cache, runs_as, gpus);
                    let j = jobs.iter().position(|x| *x == job).unwrap_or_else(|| {
                        jobs.push(job);
                        jobs.len() - 1
                    });
                    rows.push(((policy.clone(), cache, router, gpus), j));
                }
            }
        }
    }
    (rows, jobs)
}

/// Runs the study; the trace is the only input.
pub fn run(ctx: &Ctx) -> Result<Table, CsvError> {
    let trace = Arc::new(read_mooncake(&ctx.shared.join(TRACE))?);
    let requests = if ctx.study.scale == Scale::FULL {
        trace.requests.len()
    } else {
        QUICK_PREFIX.min(trace.requests.len())
    };
    let replay = TraceReplay {
        trace: trace.clone(),
        time_scale: 1.0,
        requests,
    };
    let preset = Preset::built_in(PRESET).expect("built-in preset");
    let cost: Arc<dyn CostModel> = preset.model();
    let kv = KvConfig::from_memory(
        GPU_MEM_GB,
        0.9,
        &ModelShape::LLAMA_3_1_8B,
        Parallel::SINGLE,
        DEFAULT_BLOCK_SIZE,
    )
    .expect("an H200 holds Llama-3.1-8B");
    // The trace records no sessions (see `plan`).
    debug_assert!(
        trace
            .requests
            .iter()
            .all(|r| r.prefix.as_ref().is_none_or(|p| p.session.is_none()))
    );
    let (rows_of, jobs) = plan();
    let results: Vec<_> = jobs
        .into_par_iter()
        .map(|(scheduler, cache, router, gpus)| {
            let config = RunConfig {
                workload: Workload::Trace(replay.clone()),
                engine: EngineConfig {
                    scheduler: scheduler.clone(),
                    cost: cost.clone(),
                    gpus,
                    router,
                    kv,
                    prefix_cache: cache,
                    cpu_kv: None,
                },
                seed: ctx.study.seed,
                reps: 1,
                warmup: 0,
            };
            // The table reads no inter-token gap: skipping them saves a histogram update
            // per decode step.
            let s = config
                .run_with(Mode {
                    skip_itl: true,
                    ..Mode::default()
                })
                .remove(0);
            ctx.tick(1);
            // With the cache off nothing is reused: a hit rate of exactly 0.
            let hit = s.prefix_cache.as_ref().map_or(0.0, |p| p.token_hit_rate);
            let p99 = s.ttft.p99;
            [
                Cell::num_or_empty(hit),
                Cell::num_or_empty(s.ttft.p50),
                Cell::num_or_empty(p99),
                Cell::num_or_empty(s.tbt.p99),
                Cell::Bool(s.unstable),
                Cell::Bool(!s.unstable && p99 < SLO_TTFT_S),
                Cell::num_or_empty(s.mean_in_queue),
            ]
        })
        .collect();
    let rows: Vec<Vec<Cell>> = rows_of
        .into_iter()
        .map(|((scheduler, cache, router, gpus), j)| {
            let mut row = vec![
                Cell::Text(scheduler.name().into()),
                Cell::Bool(cache),
                Cell::Text(router.to_string()),
                Cell::Int(gpus as u64),
            ];
            row.extend(results[j].iter().cloned());
            row
        })
        .collect();
    // Fewest GPUs meeting the SLO for vllm, cache off behind jsq and on behind prefix-aware.
    let fewest = |cache: bool, router: &str| {
        rows.iter()
            .filter(|r| {
                matches!(&r[0], Cell::Text(p) if p == "vllm")
                    && r[1] == Cell::Bool(cache)
                    && matches!(&r[2], Cell::Text(x) if x == router)
                    && r[9] == Cell::Bool(true)
            })
            .find_map(|r| match r[3] {
                Cell::Int(g) => Some(g.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| format!(">{}", GPUS[GPUS.len() - 1]))
    };
    let headline = format!(
        "Mooncake conversation trace, vllm: H200s for p99 TTFT < {SLO_TTFT_S} s: cache off (jsq) {}, cache on (prefix-aware) {}",
        fewest(false, "jsq"),
        fewest(true, "prefix-aware")
    );
    Ok(Table {
        name: Experiment::PrefixCaching.name(),
        header: vec![
            "policy",
            "prefix_cache",
            "router",
            "gpus",
            "token_hit_rate",
            "p50_ttft",
            "p99_ttft",
            "p99_tbt",
            "unstable",
            "meets_slo",
            "mean_in_queue",
        ],
        rows,
        meta: json!({
            "study": { "seed": ctx.study.seed, "reps": 1, "requests_per_rep": requests, "warmup_requests": 0 },
            "trace": { "file": ctx.shared.join(TRACE).display().to_string(), "requests": trace.requests.len(), "span_s": trace.span(), "mean_prompt_tokens": trace.requests.iter().map(|r| f64::from(r.prompt)).sum::<f64>() / trace.requests.len() as f64 },
            "cost_preset": PRESET,
            "gpu_mem_gb": GPU_MEM_GB,
            "kv_capacity_tokens": kv.capacity_tokens(),
            "block_size": DEFAULT_BLOCK_SIZE,
            "slo": { "p99_ttft_s": SLO_TTFT_S },
        }),
        headline,
    })
}

/// Replications the study runs at `scale` (one per distinct configuration).
pub fn planned_runs(_scale: &Scale) -> u64 {
    plan().1.len() as u64
}
