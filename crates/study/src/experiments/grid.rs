//! Shared machinery of the experiments: the seed's default configuration, running a grid
//! of configurations in parallel, and the columns a table of grid points can show.

use rayon::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

use super::table::{Cell, Table};
use super::{Scale, Study};
use llmsim::cost::{CostDist, LinearCost};
use llmsim::dist::LengthDist;
use llmsim::engine::{EngineConfig, SimOutput};
use llmsim::kv::KvConfig;
use llmsim::metrics::Summary;
use llmsim::router::RouterSpec;
use llmsim::scheduler::SchedulerSpec;
use llmsim::sim::{self, RunConfig};
use llmsim::stats::MeanCi;
use llmsim::workload::{ArrivalKind, Request, SyntheticWorkload, Workload};

/// One configuration of the seed's model: Poisson arrivals, fixed lengths, the linear cost
/// model with exponential `C` and `A` per batch, `b0 = 0`.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Row label where a table names its configurations (else empty).
    pub label: &'static str,
    /// Arrival rate lambda over the whole cluster (requests/s).
    pub rate: f64,
    /// The policy every GPU runs.
    pub scheduler: SchedulerSpec,
    /// Mean setup cost per batch (seconds).
    pub c: f64,
    /// Mean cost per token (seconds per token).
    pub a: f64,
    /// Prompt length L (tokens).
    pub prompt: u32,
    /// Decode budget B (tokens).
    pub decode: u32,
    /// Number of GPUs.
    pub gpus: usize,
    /// Router in front of the GPUs.
    pub router: RouterSpec,
}

impl Setup {
    /// The seed's defaults at arrival rate `rate`: Scheduler B with K = 4 and no decode cap,
    /// L = 128, B = 64, c = 0.01 s, a = 0.001 s/token, one GPU.
    pub fn seed_defaults(rate: f64) -> Self {
        Setup {
            label: "",
            rate,
            scheduler: SchedulerSpec::B {
                k: 4,
                max_decode_batch: None,
            },
            c: 0.01,
            a: 0.001,
            prompt: 128,
            decode: 64,
            gpus: 1,
            router: RouterSpec::RoundRobin,
        }
    }

    /// Scheduler B's K, or `None` for other policies.
    pub fn k(&self) -> Option<u32> {
        match self.scheduler {
            SchedulerSpec::B { k, .. } => Some(k),
            _ => None,
        }
    }

    /// The cost model (seconds).
    pub fn cost(&self) -> LinearCost {
        LinearCost::new(self.c, self.a, 0.0, CostDist::Exponential)
    }

    /// `requests` arrivals at this setup's rate and lengths.
    fn workload(&self, requests: usize) -> SyntheticWorkload {
        SyntheticWorkload {
            rate: self.rate,
            arrivals: ArrivalKind::Poisson,
            prompt: LengthDist::Fixed(self.prompt),
            decode: LengthDist::Fixed(self.decode),
            requests,
            lengths_from: None,
        }
    }

    fn engine(&self) -> EngineConfig {
        EngineConfig {
            scheduler: self.scheduler.clone(),
            cost: Arc::new(self.cost()),
            gpus: self.gpus,
            router: self.router,
            kv: KvConfig::unlimited(),
            prefix_cache: false,
            cpu_kv: None,
        }
    }

    /// The run configuration at `study`'s seed and scale.
    pub fn config(&self, study: &Study) -> RunConfig {
        RunConfig {
            workload: Workload::Synthetic(self.workload(study.scale.requests)),
            engine: self.engine(),
            seed: study.seed,
            reps: study.scale.reps,
            warmup: study.scale.warmup(),
        }
    }

    /// The closed-form capacity of the cluster (requests/s).
    pub fn capacity(&self) -> f64 {
        sim::capacity(&self.workload(0), &self.engine())
            .expect("the seed's model has a closed-form capacity")
    }

    /// Every parameter, for the meta file.
    pub fn describe(&self) -> Value {
        json!({
            "label": self.label,
            "rate_rps": self.rate,
            "scheduler": self.scheduler.name(),
            "k": self.k(),
            "max_decode_batch": null,
            "c_s": self.c,
            "a_s_per_token": self.a,
            "b0_tokens": 0,
            "cost_dist": CostDist::Exponential.to_string(),
            "prompt_tokens": self.prompt,
            "decode_tokens": self.decode,
            "arrivals": ArrivalKind::Poisson.to_string(),
            "gpus": self.gpus,
            "router": self.router.to_string(),
            "closed_form_capacity_rps": self.capacity(),
        })
    }
}

/// One replication's requests and simulation output.
pub struct RepRun {
    /// The replication's index.
    pub rep: u32,
    /// Its requests, in arrival order.
    pub requests: Vec<Request>,
    /// Its per-request records.
    pub out: SimOutput,
    /// Its summary (with the closed-form stability verdict folded in).
    pub summary: Summary,
}

