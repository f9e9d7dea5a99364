//! One run's configuration, shared by every front end (the CLI, the Python package): the
//! values a user sets, their defaults (the seed study's, written once here), the checks
//! that name the setting at fault with its allowed range, and the construction of the
//! [`RunConfig`] the simulator runs.
//!
//! A [`Config`] is plain data (serde: a TOML or JSON file describes a run). Settings whose
//! default depends on others (the rate of a replay, the warm-up, a policy's token budget)
//! are `Option`s, `None` meaning "the default"; [`Config::build`] returns the run together
//! with the resolved config, in which every setting the run uses is filled in and every
//! setting it ignores is `None`, so that building the resolved config again gives the same
//! run. Reading the trace and preset files a config names is the only I/O here.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::cost::{
    CostDist, CostModel, Efficiency, GpuSpec, LinearCost, LogNormalNoise, ModelShape, Parallel,
    Preset, RooflineCost, ServingPreset, check_cv, preset, preset::PresetError, serving,
};
use crate::csvio::CsvError;
use crate::dist::LengthDist;
use crate::engine::EngineConfig;
use crate::files::Files;
use crate::kv::{self, DEFAULT_BLOCK_SIZE, KvConfig};
use crate::limits::{self, RangeError, num, require};
use crate::metrics::Summary;
use crate::multiturn::MultiTurn;
use crate::prefix::CpuKv;
use crate::router::RouterSpec;
use crate::scheduler::{
    BatchLimits, DisaggSpec, Preemption, SchedulerKind, SchedulerSpec, SwapLink,
};
use crate::sim::RunConfig;
use crate::stats::aggregate_json;
use crate::trace::Trace;
use crate::workload::{ArrivalKind, SyntheticWorkload, TraceReplay, Workload};
use crate::{gpu, model};

/// Mean arrival rate of a synthetic workload (requests/s).
pub const DEFAULT_RATE: f64 = 0.5;
/// Requests per replication of a synthetic workload.
pub const DEFAULT_REQUESTS: usize = 100_000;
/// Prompt length of a synthetic workload (tokens).
pub const DEFAULT_PROMPT: u32 = 128;
/// Decode budget of a synthetic workload (tokens).
pub const DEFAULT_DECODE: u32 = 64;
/// Most prefills per batch (Scheduler B) or requests per batch (static).
pub const DEFAULT_K: u32 = 4;
/// Host link of swap preemption (GB/s, PCIe 4.0 x16).
pub const DEFAULT_SWAP_GBPS: f64 = 25.0;
/// Each prefill GPU's KV link to the decode pool (Gbit/s).
pub const DEFAULT_KV_LINK_GBPS: f64 = 100.0;
/// Latency of one KV transfer (seconds).
pub const DEFAULT_KV_LINK_LATENCY: f64 = 1e-4;
/// GPUs in each pool of disaggregated serving.
pub const DEFAULT_POOL_GPUS: u32 = 1;
/// Turns per conversation of a multi-turn workload.
pub const DEFAULT_TURNS: u32 = 4;
/// Mean time from one turn's arrival to the next of a multi-turn workload (seconds).
pub const DEFAULT_THINK_S: f64 = 30.0;
/// Largest tensor-parallel degree and pipeline depth.
pub const MAX_DEGREE: u32 = 64;
/// The model served by default.
pub const DEFAULT_MODEL: &str = "llama-3.1-8b";

/// Serialises types as the text their parsers read (the command line's forms, e.g.
/// `gamma:2`, `uniform:16:256`), so that a config file reads like the flags.
macro_rules! serde_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_text!(
    SchedulerKind,
    WorkloadSpec,
    ArrivalKind,
    LengthDist,
    CostDist,
    RouterSpec
);

/// Where requests come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkloadSpec {
    /// Drawn from the rate, arrival law and length laws.
    Synthetic,
    /// Replayed from a trace in the Azure LLM inference format.
    Azure(PathBuf),
    /// Replayed from a Mooncake trace (JSON lines with prefix hash ids).
    Mooncake(PathBuf),
    /// Synthetic multi-turn conversations.
    MultiTurn,
}

impl FromStr for WorkloadSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            _ if s == "synthetic" => Ok(WorkloadSpec::Synthetic),
            _ if s == "multiturn" => Ok(WorkloadSpec::MultiTurn),
            Some(("azure", path)) if !path.is_empty() => Ok(WorkloadSpec::Azure(path.into())),
            Some(("mooncake", path)) if !path.is_empty() => Ok(WorkloadSpec::Mooncake(path.into())),
            _ => Err(format!(
                "'{s}' is not synthetic, multiturn, azure:PATH or mooncake:PATH"
            )),
        }
    }
}

impl fmt::Display for WorkloadSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadSpec::Synthetic => f.write_str("synthetic"),
            WorkloadSpec::Azure(path) => write!(f, "azure:{}", path.display()),
            WorkloadSpec::Mooncake(path) => write!(f, "mooncake:{}", path.display()),
            WorkloadSpec::MultiTurn => f.write_str("multiturn"),
        }
    }
}

/// The iteration cost model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CostSpec {
    /// The seed's model: an iteration of `b` tokens costs `c + a * max(0, b - b0)` seconds
    /// on average, drawn from `dist`.
    Linear {
        /// Mean setup cost of a batch (seconds, in (0, 3600]).
        c: f64,
        /// Mean cost per token (seconds per token, in [0, 3600]).
        a: f64,
        /// Tokens per batch at no per-token cost (tokens, in [0, 2^32]).
        b0: f64,
        /// Batch-to-batch variation: det, exp or gamma:CV.
        dist: CostDist,
    },
    /// A built-in preset, by name (see [`preset::built_in_names`]).
    Preset {
        /// The preset's name, e.g. `h200-llama3.1-8b`.
        name: String,
    },
    /// A preset TOML file written by `llmsim calibrate --out`.
    File {
        /// The file.
        path: PathBuf,
    },
    /// The config's `model` on its `gpu`'s datasheet peaks with its `tp` x `pp` layout,
    /// efficiencies fitted on the H200 profile.
    Roofline {
        /// The GPU (a built-in card or a TOML file), if given here rather than as the
        /// config's `gpu` (`roofline:GPU`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gpu: Option<String>,
    },
    /// `base` with every iteration's cost multiplied by lognormal noise of mean 1.
    Noise {
        /// Coefficient of variation of the noise, in (0, 10].
        cv: f64,
        /// The model whose costs are perturbed.
        base: Box<CostSpec>,
    },
}

impl Default for CostSpec {
    /// The seed study's linear model: c = 10 ms, a = 1 ms per token, b0 = 0, exponential.
    fn default() -> Self {
        CostSpec::Linear {
            c: 0.01,
            a: 0.001,
            b0: 0.0,
            dist: CostDist::Exponential,
        }
    }
}

impl CostSpec {
    /// The model `spec` names in `--cost`'s forms: `linear` (with the default parameters),
    /// a built-in preset's name, `roofline` or `roofline:GPU`, else a preset file's path.
    pub fn parse(spec: &str) -> CostSpec {
        if spec == "linear" {
            CostSpec::default()
        } else if spec == "roofline" {
            CostSpec::Roofline { gpu: None }
        } else if let Some(gpu) = spec.strip_prefix("roofline:") {
            CostSpec::Roofline {
                gpu: Some(gpu.into()),
            }
        } else if Preset::built_in(spec).is_some() || ServingPreset::built_in(spec).is_some() {
            CostSpec::Preset { name: spec.into() }
        } else {
            CostSpec::File { path: spec.into() }
        }
    }

    /// The model without its noise, and the noise's CV if it has any.
    pub fn split(&self) -> (&CostSpec, Option<f64>) {
        match self {
            CostSpec::Noise { cv, base } => (base, Some(*cv)),
            other => (other, None),
        }
    }

    /// `base` with noise of coefficient of variation `cv`, if any.
    pub fn with_noise(base: CostSpec, cv: Option<f64>) -> CostSpec {
        match cv {
            None => base,
            Some(cv) => CostSpec::Noise {
                cv,
                base: Box::new(base),
            },
        }
    }

