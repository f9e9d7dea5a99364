//! `llmsim bench --suite`: the speed targets of the project in one side-by-side run, each
//! beside the bare loop of [`super::bare`] where it is the same model, and optionally beside
//! a saved earlier run (`--baseline FILE`, written by `--save FILE`).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::bare;
use llmsim::config::{Config, CostSpec, WorkloadSpec};
use llmsim::scheduler::{SchedulerKind, SchedulerSpec};
use llmsim::sim::RunConfig;
use llmsim_study::experiments::{self, Experiment, Scale, Study};
use llmsim_study::files::Disk;
use llmsim_study::output::write_atomic;

/// The seed workload's size for the engine figures (requests).
const REQUESTS: usize = 1_000_000;

/// One measured figure of the suite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    /// What was timed.
    pub name: String,
    /// Wall-clock time (seconds; the best of the repetitions), or the figure's own unit
    /// for `unit` other than "s".
    pub value: f64,
    /// The value's unit: "s" (seconds) or "MiB".
    pub unit: String,
    /// The project's target for it, in the same unit, where it has one.
    pub target: Option<f64>,
    /// The value over the bare loop's time, for the figures that simulate its model.
    pub over_bare: Option<f64>,
}

/// A suite's figures and the machine they were measured on.
#[derive(Debug, Serialize, Deserialize)]
pub struct Suite {
    /// CPU model and core count, from /proc/cpuinfo where there is one.
    pub machine: String,
    /// The figures, in the order measured.
    pub figures: Vec<Figure>,
}

/// The fastest of `repeat` runs of `f` (seconds).
fn best_of(repeat: u32, mut f: impl FnMut()) -> f64 {
    (0..repeat)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The seed workload at lambda `rate` under `scheduler`, `requests` requests.
fn seed_run(scheduler: SchedulerKind, rate: f64, requests: usize) -> Result<RunConfig> {
    let cfg = Config {
        scheduler,
        rate: Some(rate),
        requests: Some(requests),
        reps: 1,
        ..Config::default()
    };
    Ok(cfg.build(&Disk)?.run)
}

/// One calibrated H200 replaying `workload` under `scheduler`.
fn h200(workload: WorkloadSpec, scheduler: SchedulerKind, prefix_cache: bool) -> Result<RunConfig> {
    let cfg = Config {
        workload,
        scheduler,
        cost: CostSpec::Preset {
            name: "h200-llama3.1-8b".into(),
        },
        gpu: Some("h200".into()),
        prefix_cache,
        reps: 1,
        ..Config::default()
    };
    Ok(cfg.build(&Disk)?.run)
}

/// `llmsim run`'s arguments for the seed workload under Scheduler B at lambda 2.
fn run_b(requests: &str) -> [&str; 10] {
    [
        "run",
        "--scheduler",
        "b",
        "--rate",
        "2",
        "--requests",
        requests,
        "--reps",
        "1",
        "--json",
    ]
}

/// Runs this executable with `args`, output discarded; its wall time (seconds).
fn time_process(args: &[&str]) -> Result<f64> {
    let exe = std::env::current_exe().context("cannot find the llmsim executable")?;
    let t = Instant::now();
    let status = Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "llmsim {} failed: {status}",
        args.join(" ")
    );
    Ok(t.elapsed().as_secs_f64())
}

/// The largest resident set of any child process waited for so far (MiB).
fn children_peak_rss_mib() -> f64 {
    // SAFETY: getrusage writes one plain struct that we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    // ru_maxrss is in KiB on Linux.
    usage.ru_maxrss as f64 / 1024.0
}

/// "model name x cores" from /proc/cpuinfo, or the core count alone.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{model}, {cores} cores")
}

/// What the suite measures and where it finds the shared traces.
pub struct SuiteArgs<'a> {
    /// Repetitions of each fast figure (the fastest counts).
    pub repeat: u32,
    /// Folder holding traces/ (the Azure and Mooncake traces).
    pub shared: &'a Path,
    /// Leave out the `reproduce` figures (about a minute and a half).
    pub skip_reproduce: bool,
}