/// What every experiment runs with: the study and a progress callback.
pub struct Ctx<'a> {
    /// Seed and scale.
    pub study: Study,
    /// The shared folder holding the inputs that do not ship with the project (traces, GPU
    /// profile); see [`super::traces`].
    pub shared: std::path::PathBuf,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<'a> Ctx<'a> {
    /// A context calling `progress(n)` as every `n` replications finish.
    pub fn new(study: Study, progress: &'a (dyn Fn(u64) + Sync)) -> Self {
        Ctx {
            study,
            shared: super::default_shared(),
            progress,
        }
    }

    /// The same context reading shared inputs from `shared`.
    pub fn with_shared(self, shared: std::path::PathBuf) -> Self {
        Ctx { shared, ..self }
    }

    /// Reports `n` replications done.
    pub fn tick(&self, n: u64) {
        (self.progress)(n);
    }

    /// Runs every replication of every configuration in one parallel pool; `f(config, rep)`
    /// gives one replication's result. Results come back per configuration in replication
    /// order, whatever the thread count.
    pub fn run_reps<T: Send>(
        &self,
        configs: &[RunConfig],
        f: impl Fn(&RunConfig, u32) -> T + Sync,
    ) -> Vec<Vec<T>> {
        let jobs: Vec<(usize, u32)> = configs
            .iter()
            .enumerate()
            .flat_map(|(i, c)| (0..c.reps).map(move |r| (i, r)))
            .collect();
        let mut flat = jobs
            .par_iter()
            .map(|&(i, rep)| {
                let out = f(&configs[i], rep);
                (self.progress)(1);
                out
            })
            .collect::<Vec<T>>()
            .into_iter();
        configs
            .iter()
            .map(|c| flat.by_ref().take(c.reps as usize).collect())
            .collect()
    }

    /// Runs each setup at the study's scale and summarises every replication.
    pub fn measure(&self, setups: Vec<Setup>) -> Vec<Measured> {
        let configs: Vec<RunConfig> = setups.iter().map(|s| s.config(&self.study)).collect();
        let runs = self.run_reps(&configs, RunConfig::run_one);
        setups
            .into_iter()
            .zip(runs)
            .map(|(setup, runs)| Measured {
                capacity: setup.capacity(),
                setup,
                runs,
            })
            .collect()
    }

    /// Runs `setup` at the study's scale, keeping every replication's per-request records.
    pub fn records(&self, setup: &Setup) -> Vec<RepRun> {
        let config = setup.config(&self.study);
        self.run_reps(std::slice::from_ref(&config), |cfg, rep| {
            let (requests, out) = cfg.simulate_records(rep);
            let summary = cfg.summarize(&out);
            RepRun {
                rep,
                requests,
                out,
                summary,
            }
        })
        .remove(0)
    }

    /// The study's seed and scale, for the meta files.
    pub fn describe(&self) -> Value {
        let s = &self.study.scale;
        json!({
            "seed": self.study.seed,
            "reps": s.reps,
            "requests_per_rep": s.requests,
            "warmup_requests": s.warmup(),
        })
    }
}

/// `n` evenly spaced values from `lo` to `hi` inclusive (numpy's `linspace`).
pub fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / (n - 1).max(1) as f64)
        .collect()
}

/// A per-replication statistic of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Completions per second in the measurement window (requests/s).
    Throughput,
    /// Mean TTFT (seconds).
    TtftMean,
    /// 95th percentile of TTFT (seconds).
    TtftP95,
    /// Mean TBT (seconds).
    TbtMean,
    /// 95th percentile of TBT (seconds).
    TbtP95,
    /// GPU busy fraction, averaged over GPUs.
    Utilization,
    /// Max over mean of per-GPU busy time.
    LoadImbalance,
}

impl Metric {
    /// The statistic's value in one replication.
    pub fn of(self, s: &Summary) -> f64 {
        match self {
            Metric::Throughput => s.throughput_rps,
            Metric::TtftMean => s.ttft.mean,
            Metric::TtftP95 => s.ttft.p95,
            Metric::TbtMean => s.tbt.mean,
            Metric::TbtP95 => s.tbt.p95,
            Metric::Utilization => s.utilization,
            Metric::LoadImbalance => s.load_imbalance,
        }
    }
}

/// One setup's replications.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The configuration.
    pub setup: Setup,
    /// Its closed-form capacity (requests/s).
    pub capacity: f64,
    /// One summary per replication, in replication order.
    pub runs: Vec<Summary>,
}

impl Measured {
    /// Mean and 95% half-width of `metric` over the replications.
    pub fn stat(&self, metric: Metric) -> MeanCi {
        MeanCi::of(&self.runs.iter().map(|s| metric.of(s)).collect::<Vec<_>>())
    }