    /// This model overridden as `llmsim run`'s cost flags do: `spec` (`--cost`, see
    /// [`CostSpec::parse`]; `linear` keeps this model's parameters if it is linear), the
    /// linear parameters `c`, `a`, `b0` and `dist` (`--c`, `--a`, `--b0`, `--cost-dist`)
    /// and the noise `noise_cv` (`--noise-cv`), each where given. Also returns a warning
    /// for each linear parameter given to another model, which ignores it.
    pub fn with_flags(
        &self,
        spec: Option<&str>,
        c: Option<f64>,
        a: Option<f64>,
        b0: Option<f64>,
        dist: Option<CostDist>,
        noise_cv: Option<f64>,
    ) -> (CostSpec, Vec<String>) {
        let (base, noise) = self.split();
        let mut base = match spec {
            Some("linear") if matches!(base, CostSpec::Linear { .. }) => base.clone(),
            Some(spec) => CostSpec::parse(spec),
            None => base.clone(),
        };
        let mut notes = Vec::new();
        match &mut base {
            CostSpec::Linear {
                c: c0,
                a: a0,
                b0: b00,
                dist: dist0,
            } => {
                *c0 = c.unwrap_or(*c0);
                *a0 = a.unwrap_or(*a0);
                *b00 = b0.unwrap_or(*b00);
                *dist0 = dist.unwrap_or(*dist0);
            }
            other => {
                for (flag, given) in [
                    ("--c", c.is_some()),
                    ("--a", a.is_some()),
                    ("--b0", b0.is_some()),
                    ("--cost-dist", dist.is_some()),
                ] {
                    if given {
                        notes.push(format!(
                            "warning: {flag} has no effect with --cost {other} (it applies to --cost linear)"
                        ));
                    }
                }
            }
        }
        (CostSpec::with_noise(base, noise_cv.or(noise)), notes)
    }

    /// Whether this may be the roofline model, which alone prices a parallel layout: the
    /// roofline, a built-in serving preset, or a preset file (a profiled one is refused
    /// with a parallel layout when it is read).
    pub fn is_roofline(&self) -> bool {
        match self.split().0 {
            CostSpec::Roofline { .. } | CostSpec::File { .. } => true,
            CostSpec::Preset { name } => ServingPreset::built_in(name).is_some(),
            _ => false,
        }
    }

    /// Checks the parameters and builds the model for `hw` (the roofline's model, GPU and
    /// layout); a preset file is read through `files`.
    pub fn model(
        &self,
        hw: &Hardware,
        files: &dyn Files,
    ) -> Result<Arc<dyn CostModel>, RangeError> {
        let bad_spec = |why: String| RangeError {
            field: "cost",
            why: format!(
                "{why} (--cost takes linear, a built-in preset ({}), a preset TOML file, roofline or roofline:GPU)",
                preset::built_in_names()
                    .into_iter()
                    .chain(serving::built_in_names())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let roofline = |eff: Option<Efficiency>| -> Result<Arc<dyn CostModel>, RangeError> {
            let gpu = hw.gpu.ok_or_else(|| RangeError {
                field: "gpu",
                why: format!(
                    "--cost {self} needs a GPU: --gpu NAME|FILE or roofline:GPU ({})",
                    gpu::names().join(", ")
                ),
            })?;
            let base = RooflineCost::new(hw.model.shape, gpu);
            Ok(Arc::new(RooflineCost {
                parallel: hw.parallel,
                eff: eff.unwrap_or(base.eff),
                ..base
            }))
        };
        let profiled = |p: Preset| -> Result<Arc<dyn CostModel>, RangeError> {
            require(
                hw.parallel == Parallel::SINGLE,
                "tp",
                format!(
                    "--tp and --pp need a roofline or serving preset: '{self}' prices one measured GPU"
                ),
            )?;
            Ok(p.model())
        };
        Ok(match self {
            CostSpec::Linear { c, a, b0, dist } => {
                let linear = LinearCost::new(*c, *a, *b0, *dist);
                linear.check()?;
                Arc::new(linear)
            }
            CostSpec::Roofline { .. } => roofline(None)?,
            CostSpec::Preset { name } => {
                match (Preset::built_in(name), ServingPreset::built_in(name)) {
                    (Some(p), _) => profiled(p)?,
                    (None, Some(s)) => roofline(Some(s.efficiency(hw.gpu_name)))?,
                    (None, None) => {
                        return Err(bad_spec(format!("no built-in preset is called '{name}'")));
                    }
                }
            }
            CostSpec::File { path } => {
                let text = files.read_text(path).map_err(|source| {
                    bad_spec(
                        PresetError::Io {
                            path: path.clone(),
                            source,
                        }
                        .to_string(),
                    )
                })?;
                let origin = path.display().to_string();
                if ServingPreset::looks_like(&text) {
                    let s = ServingPreset::parse(&text, &origin).map_err(bad_spec)?;
                    roofline(Some(s.efficiency(hw.gpu_name)))?
                } else {
                    profiled(Preset::parse(&text, &origin).map_err(|e| bad_spec(e.to_string()))?)?
                }
            }
            CostSpec::Noise { cv, base } => {
                let base = base.model(hw, files)?;
                check_cv("noise-cv", *cv).map_err(|e| RangeError {
                    why: format!("{}; omit it for no noise", e.why),
                    ..e
                })?;
                Arc::new(LogNormalNoise::new(base, *cv))
            }
        })
    }
}

impl fmt::Display for CostSpec {
    /// The model as `--cost` names it (the noise, a separate setting, is not shown).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CostSpec::Linear { .. } => f.write_str("linear"),
            CostSpec::Preset { name } => f.write_str(name),
            CostSpec::File { path } => write!(f, "{}", path.display()),
            CostSpec::Roofline { gpu: None } => f.write_str("roofline"),
            CostSpec::Roofline { gpu: Some(gpu) } => write!(f, "roofline:{gpu}"),
            CostSpec::Noise { base, .. } => base.fmt(f),
        }
    }
}

/// A model as a config names it: its name and shape.
#[derive(Debug, Clone)]
pub struct NamedModel {
    /// The catalogue name, or the config file's path.
    pub name: String,
    /// Other names a profile may give it: for a config file, its folder's name (as in a
    /// downloaded Hugging Face repository) and its file stem.
    pub aliases: Vec<String>,
    /// The shape.
    pub shape: ModelShape,
}

