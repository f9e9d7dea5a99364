//! The hardware study: for three models (Llama-3.1-8B, Llama-3.1-70B and the
//! mixture-of-experts Mixtral-8x7B) on the catalogue's data-centre GPUs at the smallest
//! tensor-parallel degree whose memory holds the model and twice it, the largest request
//! rate one replica sustains under vLLM and Sarathi-Serve, and what a million output tokens
//! cost at that rate.
//!
//! Every replica is priced by the roofline with the efficiencies fitted on the H200 profile
//! (so these are predictions, not measurements), its KV cache is what 90% of each GPU's
//! memory leaves beside its share of the weights, and the workload and limits are the
//! policy study's ([`Setting::default`]). The largest stable rate is found by the policy
//! study's bisection, one replication each (the cost model is deterministic; only the
//! arrivals are random). Prices per GPU-hour are [`PRICES`].

use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

use super::Scale;
use super::grid::Ctx;
use super::policies::{Effort, Setting, stable, table};
use super::table::Table;
use llmsim::cost::{BatchShape, CostModel, Parallel, RooflineCost};
use llmsim::engine::EngineConfig;
use llmsim::kv::{DEFAULT_BLOCK_SIZE, KvConfig};
use llmsim::router::RouterSpec;
use llmsim::scheduler::SchedulerSpec;
use llmsim::search::bisect;
use llmsim::sim::RunConfig;
use llmsim::workload::{ArrivalKind, SyntheticWorkload, Workload};
use llmsim::{gpu, model};

/// Models studied (catalogue names).
pub const MODELS: [&str; 3] = ["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b"];

/// Illustrative on-demand prices per GPU-hour (US dollars), round figures of public cloud
/// list prices in 2025; change them to your own to compare offers.
pub const PRICES: [(&str, f64); 6] = [
    ("l40s", 1.0),
    ("a100-80gb", 1.8),
    ("h100-sxm", 2.5),
    ("h200", 3.5),
    ("b200", 6.0),
    ("mi300x", 2.5),
];

/// Cards of a quick run.
const QUICK_GPUS: [&str; 2] = ["h100-sxm", "h200"];

/// Fewest KV tokens a layout must hold to be studied: 64 requests of the longest kind.
const MIN_KV_TOKENS: u64 = 64 * (448 + 1024);

/// Largest tensor-parallel degree tried.
const MAX_TP: u32 = 8;

/// One row of `data_hardware.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct HardwareRow {
    /// Model (catalogue name).
    pub model: String,
    /// GPU (catalogue name).
    pub gpu: String,
    /// Tensor-parallel degree (GPUs per replica).
    pub tp: u32,
    /// Scheduler.
    pub scheduler: String,
    /// KV-cache capacity of the replica (tokens).
    pub kv_tokens: u64,
    /// Largest stable arrival rate found (requests/s).
    pub max_stable_rps: f64,
    /// Output tokens per second at that rate.
    pub tokens_per_s: f64,
    /// Price of the replica's GPUs (US dollars per hour).
    pub usd_per_hour: f64,
    /// Price of a million output tokens at that rate (US dollars).
    pub usd_per_m_tokens: f64,
    /// Bisection bracket width (requests/s).
    pub resolution_rps: f64,
}

/// The bisection's effort at a reproduce scale: one replication per layout.
fn effort(scale: &Scale) -> Effort {
    if *scale == Scale::FULL {
        Effort {
            reps: 1,
            requests: 3_000,
            steps: 6,
        }
    } else {
        Effort {
            reps: 1,
            requests: 1_000,
            steps: 4,
        }
    }
}

