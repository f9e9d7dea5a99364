//! Capacity planning: which deployment (GPU type and count, policy, router, knobs) serves a
//! workload within its latency objectives at the lowest cost.
//!
//! A [`Plan`] is a base [`Config`] (the workload, the model), the objectives ([`Slo`]), a
//! search space ([`Space`]) and a target rate. [`Plan::deployments`] expands the space into
//! configs, each checked by [`Config::build`] like any run's. For every deployment the
//! planner finds its *goodput capacity*, the largest arrival rate at which the objectives
//! hold, by a search on the rate ([`search::capacity`]) run separately in each replication
//! with that replication's random numbers at every rate (common random numbers), so the
//! replications' capacities are independent draws and give a Student-t interval. Each
//! deployment is then measured at the target rate; the cheapest that meets the objectives
//! there, its runners-up and the Pareto front of cost against latency are the answer
//! ([`PlanResult`]).
//!
//! Work is saved four ways: a closed-form capacity (Schedulers A and B, linear cost)
//! bounds the search from above; deployments that differ only in GPU count form a
//! [`Family`] searched in increasing count, each starting close to the line through the
//! previous counts' capacities and galloping by steps of the resolution; a run whose number
//! in system already grows over its first quarter fails there ([`PROBE_FRACTION`], judged
//! inside the run, [`Mode::probe`]); and a search's run stops as soon as a percentile
//! bound or the attainment goal is certain to fail ([`Plan::stop_rule`]). Neither the
//! inline probe nor the early stop changes a verdict: they only skip work. A family is the unit of parallel (and
//! distributed) work, a pure function of the plan and its index, so the result does not
//! depend on where or in which order families run.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::config::{Built, Config, CostSpec};
use crate::engine::{Limit, MissLimit, Mode, StopRule, simulate_to_last_arrival};
use crate::files::Files;
use crate::limits::{RangeError, num, require};
use crate::metrics::{Dist, Summary, growth_detected, request_tbt, request_ttft};
use crate::router::RouterSpec;
use crate::scheduler::SchedulerKind;
use crate::search::{self, Start};
use crate::sim::{RunConfig, map_reps};
use crate::stats::{MeanCi, StreamingDist};
use crate::workload::Workload;

/// The share of a run's requests simulated first, to the last of their arrivals, to reject
/// a rate whose queue already grows without simulating the rest.
pub const PROBE_FRACTION: f64 = 0.25;
/// Fewest requests a probe simulates: fewer cannot show growth beyond noise.
const PROBE_MIN: usize = 400;
/// Lowest rate searched (requests/s): below it a deployment is reported as capacity 0.
const MIN_RATE: f64 = 1e-4;
/// Highest rate searched (requests/s).
const MAX_RATE: f64 = 1e7;

/// A latency the objectives bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Time to first token.
    Ttft,
    /// Per-request mean time between tokens (TPOT).
    Tbt,
    /// Every inter-token gap (bounded by percentile only, not per request).
    Itl,
    /// Arrival to last token.
    E2e,
}

impl Metric {
    /// The metric's distribution in a summary.
    pub fn of(self, s: &Summary) -> &Dist {
        match self {
            Metric::Ttft => &s.ttft,
            Metric::Tbt => &s.tbt,
            Metric::Itl => &s.itl,
            Metric::E2e => &s.e2e,
        }
    }

    /// The metric's name as the objectives spell it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Ttft => "ttft",
            Metric::Tbt => "tbt",
            Metric::Itl => "itl",
            Metric::E2e => "e2e",
        }
    }
}

/// How a file or a Python call may give a [`Bound`] or a [`GpuType`]: as the text its
/// parser reads, or as its fields.
#[derive(Deserialize)]
#[serde(untagged)]
enum TextOr<T> {
    Text(String),
    Fields(T),
}

/// [`Bound`]'s fields, read apart from it (its own reader goes through [`TextOr`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundFields {
    metric: Metric,
    percentile: u32,
    max_s: f64,
}

impl TryFrom<TextOr<BoundFields>> for Bound {
    type Error = String;
    fn try_from(v: TextOr<BoundFields>) -> Result<Bound, String> {
        match v {
            TextOr::Text(s) => s.parse(),
            TextOr::Fields(f) => Ok(Bound {
                metric: f.metric,
                percentile: f.percentile,
                max_s: f.max_s,
            }),
        }
    }
}

/// [`GpuType`]'s fields, read apart from it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuTypeFields {
    name: String,
    cost: String,
    #[serde(default)]
    gpu: Option<String>,
    usd_per_hour: f64,
}

impl TryFrom<TextOr<GpuTypeFields>> for GpuType {
    type Error = String;
    fn try_from(v: TextOr<GpuTypeFields>) -> Result<GpuType, String> {
        match v {
            TextOr::Text(s) => s.parse(),
            TextOr::Fields(f) => Ok(GpuType {
                name: f.name,
                cost: f.cost,
                gpu: f.gpu,
                usd_per_hour: f.usd_per_hour,
            }),
        }
    }
}

/// A percentile the summaries carry.
const PERCENTILES: [u32; 4] = [50, 90, 95, 99];

/// One latency objective: the `percentile`-th percentile of `metric` at most `max_s`. A
/// file or a Python call gives it as its fields or as the text `--slo` takes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TextOr<BoundFields>")]
pub struct Bound {
    /// The latency bounded.
    pub metric: Metric,
    /// 50, 90, 95 or 99.
    pub percentile: u32,
    /// The largest allowed value (seconds, positive).
    pub max_s: f64,
}

impl Bound {
    /// The bounded percentile of one run (seconds; `NaN` when no request got that far).
    pub fn value(&self, s: &Summary) -> f64 {
        let d = self.metric.of(s);
        match self.percentile {
            50 => d.p50,
            90 => d.p90,
            95 => d.p95,
            _ => d.p99,
        }
    }

    /// The bounded quantile, in (0, 1): the same number [`Dist::of`] asks for.
    pub fn quantile(&self) -> f64 {
        f64::from(self.percentile) / 100.0
    }

    fn check(&self) -> Result<(), RangeError> {
        require(
            PERCENTILES.contains(&self.percentile),
            "slo",
            format!(
                "{self}: the percentile must be one of p50, p90, p95, p99 (got p{})",
                self.percentile
            ),
        )?;
        require(
            self.max_s > 0.0 && self.max_s <= 1e6,
            "slo",
            format!("{self}: the bound must be in (0, 1e6] seconds"),
        )
    }
}

