//! Real GPUs and real traffic: the Azure LLM inference traces (2023) replayed on clusters of
//! calibrated H200s, and the roofline model against the measured H200 iterations.
//!
//! Both read files that are not part of the project (the traces' publisher and the GPU
//! profile ship them separately): `traces/AzureLLMInferenceTrace_{conv,code}.csv` and
//! `calibration/h200_llama-3.1-8b.csv` under the *shared folder*, which is `--shared DIR` of
//! `llmsim reproduce`, else `$LLMSIM_SHARED`, else `../shared` relative to the current
//! directory. Where a file is missing the experiment is skipped (see [`missing_inputs`]).
//!
//! **`trace_capacity`.** Each trace is replayed at its recorded times (`speedup` 1) and ten
//! times faster (`speedup` 10: the same requests, arrival times divided by 10), on 1, 2, ...
//! GPUs behind [`ROUTER`], under Schedulers A and B and the Orca, vLLM and Sarathi-Serve
//! policies, with the built-in `h200-llama3.1-8b` cost preset under lognormal per-iteration
//! noise ([`NOISE_CV`]); the memory-aware policies get the KV cache an H200's 141 GB leave
//! beside Llama-3.1-8B's weights. Every replication replays the same requests; they differ
//! only in the noise, so the intervals are over service-time noise, not over workloads. For
//! each (trace, speedup, policy) the GPU count is searched upward until the replication
//! means of p99 TTFT and p99 TBT are both under the SLO ([`SLO_TTFT_S`], [`SLO_TBT_S`]),
//! up to [`MAX_GPUS`]. Scheduler A serves one request at a time, so its cluster is
//! overloaded over the whole replay below its offered load `rho` (the summed service times
//! of the requests served alone over the replay's span); its search starts at
//! `max(1, floor(rho))`, capped at [`MAX_GPUS`].

use llmsim::csvio::CsvError;
use rayon::prelude::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::grid::Ctx;
use super::table::{Cell, Table};
use super::{Experiment, Scale};
use crate::files::{read_profile, read_trace};
use llmsim::calibrate::{ProfileRow, fit_error, fit_roofline, relative_errors};
use llmsim::cost::{BatchShape, CostModel, GpuSpec, LogNormalNoise, ModelShape, Preset};
use llmsim::engine::{EngineConfig, Mode};
use llmsim::kv::{self, DEFAULT_BLOCK_SIZE, KvConfig};
use llmsim::metrics::Summary;
use llmsim::router::RouterSpec;
use llmsim::scheduler::{BatchLimits, SchedulerSpec};
use llmsim::search::min_count;
use llmsim::sim::RunConfig;
use llmsim::stats::MeanCi;
use llmsim::trace::Trace;
use llmsim::workload::{Request, TraceReplay, Workload};

/// The traces replayed: `(label, path under the shared folder)`.
pub const TRACES: [(&str, &str); 2] = [
    ("conv", "traces/AzureLLMInferenceTrace_conv.csv"),
    ("code", "traces/AzureLLMInferenceTrace_code.csv"),
];
/// The measured H200 profile, under the shared folder.
pub const PROFILE: &str = "calibration/h200_llama-3.1-8b.csv";
/// The cost preset every GPU runs.
pub const PRESET: &str = "h200-llama3.1-8b";
/// Coefficient of variation of the per-iteration lognormal noise.
pub const NOISE_CV: f64 = 0.1;
/// p99 TTFT objective (seconds).
pub const SLO_TTFT_S: f64 = 1.0;
/// p99 TBT objective (seconds).
pub const SLO_TBT_S: f64 = 0.1;
/// Largest cluster searched.
pub const MAX_GPUS: usize = 16;
/// Replay speeds: arrival times are divided by these.
pub const SPEEDUPS: [f64; 2] = [1.0, 10.0];
/// The router in front of the GPUs.
pub const ROUTER: RouterSpec = RouterSpec::Jsq;
/// GPU memory for the KV cache (GB): an H200.
pub const GPU_MEM_GB: f64 = 141.0;
/// Replications in a full run.
const FULL_REPS: u32 = 3;
/// Requests of each trace replayed by a smaller-than-full run (`--quick`): a prefix.
const QUICK_PREFIX: usize = 2_000;

/// Input files of `e` under `shared` that do not exist (empty when it can run).
pub fn missing_inputs(e: Experiment, shared: &Path) -> Vec<PathBuf> {
    let rel: Vec<&str> = match e {
        Experiment::TraceCapacity => TRACES.iter().map(|t| t.1).collect(),
        Experiment::Roofline => vec![PROFILE],
        Experiment::PrefixCaching => vec![super::prefix_caching::TRACE],
        Experiment::Fidelity => vec![super::fidelity::RUNS, super::fidelity::PEERS],
        _ => vec![],
    };
    rel.into_iter()
        .map(|r| shared.join(r))
        .filter(|p| !p.is_file())
        .collect()
}

