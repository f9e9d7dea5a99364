//! `llmsim plan`: the cheapest deployment that serves a workload within its latency
//! objectives (the library's [`llmsim::plan`]). The base config comes from the run flags
//! (over `--config`), the objectives and the search space from the flags below over a
//! `--plan` TOML file; everything is checked through [`Config::build`] before any run.

use anyhow::Result;
use clap::Args;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::UsageError;
use super::run::SimArgs;
use llmsim::plan::{Bound, GpuType, Plan, PlanResult};
use llmsim::router::RouterSpec;
use llmsim::scheduler::SchedulerKind;
use llmsim_study::files::Disk;
use llmsim_study::output;
use llmsim_study::report::planning;

/// Flags of `llmsim plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The workload, model and fixed settings, as `llmsim run` takes them; `--reps` is the
    /// replications of every search [default: 3].
    #[command(flatten)]
    sim: SimArgs,
    /// Read the plan from this TOML file: tables [base] (a run config), [slo] (bounds =
    /// [{metric, percentile, max_s}], attainment, stable), [space] (the lists below) and
    /// target_rate, reps, rel_tol, max_evals, runners_up; flags override it.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// A latency objective METRIC:pQ:SECONDS (METRIC ttft, tbt, itl or e2e; Q 50, 90, 95
    /// or 99), e.g. --slo ttft:p99:1 --slo tbt:p99:0.1; repeat or separate by commas.
    #[arg(long, value_delimiter = ',', value_name = "BOUND")]
    slo: Vec<Bound>,
    /// Goodput attainment: at least this fraction of requests, in (0, 1], meet all their
    /// TTFT, TBT and E2E objectives (DistServe's goodput).
    #[arg(long, value_name = "FRACTION")]
    attainment: Option<f64>,
    /// Judge a rate by the objectives alone, even when the number in system grows over
    /// the run (by default a growing queue fails).
    #[arg(long)]
    allow_growth: bool,
    /// The rate to serve (requests/s) [default: the workload's --rate, or a trace's own].
    #[arg(long, value_name = "RPS")]
    target_rate: Option<f64>,
    /// GPU types NAME=COST@USD_PER_GPU_HOUR, COST in --cost's forms (e.g.
    /// h200=h200-llama3.1-8b@3.5,h100=h100-llama3.1-8b@2.5); NAME is also --gpu when it
    /// is a built-in card [default: --cost at 1 dollar per GPU-hour].
    #[arg(long, value_delimiter = ',', value_name = "TYPE")]
    gpu_types: Vec<GpuType>,
    /// Policies searched (--scheduler's names) [default: --scheduler].
    #[arg(long, value_delimiter = ',', value_name = "POLICY")]
    schedulers: Vec<SchedulerKind>,
    /// Replica counts searched, e.g. 1,2,4 or 1-16 [default: --gpus].
    #[arg(long, value_delimiter = ',', value_name = "N", value_parser = counts)]
    gpu_counts: Vec<Vec<u64>>,
    /// Routers searched (--router's names) [default: --router].
    #[arg(long, value_delimiter = ',', value_name = "ROUTER")]
    routers: Vec<RouterSpec>,
    /// K values searched (Scheduler B, static) [default: --k].
    #[arg(long, value_delimiter = ',', value_name = "K")]
    ks: Vec<u32>,
    /// Decode caps searched (Scheduler B) [default: --max-decode-batch].
    #[arg(long, value_delimiter = ',', value_name = "N")]
    max_decode_batches: Vec<u32>,
    /// Running-request limits searched (continuous batching) [default: --max-seqs].
    #[arg(long, value_delimiter = ',', value_name = "N")]
    max_seqs_values: Vec<u32>,
    /// Token budgets searched (continuous batching) [default: --max-batched-tokens].
    #[arg(long, value_delimiter = ',', value_name = "TOKENS")]
    token_budgets: Vec<u32>,
    /// Preemption modes searched (vllm, decode-first) [default: --preemption].
    #[arg(long, value_delimiter = ',', value_name = "MODE")]
    preemptions: Vec<String>,
    /// Prefill:decode GPU splits searched (disagg), e.g. 1:1,1:2,2:3.
    #[arg(long, value_delimiter = ',', value_name = "P:D", value_parser = split)]
    splits: Vec<(u32, u32)>,
    /// Relative resolution of each capacity, in [1e-4, 0.5] [default: 0.02].
    #[arg(long, value_name = "FRACTION")]
    rel_tol: Option<f64>,
    /// Most runs of one replication's capacity search, 2 to 1000 [default: 40].
    #[arg(long, value_name = "N")]
    max_evals: Option<u32>,
    /// Deployments listed after the cheapest [default: 4].
    #[arg(long, value_name = "N")]
    runners_up: Option<usize>,
    /// Folder for plan_points.csv (every deployment searched), plan_front.csv (the Pareto
    /// front) and plan_skipped.csv (deployments whose settings do not build, with the
    /// reason), written atomically.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Also write a self-contained HTML page (the answer's tables, the Pareto plot and the
    /// front's latency against rate, which runs each front deployment at 5 more rates).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Print the answer as JSON (no table, no progress bar).
    #[arg(long)]
    json: bool,
    /// Run the search on the Ray cluster at this address (e.g. 127.0.0.1:6379 or auto)
    /// through the Python package (`python3 -m llmsim.ray_plan`, with llmsim and ray
    /// installed); the answer is the local one.
    #[arg(long, value_name = "ADDRESS")]
    ray: Option<String>,
}