impl FromStr for Bound {
    type Err = String;
    /// `METRIC:pQ:SECONDS`, e.g. `ttft:p99:1` or `tbt:p99:0.1`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{s}' is not METRIC:pQ:SECONDS (METRIC ttft, tbt, itl or e2e; Q 50, 90, 95 or 99; e.g. ttft:p99:1)"
            )
        };
        let mut parts = s.split(':');
        let (Some(m), Some(q), Some(x), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let metric = match m {
            "ttft" => Metric::Ttft,
            "tbt" | "tpot" => Metric::Tbt,
            "itl" => Metric::Itl,
            "e2e" => Metric::E2e,
            _ => return Err(bad()),
        };
        let percentile = q
            .strip_prefix('p')
            .and_then(|q| q.parse().ok())
            .ok_or_else(bad)?;
        let max_s = x.parse().map_err(|_| bad())?;
        Ok(Bound {
            metric,
            percentile,
            max_s,
        })
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:p{}:{}",
            self.metric.name(),
            self.percentile,
            num(self.max_s)
        )
    }
}

/// The objectives a deployment must meet at a rate, in every replication judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Slo {
    /// Percentile bounds, all of which must hold.
    pub bounds: Vec<Bound>,
    /// DistServe's goodput: at least this fraction of the measured requests meet all their
    /// per-request bounds (TTFT, TBT, E2E; ITL has none per request), in (0, 1].
    pub attainment: Option<f64>,
    /// The number in system must not grow over the run ([`growth_detected`]): a queue
    /// that grows meets any bound only for as long as the run lasts.
    pub stable: bool,
}

impl Default for Slo {
    /// Stability alone.
    fn default() -> Self {
        Slo {
            bounds: Vec::new(),
            attainment: None,
            stable: true,
        }
    }
}

impl Slo {
    fn check(&self) -> Result<(), RangeError> {
        for b in &self.bounds {
            b.check()?;
        }
        if let Some(a) = self.attainment {
            require(
                a > 0.0 && a <= 1.0,
                "attainment",
                format!("must be in (0, 1] (got {})", num(a)),
            )?;
            require(
                self.bounds.iter().any(|b| b.metric != Metric::Itl),
                "attainment",
                "counts the requests meeting their TTFT, TBT and E2E bounds: give at least one with --slo",
            )?;
        }
        Ok(())
    }

    /// Whether one request meets every per-request bound (seconds).
    fn request_meets(&self, ttft: f64, tbt: Option<f64>, e2e: f64) -> bool {
        self.bounds.iter().all(|b| match b.metric {
            Metric::Ttft => ttft <= b.max_s,
            Metric::Tbt => tbt.is_none_or(|t| t <= b.max_s),
            Metric::E2e => e2e <= b.max_s,
            Metric::Itl => true,
        })
    }
}

/// A GPU type deployments may use: its cost model and its price. A file or a Python call
/// gives it as its fields or as the text `--gpu-types` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TextOr<GpuTypeFields>")]
pub struct GpuType {
    /// The label tables show.
    pub name: String,
    /// The cost model, in `--cost`'s forms (a preset, a preset file, roofline:GPU, linear).
    pub cost: String,
    /// The GPU card (`--gpu`): its memory sizes memory-aware policies' KV cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Price of one GPU for an hour (US dollars, positive).
    pub usd_per_hour: f64,
}

impl FromStr for GpuType {
    type Err = String;
    /// `NAME=COST@USD_PER_HOUR`, e.g. `h200=h200-llama3.1-8b@3.5`; NAME is also the card
    /// when it names a built-in GPU.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("'{s}' is not NAME=COST@USD_PER_HOUR (e.g. h200=h200-llama3.1-8b@3.5)");
        let (name, rest) = s.split_once('=').ok_or_else(bad)?;
        let (cost, price) = rest.rsplit_once('@').ok_or_else(bad)?;
        if name.is_empty() || cost.is_empty() {
            return Err(bad());
        }
        Ok(GpuType {
            name: name.into(),
            cost: cost.into(),
            gpu: crate::gpu::find(name).map(|_| name.into()),
            usd_per_hour: price.parse().map_err(|_| bad())?,
        })
    }
}

/// The deployments searched: every combination of the lists, each knob only with the
/// policies that use it. An empty list keeps the base config's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Space {
    /// GPU types (cost model and price).
    pub gpu_types: Vec<GpuType>,
    /// Scheduling policies.
    pub schedulers: Vec<SchedulerKind>,
    /// Replica counts (all but disagg).
    pub gpu_counts: Vec<u64>,
    /// Routers.
    pub routers: Vec<RouterSpec>,
    /// K (Scheduler B, static).
    pub ks: Vec<u32>,
    /// Most decode entries per batch (Scheduler B).
    pub max_decode_batches: Vec<u32>,
    /// Most running requests (continuous batching).
    pub max_seqs_values: Vec<u32>,
    /// Token budget per iteration (continuous batching).
    pub token_budgets: Vec<u32>,
    /// Preemption modes (vllm, decode-first).
    pub preemptions: Vec<String>,
    /// Prefill:decode GPU splits (disagg).
    pub splits: Vec<(u32, u32)>,
}

/// A capacity-planning question. Field names are `llmsim plan`'s flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Plan {
    /// The workload, model and every setting the space does not vary.
    pub base: Config,
    /// The objectives.
    pub slo: Slo,
    /// The deployments searched.
    pub space: Space,
    /// The rate the deployment must serve (requests/s) [the base config's].
    pub target_rate: Option<f64>,
    /// Independent replications of every search, at least 2 for an interval.
    pub reps: u32,
    /// Relative resolution of each capacity, in [1e-4, 0.5].
    pub rel_tol: f64,
    /// Most runs of one replication's capacity search.
    pub max_evals: u32,
    /// Deployments listed after the cheapest.
    pub runners_up: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            base: Config::default(),
            slo: Slo::default(),
            space: Space::default(),
            target_rate: None,
            reps: 3,
            rel_tol: 0.02,
            max_evals: 40,
            runners_up: 4,
        }
    }
}

/// One deployment of the space, checked.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Its place in the expansion.
    pub index: usize,
    /// Readable name: GPU type, policy, count, router, knobs.
    pub label: String,
    /// The GPU type's name.
    pub gpu_type: String,
    /// GPUs in all (replicas x tp x pp; disagg: both pools).
    pub gpus_total: u64,
    /// Price of the deployment for an hour (US dollars).
    pub usd_per_hour: f64,
    /// The config as given (not resolved).
    pub config: Config,
    /// The checked run.
    pub built: Built,
}

/// A deployment of the space whose config does not build, left out of the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Readable name, as a searched deployment's.
    pub label: String,
    /// The setting at fault, named as its flag.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Deployments that differ only in GPU count, in increasing count: searched in order, each
/// count starting from the capacities of the previous ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family(pub Vec<usize>);