/// The policies compared, in table order. Orca and vLLM prefill whole prompts (and vLLM
/// whole preempted requests), so their token budget holds the traces' longest request;
/// Sarathi-Serve chunks prefills under a 2,048-token budget.
pub fn policies() -> Vec<SchedulerSpec> {
    let whole = BatchLimits {
        max_seqs: 256,
        max_tokens: 16_384,
        watermark: 0.01,
        ..BatchLimits::default()
    };
    let chunked = BatchLimits {
        max_tokens: 2_048,
        ..whole
    };
    vec![
        SchedulerSpec::A,
        SchedulerSpec::B {
            k: 4,
            max_decode_batch: None,
        },
        SchedulerSpec::Orca(whole),
        SchedulerSpec::Vllm(whole),
        SchedulerSpec::Sarathi(chunked),
    ]
}

/// The KV cache `policy` is given: an H200's for the memory-aware ones.
fn kv_for(policy: &SchedulerSpec) -> KvConfig {
    match policy {
        SchedulerSpec::A | SchedulerSpec::B { .. } => KvConfig::unlimited(),
        _ => KvConfig::from_memory(
            GPU_MEM_GB,
            0.9,
            &kv::ModelShape::LLAMA_3_1_8B,
            llmsim::cost::Parallel::SINGLE,
            DEFAULT_BLOCK_SIZE,
        )
        .expect("Llama-3.1-8B fits an H200"),
    }
}

/// Replications and requests per trace at `scale`: the whole traces and 3 replications in
/// a full run, a prefix otherwise.
fn effort(scale: &Scale) -> (u32, Option<usize>) {
    if *scale == Scale::FULL {
        (FULL_REPS, None)
    } else {
        (
            scale.reps.clamp(2, FULL_REPS),
            Some(scale.requests.min(QUICK_PREFIX)),
        )
    }
}

/// Upper bound on the replications `trace_capacity` runs (the search usually stops early;
/// the rest are reported done when it ends, so a progress bar ends full).
pub fn planned_runs(scale: &Scale) -> u64 {
    let (reps, _) = effort(scale);
    (TRACES.len() * SPEEDUPS.len() * policies().len() * MAX_GPUS) as u64 * u64::from(reps)
}

/// Scheduler A's offered load: the requests' service times when served alone, summed, over
/// the replay's span (GPUs' worth of work).
fn offered_load_alone(requests: &[Request], cost: &dyn CostModel) -> f64 {
    let work: f64 = requests
        .iter()
        .map(|r| {
            let prefill = cost.mean(&BatchShape::prefill(u64::from(r.prompt)));
            let decode: f64 = (0..r.decode)
                .map(|k| cost.mean(&BatchShape::decode(1, u64::from(r.prompt + k))))
                .sum();
            prefill + decode
        })
        .sum();
    let span = requests.last().map_or(0.0, |r| r.arrival);
    if span > 0.0 {
        work / span
    } else {
        f64::INFINITY
    }
}

/// One simulated cluster size.
struct Point {
    gpus: usize,
    runs: Vec<Summary>,
}

impl Point {
    fn stat(&self, f: fn(&Summary) -> f64) -> MeanCi {
        MeanCi::of(&self.runs.iter().map(f).collect::<Vec<_>>())
    }

    fn meets_slo(&self) -> bool {
        self.stat(|s| s.ttft.p99).mean < SLO_TTFT_S && self.stat(|s| s.tbt.p99).mean < SLO_TBT_S
    }
}

/// One (trace, speedup, policy) search.
struct Search {
    trace: &'static str,
    speedup: f64,
    policy: SchedulerSpec,
    rate: f64,
    requests: usize,
    rho_alone: Option<f64>,
    points: Vec<Point>,
}