impl NamedModel {
    /// Whether a profile's `model` column names this model: the same built-in (any of its
    /// names), or one of its names, without case.
    pub fn answers_to(&self, name: &str) -> bool {
        match (
            model::catalogue::find(&self.name),
            model::catalogue::find(name),
        ) {
            (Some(a), Some(b)) => a.name == b.name,
            _ => std::iter::once(&self.name)
                .chain(&self.aliases)
                .any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

/// What a config serves on: the model, the GPU (if named) and each replica's layout.
#[derive(Debug, Clone)]
pub struct Hardware {
    /// The model served.
    pub model: NamedModel,
    /// The GPU of `gpu` or of `roofline:GPU`, if either is given.
    pub gpu: Option<GpuSpec>,
    /// That GPU's canonical catalogue name, when it is a built-in card (a serving preset
    /// may have efficiencies of its own for it).
    pub gpu_name: Option<&'static str>,
    /// Tensor- and pipeline-parallel GPUs of each replica.
    pub parallel: Parallel,
}

/// Everything one run is made of. Field names are `llmsim run`'s flags with `_` for `-`;
/// `None` means the default the field's documentation gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Scheduling policy.
    pub scheduler: SchedulerKind,
    /// Where requests come from.
    pub workload: WorkloadSpec,
    /// Arrival rate (requests/s, 1e-9 to 1e9) [synthetic: 0.5; replay: the trace's own].
    pub rate: Option<f64>,
    /// Requests per replication, at least 2 [synthetic: 100000; replay: the whole trace].
    pub requests: Option<usize>,
    /// Warm-up requests per replication, simulated but not measured [10% of `requests`].
    pub warmup: Option<usize>,
    /// Arrival process of a synthetic workload [poisson].
    pub arrivals: Option<ArrivalKind>,
    /// Prompt length law (tokens) [128].
    pub prompt: Option<LengthDist>,
    /// Decode budget law (tokens) [64].
    pub decode: Option<LengthDist>,
    /// Azure-format trace whose (L, B) pairs are drawn instead of `prompt` and `decode`.
    pub lengths_from: Option<PathBuf>,
    /// Iteration cost model.
    pub cost: CostSpec,
    /// Most prefills per batch (Scheduler B), requests per batch (static) [4].
    pub k: Option<u32>,
    /// Most decode entries per batch (Scheduler B) [no cap].
    pub max_decode_batch: Option<u32>,
    /// Most running requests (continuous batching) [256].
    pub max_seqs: Option<u32>,
    /// Most tokens per iteration (continuous batching) [2048, or the longest prefill a
    /// policy must run whole].
    pub max_batched_tokens: Option<u32>,
    /// Fraction of KV blocks an admission must leave free, in [0, 1) [0.01].
    pub watermark: Option<f64>,
    /// Preemption mode: recompute or swap.
    pub preemption: String,
    /// Host link of swap preemption (GB/s) [25].
    pub swap_gbps: Option<f64>,
    /// KV-cache capacity per GPU (tokens) [unlimited, or from `gpu_mem_gb`].
    pub kv_capacity: Option<u64>,
    /// GPU memory (GB) sizing the KV cache beside the model's weights.
    pub gpu_mem_gb: Option<f64>,
    /// Fraction of GPU memory the server may use, in (0, 1].
    pub gpu_mem_util: f64,
    /// Model served: a built-in name or Hugging Face id, or the path of a Hugging Face
    /// config.json. Its shape prices the roofline and sizes the KV cache.
    pub model: String,
    /// GPU of each replica: a built-in card or a TOML file of its peaks [none; its memory
    /// is the default `gpu_mem_gb` of memory-aware schedulers].
    pub gpu: Option<String>,
    /// Tensor-parallel GPUs per replica, 1 to 64, dividing the model's heads (roofline).
    pub tp: u32,
    /// Pipeline stages per replica, 1 to 64 and at most the model's layers (roofline).
    pub pp: u32,
    /// Tokens per KV block.
    pub block_size: u32,
    /// Prefill GPUs (disagg) [1].
    pub prefill_gpus: Option<u32>,
    /// Decode GPUs (disagg) [1].
    pub decode_gpus: Option<u32>,
    /// Each prefill GPU's KV link (Gbit/s, disagg) [100].
    pub kv_link_gbps: Option<f64>,
    /// Latency of one KV transfer (seconds, disagg) [0.0001].
    pub kv_link_latency: Option<f64>,
    /// Replicas of `tp` x `pp` GPUs, 1 to 100000 (disagg: prefill + decode).
    pub gpus: u64,
    /// Router in front of the GPUs.
    pub router: RouterSpec,
    /// Prefix caching (vllm, sarathi, decode-first, with a finite KV cache).
    pub prefix_cache: bool,
    /// Blocks of a CPU-side tier of each GPU's prefix cache (vLLM's KV offloading; needs
    /// `prefix_cache` and a GPU, whose host link loads the blocks) [off]. Absent from a
    /// printed config when off, so such a run prints what it always did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_kv_blocks: Option<u64>,
    /// Turns per conversation (multiturn) [4].
    pub turns: Option<u32>,
    /// Mean user think time from a reply to the next turn (seconds, multiturn) [30].
    pub think: Option<f64>,
    /// Tokens of the system prompt opening each conversation (multiturn) [0].
    pub system_prompt: Option<u32>,
    /// Distinct system prompts (multiturn) [1].
    pub system_prompts: Option<u32>,
    /// Base random seed.
    pub seed: u64,
    /// Independent replications, 1 to 10000.
    pub reps: u32,
}

impl Default for Config {
    /// The seed study's run: Scheduler A, Poisson arrivals at 0.5 requests/s of 128-token
    /// prompts and 64-token decodes on one GPU, the linear cost model, seed 42.
    fn default() -> Self {
        Config {
            scheduler: SchedulerKind::A,
            workload: WorkloadSpec::Synthetic,
            rate: None,
            requests: None,
            warmup: None,
            arrivals: None,
            prompt: None,
            decode: None,
            lengths_from: None,
            cost: CostSpec::default(),
            k: None,
            max_decode_batch: None,
            max_seqs: None,
            max_batched_tokens: None,
            watermark: None,
            preemption: "recompute".into(),
            swap_gbps: None,
            kv_capacity: None,
            gpu_mem_gb: None,
            gpu_mem_util: 0.9,
            model: DEFAULT_MODEL.into(),
            gpu: None,
            tp: 1,
            pp: 1,
            block_size: DEFAULT_BLOCK_SIZE,
            prefill_gpus: None,
            decode_gpus: None,
            kv_link_gbps: None,
            kv_link_latency: None,
            gpus: 1,
            router: RouterSpec::RoundRobin,
            prefix_cache: false,
            cpu_kv_blocks: None,
            turns: None,
            think: None,
            system_prompt: None,
            system_prompts: None,
            seed: 42,
            reps: 1,
        }
    }
}

/// A checked configuration, ready to run.
#[derive(Debug, Clone)]
pub struct Built {
    /// What the simulator runs.
    pub run: RunConfig,
    /// The config with every setting the run uses filled in and the others `None`:
    /// building it again gives the same run, without notes about unused settings.
    pub resolved: Config,
    /// Advice for the user, each line starting `note: ` or `warning: ` (a setting without
    /// effect, a default that depends on the workload, adjusted trace rows).
    pub notes: Vec<String>,
}

impl Built {
    /// The document `llmsim run --json` prints for `summaries` of this run's replications:
    /// their means (and 95% half-widths, with more than one), the closed-form capacity,
    /// the KV capacity per GPU and the resolved config.
    pub fn report(&self, summaries: &[Summary]) -> Value {
        let reps: Vec<Value> = summaries
            .iter()
            .map(|s| serde_json::to_value(s).expect("summaries serialise"))
            .collect();
        let mut out = aggregate_json(&reps);
        out["capacity_rps"] = json!(self.run.capacity());
        out["kv_capacity_tokens"] = json!(self.run.engine.kv.capacity_tokens());
        out["gpus_total"] =
            json!(self.run.engine.gpus as u64 * u64::from(self.resolved.tp * self.resolved.pp));
        out["config"] = serde_json::to_value(&self.resolved).expect("configs serialise");
        out
    }
}

/// Tokens of the longest prefill `policy` must run in one iteration for `workload`: a whole
/// prompt (orca, disagg) or, after a preemption by recompute, the prompt and all but the
/// last generated token (vllm, decode-first); `None` for policies that chunk or batch
/// without a token budget.
fn whole_prefill(policy: SchedulerKind, workload: &Workload) -> Option<u64> {
    match policy {
        SchedulerKind::Orca | SchedulerKind::Disagg => Some(workload.longest(|l, _| l)),
        SchedulerKind::Vllm | SchedulerKind::DecodeFirst => {
            Some(workload.longest(|l, b| l + b.saturating_sub(1)))
        }
        _ => None,
    }
}

/// A replay's measurement window, from the first measured arrival to the last, must have a
/// length for rates over it to exist.
fn check_window(t: &TraceReplay, warmup: usize) -> Result<(), RangeError> {
    let arrivals = &t.trace.requests;
    require(
        arrivals[t.requests - 1].arrival > arrivals[warmup].arrival,
        "workload",
        format!(
            "requests {} to {} of {} all arrive at the same instant, so the measurement window (first measured arrival to last) has no length: lower --warmup or replay more requests",
            warmup + 1,
            t.requests,
            t.trace.source.display()
        ),
    )
}

/// Reads the Mooncake trace of `--workload mooncake:PATH`; a bad file is an error naming
/// file, line and field.
fn read_mooncake(
    path: &Path,
    notes: &mut Vec<String>,
    files: &dyn Files,
) -> Result<Arc<Trace>, RangeError> {
    let trace = files
        .read_text(path)
        .map_err(|source| CsvError::Io {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|text| Trace::from_mooncake(&text, path))
        .map_err(|e| RangeError {
            field: "workload",
            why: e.to_string(),
        })?;
    if trace.adjusted > 0 {
        notes.push(format!(
            "note: {}: {} rows with input_length 0 or output_length 0 served as L >= 1, B = 0",
            path.display(),
            trace.adjusted
        ));
    }
    Ok(Arc::new(trace))
}

/// Reads a trace named by `field`; a bad file is an error naming file, line and field.
fn read_trace(
    path: &Path,
    field: &'static str,
    notes: &mut Vec<String>,
    files: &dyn Files,
) -> Result<Arc<Trace>, RangeError> {
    let trace = files
        .read(path)
        .map_err(|source| CsvError::Io {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|bytes| Trace::from_csv(&bytes, path))
        .map_err(|e| RangeError {
            field,
            why: e.to_string(),
        })?;
    if trace.adjusted > 0 {
        notes.push(format!(
            "note: {}: {} rows with ContextTokens 0 or GeneratedTokens 0 served as L >= 1, B = 0",
            path.display(),
            trace.adjusted
        ));
    }
    Ok(Arc::new(trace))
}

/// The GPU `name` names, a built-in card or a TOML file; errors name `field`.
fn gpu_named(name: &str, field: &'static str, files: &dyn Files) -> Result<GpuSpec, RangeError> {
    if let Some(g) = gpu::find(name) {
        return Ok(g.spec);
    }
    let bad = |why: String| RangeError { field, why };
    let path = Path::new(name);
    if !files.has_file(path) {
        return Err(bad(format!(
            "'{name}' is neither a built-in GPU ({}) nor a TOML file",
            gpu::names().join(", ")
        )));
    }
    let text = files
        .read_text(path)
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    GpuSpec::from_toml(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
}

impl Config {
    /// Checks every setting; the notes of [`Config::build`] on success.
    pub fn validate(&self, files: &dyn Files) -> Result<Vec<String>, RangeError> {
        self.build(files).map(|b| b.notes)
    }

    /// Checks every setting and builds the run (reading the files the config names).
    pub fn build(&self, files: &dyn Files) -> Result<Built, RangeError> {
        let mut notes = Vec::new();
        self.check_given()?;
        let workload = match &self.workload {
            WorkloadSpec::Synthetic => self.synthetic(&mut notes, files)?,
            WorkloadSpec::Azure(path) => {
                let trace = read_trace(path, "workload", &mut notes, files)?;
                self.replay(path, trace)?
            }
            WorkloadSpec::Mooncake(path) => {
                let trace = read_mooncake(path, &mut notes, files)?;
                self.replay(path, trace)?
            }
            WorkloadSpec::MultiTurn => self.multiturn(),
        };
        self.check_multiturn_flags()?;
        workload.validate()?;
        let requests = workload.requests();
        let warmup = self.warmup.unwrap_or(requests / 10);
        limits::warmup(warmup, requests)?;
        if let Workload::Trace(t) = &workload {
            check_window(t, warmup)?;
        }
        let gpus = usize::try_from(self.gpus).expect("at most MAX_GPUS");
        self.router.check(gpus).map_err(|why| RangeError {
            field: "router",
            why,
        })?;
        let hw = self.hardware(files)?;
        let memory = self.gpu_memory(&hw);
        let kv = self.kv_config(&hw, memory)?;
        let defaults = BatchLimits::default();
        let limits = BatchLimits {
            max_seqs: self.max_seqs.unwrap_or(defaults.max_seqs),
            max_tokens: self.max_batched_tokens(&workload, &mut notes),
            watermark: self.watermark.unwrap_or(defaults.watermark),
            preemption: self.preemption(&hw.model.shape)?,
        };
        let k = self.k.unwrap_or(DEFAULT_K);
        let scheduler = match self.scheduler {
            SchedulerKind::A => SchedulerSpec::A,
            SchedulerKind::B => SchedulerSpec::B {
                k,
                max_decode_batch: self.max_decode_batch,
            },
            SchedulerKind::Static => SchedulerSpec::Static { k },
            SchedulerKind::Orca => SchedulerSpec::Orca(limits),
            SchedulerKind::Vllm => SchedulerSpec::Vllm(limits),
            SchedulerKind::Sarathi => SchedulerSpec::Sarathi(limits),
            SchedulerKind::DecodeFirst => SchedulerSpec::DecodeFirst(limits),
            SchedulerKind::Disagg => SchedulerSpec::Disagg(self.disagg(limits, &hw.model.shape)?),
        };
        require(
            limits.preemption == Preemption::Recompute || scheduler.supports_swap(),
            "preemption",
            format!(
                "'{}' preempts by recompute only; swap needs --scheduler vllm or decode-first",
                self.scheduler
            ),
        )?;
        let gpus = match scheduler {
            SchedulerSpec::Disagg(d) => (d.prefill_gpus + d.decode_gpus) as usize,
            _ => gpus,
        };
        self.check_limits(&scheduler, &kv, &workload, memory)?;
        let engine = EngineConfig {
            scheduler,
            cost: self.cost.model(&hw, files)?,
            gpus,
            router: self.router,
            kv,
            prefix_cache: self.prefix_cache,
            cpu_kv: self.cpu_kv(&hw)?,
        };
        limits::prefix_cache(&engine)?;
        limits::replications(&workload, &engine, self.reps)?;
        notes.extend(self.unused());
        let run = RunConfig {
            workload,
            engine,
            seed: self.seed,
            reps: self.reps,
            warmup,
        };
        let resolved = self.resolve(&run, memory.map(|(gb, _)| gb));
        Ok(Built {
            run,
            resolved,
            notes,
        })
    }

    /// The settings in effect in `run`, those it does not use left out; `gpu_mem_gb` is the
    /// memory that sized its KV cache, if any.
    fn resolve(&self, run: &RunConfig, gpu_mem_gb: Option<f64>) -> Config {
        use SchedulerKind::*;
        let s = self.scheduler;
        let uses = |users: &[SchedulerKind]| users.contains(&s);
        let continuous = [Orca, Vllm, Sarathi, DecodeFirst, Disagg];
        let limits = run.engine.scheduler.limits();
        let disagg = match run.engine.scheduler {
            SchedulerSpec::Disagg(d) => Some(d),
            _ => None,
        };
        let (synthetic, rate) = match &run.workload {
            // The rate given, not the one computed back from the time scale, so that the
            // scale is the same when the resolved config is built again.
            Workload::Synthetic(w) => (Some(w), w.rate),
            Workload::Trace(t) => (None, self.rate.unwrap_or_else(|| t.rate())),
            Workload::MultiTurn(m) => (None, m.session_rate),
        };
        let multiturn = match &run.workload {
            Workload::MultiTurn(m) => Some(m),
            _ => None,
        };
        let swap = matches!(limits.map(|l| l.preemption), Some(Preemption::Swap(_)));
        Config {
            rate: Some(rate),
            requests: Some(run.workload.requests()),
            warmup: Some(run.warmup),
            arrivals: synthetic.map(|w| w.arrivals),
            prompt: synthetic
                .filter(|w| w.lengths_from.is_none())
                .map(|w| w.prompt.clone())
                .or_else(|| multiturn.map(|m| m.user.clone())),
            decode: synthetic
                .filter(|w| w.lengths_from.is_none())
                .map(|w| w.decode.clone())
                .or_else(|| multiturn.map(|m| m.decode.clone())),
            turns: multiturn.map(|m| m.turns),
            think: multiturn.map(|m| m.think_s),
            system_prompt: multiturn.map(|m| m.system_tokens),
            system_prompts: multiturn.map(|m| m.system_prompts),
            gpu_mem_gb,
            lengths_from: synthetic.and(self.lengths_from.clone()),
            k: uses(&[B, Static]).then_some(self.k.unwrap_or(DEFAULT_K)),
            max_decode_batch: self.max_decode_batch.filter(|_| s == B),
            max_seqs: limits.map(|l| l.max_seqs),
            max_batched_tokens: limits.map(|l| l.max_tokens),
            watermark: uses(&continuous[1..])
                .then(|| limits.map(|l| l.watermark))
                .flatten(),
            swap_gbps: swap.then_some(self.swap_gbps.unwrap_or(DEFAULT_SWAP_GBPS)),
            prefill_gpus: disagg.map(|d| d.prefill_gpus),
            decode_gpus: disagg.map(|d| d.decode_gpus),
            kv_link_gbps: disagg.map(|d| d.link_gbps),
            kv_link_latency: disagg.map(|d| d.link_latency),
            gpus: run.engine.gpus as u64,
            ..self.clone()
        }
    }

    /// Checks the range of every setting given, whether or not the scheduler uses it, so
    /// that no nonsense value is accepted and echoed.
    fn check_given(&self) -> Result<(), RangeError> {
        limits::gpus("gpus", self.gpus)?;
        limits::reps(self.reps)?;
        require(self.k != Some(0), "k", "must be at least 1 (got 0)")?;
        require(
            self.max_decode_batch != Some(0),
            "max-decode-batch",
            "must be at least 1 (omit it for no cap)",
        )?;
        require(
            self.max_seqs != Some(0),
            "max-seqs",
            "must be at least 1 (got 0)",
        )?;
        require(
            self.max_batched_tokens != Some(0),
            "max-batched-tokens",
            "must be at least 1 (got 0)",
        )?;
        if let Some(w) = self.watermark {
            limits::watermark(w)?;
        }
        if let Some(x) = self.swap_gbps {
            limits::bandwidth("swap-gbps", x, "GB/s")?;
        }
        for (field, n) in [
            ("prefill-gpus", self.prefill_gpus),
            ("decode-gpus", self.decode_gpus),
        ] {
            if let Some(n) = n {
                limits::gpus(field, u64::from(n))?;
            }
        }
        if let Some(x) = self.kv_link_gbps {
            limits::bandwidth("kv-link-gbps", x, "Gbit/s")?;
        }
        if let Some(x) = self.kv_link_latency {
            limits::link_latency(x)?;
        }
        require(
            self.lengths_from.is_none() || (self.prompt.is_none() && self.decode.is_none()),
            "lengths-from",
            "draws prompts and decode budgets from its trace: omit --prompt and --decode",
        )?;
        require(
            self.kv_capacity.is_none() || self.gpu_mem_gb.is_none(),
            "kv-capacity",
            "sizes the KV cache itself: omit --gpu-mem-gb",
        )
    }

    /// A warning for each setting given that the chosen scheduler does not use.
    fn unused(&self) -> Vec<String> {
        use SchedulerKind::*;
        let s = self.scheduler;
        let continuous = [Orca, Vllm, Sarathi, DecodeFirst, Disagg];
        let mut notes = Vec::new();
        for (flag, given, users) in [
            ("--k", self.k.is_some(), &[B, Static][..]),
            ("--max-decode-batch", self.max_decode_batch.is_some(), &[B]),
            ("--max-seqs", self.max_seqs.is_some(), &continuous),
            (
                "--max-batched-tokens",
                self.max_batched_tokens.is_some(),
                &continuous,
            ),
            ("--watermark", self.watermark.is_some(), &continuous[1..]),
            ("--prefill-gpus", self.prefill_gpus.is_some(), &[Disagg]),
            ("--decode-gpus", self.decode_gpus.is_some(), &[Disagg]),
            ("--kv-link-gbps", self.kv_link_gbps.is_some(), &[Disagg]),
            (
                "--kv-link-latency",
                self.kv_link_latency.is_some(),
                &[Disagg],
            ),
        ] {
            if given && !users.contains(&s) {
                let names: Vec<&str> = users.iter().map(|k| k.name()).collect();
                notes.push(format!(
                    "warning: {flag} has no effect with --scheduler {s} (it applies to {})",
                    names.join(", ")
                ));
            }
        }
        if self.swap_gbps.is_some() && self.preemption != "swap" {
            notes.push("warning: --swap-gbps has no effect without --preemption swap".into());
        }
        notes
    }

    /// The token budget, or its default. vLLM without chunked prefill sets
    /// `max_num_batched_tokens = max(max_model_len, 2048)`, so any sequence the model takes
    /// can be prefilled in one iteration; policies that run prefills whole get the same
    /// rule with `max_model_len` the longest prefill the workload can need. A note says
    /// when the default is not 2048.
    fn max_batched_tokens(&self, workload: &Workload, notes: &mut Vec<String>) -> u32 {
        let default = BatchLimits::default().max_tokens;
        if let Some(t) = self.max_batched_tokens {
            return t;
        }
        let Some(need) = whole_prefill(self.scheduler, workload) else {
            return default;
        };
        // Prompts and decode budgets are at most MAX_TOKENS each, so this fits a u32.
        let tokens = u32::try_from(need)
            .expect("bounded by 2 x MAX_TOKENS")
            .max(default);
        if tokens > default {
            notes.push(format!(
                "note: --max-batched-tokens defaults to {tokens}, the longest prefill '{}' runs whole (vLLM's max(max_model_len, {default}))",
                self.scheduler
            ));
        }
        tokens
    }

    /// The CPU tier of `cpu_kv_blocks`, checked, its loads crossing the GPU's host link
    /// (PCIe) with each GPU's share of a token's KV bytes.
    fn cpu_kv(&self, hw: &Hardware) -> Result<Option<CpuKv>, RangeError> {
        let Some(blocks) = self.cpu_kv_blocks else {
            return Ok(None);
        };
        limits::cpu_kv(blocks, self.prefix_cache)?;
        let gpu = hw.gpu.ok_or_else(|| RangeError {
            field: "cpu-kv-blocks",
            why: "loads blocks over the GPU's host link: give --gpu (or --cost roofline:GPU)"
                .into(),
        })?;
        Ok(Some(CpuKv {
            blocks,
            link: SwapLink {
                gbytes_per_s: gpu.pcie / 1e9,
                kv_bytes_per_token: kv::bytes_per_token_per_gpu(&hw.model.shape, hw.parallel),
            },
        }))
    }

    /// The preemption mode, with the swap link for swap.
    fn preemption(&self, shape: &ModelShape) -> Result<Preemption, RangeError> {
        match self.preemption.as_str() {
            "recompute" => Ok(Preemption::Recompute),
            "swap" => Ok(Preemption::Swap(SwapLink {
                gbytes_per_s: self.swap_gbps.unwrap_or(DEFAULT_SWAP_GBPS),
                kv_bytes_per_token: shape.kv_bytes_per_token(),
            })),
            other => Err(RangeError {
                field: "preemption",
                why: format!("unknown mode '{other}' (allowed: recompute, swap)"),
            }),
        }
    }

    fn synthetic(
        &self,
        notes: &mut Vec<String>,
        files: &dyn Files,
    ) -> Result<Workload, RangeError> {
        let lengths_from = match &self.lengths_from {
            Some(path) => Some(read_trace(path, "lengths-from", notes, files)?),
            None => None,
        };
        Ok(Workload::Synthetic(SyntheticWorkload {
            rate: self.rate.unwrap_or(DEFAULT_RATE),
            arrivals: self.arrivals.unwrap_or(ArrivalKind::Poisson),
            prompt: self
                .prompt
                .clone()
                .unwrap_or(LengthDist::Fixed(DEFAULT_PROMPT)),
            decode: self
                .decode
                .clone()
                .unwrap_or(LengthDist::Fixed(DEFAULT_DECODE)),
            requests: self.requests.unwrap_or(DEFAULT_REQUESTS),
            lengths_from,
        }))
    }

    /// The conversations of `--workload multiturn`.
    fn multiturn(&self) -> Workload {
        Workload::MultiTurn(MultiTurn {
            session_rate: self.rate.unwrap_or(DEFAULT_RATE),
            turns: self.turns.unwrap_or(DEFAULT_TURNS),
            think_s: self.think.unwrap_or(DEFAULT_THINK_S),
            user: self
                .prompt
                .clone()
                .unwrap_or(LengthDist::Fixed(DEFAULT_PROMPT)),
            decode: self
                .decode
                .clone()
                .unwrap_or(LengthDist::Fixed(DEFAULT_DECODE)),
            system_tokens: self.system_prompt.unwrap_or(0),
            system_prompts: self.system_prompts.unwrap_or(1),
            requests: self.requests.unwrap_or(DEFAULT_REQUESTS),
        })
    }

    /// The conversation settings apply to `--workload multiturn` only.
    fn check_multiturn_flags(&self) -> Result<(), RangeError> {
        for (field, given) in [
            ("turns", self.turns.is_some()),
            ("think", self.think.is_some()),
            ("system-prompt", self.system_prompt.is_some()),
            ("system-prompts", self.system_prompts.is_some()),
        ] {
            require(
                !given || self.workload == WorkloadSpec::MultiTurn,
                field,
                "only used with --workload multiturn",
            )?;
        }
        Ok(())
    }

    fn replay(&self, path: &Path, trace: Arc<Trace>) -> Result<Workload, RangeError> {
        for (field, given) in [
            ("arrivals", self.arrivals.is_some()),
            ("prompt", self.prompt.is_some()),
            ("decode", self.decode.is_some()),
            ("lengths-from", self.lengths_from.is_some()),
        ] {
            require(
                !given,
                field,
                "not used with a trace (--workload azure:PATH or mooncake:PATH), which gives arrivals and lengths",
            )?;
        }
        let total = trace.requests.len();
        require(
            total >= 2,
            "workload",
            format!(
                "{} holds {total} request; a replay needs at least 2",
                path.display()
            ),
        )?;
        let requests = self.requests.unwrap_or(total);
        require(
            (2..=total).contains(&requests),
            "requests",
            format!(
                "must be from 2 to the {total} requests of {} (got {requests})",
                path.display()
            ),
        )?;
        let mut replay = TraceReplay {
            trace,
            time_scale: 1.0,
            requests,
        };
        let native = replay.rate();
        require(
            native.is_finite(),
            "workload",
            format!(
                "the first {requests} requests of {} all arrive at once: no rate to replay or rescale",
                path.display()
            ),
        )?;
        match self.rate {
            Some(rate) => {
                limits::rate(rate)?;
                replay.time_scale = native / rate;
            }
            None => require(
                native <= limits::RATE.1,
                "workload",
                format!(
                    "{} arrives at {} requests/s, above the {} the simulator's times resolve: slow it with --rate",
                    path.display(),
                    num(native),
                    num(limits::RATE.1)
                ),
            )?,
        }
        Ok(Workload::Trace(replay))
    }

    /// The pools and link of disaggregated serving.
    fn disagg(&self, limits: BatchLimits, shape: &ModelShape) -> Result<DisaggSpec, RangeError> {
        let spec = DisaggSpec {
            limits,
            prefill_gpus: self.prefill_gpus.unwrap_or(DEFAULT_POOL_GPUS),
            decode_gpus: self.decode_gpus.unwrap_or(DEFAULT_POOL_GPUS),
            link_gbps: self.kv_link_gbps.unwrap_or(DEFAULT_KV_LINK_GBPS),
            link_latency: self.kv_link_latency.unwrap_or(DEFAULT_KV_LINK_LATENCY),
            kv_bytes_per_token: shape.kv_bytes_per_token(),
        };
        limits::disagg(&spec)?;
        let total = u64::from(spec.prefill_gpus) + u64::from(spec.decode_gpus);
        require(
            self.gpus == 1 || self.gpus == total,
            "gpus",
            format!(
                "disagg uses --prefill-gpus + --decode-gpus = {total} GPUs; omit --gpus (got {})",
                self.gpus
            ),
        )?;
        Ok(spec)
    }

    /// The model of `model`: a built-in, else a Hugging Face config.json (read here).
    pub fn model(&self, files: &dyn Files) -> Result<NamedModel, RangeError> {
        if let Some(m) = model::catalogue::find(&self.model) {
            return Ok(NamedModel {
                name: m.name.to_string(),
                aliases: Vec::new(),
                shape: m.shape,
            });
        }
        let bad = |why: String| RangeError {
            field: "model",
            why,
        };
        let path = Path::new(&self.model);
        if !files.has_file(path) {
            return Err(bad(format!(
                "'{}' is neither a built-in model ({}, or a Hugging Face id of one) nor a config.json file",
                self.model,
                model::catalogue::names().join(", ")
            )));
        }
        let text = files
            .read_text(path)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let shape = ModelShape::from_hf_config(&text)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let folder = files.canonical(path).and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        });
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        Ok(NamedModel {
            name: self.model.clone(),
            aliases: folder.into_iter().chain(stem).collect(),
            shape,
        })
    }

    /// The GPU of `gpu` or of `roofline:GPU` (which must agree), if either is given.
    pub fn gpu(&self, files: &dyn Files) -> Result<Option<GpuSpec>, RangeError> {
        let from_cost = match self.cost.split().0 {
            CostSpec::Roofline { gpu: Some(name) } => Some((name, gpu_named(name, "cost", files)?)),
            _ => None,
        };
        let from_flag = match &self.gpu {
            Some(name) => Some((name, gpu_named(name, "gpu", files)?)),
            None => None,
        };
        match (from_cost, from_flag) {
            (Some((a, x)), Some((b, y))) if x != y => Err(RangeError {
                field: "gpu",
                why: format!("'{b}' is not the GPU '{a}' of --cost roofline:{a}; give one of them"),
            }),
            (a, b) => Ok(a.or(b).map(|(_, g)| g)),
        }
    }

    /// Each replica's layout from `tp` and `pp`, checked against `model`.
    pub fn parallel(&self, model: &ModelShape) -> Result<Parallel, RangeError> {
        for (field, v) in [("tp", self.tp), ("pp", self.pp)] {
            require(
                (1..=MAX_DEGREE).contains(&v),
                field,
                format!("must be from 1 to {MAX_DEGREE} (got {v})"),
            )?;
        }
        require(
            model.heads.is_multiple_of(self.tp),
            "tp",
            format!(
                "must divide the model's {} attention heads (got {})",
                model.heads, self.tp
            ),
        )?;
        require(
            self.pp <= model.layers,
            "pp",
            format!(
                "must be at most the model's {} layers (got {})",
                model.layers, self.pp
            ),
        )?;
        let parallel = Parallel {
            tp: self.tp,
            pp: self.pp,
        };
        require(
            parallel == Parallel::SINGLE || self.cost.is_roofline(),
            "tp",
            "--tp and --pp need --cost roofline: the other cost models price one measured GPU",
        )?;
        Ok(parallel)
    }

    /// The model, GPU and layout, checked.
    pub fn hardware(&self, files: &dyn Files) -> Result<Hardware, RangeError> {
        let model = self.model(files)?;
        let parallel = self.parallel(&model.shape)?;
        let gpu = self.gpu(files)?;
        let named = match self.cost.split().0 {
            CostSpec::Roofline { gpu: Some(name) } => Some(name.as_str()),
            _ => self.gpu.as_deref(),
        };
        Ok(Hardware {
            model,
            gpu,
            gpu_name: named.and_then(gpu::find).map(|g| g.name),
            parallel,
        })
    }

    /// The cost model alone (as `llmsim cost check` prices a profile), with the hardware
    /// it prices.
    pub fn cost_model(
        &self,
        files: &dyn Files,
    ) -> Result<(Arc<dyn CostModel>, Hardware), RangeError> {
        let hw = self.hardware(files)?;
        Ok((self.cost.model(&hw, files)?, hw))
    }

    /// Each GPU's memory (GB) and the setting that gave it: `gpu_mem_gb`, else the GPU's
    /// card for a memory-aware scheduler without `kv_capacity`; `None` for an unlimited
    /// cache.
    fn gpu_memory(&self, hw: &Hardware) -> Option<(f64, &'static str)> {
        if let Some(gb) = self.gpu_mem_gb {
            return Some((gb, "gpu-mem-gb"));
        }
        if self.kv_capacity.is_some() || !self.scheduler.memory_aware() {
            return None;
        }
        hw.gpu.map(|g| (g.memory_gb, "gpu"))
    }

    /// The KV cache from `kv_capacity` or the GPU's memory (`memory`, from
    /// [`Config::gpu_memory`]), unlimited if neither is given.
    fn kv_config(
        &self,
        hw: &Hardware,
        memory: Option<(f64, &'static str)>,
    ) -> Result<KvConfig, RangeError> {
        require(
            self.block_size >= 1,
            "block-size",
            "must be at least 1 token",
        )?;
        let memory_flag = self.kv_capacity.is_some() || self.gpu_mem_gb.is_some();
        require(
            !memory_flag || self.scheduler.memory_aware(),
            "scheduler",
            format!(
                "'{}' assumes an unlimited KV cache; drop --kv-capacity/--gpu-mem-gb or pick static, orca, vllm, sarathi or decode-first",
                self.scheduler
            ),
        )?;
        if let Some(tokens) = self.kv_capacity {
            require(
                tokens >= u64::from(self.block_size),
                "kv-capacity",
                format!(
                    "must hold at least one block of {} tokens (got {tokens})",
                    self.block_size
                ),
            )?;
            return Ok(KvConfig::with_tokens(tokens, self.block_size));
        }
        let Some((gb, mem_field)) = memory else {
            return Ok(KvConfig {
                block_size: self.block_size,
                blocks: None,
            });
        };
        require(
            gb > 0.0 && gb.is_finite(),
            mem_field,
            format!("must be a finite number of GB > 0 (got {})", num(gb)),
        )?;
        require(
            self.gpu_mem_util > 0.0 && self.gpu_mem_util <= 1.0,
            "gpu-mem-util",
            format!("must lie in (0, 1] (got {})", num(self.gpu_mem_util)),
        )?;
        let shape = &hw.model.shape;
        let weights_gb = shape.weights_bytes() / 1e9 / f64::from(hw.parallel.gpus());
        KvConfig::from_memory(gb, self.gpu_mem_util, shape, hw.parallel, self.block_size)
            .filter(|kv| kv.blocks.is_some_and(|b| b > 0))
            .ok_or_else(|| RangeError {
                // Blame the utilisation when the whole GPU would hold the weights.
                field: if gb > weights_gb {
                    "gpu-mem-util"
                } else {
                    mem_field
                },
                why: format!(
                    "{} GB x {} leaves no room for a KV cache beside {}'s {weights_gb:.1} GB of weights per GPU (split over --tp x --pp = {} GPUs)",
                    num(gb),
                    num(self.gpu_mem_util),
                    hw.model.name,
                    hw.parallel.gpus(),
                ),
            })
    }

    /// Checks that the policy's limits let every request of the workload run to the end.
    fn check_limits(
        &self,
        scheduler: &SchedulerSpec,
        kv: &KvConfig,
        workload: &Workload,
        memory: Option<(f64, &'static str)>,
    ) -> Result<(), RangeError> {
        let longest = workload.longest(|l, b| l + b);
        let kv_field = memory.map_or("kv-capacity", |(_, field)| field);
        let Some(limits) = scheduler.limits() else {
            return require(
                kv.fits_alone(longest),
                kv_field,
                format!("the longest request ({longest} tokens) does not fit the KV cache"),
            );
        };
        limits::batch_limits(&limits)?;
        if let Some(need) = whole_prefill(scheduler.kind(), workload) {
            require(
                u64::from(limits.max_tokens) >= need,
                "max-batched-tokens",
                format!(
                    "must be at least {need}, the longest prefill '{}' runs whole (got {})",
                    scheduler.name(),
                    limits.max_tokens
                ),
            )?;
        }
        let watermark = match scheduler {
            SchedulerSpec::Orca(_) => 0,
            _ => kv
                .blocks
                .map_or(0, |b| (limits.watermark * b as f64).ceil() as u64),
        };
        require(
            kv.blocks_for(longest) + watermark <= kv.capacity_blocks(),
            kv_field,
            format!(
                "the longest request ({longest} tokens) and the watermark do not fit the KV cache"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Memory;

    fn small(scheduler: SchedulerKind) -> Config {
        Config {
            scheduler,
            requests: Some(200),
            rate: Some(1.0),
            ..Config::default()
        }
    }

    #[test]
    fn the_default_is_the_seed_study_and_builds() {
        let built = Config::default().build(&Memory::default()).unwrap();
        let w = match &built.run.workload {
            Workload::Synthetic(w) => w,
            _ => panic!("synthetic"),
        };
        assert_eq!((w.rate, w.requests), (0.5, 100_000));
        assert_eq!((w.prompt.max(), w.decode.max()), (128, 64));
        assert_eq!(built.run.warmup, 10_000);
        assert_eq!(
            (built.run.seed, built.run.reps, built.run.engine.gpus),
            (42, 1, 1)
        );
        assert!(built.notes.is_empty(), "{:?}", built.notes);
    }

    #[test]
    fn files_round_trip_every_cost_model() {
        let costs = [
            CostSpec::default(),
            CostSpec::Linear {
                c: 0.02,
                a: 1e-4,
                b0: 64.0,
                dist: CostDist::Gamma { cv: 0.5 },
            },
            CostSpec::Preset {
                name: "h200-llama3.1-8b".into(),
            },
            CostSpec::File {
                path: "fit.toml".into(),
            },
            CostSpec::Roofline {
                gpu: Some("h100".into()),
            },
            CostSpec::with_noise(
                CostSpec::Roofline {
                    gpu: Some("h200".into()),
                },
                Some(0.25),
            ),
        ];
        for cost in costs {
            let cfg = Config {
                cost,
                arrivals: Some(ArrivalKind::Gamma { cv: 2.0 }),
                prompt: Some("lognormal:100:0.5:4096".parse().unwrap()),
                decode: Some("mix:16@0.25,200@0.75".parse().unwrap()),
                watermark: Some(0.05),
                router: RouterSpec::PowerOfD(2),
                ..Config::default()
            };
            let toml_text = toml::to_string(&cfg).unwrap();
            assert_eq!(
                toml::from_str::<Config>(&toml_text).unwrap(),
                cfg,
                "{toml_text}"
            );
            let json = serde_json::to_string(&cfg).unwrap();
            assert_eq!(
                serde_json::from_str::<Config>(&json).unwrap(),
                cfg,
                "{json}"
            );
        }
        // A file gives only what differs from the default.
        let cfg: Config =
            toml::from_str("scheduler = \"vllm\"\n[cost]\nkind = \"roofline\"\ngpu = \"h200\"\n")
                .unwrap();
        assert_eq!(cfg.scheduler, SchedulerKind::Vllm);
        assert_eq!(cfg.seed, 42);
    }

    #[test]
    fn files_with_unknown_or_bad_fields_are_refused_naming_them() {
        let e = toml::from_str::<Config>("sheduler = \"vllm\"").unwrap_err();
        assert!(e.to_string().contains("sheduler"), "{e}");
        let e = toml::from_str::<Config>("prompt = \"uniform:9:3\"").unwrap_err();
        assert!(e.to_string().contains("LO must not exceed HI"), "{e}");
        let e = toml::from_str::<Config>("[cost]\nkind = \"linear\"\nc = 1.0\n").unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
    }

    #[test]
    fn runs_that_cannot_complete_are_errors_naming_the_field() {
        // vLLM with a 64-token budget cannot prefill a 128-token prompt.
        let cfg = Config {
            max_batched_tokens: Some(64),
            max_seqs: Some(16),
            ..small(SchedulerKind::Vllm)
        };
        let e = cfg.validate(&Memory::default()).unwrap_err();
        assert_eq!(e.field, "max-batched-tokens");
        assert!(e.why.contains("must be at least 191"), "{e}");
        // A 32-token KV cache cannot hold a 192-token request.
        let cfg = Config {
            kv_capacity: Some(32),
            ..small(SchedulerKind::Vllm)
        };
        assert_eq!(
            cfg.validate(&Memory::default()).unwrap_err().field,
            "kv-capacity"
        );
        for (cfg, field) in [
            (
                Config {
                    reps: 0,
                    ..small(SchedulerKind::A)
                },
                "reps",
            ),
            (
                Config {
                    rate: Some(f64::NAN),
                    ..small(SchedulerKind::A)
                },
                "rate",
            ),
            (
                Config {
                    gpus: 0,
                    ..small(SchedulerKind::A)
                },
                "gpus",
            ),
            (
                Config {
                    preemption: "drop".into(),
                    ..small(SchedulerKind::Vllm)
                },
                "preemption",
            ),
            (
                Config {
                    cost: CostSpec::with_noise(CostSpec::default(), Some(11.0)),
                    ..small(SchedulerKind::A)
                },
                "noise-cv",
            ),
            (
                Config {
                    cost: CostSpec::Preset { name: "tpu".into() },
                    ..small(SchedulerKind::A)
                },
                "cost",
            ),
            (
                Config {
                    kv_capacity: Some(4096),
                    gpu_mem_gb: Some(80.0),
                    ..small(SchedulerKind::Vllm)
                },
                "kv-capacity",
            ),
            (
                Config {
                    kv_capacity: Some(4096),
                    ..small(SchedulerKind::B)
                },
                "scheduler",
            ),
        ] {
            assert_eq!(
                cfg.validate(&Memory::default()).unwrap_err().field,
                field,
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn unused_settings_and_workload_defaults_come_back_as_notes() {
        let cfg = Config {
            k: Some(8),
            prompt: Some(LengthDist::Fixed(4000)),
            ..small(SchedulerKind::Vllm)
        };
        let notes = cfg.validate(&Memory::default()).unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("note: --max-batched-tokens defaults to 4063"));
        assert!(notes[1].starts_with("warning: --k has no effect with --scheduler vllm"));
    }

    #[test]
    fn the_model_gpu_and_trace_a_config_names_are_read_through_files() {
        let mut files = Memory::default();
        files.0.insert(
            "config.json".into(),
            br#"{"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
                "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256}"#
                .to_vec(),
        );
        files.0.insert(
            "card.toml".into(),
            b"peak_flops = 148e12\nbandwidth = 4.0e12\nmemory_gb = 96\npcie = 64e9\nnvlink = 450e9\n"
                .to_vec(),
        );
        files.0.insert(
            "t.csv".into(),
            b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,10,2\n2023-11-16 18:15:47,20,3\n"
                .to_vec(),
        );
        let cfg = Config {
            model: "config.json".into(),
            gpu: Some("card.toml".into()),
            ..Config::default()
        };
        let m = cfg.model(&files).unwrap();
        assert_eq!(m.shape, ModelShape::LLAMA_3_1_8B);
        // The folder the file canonicalises into names the model, then the file's stem.
        assert_eq!(m.aliases, ["tiny", "config"]);
        assert_eq!(cfg.gpu(&files).unwrap().unwrap().memory_gb, 96.0);
        let none = Memory::default();
        assert!(
            cfg.model(&none)
                .unwrap_err()
                .why
                .contains("nor a config.json file")
        );
        assert!(cfg.gpu(&none).unwrap_err().why.contains("nor a TOML file"));
        files.0.insert("card.toml".into(), vec![0xff]);
        let e = cfg.gpu(&files).unwrap_err().why;
        assert_eq!(e, "card.toml: stream did not contain valid UTF-8");
        let replay = Config {
            workload: WorkloadSpec::Azure("t.csv".into()),
            ..Config::default()
        };
        let built = replay.build(&files);
        assert!(built.is_ok(), "{built:?}");
        let e = replay.build(&none).unwrap_err();
        assert_eq!(e.field, "workload");
        assert!(e.why.contains("t.csv"), "{}", e.why);
    }

    #[test]
    fn the_model_gpu_and_layout_size_the_cache_and_price_the_swaps() {
        let cfg = Config {
            cost: CostSpec::Roofline { gpu: None },
            gpu: Some("h100".into()),
            model: "llama-3.1-70b".into(),
            tp: 4,
            preemption: "swap".into(),
            ..small(SchedulerKind::Vllm)
        };
        let built = cfg.build(&Memory::default()).unwrap();
        let shape = model::catalogue::find("llama-3.1-70b").unwrap().shape;
        let parallel = Parallel { tp: 4, pp: 1 };
        // The H100's 80 GB is the default memory of a memory-aware scheduler.
        let kv = KvConfig::from_memory(80.0, 0.9, &shape, parallel, DEFAULT_BLOCK_SIZE).unwrap();
        assert_eq!(built.run.engine.kv.capacity_tokens(), kv.capacity_tokens());
        assert_eq!(built.resolved.gpu_mem_gb, Some(80.0));
        let Some(Preemption::Swap(link)) =
            built.run.engine.scheduler.limits().map(|l| l.preemption)
        else {
            panic!("swap");
        };
        assert_eq!(link.kv_bytes_per_token, shape.kv_bytes_per_token());
        assert_eq!(built.report(&[])["gpus_total"], 4);
        let again = built.resolved.build(&Memory::default()).unwrap();
        assert_eq!(again.resolved, built.resolved);
        assert_eq!(
            again.run.engine.kv.capacity_tokens(),
            built.run.engine.kv.capacity_tokens()
        );
        for (cfg, field) in [
            (
                Config {
                    gpu: None,
                    ..cfg.clone()
                },
                "gpu",
            ),
            (
                Config {
                    cost: CostSpec::parse("roofline:h200"),
                    ..cfg.clone()
                },
                "gpu",
            ),
            (
                Config {
                    tp: 3,
                    ..cfg.clone()
                },
                "tp",
            ),
            (
                Config {
                    cost: CostSpec::default(),
                    ..cfg.clone()
                },
                "tp",
            ),
            (
                Config {
                    model: "gpt-9".into(),
                    ..cfg.clone()
                },
                "model",
            ),
        ] {
            assert_eq!(
                cfg.validate(&Memory::default()).unwrap_err().field,
                field,
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn conversations_resolve_their_settings_and_others_refuse_them() {
        let cfg = Config {
            workload: WorkloadSpec::MultiTurn,
            turns: Some(3),
            system_prompt: Some(64),
            kv_capacity: Some(100_000),
            prefix_cache: true,
            router: RouterSpec::Session,
            gpus: 2,
            ..small(SchedulerKind::Vllm)
        };
        let built = cfg.build(&Memory::default()).unwrap();
        let r = &built.resolved;
        assert_eq!(
            (r.turns, r.think, r.system_prompts),
            (Some(3), Some(30.0), Some(1))
        );
        assert_eq!(r.prompt, Some(LengthDist::Fixed(DEFAULT_PROMPT)));
        let again = r.build(&Memory::default()).unwrap();
        assert_eq!(&again.resolved, r);
        assert_eq!(again.run.workload, built.run.workload);
        let e = Config {
            workload: WorkloadSpec::Synthetic,
            ..cfg.clone()
        }
        .validate(&Memory::default())
        .unwrap_err();
        assert_eq!(e.field, "turns");
        let e = Config {
            scheduler: SchedulerKind::Orca,
            ..cfg
        }
        .validate(&Memory::default())
        .unwrap_err();
        assert_eq!(e.field, "prefix-cache");
    }

    #[test]
    fn the_resolved_config_builds_the_same_run_without_notes() {
        for scheduler in SchedulerKind::ALL {
            let cfg = Config {
                k: Some(2),
                max_seqs: Some(32),
                prompt: Some(LengthDist::Fixed(3000)),
                rate: Some(0.1),
                cost: CostSpec::with_noise(CostSpec::default(), Some(0.5)),
                ..small(scheduler)
            };
            let built = cfg.build(&Memory::default()).unwrap();
            let again = built.resolved.build(&Memory::default()).unwrap();
            assert_eq!(again.resolved, built.resolved, "{scheduler}");
            assert!(again.notes.is_empty(), "{scheduler}: {:?}", again.notes);
            assert_eq!(
                format!("{:?}", again.run.engine.scheduler),
                format!("{:?}", built.run.engine.scheduler)
            );
            assert_eq!(again.run.warmup, built.run.warmup);
            assert_eq!(again.run.workload, built.run.workload);
            // Same seed, same draws: the same summaries (compared as text: NaN is not NaN).
            let summary = |b: &Built| format!("{:?}", b.run.run_one(0));
            assert_eq!(summary(&again), summary(&built), "{scheduler}");
        }
    }
}