/// What the planner found for one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// Its place in the expansion.
    pub index: usize,
    /// Readable name.
    pub label: String,
    /// GPU type.
    pub gpu_type: String,
    /// Policy.
    pub scheduler: String,
    /// Router.
    pub router: String,
    /// Replicas (disagg: both pools).
    pub replicas: u64,
    /// GPUs in all.
    pub gpus_total: u64,
    /// Price for an hour (US dollars).
    pub usd_per_hour: f64,
    /// Goodput capacity, mean over replications (requests/s).
    pub capacity_rps: f64,
    /// Its 95% half-width (0 with one replication).
    pub capacity_ci95: f64,
    /// Largest relative gap between a replication's passing and failing rates.
    pub resolution: f64,
    /// Each replication's capacity (requests/s).
    pub capacity_reps: Vec<f64>,
    /// Runs made by the searches and at the target.
    pub evals: u32,
    /// The rate the deployment was measured at (requests/s).
    pub target_rps: f64,
    /// Fraction of replications meeting the objectives at the target rate.
    pub pass_fraction: f64,
    /// Meets the objectives at the target rate in most replications.
    pub meets_target: bool,
    /// At the target rate, means over replications (seconds): p99 TTFT.
    #[serde(deserialize_with = "null_as_nan")]
    pub ttft_p99: f64,
    /// p99 TBT (TPOT).
    #[serde(deserialize_with = "null_as_nan")]
    pub tbt_p99: f64,
    /// p99 inter-token gap.
    #[serde(deserialize_with = "null_as_nan")]
    pub itl_p99: f64,
    /// p99 end-to-end latency.
    #[serde(deserialize_with = "null_as_nan")]
    pub e2e_p99: f64,
    /// The front's latency: the first objective's percentile (else p99 E2E; seconds).
    #[serde(deserialize_with = "null_as_nan")]
    pub latency_s: f64,
    /// Output tokens per second at the target rate.
    #[serde(deserialize_with = "null_as_nan")]
    pub tokens_per_s: f64,
    /// Price per million output tokens at the target rate (US dollars).
    #[serde(deserialize_with = "null_as_nan")]
    pub usd_per_m_tokens: f64,
    /// Whether any replication's queue grew at the target rate.
    pub unstable_at_target: bool,
}

/// A guess of the capacity at `n` replicas from the capacities found at fewer, `prev`
/// (replicas, requests/s, by increasing replicas): the line through the last two, which
/// follows the superlinear gain of pooling, else proportional to the count; `None` when
/// nothing positive is known.
fn neighbour_guess(prev: &[(usize, f64)], n: usize) -> Option<f64> {
    let guess = match prev {
        [.., (m0, c0), (m1, c1)] if *c0 > 0.0 && m1 > m0 => {
            c1 + (c1 - c0) * (n - m1) as f64 / (m1 - m0) as f64
        }
        [.., (m, c)] => c * n as f64 / *m as f64,
        [] => return None,
    };
    (guess > 0.0).then_some(guess)
}

/// A number that JSON wrote as `null` because it was `NaN` (no request got that far), read
/// back as `NaN`, so that a result survives the trip through JSON (to and from Ray workers).
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Option::<f64>::deserialize(d).map(|x| x.unwrap_or(f64::NAN))
}

/// One replication's search of one deployment.
struct Searched {
    found: search::RateSearch,
    /// Distinct rates run, the target's included.
    evals: u32,
    at_target: Eval,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanResult {
    /// The rate deployments must serve (requests/s).
    pub target_rps: f64,
    /// Every deployment, in expansion order.
    pub points: Vec<PointResult>,
    /// The cheapest deployment meeting the objectives at the target (an index into
    /// `points`), ties to the larger capacity.
    pub cheapest: Option<usize>,
    /// The next cheapest meeting them.
    pub runners_up: Vec<usize>,
    /// Deployments meeting them that no other beats on both price per hour and latency,
    /// by increasing price.
    pub front: Vec<usize>,
    /// The front's latency, as `METRIC:pQ`.
    pub front_latency: String,
    /// Deployments left out because their settings do not build, in expansion order.
    pub skipped: Vec<Skipped>,
}

/// `run` with its arrivals at `rate` (requests/s): a synthetic law's rate, a replay's time
/// scale, a conversation's session rate, all scaled so that the same random numbers give
/// the same requests at proportionally moved times.
pub fn with_rate(run: &RunConfig, rate: f64) -> RunConfig {
    let mut r = run.clone();
    let scale = rate / run.workload.rate();
    match &mut r.workload {
        Workload::Synthetic(w) => w.rate = rate,
        Workload::Trace(t) => t.time_scale /= scale,
        Workload::MultiTurn(m) => m.session_rate *= scale,
    }
    r
}

/// One run's verdict: whether it met the objectives, and its summary when it ran in full.
#[derive(Debug, Clone)]
pub struct Eval {
    /// Met every objective.
    pub pass: bool,
    /// The full run's summary (`None` when rejected before or by the probe).
    pub summary: Option<Summary>,
}

impl Plan {
    /// The rate deployments must serve: the target, else the base config's.
    pub fn target(&self, deployments: &[Deployment]) -> f64 {
        self.target_rate
            .or_else(|| deployments.first().map(|d| d.built.run.workload.rate()))
            .unwrap_or(f64::NAN)
    }

    fn check(&self) -> Result<(), RangeError> {
        require(
            (1..=1000).contains(&self.reps),
            "reps",
            format!("must be from 1 to 1000 (got {})", self.reps),
        )?;
        require(
            (1e-4..=0.5).contains(&self.rel_tol),
            "rel-tol",
            format!("must be in [1e-4, 0.5] (got {})", num(self.rel_tol)),
        )?;
        require(
            (2..=1000).contains(&self.max_evals),
            "max-evals",
            format!("must be from 2 to 1000 (got {})", self.max_evals),
        )?;
        if let Some(r) = self.target_rate {
            crate::limits::rate(r).map_err(|e| RangeError {
                field: "target-rate",
                ..e
            })?;
        }
        for g in &self.space.gpu_types {
            require(
                g.usd_per_hour > 0.0 && g.usd_per_hour < 1e6,
                "gpu-types",
                format!(
                    "{}: the price per GPU-hour must be in (0, 1e6) US dollars (got {})",
                    g.name,
                    num(g.usd_per_hour)
                ),
            )?;
        }
        // Every value listed is checked, also those no policy of the space uses.
        for (field, xs) in [
            ("ks", &self.space.ks),
            ("max-decode-batches", &self.space.max_decode_batches),
            ("max-seqs-values", &self.space.max_seqs_values),
            ("token-budgets", &self.space.token_budgets),
        ] {
            require(!xs.contains(&0), field, "must be at least 1 (got 0)")?;
        }
        for &n in &self.space.gpu_counts {
            crate::limits::gpus("gpu-counts", n)?;
        }
        for p in &self.space.preemptions {
            require(
                p == "recompute" || p == "swap",
                "preemptions",
                format!("'{p}' is neither recompute nor swap"),
            )?;
        }
        for &(p, d) in &self.space.splits {
            require(
                p >= 1 && d >= 1,
                "splits",
                format!("{p}:{d}: both pools need at least one GPU"),
            )?;
        }
        self.slo.check()
    }