/// The layouts studied: for each model and card, the smallest power-of-two TP degree whose
/// cache holds [`MIN_KV_TOKENS`], and twice it, up to [`MAX_TP`].
fn layouts(gpus: &[&'static str]) -> Vec<(&'static str, &'static str, u32, KvConfig)> {
    let mut out = Vec::new();
    for name in MODELS {
        let shape = model::catalogue::find(name).expect("a built-in").shape;
        for &g in gpus {
            let spec = gpu::find(g).expect("a built-in").spec;
            let fits = |tp: u32| {
                KvConfig::from_memory(
                    spec.memory_gb,
                    0.9,
                    &shape,
                    Parallel { tp, pp: 1 },
                    DEFAULT_BLOCK_SIZE,
                )
                .filter(|kv| kv.capacity_tokens() >= Some(MIN_KV_TOKENS))
            };
            let Some(tp) = (0..=MAX_TP.ilog2())
                .map(|k| 1 << k)
                .find(|&tp| fits(tp).is_some())
            else {
                continue;
            };
            for tp in [tp, 2 * tp].into_iter().filter(|&t| t <= MAX_TP) {
                out.push((name, g, tp, fits(tp).expect("more GPUs hold more")));
            }
        }
    }
    out
}

/// `data_hardware.csv`.
pub fn run(ctx: &Ctx) -> Table {
    let setting = Setting {
        seed: ctx.study.seed,
        ..Setting::default()
    };
    let effort = effort(&ctx.study.scale);
    let gpus: Vec<&'static str> = if ctx.study.scale == Scale::FULL {
        PRICES.iter().map(|p| p.0).collect()
    } else {
        QUICK_GPUS.to_vec()
    };
    let cases: Vec<_> = layouts(&gpus)
        .into_iter()
        .flat_map(|(m, g, tp, kv)| {
            let l = setting.limits;
            [SchedulerSpec::Vllm(l), SchedulerSpec::Sarathi(l)].map(|s| (m, g, tp, kv, s))
        })
        .collect();
    let rows: Vec<HardwareRow> = cases
        .par_iter()
        .map(|(m, g, tp, kv, policy)| {
            let cost = RooflineCost {
                parallel: Parallel { tp: *tp, pp: 1 },
                ..RooflineCost::new(
                    model::catalogue::find(m).expect("a built-in").shape,
                    gpu::find(g).expect("a built-in").spec,
                )
            };
            // Li, Dai and Peng's bound for the largest batch, as in the policy study.
            let b = setting.limits.max_tokens;
            let t_b = cost.mean(&BatchShape::prefill(u64::from(b)));
            let bound = f64::from(b) / t_b / (setting.prompt.mean() + setting.decode.mean());
            let hi = 1.2 * bound;
            let cost: Arc<dyn CostModel> = Arc::new(cost);
            let config = |rate: f64| RunConfig {
                workload: Workload::Synthetic(SyntheticWorkload {
                    rate,
                    arrivals: ArrivalKind::Poisson,
                    prompt: setting.prompt.clone(),
                    decode: setting.decode.clone(),
                    requests: effort.requests,
                    lengths_from: None,
                }),
                engine: EngineConfig {
                    scheduler: policy.clone(),
                    cost: cost.clone(),
                    gpus: 1,
                    router: RouterSpec::RoundRobin,
                    kv: *kv,
                    prefix_cache: false,
                    cpu_kv: None,
                },
                seed: setting.seed,
                reps: 1,
                warmup: effort.requests / 10,
            };
            let found = bisect(
                |rate| config(rate).verdict(0),
                stable,
                (0.0, hi),
                effort.steps,
            );
            let tokens_per_s = found.at_max.as_ref().map_or(0.0, |s| s.tokens_per_s);
            let price = PRICES.iter().find(|p| p.0 == *g).expect("priced").1;
            let usd_per_hour = price * f64::from(*tp);
            HardwareRow {
                model: m.to_string(),
                gpu: g.to_string(),
                tp: *tp,
                scheduler: policy.name().to_string(),
                kv_tokens: kv.capacity_tokens().unwrap_or(0),
                max_stable_rps: found.rate,
                tokens_per_s,
                usd_per_hour,
                usd_per_m_tokens: usd_per_hour / 3600.0 / tokens_per_s * 1e6,
                resolution_rps: hi / f64::from(1u32 << effort.steps),
            }
        })
        .collect();
    let cheapest = |m: &str| {
        rows.iter()
            .filter(|r| r.model == m && r.tokens_per_s > 0.0)
            .min_by(|a, b| a.usd_per_m_tokens.total_cmp(&b.usd_per_m_tokens))
            .map(|r| {
                format!(
                    "{m} {} x{} {} ${:.3}",
                    r.gpu, r.tp, r.scheduler, r.usd_per_m_tokens
                )
            })
            .unwrap_or_default()
    };
    let headline = format!(
        "cheapest per million output tokens: {}",
        MODELS.map(cheapest).join("; ")
    );
    let meta = json!({
        "study": {"seed": setting.seed, "reps": effort.reps, "requests_per_rep": effort.requests, "warmup_requests": effort.requests / 10},
        "bisection_steps": effort.steps,
        "cost": "roofline, efficiencies fitted on the H200 Llama-3.1-8B profile",
        "prompt": setting.prompt.to_string(),
        "decode": setting.decode.to_string(),
        "max_batched_tokens": setting.limits.max_tokens,
        "max_seqs": setting.limits.max_seqs,
        "gpu_mem_util": 0.9,
        "min_kv_tokens": MIN_KV_TOKENS,
        "usd_per_gpu_hour": PRICES.iter().map(|(g, p)| json!({"gpu": g, "usd": p})).collect::<Vec<_>>(),
    });
    table("hardware", &rows, meta, headline)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 8B fits one card of each; 70B (141 GB of weights) needs two H200s or four H100s;
    /// Mixtral (93 GB) two of either.
    #[test]
    fn layouts_start_where_the_model_fits() {
        let l = layouts(&["h100-sxm", "h200"]);
        let tps = |m: &str, g: &str| -> Vec<u32> {
            l.iter()
                .filter(|x| x.0 == m && x.1 == g)
                .map(|x| x.2)
                .collect()
        };
        assert_eq!(tps("llama-3.1-8b", "h100-sxm"), [1, 2]);
        assert_eq!(tps("llama-3.1-70b", "h200"), [2, 4]);
        assert_eq!(tps("llama-3.1-70b", "h100-sxm"), [4, 8]);
        assert_eq!(tps("mixtral-8x7b", "h200"), [1, 2]);
        assert_eq!(tps("mixtral-8x7b", "h100-sxm"), [2, 4]);
        assert!(PRICES.iter().all(|(g, _)| gpu::find(g).is_some()));
    }
}
