//! `llmsim bench`: simulation speed on one core, reported as requests and batches simulated
//! per wall-clock second.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

mod bare;
mod suite;

use super::run::{SimArgs, build};
use super::{UsageError, require};
use llmsim::config::{Config, WorkloadSpec};
use llmsim::engine::simulate;
use llmsim::metrics::summarize;
use llmsim::scheduler::SchedulerKind;

/// Speed target: Scheduler B at this rate (requests/s) ...
const BENCH_RATE: f64 = 2.0;
/// ... over this many requests, in at most 2 s on one core.
const BENCH_REQUESTS: usize = 1_000_000;

/// Flags of `llmsim bench`. A synthetic workload defaults to the speed target: Scheduler B
/// at lambda = 2 (about 85% busy), 1,000,000 requests.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    sim: SimArgs,
    /// Timed repetitions, at least 1; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Measure the project's speed targets instead of one configuration: the bare loop of
    /// the seed model (the floor), the engine and a whole `llmsim run` process beside it,
    /// Scheduler A, memory against run length, the shared traces on one calibrated H200,
    /// and `reproduce`; printed as a table (the run's flags are ignored).
    #[arg(long)]
    suite: bool,
    /// With --suite: also show this earlier suite's figures (saved by --save) and each
    /// figure's ratio to it.
    #[arg(long, value_name = "FILE", requires = "suite")]
    baseline: Option<PathBuf>,
    /// With --suite: save the figures as JSON, for a later --baseline.
    #[arg(long, value_name = "FILE", requires = "suite")]
    save: Option<PathBuf>,
    /// With --suite: leave out the `reproduce` figures (about a minute and a half on 2 cores).
    #[arg(long, requires = "suite")]
    skip_reproduce: bool,
    /// With --suite: the folder holding traces/ (the Azure and Mooncake traces); figures
    /// whose trace is missing are skipped [default: $LLMSIM_SHARED, else ../shared].
    #[arg(long, value_name = "DIR", requires = "suite")]
    shared: Option<PathBuf>,
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
    if args.suite {
        return suite_main(&args);
    }
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

/// `llmsim bench --suite`.
fn suite_main(args: &BenchArgs) -> Result<()> {
    // A baseline that cannot be read is found before a minute of measuring, not after it.
    let baseline = args
        .baseline
        .as_ref()
        .map(suite::read)
        .transpose()
        .map_err(|e| UsageError::new("--baseline", format!("{e:#}")))?;
    let shared = args
        .shared
        .clone()
        .unwrap_or_else(llmsim_study::experiments::default_shared);
    eprintln!("llmsim bench --suite: best of {} runs each", args.repeat);
    let measured = suite::measure(&suite::SuiteArgs {
        repeat: args.repeat,
        shared: &shared,
        skip_reproduce: args.skip_reproduce,
    })?;
    suite::print(&measured, baseline.as_ref());
    if let Some(path) = &args.save {
        suite::save(&measured, path)?;
    }
    Ok(())
}