/// `1,2,4` items and `LO-HI` ranges of replica counts.
fn counts(s: &str) -> Result<Vec<u64>, String> {
    let num = |x: &str| {
        x.parse::<u64>()
            .map_err(|_| format!("'{s}' is not a count N or a range LO-HI"))
    };
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi || hi - lo > 10_000 {
                return Err(format!(
                    "'{s}': a range LO-HI needs LO <= HI, at most 10000 apart"
                ));
            }
            Ok((lo..=hi).collect())
        }
        None => Ok(vec![num(s)?]),
    }
}

/// `P:D` prefill:decode GPU counts.
fn split(s: &str) -> Result<(u32, u32), String> {
    s.split_once(':')
        .and_then(|(p, d)| Some((p.parse().ok()?, d.parse().ok()?)))
        .ok_or_else(|| format!("'{s}' is not P:D (prefill and decode GPUs, e.g. 1:2)"))
}

/// Overwrites `field` with the flag's list where one is given.
fn set_list<T: Clone>(field: &mut Vec<T>, flag: &[T]) {
    if !flag.is_empty() {
        *field = flag.to_vec();
    }
}

impl PlanArgs {
    /// The plan: the `--plan` file (else the defaults) overridden by the flags.
    fn plan(&self) -> Result<(Plan, Vec<String>)> {
        let mut plan = match &self.plan {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| UsageError::new("--plan", format!("{}: {e}", path.display())))?;
                toml::from_str::<Plan>(&text).map_err(|e| {
                    UsageError::new("--plan", format!("{}: {}", path.display(), e.message()))
                })?
            }
            None => Plan::default(),
        };
        if let Some(path) = &self.sim.config {
            plan.base = super::run::read_config(path)?;
        }
        let notes = self.sim.apply(&mut plan.base);
        if let Some(r) = self.sim.reps {
            plan.reps = r;
        }
        set_list(&mut plan.slo.bounds, &self.slo);
        if self.attainment.is_some() {
            plan.slo.attainment = self.attainment;
        }
        if self.allow_growth {
            plan.slo.stable = false;
        }
        if self.target_rate.is_some() {
            plan.target_rate = self.target_rate;
        }
        let s = &mut plan.space;
        set_list(&mut s.gpu_types, &self.gpu_types);
        set_list(&mut s.schedulers, &self.schedulers);
        set_list(&mut s.gpu_counts, &self.gpu_counts.concat());
        set_list(&mut s.routers, &self.routers);
        set_list(&mut s.ks, &self.ks);
        set_list(&mut s.max_decode_batches, &self.max_decode_batches);
        set_list(&mut s.max_seqs_values, &self.max_seqs_values);
        set_list(&mut s.token_budgets, &self.token_budgets);
        set_list(&mut s.preemptions, &self.preemptions);
        set_list(&mut s.splits, &self.splits);
        plan.rel_tol = self.rel_tol.unwrap_or(plan.rel_tol);
        plan.max_evals = self.max_evals.unwrap_or(plan.max_evals);
        plan.runners_up = self.runners_up.unwrap_or(plan.runners_up);
        Ok((plan, notes))
    }
}