/// Measures every figure; prints each as it comes on stderr.
pub fn measure(args: &SuiteArgs) -> Result<Suite> {
    let mut figures = Vec::new();
    let mut add = |name: &str, value: f64, unit: &str, target: Option<f64>, bare: Option<f64>| {
        eprintln!("  {name}: {value:.3} {unit}");
        figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.into(),
            target,
            over_bare: bare.map(|b| value / b),
        });
    };
    // Memory first, before any other child process sets the peak that getrusage reports:
    // the same run at a quarter and at the full length; flat means equal peaks.
    let (full, quarter) = (run_b("1000000"), run_b("250000"));
    time_process(&quarter)?;
    let short_rss = children_peak_rss_mib();
    add(
        "peak memory of llmsim run, 250k requests",
        short_rss,
        "MiB",
        None,
        None,
    );
    time_process(&full)?;
    add(
        "peak memory of llmsim run, 1M requests",
        children_peak_rss_mib(),
        "MiB",
        Some(short_rss * 1.1),
        None,
    );
    let b = seed_run(SchedulerKind::B, 2.0, REQUESTS)?;
    let SchedulerSpec::B { k, .. } = b.engine.scheduler else {
        unreachable!("built as Scheduler B")
    };
    let k = k as usize;
    let bare_s = best_of(args.repeat, || {
        let out = bare::scheduler_b(
            b.workload.iter(b.seed, 0),
            b.engine.cost.as_ref(),
            k,
            (b.seed, 0),
        );
        std::hint::black_box(out);
    });
    add(
        "bare loop: Scheduler B, lambda 2, 1M requests",
        bare_s,
        "s",
        None,
        Some(bare_s),
    );
    let engine_s = best_of(args.repeat, || {
        std::hint::black_box(b.run_one(0));
    });
    add(
        "engine: the same run, summarised",
        engine_s,
        "s",
        None,
        Some(bare_s),
    );
    let process_s = (0..args.repeat)
        .map(|_| time_process(&full))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    add(
        "llmsim run --scheduler b --rate 2 --requests 1000000 --json (process)",
        process_s,
        "s",
        Some(1.5 * bare_s),
        Some(bare_s),
    );
    let a = seed_run(SchedulerKind::A, 1.0, REQUESTS)?;
    let a_s = best_of(args.repeat, || {
        std::hint::black_box(a.run_one(0));
    });
    add(
        "engine: Scheduler A, lambda 1, 1M requests",
        a_s,
        "s",
        None,
        Some(bare_s),
    );
    let conv = args.shared.join("traces/AzureLLMInferenceTrace_conv.csv");
    if conv.is_file() {
        for policy in [
            SchedulerKind::Vllm,
            SchedulerKind::Sarathi,
            SchedulerKind::Orca,
        ] {
            let run = h200(WorkloadSpec::Azure(conv.clone()), policy, false)?;
            let s = best_of(args.repeat, || {
                std::hint::black_box(run.run_one(0));
            });
            add(
                &format!("Azure conversation trace, one H200, {policy}"),
                s,
                "s",
                Some(0.05),
                None,
            );
        }
    } else {
        eprintln!(
            "  skipped the Azure trace figures: {} not found (--shared DIR)",
            conv.display()
        );
    }
    let mooncake = args.shared.join("traces/mooncake_conversation_trace.jsonl");
    if mooncake.is_file() {
        let run = h200(WorkloadSpec::Mooncake(mooncake), SchedulerKind::Vllm, true)?;
        let s = best_of(args.repeat, || {
            std::hint::black_box(run.run_one(0));
        });
        add(
            "Mooncake conversation trace, one H200, vllm, prefix cache on",
            s,
            "s",
            Some(0.5),
            None,
        );
    } else {
        eprintln!(
            "  skipped the Mooncake figure: {} not found (--shared DIR)",
            mooncake.display()
        );
    }
    if !args.skip_reproduce {
        reproduce_figures(args.shared, &mut add)?;
    }
    Ok(Suite {
        machine: machine(),
        figures,
    })
}