/// Replays every trace on growing clusters under every policy.
pub fn capacity(ctx: &Ctx) -> Result<Table, CsvError> {
    let (reps, prefix) = effort(&ctx.study.scale);
    let preset = Preset::built_in(PRESET).expect("built-in preset");
    let cost: Arc<dyn CostModel> = Arc::new(LogNormalNoise::new(preset.model(), NOISE_CV));
    let traces: Vec<(&'static str, Arc<Trace>)> = TRACES
        .iter()
        .map(|&(label, rel)| Ok((label, Arc::new(read_trace(&ctx.shared.join(rel))?))))
        .collect::<Result<_, CsvError>>()?;
    let mut jobs = Vec::new();
    for (label, trace) in &traces {
        for &speedup in &SPEEDUPS {
            for policy in policies() {
                jobs.push((*label, trace.clone(), speedup, policy));
            }
        }
    }
    let done = std::sync::atomic::AtomicU64::new(0);
    let searches: Vec<Search> = jobs
        .into_par_iter()
        .map(|(label, trace, speedup, policy)| {
            let n = prefix.map_or(trace.requests.len(), |p| p.min(trace.requests.len()));
            let replay = TraceReplay {
                trace,
                time_scale: 1.0 / speedup,
                requests: n,
            };
            let rate = replay.rate();
            let rho_alone = matches!(policy, SchedulerSpec::A)
                .then(|| offered_load_alone(&replay.generate(), preset.model().as_ref()));
            let start = rho_alone.map_or(1, |rho| (rho.floor() as usize).clamp(1, MAX_GPUS));
            let eval = |gpus: usize| {
                let config = RunConfig {
                    workload: Workload::Trace(replay.clone()),
                    engine: EngineConfig {
                        scheduler: policy.clone(),
                        cost: cost.clone(),
                        gpus,
                        router: ROUTER,
                        kv: kv_for(&policy),
                        prefix_cache: false,
                        cpu_kv: None,
                    },
                    seed: ctx.study.seed,
                    reps,
                    warmup: 0,
                };
                // The table reads no inter-token gap: skipping them saves a histogram
                // update per decode step.
                let runs = config.run_with(Mode {
                    skip_itl: true,
                    ..Mode::default()
                });
                ctx.tick(u64::from(reps));
                done.fetch_add(u64::from(reps), std::sync::atomic::Ordering::Relaxed);
                Point { gpus, runs }
            };
            // The smallest cluster meeting the SLO, assuming that more GPUs never make the
            // tail latencies worse (the planner's GPU-count search).
            let points = min_count(start, MAX_GPUS, eval, Point::meets_slo)
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            Search {
                trace: label,
                speedup,
                policy,
                rate,
                requests: n,
                rho_alone,
                points,
            }
        })
        .collect();
    ctx.tick(planned_runs(&ctx.study.scale) - done.into_inner());

    let header = vec![
        "trace",
        "policy",
        "gpus",
        "p99_ttft",
        "p99_tbt",
        "throughput",
        "unstable",
        "meets_slo",
        "min_gpus",
        "speedup",
        "arrival_rate",
        "requests",
        "p99_ttft_ci",
        "p99_tbt_ci",
        "throughput_ci",
        "mean_ttft",
        "mean_tbt",
        "utilization",
        "preemptions",
    ];
    let mut rows = Vec::new();
    let mut minimal = Vec::new();
    for s in &searches {
        let first_met = s.points.iter().position(Point::meets_slo);
        minimal.push(json!({
            "trace": s.trace,
            "speedup": s.speedup,
            "policy": s.policy.name(),
            "min_gpus": first_met.map(|i| s.points[i].gpus),
            "offered_load_alone": s.rho_alone,
        }));
        for (i, p) in s.points.iter().enumerate() {
            let row: Vec<Cell> = vec![
                s.trace.into(),
                s.policy.name().into(),
                p.gpus.into(),
                p.stat(|x| x.ttft.p99).mean.into(),
                p.stat(|x| x.tbt.p99).mean.into(),
                p.stat(|x| x.throughput_rps).mean.into(),
                p.runs.iter().any(|x| x.unstable).into(),
                p.meets_slo().into(),
                (first_met == Some(i)).into(),
                s.speedup.into(),
                s.rate.into(),
                s.requests.into(),
                p.stat(|x| x.ttft.p99).ci95.into(),
                p.stat(|x| x.tbt.p99).ci95.into(),
                p.stat(|x| x.throughput_rps).ci95.into(),
                p.stat(|x| x.ttft.mean).mean.into(),
                p.stat(|x| x.tbt.mean).mean.into(),
                p.stat(|x| x.utilization).mean.into(),
                p.stat(|x| x.preemptions as f64).mean.into(),
            ];
            rows.push(row);
        }
    }
    let headline = {
        let conv10: Vec<String> = searches
            .iter()
            .filter(|s| s.trace == "conv" && s.speedup == SPEEDUPS[1])
            .map(|s| {
                let n = s
                    .points
                    .iter()
                    .find(|p| p.meets_slo())
                    .map_or_else(|| format!(">{MAX_GPUS}"), |p| p.gpus.to_string());
                format!("{} {n}", s.policy.name())
            })
            .collect();
        format!(
            "H200s for p99 TTFT < {SLO_TTFT_S} s and p99 TBT < {} ms, conversation trace at {}x: {}",
            SLO_TBT_S * 1e3,
            SPEEDUPS[1],
            conv10.join(", ")
        )
    };
    let (_, prefix) = effort(&ctx.study.scale);
    Ok(Table {
        name: Experiment::TraceCapacity.name(),
        header,
        rows,
        meta: json!({
            "study": {
                "seed": ctx.study.seed,
                "reps": reps,
                "requests_per_rep": prefix.map_or(Value::from("whole trace"), Value::from),
                "warmup_requests": 0,
            },
            "traces": traces.iter().map(|(label, t)| json!({
                "trace": label,
                "file": t.source.display().to_string(),
                "requests": t.requests.len(),
                "span_s": t.span(),
                "rate_rps": t.rate(),
                "adjusted_rows": t.adjusted,
            })).collect::<Vec<_>>(),
            "speedups": SPEEDUPS,
            "cost_preset": PRESET,
            "cost_parameters": preset.profiled,
            "noise_cv": NOISE_CV,
            "router": ROUTER.to_string(),
            "gpu_mem_gb": GPU_MEM_GB,
            "gpu_mem_util": 0.9,
            "kv_capacity_tokens": kv_for(&policies()[2]).capacity_tokens(),
            "policies": policies().iter().map(|p| json!({
                "policy": p.name(),
                "limits": p.limits().map(|l| json!({
                    "max_seqs": l.max_seqs,
                    "max_tokens": l.max_tokens,
                    "watermark": l.watermark,
                })),
                "k": match p { SchedulerSpec::B { k, .. } => Some(*k), _ => None },
                "kv_capacity_tokens": kv_for(p).capacity_tokens(),
            })).collect::<Vec<_>>(),
            "slo": { "p99_ttft_s": SLO_TTFT_S, "p99_tbt_s": SLO_TBT_S },
            "max_gpus": MAX_GPUS,
            "minimal": minimal,
        }),
        headline,
    })
}

/// The roofline model and the profiled preset against every measured H200 iteration.
pub fn roofline(ctx: &Ctx) -> Result<Table, CsvError> {
    let path = ctx.shared.join(PROFILE);
    let rows: Vec<ProfileRow> = read_profile(&path)?;
    let preset = Preset::built_in(PRESET).expect("built-in preset");
    let profiled = preset.model();
    let roof = fit_roofline(&rows, ModelShape::LLAMA_3_1_8B, GpuSpec::H200);
    let p_err = relative_errors(profiled.as_ref(), &rows);
    let r_err = relative_errors(&roof, &rows);
    let table_rows = rows
        .iter()
        .zip(p_err.iter().zip(&r_err))
        .map(|(r, (&pe, &re))| {
            let (compute, memory) = roof.ideal_times(&r.shape());
            vec![
                r.kind.as_str().into(),
                r.label().into(),
                r.batch_tokens.into(),
                r.median_ms.into(),
                (profiled.mean(&r.shape()) * 1e3).into(),
                pe.into(),
                (roof.mean(&r.shape()) * 1e3).into(),
                re.into(),
                if compute / roof.eff.compute >= memory / roof.eff.memory {
                    "compute"
                } else {
                    "memory"
                }
                .into(),
            ]
        })
        .collect();
    let pf = fit_error(profiled.as_ref(), &rows);
    let rf = fit_error(&roof, &rows);
    Ok(Table {
        name: Experiment::Roofline.name(),
        header: vec![
            "kind",
            "shape",
            "batch_tokens",
            "measured_ms",
            "profiled_ms",
            "profiled_error",
            "roofline_ms",
            "roofline_error",
            "roofline_bound",
        ],
        rows: table_rows,
        meta: json!({
            "study": { "seed": ctx.study.seed, "reps": Value::Null },
            "profile": path.display().to_string(),
            "profile_rows": rows.len(),
            "cost_preset": PRESET,
            "profiled_parameters": preset.profiled,
            "profiled_fit": pf,
            "profiled_worst_row": rows[pf.worst_row].label(),
            "gpu": { "name": "h200", "peak_flops": GpuSpec::H200.peak_flops, "bandwidth_bytes_per_s": GpuSpec::H200.bandwidth },
            "roofline_efficiency": roof.eff,
            "roofline_fit": rf,
            "roofline_worst_row": rows[rf.worst_row].label(),
        }),
        headline: format!(
            "H200 profile ({} rows): preset MAPE {:.2}% (max {:.1}%), roofline MAPE {:.2}% (max {:.1}%; compute eff {:.3}, memory eff {:.3}, overhead {:.2} ms)",
            rows.len(),
            100.0 * pf.mape,
            100.0 * pf.max,
            100.0 * rf.mape,
            100.0 * rf.max,
            roof.eff.compute,
            roof.eff.memory,
            roof.eff.overhead * 1e3
        ),
    })
}
