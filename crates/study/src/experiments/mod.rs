//! The seed study's ten experiments, redone with independent replications, warm-up removal,
//! confidence intervals and stability verdicts (`llmsim reproduce`).
//!
//! Each experiment returns a [`Table`] (data, parameters, a one-line headline); writing
//! files is [`crate::output`]'s job, so a report generator can take the same tables after
//! the CSVs are written. Every experiment uses the same base seed: replication `r` of any
//! configuration sees the requests of `(seed, r)`, so compared schedulers, rates and router
//! settings serve the same requests (common random numbers).

mod batching;
mod capacity;
mod comparison;
pub mod fidelity;
mod grid;
pub mod hardware;
mod latency_cdf;
mod multigpu;
mod multiturn;
mod per_request;
mod planning;
pub mod policies;
pub mod prefix_caching;
mod sensitivity;
mod table;
mod throughput;
pub mod traces;
mod validation;

pub use grid::{Col, Ctx, Measured, Metric, RepRun, Setup};
pub use multigpu::MULTI_GPU_ROUTER;
pub use per_request::ISOLATION_HORIZON_S;
pub use table::{Cell, Table};

use rayon::prelude::*;

use llmsim::csvio::CsvError;
use std::fmt;
use std::str::FromStr;

/// How much each configuration is simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Independent replications per configuration.
    pub reps: u32,
    /// Requests per replication, warm-up included.
    pub requests: usize,
}

impl Scale {
    /// The real study: 10 replications of 10,000 requests (the seed ran ~1,000 once).
    pub const FULL: Scale = Scale {
        reps: 10,
        requests: 10_000,
    };
    /// A smoke run for tests: small samples, same design.
    pub const QUICK: Scale = Scale {
        reps: 5,
        requests: 2_000,
    };

    /// Requests at the start of each replication that are simulated but not measured: 10%.
    pub fn warmup(&self) -> usize {
        self.requests / 10
    }
}

/// What a reproduction runs: one base seed and one scale for every experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Study {
    /// Base seed of every experiment.
    pub seed: u64,
    /// Replications and requests per configuration.
    pub scale: Scale,
}

/// One of the seed study's experiments; each writes one CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Experiment {
    /// Per-request trace of Scheduler A at lambda = 2 (overloaded).
    SchedulerABaseline,
    /// Scheduler A's throughput over lambda = 0.5 .. 3.
    SchedulerAThroughputSweep,
    /// Per-request trace of Scheduler B in light traffic (lambda = 0.1).
    ValidationLightTraffic,
    /// Scheduler B's capacity over K: closed form, measured, and under overload.
    CapacityVsK,
    /// Scheduler B's throughput over lambda = 0.5 .. 8.
    SchedulerBThroughputSweep,
    /// Scheduler B over K at lambda = 1.5.
    BatchingScale,
    /// Sensitivity to the cost parameters c and a.
    SensitivityCa,
    /// Short versus long requests.
    SensitivityRegime,
    /// Schedulers A and B on the same requests over lambda = 0.5 .. 2.
    SchedulerComparison,
    /// Both schedulers on 1 .. 8 GPUs at lambda = 4.
    MultigpuScaling,
    /// TTFT and TBT quantiles of both schedulers at one load (ours, for CDF figures).
    LatencyCdf,
    /// The closed-form validation checks (ours, for the report).
    Validation,
    /// Each real-engine policy's largest stable rate against the capacity bound (ours).
    PolicyCapacity,
    /// Every real-engine policy's latencies at three loads (ours).
    PolicyComparison,
    /// The Azure traces on 1, 2, ... calibrated H200s: GPUs needed for the SLO (ours; needs
    /// the shared traces).
    TraceCapacity,
    /// The roofline model against the measured H200 profile (ours; needs the shared profile).
    Roofline,
    /// Three models on the catalogue's GPUs and TP degrees: largest stable rate and price
    /// per million output tokens (ours).
    Hardware,
    /// The Mooncake conversation trace with the prefix cache off and on, by router and
    /// cluster size (ours; needs the shared trace).
    PrefixCaching,
    /// Synthetic multi-turn conversations: prefix-cache hit rate against think time and
    /// cache size (ours).
    Multiturn,
    /// The real vLLM runs: llmsim's errors beside the other simulators' published ones
    /// (ours; needs the shared runs).
    Fidelity,
    /// The capacity planner on the seed's workload: the cheapest deployment meeting a p99
    /// TTFT objective, and the Pareto front of price against latency (ours).
    CapacityPlanning,
}

