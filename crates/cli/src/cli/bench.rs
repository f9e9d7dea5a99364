//! `llmsim bench`: simulation speed on one core, reported as requests and batches simulated
//! per wall-clock second.

use anyhow::Result;
use clap::Args;
use std::time::Instant;

use super::require;
use super::run::{SimArgs, build};
use llmsim::config::{Config, WorkloadSpec};
use llmsim::scheduler::SchedulerKind;

/// Speed target: Scheduler B at this rate (requests/s) ...
const BENCH_RATE: f64 = 2.0;
/// ... over this many requests, in at most 2 s on one core.
const BENCH_REQUESTS: usize = 1_000_000;
use llmsim::engine::simulate;
use llmsim::metrics::summarize;

/// Flags of `llmsim bench`. A synthetic workload defaults to the speed target: Scheduler B
/// at lambda = 2 (about 85% busy), 1,000,000 requests.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    sim: SimArgs,
    /// Timed repetitions, at least 1; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
}

/// The settings `llmsim bench` starts from, before a config file and flags.
pub fn base() -> Config {
    Config {
        scheduler: SchedulerKind::B,
        ..Config::default()
    }
}

pub fn main(args: BenchArgs) -> Result<()> {
    require(
        args.repeat >= 1,
        "--repeat",
        "must be at least 1 timed repetition (got 0)",
    )?;
    let (mut config, notes) = args.sim.config(base())?;
    if config.workload == WorkloadSpec::Synthetic {
        config.rate.get_or_insert(BENCH_RATE);
        config.requests.get_or_insert(BENCH_REQUESTS);
    }
    let built = build(&config, notes)?;
    let cfg = &built.run;
    let requests = cfg.workload.generate(cfg.seed, 0);
    let mut best = f64::INFINITY;
    let mut batches = 0;
    let mut util = 0.0;
    for _ in 0..args.repeat {
        let t = Instant::now();
        let out = simulate(&requests, &cfg.engine, cfg.seed, 0, cfg.warmup);
        let secs = t.elapsed().as_secs_f64();
        batches = out.gpus.iter().map(|g| g.batches).sum::<u64>();
        util = summarize(&out).utilization;
        best = best.min(secs);
    }
    let n = requests.len() as f64;
    println!(
        "scheduler {} | rate {:.4} req/s | {} requests | {} GPU(s), router {} | utilisation {:.3}",
        built.resolved.scheduler,
        cfg.workload.rate(),
        requests.len(),
        built.resolved.gpus,
        built.resolved.router,
        util
    );
    println!(
        "simulate: {best:.3} s (best of {}) | {:.0} requests/s | {:.3} us/request | {:.0} batches/s | {batches} batches",
        args.repeat,
        n / best,
        best / n * 1e6,
        batches as f64 / best
    );
    Ok(())
}