    /// True when any replication's queue grew or the rate is at or above capacity: the
    /// latencies are then not steady-state values (they grow with the run's length).
    pub fn unstable(&self) -> bool {
        self.runs.iter().any(|s| s.unstable)
    }
}

/// What a column of a grid-point table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// Replication mean of a metric.
    Mean(Metric),
    /// 95% Student-t half-width of that mean.
    Ci(Metric),
    /// The setup's label.
    Label,
    /// Arrival rate (requests/s).
    Rate,
    /// Scheduler B's K (empty for Scheduler A).
    K,
    /// Number of GPUs.
    Gpus,
    /// Scheduler name (`a` or `b`).
    Scheduler,
    /// Router name.
    Router,
    /// Setup cost c (seconds).
    C,
    /// Per-token cost a (seconds per token).
    A,
    /// Prompt length L (tokens).
    Prompt,
    /// Decode budget B (tokens).
    Decode,
    /// Closed-form capacity (requests/s).
    Capacity,
    /// Rate over capacity.
    Load,
    /// See [`Measured::unstable`].
    Unstable,
}

impl Col {
    fn cell(self, m: &Measured) -> Cell {
        let s = &m.setup;
        match self {
            Col::Mean(x) => Cell::num_or_empty(m.stat(x).mean),
            Col::Ci(x) => Cell::num_or_empty(m.stat(x).ci95),
            Col::Label => s.label.into(),
            Col::Rate => s.rate.into(),
            Col::K => s.k().map_or(Cell::Empty, Cell::from),
            Col::Gpus => s.gpus.into(),
            Col::Scheduler => s.scheduler.name().into(),
            Col::Router => s.router.to_string().into(),
            Col::C => s.c.into(),
            Col::A => s.a.into(),
            Col::Prompt => s.prompt.into(),
            Col::Decode => s.decode.into(),
            Col::Capacity => m.capacity.into(),
            Col::Load => (s.rate / m.capacity).into(),
            Col::Unstable => m.unstable().into(),
        }
    }
}

/// Throughput, mean TTFT and p95 TTFT as `<stat>_mean` / `<stat>_ci` pairs: the seed's
/// naming in its batching and multi-GPU files.
pub const THROUGHPUT_AND_TTFT: [(&str, Col); 6] = [
    ("throughput_mean", Col::Mean(Metric::Throughput)),
    ("throughput_ci", Col::Ci(Metric::Throughput)),
    ("mean_TTFT_mean", Col::Mean(Metric::TtftMean)),
    ("mean_TTFT_ci", Col::Ci(Metric::TtftMean)),
    ("p95_TTFT_mean", Col::Mean(Metric::TtftP95)),
    ("p95_TTFT_ci", Col::Ci(Metric::TtftP95)),
];

/// The columns every grid-point table ends with.
const STABILITY: [(&str, Col); 3] = [
    ("capacity", Col::Capacity),
    ("load", Col::Load),
    ("unstable", Col::Unstable),
];

/// A table with one row per measured setup: the `seed` columns, then `extra`, then
/// capacity, load and the stability verdict.
pub fn point_table(
    name: &'static str,
    ctx: &Ctx,
    points: &[Measured],
    columns: &[&[(&'static str, Col)]],
    headline: String,
) -> Table {
    let cols: Vec<(&'static str, Col)> = columns
        .iter()
        .flat_map(|c| c.iter())
        .chain(STABILITY.iter())
        .copied()
        .collect();
    Table {
        name,
        header: cols.iter().map(|(n, _)| *n).collect(),
        rows: points
            .iter()
            .map(|m| cols.iter().map(|(_, c)| c.cell(m)).collect())
            .collect(),
        meta: json!({
            "study": ctx.describe(),
            "points": points.iter().map(|m| m.setup.describe()).collect::<Vec<_>>(),
        }),
        headline,
    }
}

/// Replications a list of `points` setups runs at `scale`.
pub fn runs_for(points: usize, scale: &Scale) -> u64 {
    points as u64 * u64::from(scale.reps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy() {
        // numpy.linspace(0.5, 3, 6) = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
        let xs = linspace(0.5, 3.0, 6);
        assert_eq!(xs.len(), 6);
        for (x, want) in xs.iter().zip([0.5, 1.0, 1.5, 2.0, 2.5, 3.0]) {
            assert!((x - want).abs() < 1e-12);
        }
    }

    /// The seed's formula K / (c + a K (L + B)) for the default setup.
    #[test]
    fn seed_setup_capacity_is_the_fluid_bound() {
        let s = Setup::seed_defaults(1.0);
        assert!((s.capacity() - 4.0 / (0.01 + 0.004 * 192.0)).abs() < 1e-9);
    }
}