/// The terminal table: the cheapest, the runners-up and the front.
fn print_table(result: &PlanResult, elapsed: f64, deployments: usize) {
    let line = |tag: &str, i: usize| {
        let p = &result.points[i];
        println!(
            "{tag:<9} {:<44} {:>9.2} {:>10.3} ± {:<8.3} {:>9.3} {:>9.4} {:>9.3}",
            p.label,
            p.usd_per_hour,
            p.capacity_rps,
            p.capacity_ci95,
            p.ttft_p99,
            p.tbt_p99,
            p.usd_per_m_tokens
        );
    };
    println!(
        "{deployments} deployments searched in {elapsed:.1} s; target {:.4} requests/s",
        result.target_rps
    );
    println!(
        "{:<9} {:<44} {:>9} {:>23} {:>9} {:>9} {:>9}",
        "", "deployment", "$/hour", "capacity req/s (95%)", "p99 TTFT", "p99 TBT", "$/M tok"
    );
    match result.cheapest {
        Some(i) => line("cheapest", i),
        None => println!("no deployment meets the objectives at the target rate"),
    }
    for &i in &result.runners_up {
        line("runner-up", i);
    }
    println!("Pareto front ($/hour against {}):", result.front_latency);
    for &i in &result.front {
        line("front", i);
    }
    if !result.skipped.is_empty() {
        println!(
            "Skipped, their settings do not build: {} of {} deployments",
            result.skipped.len(),
            result.skipped.len() + result.points.len()
        );
        for s in &result.skipped {
            println!("skipped   {:<44} {}: {}", s.label, s.field, s.reason);
        }
    }
}

/// Runs the plan's search on Ray through the Python package: the plan goes to
/// `python3 -m llmsim.ray_plan ADDRESS` on stdin, the answer comes back on stdout.
fn run_on_ray(plan: &Plan, address: &str) -> Result<PlanResult> {
    use std::io::Write;
    let python = std::env::var("LLMSIM_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new(&python)
        .args(["-m", "llmsim.ray_plan", address])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| UsageError::new("--ray", format!("cannot start {python}: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(serde_json::to_string(plan)?.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{python} -m llmsim.ray_plan {address} failed ({})",
            out.status
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub fn main(args: PlanArgs) -> Result<()> {
    let (plan, notes) = args.plan()?;
    let (deployments, skipped) = plan.deployments(&Disk).map_err(UsageError::from)?;
    for dir in args.out.iter() {
        output::check_folder(dir).map_err(|e| UsageError::new("--out", e.to_string()))?;
    }
    if let Some(html) = &args.html {
        let dir = html.parent().filter(|p| !p.as_os_str().is_empty());
        output::check_folder(dir.unwrap_or(Path::new(".")))
            .map_err(|e| UsageError::new("--html", e.to_string()))?;
    }
    for n in notes {
        eprintln!("{n}");
    }
    super::reproduce::stop_cleanly_on_signal();
    let start = Instant::now();
    let result = match &args.ray {
        Some(address) => run_on_ray(&plan, address)?,
        None => {
            let bar = if args.json {
                ProgressBar::hidden()
            } else {
                super::progress::bar(deployments.len() as u64, "deployments")
            };
            let r = plan.run(&deployments, skipped, &|n| bar.inc(n));
            bar.finish_and_clear();
            r
        }
    };
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let all: Vec<usize> = (0..result.points.len()).collect();
        let meta = planning::describe(&plan, &result);
        for (name, which) in [("plan_points", &all), ("plan_front", &result.front)] {
            let path = dir.join(format!("{name}.csv"));
            let table = planning::table("plan", &result, which, meta.clone(), String::new());
            output::write_atomic(&path, &output::to_csv(&table, &path)?)?;
        }
        let path = dir.join("plan_skipped.csv");
        let table = planning::skipped_table("plan", &result, meta);
        output::write_atomic(&path, &output::to_csv(&table, &path)?)?;
    }
    if let Some(path) = &args.html {
        // Each front deployment from a tenth of its capacity to its capacity.
        let curves: Vec<_> = result
            .front
            .iter()
            .map(|&i| {
                let p = &result.points[i];
                let rates: Vec<f64> = [0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
                    .iter()
                    .map(|f| f * p.capacity_rps)
                    .filter(|r| *r > 0.0)
                    .collect();
                (p.label.clone(), plan.latency_curve(&deployments[i], &rates))
            })
            .collect();
        let question = format!(
            "{} deployments of `{}` searched for the objectives {} at {} requests/s ({} replications, seed {}).",
            result.points.len(),
            plan.base.workload,
            plan.slo
                .bounds
                .iter()
                .map(|b| format!("`{b}`"))
                .collect::<Vec<_>>()
                .join(", "),
            result.target_rps,
            plan.reps,
            plan.base.seed
        );
        let page = planning::page(&question, &result, &curves)?;
        output::write_atomic(path, page.as_bytes())?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_table(&result, elapsed, deployments.len());
    }
    Ok(())
}