impl Experiment {
    /// The seed's ten, in the seed's order, then ours.
    pub const ALL: [Experiment; 21] = [
        Experiment::SchedulerABaseline,
        Experiment::SchedulerAThroughputSweep,
        Experiment::ValidationLightTraffic,
        Experiment::CapacityVsK,
        Experiment::SchedulerBThroughputSweep,
        Experiment::BatchingScale,
        Experiment::SensitivityCa,
        Experiment::SensitivityRegime,
        Experiment::SchedulerComparison,
        Experiment::MultigpuScaling,
        Experiment::LatencyCdf,
        Experiment::Validation,
        Experiment::PolicyCapacity,
        Experiment::PolicyComparison,
        Experiment::TraceCapacity,
        Experiment::Roofline,
        Experiment::Hardware,
        Experiment::PrefixCaching,
        Experiment::Multiturn,
        Experiment::Fidelity,
        Experiment::CapacityPlanning,
    ];

    /// The name used by `--only` and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::SchedulerABaseline => "scheduler_a_baseline",
            Experiment::SchedulerAThroughputSweep => "scheduler_a_throughput_sweep",
            Experiment::ValidationLightTraffic => "validation_light_traffic",
            Experiment::CapacityVsK => "capacity_vs_k",
            Experiment::SchedulerBThroughputSweep => "scheduler_b_throughput_sweep",
            Experiment::BatchingScale => "batching_scale",
            Experiment::SensitivityCa => "sensitivity_ca",
            Experiment::SensitivityRegime => "sensitivity_regime",
            Experiment::SchedulerComparison => "scheduler_comparison",
            Experiment::MultigpuScaling => "multigpu_scaling",
            Experiment::LatencyCdf => "latency_cdf",
            Experiment::Validation => "validation",
            Experiment::PolicyCapacity => "policy_capacity",
            Experiment::PolicyComparison => "policy_comparison",
            Experiment::TraceCapacity => "trace_capacity",
            Experiment::Roofline => "roofline",
            Experiment::Hardware => "hardware",
            Experiment::PrefixCaching => "prefix_caching",
            Experiment::Multiturn => "multiturn",
            Experiment::Fidelity => "fidelity",
            Experiment::CapacityPlanning => "capacity_planning",
        }
    }

    /// The seed's file name, `data_<name>.csv`.
    pub fn file_name(self) -> String {
        format!("data_{}.csv", self.name())
    }

    /// Simulation replications the experiment runs at `scale` (for progress reporting).
    pub fn planned_runs(self, scale: &Scale) -> u64 {
        match self {
            Experiment::SchedulerABaseline | Experiment::ValidationLightTraffic => {
                u64::from(scale.reps)
            }
            Experiment::SchedulerAThroughputSweep | Experiment::SchedulerBThroughputSweep => {
                throughput::planned_runs(self, scale)
            }
            Experiment::CapacityVsK => capacity::planned_runs(scale),
            Experiment::BatchingScale => batching::planned_runs(scale),
            Experiment::SensitivityCa | Experiment::SensitivityRegime => {
                sensitivity::planned_runs(self, scale)
            }
            Experiment::SchedulerComparison => comparison::planned_runs(scale),
            Experiment::MultigpuScaling => multigpu::planned_runs(scale),
            Experiment::LatencyCdf => latency_cdf::planned_runs(scale),
            // Bisections decide their own runs; the bar does not count them.
            Experiment::Validation
            | Experiment::PolicyCapacity
            | Experiment::PolicyComparison
            | Experiment::Roofline
            | Experiment::Hardware => validation::planned_runs(scale),
            Experiment::TraceCapacity => traces::planned_runs(scale),
            Experiment::PrefixCaching => prefix_caching::planned_runs(scale),
            Experiment::Multiturn => multiturn::planned_runs(scale),
            // Simulates each run once, outside the replication grid.
            Experiment::Fidelity => 0,
            Experiment::CapacityPlanning => planning::planned_runs(),
        }
    }

    /// Runs the experiment; a malformed shared input is an error naming its file, line and
    /// field.
    pub fn run(self, ctx: &Ctx) -> Result<Table, CsvError> {
        let table = match self {
            Experiment::SchedulerABaseline => per_request::scheduler_a_baseline(ctx),
            Experiment::ValidationLightTraffic => per_request::light_traffic(ctx),
            Experiment::SchedulerAThroughputSweep | Experiment::SchedulerBThroughputSweep => {
                throughput::sweep(self, ctx)
            }
            Experiment::CapacityVsK => capacity::run(ctx),
            Experiment::BatchingScale => batching::run(ctx),
            Experiment::SensitivityCa | Experiment::SensitivityRegime => {
                sensitivity::run(self, ctx)
            }
            Experiment::SchedulerComparison => comparison::run(ctx),
            Experiment::MultigpuScaling => multigpu::run(ctx),
            Experiment::LatencyCdf => latency_cdf::run(ctx),
            Experiment::Validation => validation::run(ctx),
            Experiment::PolicyCapacity => policies::capacity_table(ctx),
            Experiment::PolicyComparison => policies::comparison_table(ctx),
            Experiment::Hardware => hardware::run(ctx),
            Experiment::Multiturn => multiturn::run(ctx),
            Experiment::CapacityPlanning => planning::run(ctx),
            // Only these read files (the shared inputs), so only they can fail.
            Experiment::TraceCapacity => traces::capacity(ctx)?,
            Experiment::Roofline => traces::roofline(ctx)?,
            Experiment::PrefixCaching => prefix_caching::run(ctx)?,
            Experiment::Fidelity => fidelity::run(ctx)?,
        };
        Ok(table)
    }

    /// Input files the experiment reads from the shared folder `shared` that are missing;
    /// empty when it can run (always, for all but `trace_capacity`, `roofline`,
    /// `prefix_caching` and `fidelity`).
    pub fn missing_inputs(self, shared: &std::path::Path) -> Vec<std::path::PathBuf> {
        traces::missing_inputs(self, shared)
    }
}

