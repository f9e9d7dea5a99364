//! **`multiturn`.** Synthetic multi-turn conversations ([`MultiTurn`]) on one H200 running
//! the `h200-llama3.1-8b` preset under vllm with the prefix cache on: the token hit rate
//! against the mean think time (KV cache fixed at [`THINK_CACHE_TOKENS`]) and against the
//! KV cache's size (think time fixed at [`CACHE_THINK_S`]). Needs no shared input.

use serde_json::json;
use std::sync::Arc;

use super::grid::Ctx;
use super::table::{Cell, Table, mean_ci};
use super::{Experiment, Scale};
use llmsim::cost::Preset;
use llmsim::dist::LengthDist;
use llmsim::engine::EngineConfig;
use llmsim::kv::{DEFAULT_BLOCK_SIZE, KvConfig};
use llmsim::multiturn::MultiTurn;
use llmsim::router::RouterSpec;
use llmsim::scheduler::{BatchLimits, SchedulerSpec};
use llmsim::sim::RunConfig;
use llmsim::stats::MeanCi;
use llmsim::workload::Workload;

/// The cost preset.
pub const PRESET: &str = "h200-llama3.1-8b";
/// Sessions started per second.
pub const SESSION_RATE: f64 = 1.0;
/// Turns per session.
pub const TURNS: u32 = 4;
/// Tokens of each user message and each reply's decode budget.
pub const MESSAGE_TOKENS: u32 = 128;
/// Tokens of each system prompt, and how many distinct ones the sessions draw from.
pub const SYSTEM: (u32, u32) = (512, 4);
/// Mean think times of the first sweep (seconds).
pub const THINKS_S: [f64; 5] = [1.0, 3.0, 10.0, 30.0, 100.0];
/// The KV cache of the first sweep (tokens).
pub const THINK_CACHE_TOKENS: u64 = 8_192;
/// KV cache sizes of the second sweep (tokens).
pub const CACHE_TOKENS: [u64; 5] = [4_096, 16_384, 65_536, 262_144, 1_048_576];
/// The think time of the second sweep (seconds).
pub const CACHE_THINK_S: f64 = 20.0;

/// Turns per replication: small enough that a full run takes about a second.
fn requests(scale: &Scale) -> usize {
    if *scale == Scale::FULL { 1_000 } else { 400 }
}

fn configs(ctx: &Ctx) -> Vec<(&'static str, f64, u64, RunConfig)> {
    let cost = Preset::built_in(PRESET).expect("built-in preset").model();
    let points = THINKS_S
        .iter()
        .map(|&t| ("think", t, THINK_CACHE_TOKENS))
        .chain(CACHE_TOKENS.iter().map(|&c| ("cache", CACHE_THINK_S, c)));
    points
        .map(|(sweep, think_s, tokens)| {
            let workload = Workload::MultiTurn(MultiTurn {
                session_rate: SESSION_RATE,
                turns: TURNS,
                think_s,
                user: LengthDist::Fixed(MESSAGE_TOKENS),
                decode: LengthDist::Fixed(MESSAGE_TOKENS),
                system_tokens: SYSTEM.0,
                system_prompts: SYSTEM.1,
                requests: requests(&ctx.study.scale),
            });
            let config = RunConfig {
                workload,
                engine: EngineConfig {
                    scheduler: SchedulerSpec::Vllm(BatchLimits::default()),
                    cost: Arc::clone(&cost),
                    gpus: 1,
                    router: RouterSpec::RoundRobin,
                    kv: KvConfig::with_tokens(tokens, DEFAULT_BLOCK_SIZE),
                    prefix_cache: true,
                    cpu_kv: None,
                },
                seed: ctx.study.seed,
                reps: ctx.study.scale.reps,
                warmup: 0,
            };
            (sweep, think_s, tokens, config)
        })
        .collect()
}

/// Runs both sweeps, every replication of every point in one pool.
pub fn run(ctx: &Ctx) -> Table {
    let points = configs(ctx);
    let cs: Vec<RunConfig> = points.iter().map(|p| p.3.clone()).collect();
    let hits = ctx.run_reps(&cs, |c, rep| {
        c.run_one(rep)
            .prefix_cache
            .map_or(0.0, |p| p.token_hit_rate)
    });
    let rows: Vec<Vec<Cell>> = points
        .iter()
        .zip(&hits)
        .map(|((sweep, think_s, tokens, _), h)| {
            let mut row = vec![
                Cell::Text((*sweep).into()),
                Cell::Num(*think_s),
                Cell::Int(*tokens),
            ];
            row.extend(mean_ci(MeanCi::of(h)));
            row
        })
        .collect();
    // The mean hit rate of the sweep's first and last points.
    let ends = |sweep: &str| {
        let of = |r: &Vec<Cell>| match r[3] {
            Cell::Num(x) => format!("{x:.3}"),
            _ => String::new(),
        };
        let mut it = rows.iter().filter(|r| r[0] == Cell::Text(sweep.into()));
        let first = it.next().map(of).unwrap_or_default();
        (first, it.next_back().map(of).unwrap_or_default())
    };
    let (think, cache) = (ends("think"), ends("cache"));
    let headline = format!(
        "token hit rate: think {} s {} -> {} s {}; cache {} tokens {} -> {} tokens {}",
        THINKS_S[0],
        think.0,
        THINKS_S[THINKS_S.len() - 1],
        think.1,
        CACHE_TOKENS[0],
        cache.0,
        CACHE_TOKENS[CACHE_TOKENS.len() - 1],
        cache.1,
    );
    Table {
        name: Experiment::Multiturn.name(),
        header: vec![
            "sweep",
            "think_s",
            "kv_tokens",
            "hit_rate_mean",
            "hit_rate_ci",
        ],
        rows,
        meta: json!({
            "study": { "seed": ctx.study.seed, "reps": ctx.study.scale.reps, "requests_per_rep": requests(&ctx.study.scale), "warmup_requests": 0 },
            "cost_preset": PRESET,
            "scheduler": "vllm",
            "session_rate": SESSION_RATE,
            "turns": TURNS,
            "message_tokens": MESSAGE_TOKENS,
            "system_prompt_tokens": SYSTEM.0,
            "system_prompts": SYSTEM.1,
            "block_size": DEFAULT_BLOCK_SIZE,
        }),
        headline,
    }
}

/// Replications the study runs at `scale`.
pub fn planned_runs(scale: &Scale) -> u64 {
    ((THINKS_S.len() + CACHE_TOKENS.len()) as u64) * u64::from(scale.reps)
}