/// Experiments `reproduce` had when its speed targets were set (issue 14): the seed's ten
/// and the first six of ours, 15 s with the report; each study added since may take 3 s
/// more.
const TARGETED_EXPERIMENTS: usize = 16;
/// The time each study added after [`TARGETED_EXPERIMENTS`] may add (seconds).
const LATER_STUDY_S: f64 = 3.0;

/// The `reproduce` figures: the seed's ten, the targeted sixteen with the report, each later
/// study alone, and the whole process against the sum of their budgets.
fn reproduce_figures(
    shared: &Path,
    add: &mut impl FnMut(&str, f64, &str, Option<f64>, Option<f64>),
) -> Result<()> {
    let study = Study {
        seed: 42,
        scale: Scale::FULL,
    };
    let simulate = |which: &[Experiment]| -> Result<f64> {
        let t = Instant::now();
        experiments::run_with_shared(which, study, shared.to_path_buf(), &|_| {})?;
        Ok(t.elapsed().as_secs_f64())
    };
    let (targeted, later) = Experiment::ALL.split_at(TARGETED_EXPERIMENTS);
    add(
        "reproduce: the seed's ten experiments (simulation)",
        simulate(&targeted[..10])?,
        "s",
        Some(6.0),
        None,
    );
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let shared = shared.to_string_lossy();
    let whole = time_process(&[
        "reproduce",
        "--out",
        &path("data"),
        "--report",
        &path("report"),
        "--shared",
        &shared,
    ])?;
    // The report of every experiment: an upper bound on that of the targeted ones.
    let report = time_process(&[
        "report",
        "--data",
        &path("data"),
        "--out",
        &path("report-again"),
    ])?;
    add(
        &format!(
            "reproduce: the first {TARGETED_EXPERIMENTS} experiments (simulation) and the report"
        ),
        simulate(targeted)? + report,
        "s",
        Some(15.0),
        None,
    );
    for e in later {
        add(
            &format!("reproduce: {e} alone (simulation)"),
            simulate(&[*e])?,
            "s",
            Some(LATER_STUDY_S),
            None,
        );
    }
    add(
        "llmsim reproduce, every experiment and the report (process)",
        whole,
        "s",
        Some(15.0 + LATER_STUDY_S * later.len() as f64),
        None,
    );
    Ok(())
}

/// Prints the suite as a Markdown table, beside `baseline`'s figures of the same name.
pub fn print(suite: &Suite, baseline: Option<&Suite>) {
    println!("Measured on {}.\n", suite.machine);
    let mut head = "| figure | value | target | / bare loop |".to_string();
    let mut rule = "|---|---:|---:|---:|".to_string();
    if let Some(b) = baseline {
        head += &format!(" baseline ({}) | change |", b.machine);
        rule += "---:|---:|";
    }
    println!("{head}\n{rule}");
    for f in &suite.figures {
        let unit = |v: f64| format!("{v:.3} {}", f.unit);
        let mut row = format!(
            "| {} | {} | {} | {} |",
            f.name,
            unit(f.value),
            f.target.map_or("-".into(), |t| format!("<= {}", unit(t))),
            f.over_bare.map_or("-".into(), |r| format!("{r:.2}x")),
        );
        if let Some(b) = baseline {
            match b.figures.iter().find(|g| g.name == f.name) {
                Some(g) => row += &format!(" {} | {:.2}x |", unit(g.value), f.value / g.value),
                None => row += " - | - |",
            }
        }
        println!("{row}");
    }
}

/// Reads a suite saved by `--save`.
pub fn read(path: &PathBuf) -> Result<Suite> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a suite saved by llmsim bench --suite --save",
            path.display()
        )
    })
}

/// Saves `suite` as JSON, atomically.
pub fn save(suite: &Suite, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(suite)?;
    write_atomic(path, text.as_bytes())?;
    Ok(())
}