/// An `--only` value that names no experiment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown experiment '{0}' (allowed: {names})", names = Experiment::ALL.map(Experiment::name).join(", "))]
pub struct UnknownExperiment(pub String);

impl FromStr for Experiment {
    type Err = UnknownExperiment;
    /// Accepts the name (`capacity_vs_k`) or the file name (`data_capacity_vs_k.csv`).
    fn from_str(s: &str) -> Result<Self, UnknownExperiment> {
        let name = s.strip_prefix("data_").unwrap_or(s);
        let name = name.strip_suffix(".csv").unwrap_or(name);
        Experiment::ALL
            .into_iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| UnknownExperiment(s.into()))
    }
}

impl fmt::Display for Experiment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `which` in order, calling `progress(n)` as every `n` replications finish (from any
/// thread). The tables do not depend on the number of threads.
/// The shared folder: `$LLMSIM_SHARED`, else `../shared`.
pub fn default_shared() -> std::path::PathBuf {
    std::env::var_os("LLMSIM_SHARED").map_or_else(
        || std::path::PathBuf::from("../shared"),
        std::path::PathBuf::from,
    )
}

pub fn run(
    which: &[Experiment],
    study: Study,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Table>, CsvError> {
    run_with_shared(which, study, default_shared(), progress)
}

/// [`run`] reading the shared inputs (traces, GPU profile) from `shared`.
pub fn run_with_shared(
    which: &[Experiment],
    study: Study,
    shared: std::path::PathBuf,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Table>, CsvError> {
    let ctx = Ctx::new(study, progress).with_shared(shared);
    // Experiments run side by side as well as within: a bisection's sequential steps leave
    // cores idle that another experiment fills. Each experiment's result depends only on
    // the study, so the tables (collected in order) do not depend on the scheduling.
    which.par_iter().map(|e| e.run(&ctx)).collect()
}

/// Replications `which` will run in all, for a progress bar's length.
pub fn planned_runs(which: &[Experiment], scale: &Scale) -> u64 {
    which.iter().map(|e| e.planned_runs(scale)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for e in Experiment::ALL {
            assert_eq!(e.name().parse::<Experiment>(), Ok(e));
            assert_eq!(e.file_name().parse::<Experiment>(), Ok(e));
        }
        let err = "capacity".parse::<Experiment>().unwrap_err().to_string();
        assert!(err.contains("capacity_vs_k"), "{err}");
    }

    /// The progress bar's length is what the experiments really run.
    #[test]
    fn planned_runs_match_the_runs_done() {
        let study = Study {
            seed: 1,
            scale: Scale {
                reps: 3,
                requests: 200,
            },
        };
        // The shared folder beside the project, which is three folders above this crate
        // (tests run in the crate's folder, where `default_shared`'s `../shared` is not it).
        let shared = std::env::var_os("LLMSIM_SHARED").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
            std::path::PathBuf::from,
        );
        for e in Experiment::ALL {
            if !e.missing_inputs(&shared).is_empty() {
                eprintln!("skipping {e}: its shared inputs are missing");
                continue;
            }
            let done = AtomicU64::new(0);
            let table = run_with_shared(&[e], study, shared.clone(), &|n| {
                done.fetch_add(n, Ordering::Relaxed);
            })
            .expect("the shared inputs parse");
            assert_eq!(done.into_inner(), e.planned_runs(&study.scale), "{e}");
            assert!(
                table[0]
                    .rows
                    .iter()
                    .all(|r| r.len() == table[0].header.len()),
                "{e}"
            );
        }
    }
}