    /// Expands the space into checked deployments, in a fixed order (GPU type, policy,
    /// router, knobs, count), and those skipped because their config does not build (a
    /// knob a policy cannot take, such as a token budget below vllm's longest prompt).
    /// Fails on a setting bad on its own, and when no deployment builds (with the first
    /// one's error, naming its setting).
    pub fn deployments(
        &self,
        files: &dyn Files,
    ) -> Result<(Vec<Deployment>, Vec<Skipped>), RangeError> {
        use SchedulerKind::*;
        self.check()?;
        let s = &self.space;
        let base_type = GpuType {
            name: self.base.cost.to_string(),
            cost: String::new(),
            gpu: self.base.gpu.clone(),
            usd_per_hour: 1.0,
        };
        let types: Vec<&GpuType> = if s.gpu_types.is_empty() {
            vec![&base_type]
        } else {
            s.gpu_types.iter().collect()
        };
        let or_base = |xs: &[u32], base: Option<u32>| -> Vec<Option<u32>> {
            if xs.is_empty() {
                vec![base]
            } else {
                xs.iter().map(|&x| Some(x)).collect()
            }
        };
        let schedulers = if s.schedulers.is_empty() {
            vec![self.base.scheduler]
        } else {
            s.schedulers.clone()
        };
        let routers = if s.routers.is_empty() {
            vec![self.base.router]
        } else {
            s.routers.clone()
        };
        let counts = if s.gpu_counts.is_empty() {
            vec![self.base.gpus]
        } else {
            s.gpu_counts.clone()
        };
        let preemptions = if s.preemptions.is_empty() {
            vec![self.base.preemption.clone()]
        } else {
            s.preemptions.clone()
        };
        let splits: Vec<(Option<u32>, Option<u32>)> = if s.splits.is_empty() {
            vec![(self.base.prefill_gpus, self.base.decode_gpus)]
        } else {
            s.splits.iter().map(|&(p, d)| (Some(p), Some(d))).collect()
        };
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        let mut first_error = None;
        for t in &types {
            for &sched in &schedulers {
                let continuous = [Orca, Vllm, Sarathi, DecodeFirst, Disagg].contains(&sched);
                let used = |yes: bool, xs: &[u32], base: Option<u32>| {
                    if yes { or_base(xs, base) } else { vec![base] }
                };
                let ks = used([B, Static].contains(&sched), &s.ks, self.base.k);
                let mdbs = used(
                    sched == B,
                    &s.max_decode_batches,
                    self.base.max_decode_batch,
                );
                let seqs = used(continuous, &s.max_seqs_values, self.base.max_seqs);
                let mbts = used(continuous, &s.token_budgets, self.base.max_batched_tokens);
                let pres: Vec<String> = if [Vllm, DecodeFirst].contains(&sched) {
                    preemptions.clone()
                } else {
                    vec![self.base.preemption.clone()]
                };
                let sizes: Vec<(u64, Option<u32>, Option<u32>)> = if sched == Disagg {
                    splits
                        .iter()
                        .map(|&(p, d)| (self.base.gpus, p, d))
                        .collect()
                } else {
                    counts
                        .iter()
                        .map(|&n| (n, self.base.prefill_gpus, self.base.decode_gpus))
                        .collect()
                };
                for &router in &routers {
                    for &k in &ks {
                        for &mdb in &mdbs {
                            for &seq in &seqs {
                                for &mbt in &mbts {
                                    for pre in &pres {
                                        for &(n, p, d) in &sizes {
                                            let mut c = self.base.clone();
                                            if !t.cost.is_empty() {
                                                let noise = self.base.cost.split().1;
                                                c.cost = CostSpec::with_noise(
                                                    CostSpec::parse(&t.cost),
                                                    noise,
                                                );
                                                c.gpu = t.gpu.clone();
                                            }
                                            c.scheduler = sched;
                                            c.router = router;
                                            c.gpus = n;
                                            c.k = k;
                                            c.max_decode_batch = mdb;
                                            c.max_seqs = seq;
                                            c.max_batched_tokens = mbt;
                                            c.preemption = pre.clone();
                                            c.prefill_gpus = p;
                                            c.decode_gpus = d;
                                            c.reps = self.reps;
                                            match c.build(files) {
                                                Ok(built) => out.push(self.deployment(
                                                    out.len(),
                                                    t,
                                                    c,
                                                    built,
                                                )),
                                                Err(e) => {
                                                    skipped.push(Skipped {
                                                        label: self.label(t, &c, None),
                                                        field: e.field.into(),
                                                        reason: e.why.clone(),
                                                    });
                                                    first_error.get_or_insert(e);
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        match first_error {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok((out, skipped)),
        }
    }

    fn deployment(&self, index: usize, t: &GpuType, config: Config, built: Built) -> Deployment {
        let r = &built.resolved;
        let replicas = built.run.engine.gpus as u64;
        let gpus_total = replicas * u64::from(r.tp * r.pp);
        Deployment {
            index,
            label: self.label(t, r, Some(replicas)),
            gpu_type: t.name.clone(),
            gpus_total,
            usd_per_hour: gpus_total as f64 * t.usd_per_hour,
            config,
            built,
        }
    }

    /// A deployment's readable name from its config (`r`, resolved when it built): GPU
    /// type, policy, replicas (the built run's, else the config's), router, and the knobs
    /// the space varies.
    fn label(&self, t: &GpuType, r: &Config, replicas: Option<u64>) -> String {
        let replicas = replicas.unwrap_or(match r.prefill_gpus.zip(r.decode_gpus) {
            Some((p, d)) if r.scheduler == SchedulerKind::Disagg => u64::from(p + d),
            _ => r.gpus,
        });
        let mut label = format!("{} {} x{} {}", t.name, r.scheduler, replicas, r.router);
        let mut knob = |name: &str, v: Option<String>, given: bool| {
            if let (Some(v), true) = (v, given) {
                label.push_str(&format!(" {name}={v}"));
            }
        };
        let s = &self.space;
        knob("k", r.k.map(|x| x.to_string()), !s.ks.is_empty());
        knob(
            "mdb",
            r.max_decode_batch.map(|x| x.to_string()),
            !s.max_decode_batches.is_empty(),
        );
        knob(
            "seqs",
            r.max_seqs.map(|x| x.to_string()),
            !s.max_seqs_values.is_empty(),
        );
        knob(
            "tokens",
            r.max_batched_tokens.map(|x| x.to_string()),
            !s.token_budgets.is_empty(),
        );
        let preempts = matches!(
            r.scheduler,
            SchedulerKind::Vllm | SchedulerKind::DecodeFirst
        );
        knob(
            "preempt",
            Some(r.preemption.clone()),
            preempts && !s.preemptions.is_empty(),
        );
        knob(
            "split",
            r.prefill_gpus
                .zip(r.decode_gpus)
                .map(|(p, d)| format!("{p}:{d}")),
            true,
        );
        label
    }

    /// Groups deployments that differ only in GPU count, each group in increasing count,
    /// groups in order of their first member.
    pub fn families(deployments: &[Deployment]) -> Vec<Family> {
        let mut keyed: Vec<(Config, Vec<usize>)> = Vec::new();
        for d in deployments {
            let key = Config {
                gpus: 0,
                ..d.config.clone()
            };
            match keyed.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(d.index),
                None => keyed.push((key, vec![d.index])),
            }
        }
        keyed
            .into_iter()
            .map(|(_, mut members)| {
                members.sort_by_key(|&i| (deployments[i].built.run.engine.gpus, i));
                Family(members)
            })
            .collect()
    }

    /// The limits at which a run of `run` is certain to fail the objectives, whatever its
    /// remaining requests do: more of its `n` measured values past a `pQ` bound than the
    /// `n - ceil(Q n / 100)` the percentile may leave above it, or more requests missing
    /// their bounds than the attainment goal allows. `n` is the requests measured in a
    /// full run, an upper bound on the values of each latency (ITL, whose count preemptions
    /// change, is not limited).
    pub fn stop_rule(&self, run: &RunConfig) -> StopRule {
        let n = run.workload.requests().saturating_sub(run.warmup) as u64;
        let mut rule = StopRule::default();
        for b in &self.slo.bounds {
            let limit = Limit {
                above_s: b.max_s,
                allowed: StreamingDist::values_past_allowed(n, b.quantile()),
            };
            match b.metric {
                Metric::Ttft => rule.ttft.push(limit),
                Metric::Tbt => rule.tbt.push(limit),
                Metric::E2e => rule.e2e.push(limit),
                Metric::Itl => {}
            }
        }
        rule.misses = self.slo.attainment.map(|goal| {
            let tightest = |m: Metric| {
                self.slo
                    .bounds
                    .iter()
                    .filter(|b| b.metric == m)
                    .map(|b| b.max_s)
                    .fold(f64::INFINITY, f64::min)
            };
            // The attainment met / n >= goal computed as `evaluate` does; it falls as
            // misses grow, so the largest number of misses it allows is found by walking
            // from its rounded value.
            let meets = |misses: u64| (n - misses) as f64 / n as f64 >= goal;
            let mut allowed = (((1.0 - goal) * n as f64).floor() as u64).min(n);
            while allowed < n && meets(allowed + 1) {
                allowed += 1;
            }
            while allowed > 0 && !meets(allowed) {
                allowed -= 1;
            }
            MissLimit {
                ttft_s: tightest(Metric::Ttft),
                tbt_s: tightest(Metric::Tbt),
                e2e_s: tightest(Metric::E2e),
                allowed,
            }
        });
        rule
    }

    /// One run of `d` at `rate`, replication `rep`, judged against the objectives. With
    /// `stop_early`, a run stops as soon as a percentile bound or the attainment goal is
    /// certain to fail ([`Plan::stop_rule`]): the verdict is the full run's, the summary
    /// is lost.
    pub fn evaluate(&self, d: &Deployment, rate: f64, rep: u32, stop_early: bool) -> Eval {
        self.judge(d, rate, rep, stop_early, true)
    }

    /// [`Plan::evaluate`], with the growth probe inside the run where `inline_probe` and
    /// it can be ([`Mode::probe`]: an open-loop workload whose warm-up is the probe's),
    /// else as a run of its own before it. Both give the same verdict; the inline one
    /// does not simulate the probe's part twice.
    fn judge(
        &self,
        d: &Deployment,
        rate: f64,
        rep: u32,
        stop_early: bool,
        inline_probe: bool,
    ) -> Eval {
        let fail = Eval {
            pass: false,
            summary: None,
        };
        let run = with_rate(&d.built.run, rate);
        if run.workload.validate().is_err() || (self.slo.stable && run.overloaded()) {
            return fail;
        }
        let mut inline = None;
        if self.slo.stable {
            let n = run.workload.requests();
            let probe = ((n as f64 * PROBE_FRACTION) as usize).max(PROBE_MIN);
            if probe < n {
                let warmup = run.warmup.min(probe / 2);
                let open_loop = !matches!(run.workload, Workload::MultiTurn(_));
                if inline_probe && open_loop && warmup == run.warmup {
                    inline = Some(probe);
                } else {
                    let out = simulate_to_last_arrival(
                        run.workload.iter(run.seed, rep).take(probe),
                        &run.engine,
                        run.seed,
                        rep,
                        warmup,
                    );
                    if growth_detected(&out) {
                        return fail;
                    }
                }
            }
        }
        let rule = stop_early.then(|| self.stop_rule(&run));
        let mode = Mode {
            stop: rule.as_ref(),
            probe: inline,
            ..Mode::default()
        };
        let (out, attained) = match self.slo.attainment {
            None => (run.simulate_streamed(rep, mode), None),
            Some(_) => {
                let (requests, out) = run
                    .simulate_records_with(rep, mode)
                    .expect("a run without a cancellation flag ends");
                let measured = &requests[run.warmup..];
                let met = measured
                    .iter()
                    .zip(&out.records[run.warmup..])
                    .filter(|(q, r)| {
                        self.slo.request_meets(
                            request_ttft(q, r),
                            request_tbt(q, r),
                            r.completion - q.arrival,
                        )
                    })
                    .count();
                (Some(out), Some(met as f64 / measured.len() as f64))
            }
        };
        let out = out.expect("a run without a cancellation flag ends");
        if out.stopped {
            return fail;
        }
        let summary = run.summarize(&out);
        let pass = !(self.slo.stable && summary.unstable)
            && self.slo.bounds.iter().all(|b| b.value(&summary) <= b.max_s)
            && attained
                .zip(self.slo.attainment)
                .is_none_or(|(a, goal)| a >= goal);
        Eval {
            pass,
            summary: Some(summary),
        }
    }

    /// Searches one family: every member's capacity in each replication (from its closed
    /// form or the previous members' capacities), then its runs at the target rate.
    pub fn run_family(&self, deployments: &[Deployment], family: &Family) -> Vec<PointResult> {
        let target = self.target(deployments);
        let per_rep: Vec<Vec<Searched>> = map_reps(self.reps, |rep| {
            // The capacities found so far in this family: (replicas, requests/s).
            let mut prev: Vec<(usize, f64)> = Vec::new();
            family
                .0
                .iter()
                .map(|&i| {
                    let d = &deployments[i];
                    let n = d.built.run.engine.gpus;
                    // Every rate is run once: the target's run, needed for its latencies,
                    // is also the search's first step where it starts there.
                    let mut runs: Vec<(f64, Eval)> =
                        vec![(target, self.evaluate(d, target, rep, false))];
                    let start = match d.built.run.capacity() {
                        Some(cap) => Start::Below(1.25 * cap),
                        None => match neighbour_guess(&prev, n) {
                            // The line through two neighbours is close enough that a
                            // step of the resolution mostly brackets the capacity at once,
                            // in two runs; from one neighbour, whose pooling gain is not
                            // known yet, steps start twice as large.
                            Some(rate) => Start::Guess {
                                rate,
                                factor: 1.0
                                    + if prev.len() >= 2 { 1.0 } else { 2.0 } * self.rel_tol,
                            },
                            None => Start::Guess {
                                rate: target,
                                factor: 2.0,
                            },
                        },
                    };
                    let found = search::capacity(
                        |rate| match runs.iter().find(|r| r.0 == rate) {
                            Some(r) => r.1.pass,
                            None => {
                                let e = self.evaluate(d, rate, rep, true);
                                let pass = e.pass;
                                runs.push((rate, e));
                                pass
                            }
                        },
                        start,
                        (MIN_RATE, MAX_RATE),
                        self.rel_tol,
                        self.max_evals,
                    );
                    prev.push((n, found.rate));
                    Searched {
                        found,
                        evals: runs.len() as u32,
                        at_target: runs.swap_remove(0).1,
                    }
                })
                .collect()
        });
        family
            .0
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let runs: Vec<&Searched> = per_rep.iter().map(|r| &r[j]).collect();
                self.point(&deployments[i], target, &runs)
            })
            .collect()
    }

    fn point(&self, d: &Deployment, target: f64, runs: &[&Searched]) -> PointResult {
        let caps: Vec<f64> = runs.iter().map(|r| r.found.rate).collect();
        let cap = MeanCi::of(&caps);
        let passes = runs.iter().filter(|r| r.at_target.pass).count();
        let at = |f: &dyn Fn(&Summary) -> f64| {
            let xs: Vec<f64> = runs
                .iter()
                .map(|r| r.at_target.summary.as_ref().map_or(f64::NAN, f))
                .collect();
            crate::stats::mean(&xs)
        };
        let front = self.front_bound();
        let tokens_per_s = at(&|s| s.tokens_per_s);
        let r = &d.built.resolved;
        PointResult {
            index: d.index,
            label: d.label.clone(),
            gpu_type: d.gpu_type.clone(),
            scheduler: r.scheduler.to_string(),
            router: r.router.to_string(),
            replicas: d.built.run.engine.gpus as u64,
            gpus_total: d.gpus_total,
            usd_per_hour: d.usd_per_hour,
            capacity_rps: cap.mean,
            capacity_ci95: cap.ci95,
            resolution: runs
                .iter()
                .map(|r| {
                    let s = r.found;
                    if s.rate > 0.0 && s.fail.is_finite() {
                        (s.fail - s.rate) / s.fail
                    } else {
                        0.0
                    }
                })
                .fold(0.0, f64::max),
            capacity_reps: caps,
            evals: runs.iter().map(|r| r.evals).sum(),
            target_rps: target,
            pass_fraction: passes as f64 / runs.len() as f64,
            meets_target: 2 * passes > runs.len(),
            ttft_p99: at(&|s| s.ttft.p99),
            tbt_p99: at(&|s| s.tbt.p99),
            itl_p99: at(&|s| s.itl.p99),
            e2e_p99: at(&|s| s.e2e.p99),
            latency_s: at(&|s| front.value(s)),
            tokens_per_s,
            usd_per_m_tokens: d.usd_per_hour / 3600.0 / tokens_per_s * 1e6,
            unstable_at_target: runs
                .iter()
                .any(|r| r.at_target.summary.as_ref().is_none_or(|s| s.unstable)),
        }
    }

    /// The front's latency (seconds; mean and 95% half-width over replications) of `d` at
    /// each of `rates` (requests/s), for latency-against-rate curves; `NaN` where a run was
    /// rejected before it ran in full (its queue grew).
    pub fn latency_curve(&self, d: &Deployment, rates: &[f64]) -> Vec<(f64, MeanCi)> {
        let bound = self.front_bound();
        rates
            .iter()
            .map(|&rate| {
                let xs: Vec<f64> = map_reps(self.reps, |rep| {
                    self.evaluate(d, rate, rep, false)
                        .summary
                        .map_or(f64::NAN, |s| bound.value(&s))
                });
                (rate, MeanCi::of(&xs))
            })
            .collect()
    }

    /// The latency of the Pareto front: the first objective's, else p99 E2E.
    pub fn front_bound(&self) -> Bound {
        self.slo.bounds.first().copied().unwrap_or(Bound {
            metric: Metric::E2e,
            percentile: 99,
            max_s: f64::INFINITY,
        })
    }

    /// The answer from every family's points (in any order) and the deployments skipped:
    /// points in expansion order, the cheapest meeting the target, runners-up and the
    /// Pareto front.
    pub fn assemble(
        &self,
        target_rps: f64,
        mut points: Vec<PointResult>,
        skipped: Vec<Skipped>,
    ) -> PlanResult {
        points.sort_by_key(|p| p.index);
        let mut ok: Vec<usize> = (0..points.len())
            .filter(|&i| points[i].meets_target)
            .collect();
        ok.sort_by(|&a, &b| {
            let (p, q) = (&points[a], &points[b]);
            p.usd_per_hour
                .total_cmp(&q.usd_per_hour)
                .then(q.capacity_rps.total_cmp(&p.capacity_rps))
                .then(a.cmp(&b))
        });
        let mut front = Vec::new();
        let mut best = f64::INFINITY;
        let mut by_cost = ok.clone();
        by_cost.sort_by(|&a, &b| {
            let (p, q) = (&points[a], &points[b]);
            p.usd_per_hour
                .total_cmp(&q.usd_per_hour)
                .then(p.latency_s.total_cmp(&q.latency_s))
                .then(a.cmp(&b))
        });
        for i in by_cost {
            if points[i].latency_s < best {
                best = points[i].latency_s;
                front.push(i);
            }
        }
        let b = self.front_bound();
        PlanResult {
            target_rps,
            cheapest: ok.first().copied(),
            runners_up: ok.iter().skip(1).take(self.runners_up).copied().collect(),
            front,
            front_latency: format!("{}:p{}", b.metric.name(), b.percentile),
            points,
            skipped,
        }
    }

    /// Searches every family (in parallel with the `parallel` feature), calling `progress`
    /// with the deployments of each family done, and assembles the answer with the
    /// deployments `skipped`.
    pub fn run(
        &self,
        deployments: &[Deployment],
        skipped: Vec<Skipped>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> PlanResult {
        let families = Plan::families(deployments);
        let points = map_reps(families.len() as u32, |f| {
            let fam = &families[f as usize];
            let pts = self.run_family(deployments, fam);
            progress(fam.0.len() as u64);
            pts
        });
        self.assemble(
            self.target(deployments),
            points.into_iter().flatten().collect(),
            skipped,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WorkloadSpec;

    struct NoFiles;
    impl Files for NoFiles {
        fn has_file(&self, _: &std::path::Path) -> bool {
            false
        }
        fn read(&self, _: &std::path::Path) -> std::io::Result<Vec<u8>> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn canonical(&self, _: &std::path::Path) -> Option<std::path::PathBuf> {
            None
        }
    }

    fn small() -> Plan {
        Plan {
            base: Config {
                requests: Some(2_000),
                workload: WorkloadSpec::Synthetic,
                ..Config::default()
            },
            reps: 2,
            ..Plan::default()
        }
    }

    /// A small run of `sched` on `gpus` GPUs with random lengths and noisy batch times, so
    /// that every latency spreads.
    fn varied(sched: SchedulerKind, gpus: u64, requests: usize, seed: u64) -> Plan {
        Plan {
            base: Config {
                scheduler: sched,
                gpus,
                requests: Some(requests),
                prompt: Some("geometric:200:2000".parse().unwrap()),
                decode: Some("geometric:40:400".parse().unwrap()),
                cost: CostSpec::with_noise(CostSpec::default(), Some(0.3)),
                router: RouterSpec::RoundRobin,
                seed,
                ..Config::default()
            },
            reps: 1,
            ..Plan::default()
        }
    }

    #[test]
    fn percentiles_are_those_the_summaries_carry() {
        let q = |percentile| {
            Bound {
                metric: Metric::Ttft,
                percentile,
                max_s: 1.0,
            }
            .quantile()
        };
        assert_eq!([q(50), q(90), q(95), q(99)], [0.50, 0.90, 0.95, 0.99]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// A run stopped by its limits or its inline growth probe fails, as the full run
        /// after a probe of its own does; one not stopped gives the full run's verdict and
        /// summary. Bounds are drawn around the full run's own percentiles (some exactly at
        /// them), and loads on both sides of capacity, so that both verdicts are hit.
        #[test]
        fn an_early_stop_gives_the_full_runs_verdict(
            sched in 0..3_usize,
            gpus in 1..3_u64,
            seed in 0..1000_u64,
            load in 0.3..1.2_f64,
            metrics in proptest::collection::vec((0..3_usize, 0..4_usize, 0..5_usize), 1..3),
            attainment in proptest::option::of(0.5..1.0_f64),
            stable: bool,
        ) {
            let sched = [SchedulerKind::Sarathi, SchedulerKind::Vllm, SchedulerKind::A][sched];
            let mut plan = varied(sched, gpus, 600, seed);
            let d = plan.deployments(&NoFiles).unwrap().0.remove(0);
            // About `load` times one GPU's service rate for these lengths.
            let rate = load * gpus as f64 * 0.6;
            let full = d.built.run.summarize(&with_rate(&d.built.run, rate).simulate_streamed(0, Mode::default()).unwrap());
            for (m, q, scale) in metrics {
                let metric = [Metric::Ttft, Metric::Tbt, Metric::E2e][m];
                let percentile = PERCENTILES[q];
                let mut b = Bound { metric, percentile, max_s: 1.0 };
                let at = b.value(&full);
                b.max_s = at * [0.8, 0.99, 1.0, 1.01, 1.2][scale];
                plan.slo.bounds.push(b);
            }
            plan.slo.attainment = attainment;
            plan.slo.stable = stable;
            let early = plan.judge(&d, rate, 0, true, true);
            let whole = plan.judge(&d, rate, 0, false, false);
            proptest::prop_assert_eq!(early.pass, whole.pass);
            if let Some(s) = &early.summary {
                let json = |s| serde_json::to_string(s).unwrap();
                proptest::prop_assert_eq!(json(s), json(whole.summary.as_ref().unwrap()));
            }
        }
    }

    #[test]
    fn runs_past_their_bounds_stop_early() {
        // The property above holds trivially if nothing ever stops: some runs must.
        let mut plan = varied(SchedulerKind::Sarathi, 1, 2_000, 7);
        let d = plan.deployments(&NoFiles).unwrap().0.remove(0);
        let run = with_rate(&d.built.run, 0.5);
        let full = run.summarize(&run.simulate_streamed(0, Mode::default()).unwrap());
        plan.slo.bounds = vec![Bound {
            metric: Metric::Ttft,
            percentile: 99,
            max_s: 0.5 * full.ttft.p99,
        }];
        let out = run
            .simulate_streamed(
                0,
                Mode {
                    stop: Some(&plan.stop_rule(&run)),
                    ..Mode::default()
                },
            )
            .unwrap();
        assert!(out.stopped && out.ttft.count() < full.completed);
        assert!(!plan.evaluate(&d, 0.5, 0, true).pass);
        // At the bound the full run reports, nothing stops.
        plan.slo.bounds[0].max_s = full.ttft.p99;
        assert!(plan.evaluate(&d, 0.5, 0, true).pass);
        // Far above capacity the inline growth probe stops the run within its first
        // quarter, where the probe run of its own finds growth too.
        plan.slo.bounds.clear();
        let over = with_rate(&d.built.run, 20.0);
        let probe = over.workload.requests() / 4;
        let mode = Mode {
            probe: Some(probe),
            ..Mode::default()
        };
        let out = over.simulate_streamed(0, mode).unwrap();
        assert!(out.stopped && out.growth.arrivals as usize <= probe);
        let alone = simulate_to_last_arrival(
            over.workload.iter(over.seed, 0).take(probe),
            &over.engine,
            over.seed,
            0,
            over.warmup,
        );
        assert!(growth_detected(&alone));
        assert!(!plan.judge(&d, 20.0, 0, false, false).pass);
    }

    #[test]
    fn bounds_and_gpu_types_parse_and_print() {
        let b: Bound = "ttft:p99:1.5".parse().unwrap();
        assert_eq!(
            b,
            Bound {
                metric: Metric::Ttft,
                percentile: 99,
                max_s: 1.5
            }
        );
        assert_eq!(b.to_string(), "ttft:p99:1.5");
        for bad in [
            "ttft:99:1",
            "x:p99:1",
            "ttft:p99",
            "ttft:p99:1:2",
            "tbt:pq:1",
        ] {
            assert!(bad.parse::<Bound>().is_err(), "{bad}");
        }
        let g: GpuType = "h200=h200-llama3.1-8b@3.5".parse().unwrap();
        assert_eq!((g.gpu.as_deref(), g.usd_per_hour), (Some("h200"), 3.5));
        let both: Vec<GpuType> = serde_json::from_str(
            r#"["h200=h200-llama3.1-8b@3.5", {"name": "h200", "cost": "h200-llama3.1-8b", "gpu": "h200", "usd_per_hour": 3.5}]"#,
        )
        .unwrap();
        assert_eq!(both[0], both[1]);
        let bounds: Vec<Bound> = serde_json::from_str(
            r#"["ttft:p99:1.5", {"metric": "ttft", "percentile": 99, "max_s": 1.5}]"#,
        )
        .unwrap();
        assert_eq!((bounds[0], bounds[1]), (b, b));
        assert!(serde_json::from_str::<Bound>(r#""ttft:p99""#).is_err());
        let g: GpuType = "cheap=linear@1".parse().unwrap();
        assert_eq!(g.gpu, None);
        assert!("h200@3".parse::<GpuType>().is_err());
    }

    #[test]
    fn knobs_go_only_to_the_policies_that_use_them() {
        let plan = Plan {
            space: Space {
                schedulers: vec![SchedulerKind::A, SchedulerKind::B, SchedulerKind::Disagg],
                gpu_counts: vec![1, 2],
                ks: vec![2, 8],
                splits: vec![(1, 1), (1, 2)],
                ..Space::default()
            },
            ..small()
        };
        let d = plan.deployments(&NoFiles).unwrap().0;
        // A: 2 counts; B: 2 K x 2 counts; disagg: 2 splits.
        assert_eq!(d.len(), 2 + 4 + 2);
        assert_eq!(d[6].gpus_total, 2);
        assert_eq!(d[7].gpus_total, 3);
        let fams = Plan::families(&d);
        assert_eq!(fams.len(), 1 + 2 + 2);
        assert_eq!(fams[0].0, vec![0, 1]);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad = |f: &dyn Fn(&mut Plan)| {
            let mut p = small();
            f(&mut p);
            p.deployments(&NoFiles).unwrap_err().field
        };
        assert_eq!(bad(&|p| p.space.ks = vec![0]), "ks");
        assert_eq!(bad(&|p| p.space.gpu_counts = vec![0]), "gpu-counts");
        assert_eq!(bad(&|p| p.reps = 0), "reps");
        assert_eq!(bad(&|p| p.target_rate = Some(-1.0)), "target-rate");
        assert_eq!(bad(&|p| p.slo.attainment = Some(1.5)), "attainment");
        assert_eq!(
            bad(&|p| p.slo.bounds = vec!["ttft:p42:1".parse().unwrap()]),
            "slo"
        );
        assert_eq!(
            bad(&|p| p.space.gpu_types = vec!["g=linear@0".parse().unwrap()]),
            "gpu-types"
        );
        assert_eq!(
            bad(&|p| p.space.gpu_types = vec!["g=nope.toml@1".parse().unwrap()]),
            "cost"
        );
    }

    #[test]
    fn deployments_that_do_not_build_are_skipped_unless_none_does() {
        // 128-token prompts: vllm prefills whole prompts, so a 64-token budget cannot
        // serve them, where sarathi chunks them (32 running requests fit either budget).
        let mut plan = Plan {
            space: Space {
                schedulers: vec![SchedulerKind::Vllm, SchedulerKind::Sarathi],
                token_budgets: vec![64, 256],
                gpu_counts: vec![1, 2],
                ..Space::default()
            },
            ..small()
        };
        plan.base.max_seqs = Some(32);
        let (d, skipped) = plan.deployments(&NoFiles).unwrap();
        assert_eq!(d.len(), 6);
        assert_eq!(
            skipped.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(),
            [
                "linear vllm x1 round-robin tokens=64",
                "linear vllm x2 round-robin tokens=64"
            ]
        );
        assert_eq!(skipped[0].field, "max-batched-tokens");
        assert!(
            skipped[0].reason.contains("'vllm' runs whole"),
            "{}",
            skipped[0].reason
        );
        assert_eq!(
            d.iter().map(|d| d.index).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        plan.space.schedulers = vec![SchedulerKind::Vllm];
        plan.space.token_budgets = vec![64];
        assert_eq!(
            plan.deployments(&NoFiles).unwrap_err().field,
            "max-batched-tokens"
        );
    }

    #[test]
    fn neighbours_guess_along_their_line() {
        assert_eq!(neighbour_guess(&[], 2), None);
        assert_eq!(neighbour_guess(&[(2, 10.0)], 3), Some(15.0));
        assert_eq!(neighbour_guess(&[(1, 10.0), (2, 22.0)], 4), Some(46.0));
        assert_eq!(neighbour_guess(&[(1, 0.0), (2, 1.0)], 3), Some(1.5));
        assert_eq!(neighbour_guess(&[(1, 0.0)], 3), None);
    }

    #[test]
    fn the_rate_moves_arrivals_and_nothing_else() {
        let d = small().deployments(&NoFiles).unwrap().0;
        let run = &d[0].built.run;
        let a: Vec<_> = run.workload.generate(run.seed, 0);
        let b: Vec<_> = with_rate(run, 2.0 * run.workload.rate())
            .workload
            .generate(run.seed, 0);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.prompt, x.decode), (y.prompt, y.decode));
            assert!((x.arrival - 2.0 * y.arrival).abs() <= 1e-9 * x.arrival.max(1.0));
        }
    }

    #[test]
    fn the_cheapest_and_the_front_follow_price_and_latency() {
        let plan = small();
        let p = |index, usd, lat, meets| PointResult {
            index,
            label: String::new(),
            gpu_type: String::new(),
            scheduler: String::new(),
            router: String::new(),
            replicas: 1,
            gpus_total: 1,
            usd_per_hour: usd,
            capacity_rps: 1.0,
            capacity_ci95: 0.0,
            resolution: 0.0,
            capacity_reps: vec![],
            evals: 0,
            target_rps: 1.0,
            pass_fraction: 1.0,
            meets_target: meets,
            ttft_p99: 0.0,
            tbt_p99: 0.0,
            itl_p99: 0.0,
            e2e_p99: 0.0,
            latency_s: lat,
            tokens_per_s: 1.0,
            usd_per_m_tokens: 0.0,
            unstable_at_target: false,
        };
        let r = plan.assemble(
            1.0,
            vec![
                p(3, 4.0, 0.5, true),
                p(0, 1.0, 9.0, false),
                p(1, 2.0, 2.0, true),
                p(2, 3.0, 3.0, true),
                p(4, 5.0, 0.2, true),
            ],
            vec![],
        );
        assert_eq!(
            r.points.iter().map(|p| p.index).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(r.cheapest, Some(1));
        assert_eq!(r.runners_up, [2, 3, 4]);
        assert_eq!(r.front, [1, 3, 4]);
    }
}
