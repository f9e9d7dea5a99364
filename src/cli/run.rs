//! `llmsim run`: one configuration, one or more replications.

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::{UsageError, require};
use llmsim::cost::{
    CostDist, CostModel, GpuSpec, LinearCost, LogNormalNoise, Preset, RooflineCost, check_cv,
    preset,
};
use llmsim::dist::LengthDist;
use llmsim::engine::EngineConfig;
use llmsim::kv::{DEFAULT_BLOCK_SIZE, KvConfig, ModelPreset};
use llmsim::metrics::Summary;
use llmsim::router::RouterSpec;
use llmsim::scheduler::{
    BatchLimits, DisaggSpec, Preemption, SchedulerKind, SchedulerSpec, SwapLink,
};
use llmsim::sim::RunConfig;
use llmsim::stats::aggregate_json;
use llmsim::trace::Trace;
use llmsim::workload::{ArrivalKind, SyntheticWorkload, TraceReplay, Workload};

/// Where requests come from, as given to `--workload`.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkloadSpec {
    /// Drawn from --rate, --arrivals, --prompt and --decode.
    Synthetic,
    /// Replayed from a trace in the Azure LLM inference format.
    Azure(PathBuf),
}

impl FromStr for WorkloadSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            _ if s == "synthetic" => Ok(WorkloadSpec::Synthetic),
            Some(("azure", path)) if !path.is_empty() => Ok(WorkloadSpec::Azure(path.into())),
            _ => Err(format!("'{s}' is not synthetic or azure:PATH")),
        }
    }
}

/// Defaults of the synthetic workload's flags (documented in their help).
const DEFAULT_RATE: f64 = 0.5;
const DEFAULT_REQUESTS: usize = 100_000;

/// The model and workload flags shared by every command that simulates.
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Scheduler: a (FCFS run-to-completion), b (prefill-prioritizing batching), static
    /// (FasterTransformer), orca, vllm, sarathi, decode-first, disagg (prefill and decode pools).
    #[arg(long, default_value = "a")]
    pub scheduler: SchedulerKind,
    /// Requests: synthetic (drawn from the flags below) or azure:PATH (replay an Azure LLM
    /// inference trace: TIMESTAMP,ContextTokens,GeneratedTokens; L = ContextTokens,
    /// B = GeneratedTokens - 1; a 0 in either column is served as 1).
    #[arg(long, default_value = "synthetic", value_name = "SPEC")]
    pub workload: WorkloadSpec,
    /// Arrival rate lambda (requests per second) [default: 0.5]. With azure:PATH, replays
    /// the trace with its times scaled to this mean rate.
    #[arg(long, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Requests per replication [default: 100000; with azure:PATH, the whole trace].
    #[arg(long)]
    pub requests: Option<usize>,
    /// Warm-up requests per replication, simulated but not measured [default: 10% of --requests].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Arrival process: poisson, det, or gamma:CV [default: poisson].
    #[arg(long)]
    pub arrivals: Option<ArrivalKind>,
    /// Prompt length L (tokens): N, uniform:LO:HI, geometric:MEAN:MAX, mix:N@P,..., lognormal:MEDIAN:SIGMA:MAX [default: 128].
    #[arg(long, value_name = "SPEC")]
    pub prompt: Option<LengthDist>,
    /// Decode budget B (tokens), same forms as --prompt [default: 64].
    #[arg(long, value_name = "SPEC")]
    pub decode: Option<LengthDist>,
    /// Draw each request's (L, B) pair from this Azure-format trace (uniformly, with
    /// replacement) instead of --prompt and --decode; arrivals stay synthetic.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["prompt", "decode"])]
    pub lengths_from: Option<PathBuf>,
    /// Iteration cost model: linear (the seed's, set by --c, --a, --b0, --cost-dist), a
    /// built-in preset (h200-llama3.1-8b, h100-llama3.1-8b), a preset TOML file from `llmsim calibrate --out`,
    /// or roofline:h100 / roofline:h200 (Llama-3.1-8B from datasheet peaks, efficiencies
    /// fitted on the H200 profile).
    #[arg(long, default_value = "linear", value_name = "SPEC")]
    pub cost: String,
    /// Mean setup cost c of a batch (seconds, at most 3600; --cost linear).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.01,
        value_name = "SECONDS"
    )]
    pub c: f64,
    /// Mean per-token cost a (seconds per token, at most 3600; --cost linear).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.001,
        value_name = "SECONDS_PER_TOKEN"
    )]
    pub a: f64,
    /// Tokens per batch at no per-token cost, b0 (tokens, at most 2^32; --cost linear).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.0,
        value_name = "TOKENS"
    )]
    pub b0: f64,
    /// Batch-to-batch cost variation of --cost linear: det, exp (the seed's), or gamma:CV
    /// (0 < CV <= 10: beyond it a run's batches cannot sample the law's mean).
    #[arg(long, default_value = "exp")]
    pub cost_dist: CostDist,
    /// Multiply every iteration's cost by lognormal noise of mean 1 and this coefficient of
    /// variation, 0 < CV <= 10 (any --cost) [default: none].
    #[arg(long, value_name = "CV")]
    pub noise_cv: Option<f64>,
    /// Most prefills per batch, K (Scheduler B); requests per batch (static).
    #[arg(long, default_value_t = 4)]
    pub k: u32,
    /// Most decode entries per batch (Scheduler B) [default: no cap].
    #[arg(long)]
    pub max_decode_batch: Option<u32>,
    /// Most requests running at once (orca, vllm, sarathi, decode-first; vLLM's max_num_seqs).
    #[arg(long, default_value_t = BatchLimits::default().max_seqs)]
    pub max_seqs: u32,
    /// Most tokens per iteration (orca, vllm, sarathi, decode-first; Sarathi's token budget).
    #[arg(long, default_value_t = BatchLimits::default().max_tokens, value_name = "TOKENS")]
    pub max_batched_tokens: u32,
    /// Fraction of KV blocks an admission must leave free (vllm, sarathi, decode-first).
    #[arg(long, allow_negative_numbers = true, default_value_t = BatchLimits::default().watermark)]
    pub watermark: f64,
    /// How a running request is preempted when the batch cannot grow (vllm, decode-first):
    /// recompute (drop its KV cache, redo it later) or swap (move it to host memory and
    /// back over a link of --swap-gbps).
    #[arg(long, default_value = "recompute", value_name = "MODE")]
    pub preemption: String,
    /// Host link bandwidth for --preemption swap (GB/s, 1e9 bytes per second, each way;
    /// PCIe 4.0 x16 moves about 25). A swap of C tokens takes C x the model's KV bytes per
    /// token / this.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 25.0,
        value_name = "GB_PER_S"
    )]
    pub swap_gbps: f64,
    /// KV-cache capacity per GPU (tokens) [default: unlimited, or from --gpu-mem-gb].
    #[arg(long, value_name = "TOKENS", conflicts_with = "gpu_mem_gb")]
    pub kv_capacity: Option<u64>,
    /// GPU memory (GB); the KV cache is what --gpu-mem-util of it leaves after --model's weights.
    #[arg(long, allow_negative_numbers = true, value_name = "GB")]
    pub gpu_mem_gb: Option<f64>,
    /// Fraction of GPU memory the server may use (vLLM's gpu_memory_utilization).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub gpu_mem_util: f64,
    /// Model whose shape sizes the KV cache with --gpu-mem-gb.
    #[arg(long, default_value = "llama-3.1-8b")]
    pub model: ModelPreset,
    /// Tokens per KV block.
    #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE, value_name = "TOKENS")]
    pub block_size: u32,
    /// Prefill GPUs (disagg).
    #[arg(long, default_value_t = 1)]
    pub prefill_gpus: u32,
    /// Decode GPUs (disagg).
    #[arg(long, default_value_t = 1)]
    pub decode_gpus: u32,
    /// Bandwidth of each prefill GPU's KV link to the decode pool (Gbit/s; disagg).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 100.0,
        value_name = "GBPS"
    )]
    pub kv_link_gbps: f64,
    /// Latency of one KV transfer (seconds; disagg).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 1e-4,
        value_name = "SECONDS"
    )]
    pub kv_link_latency: f64,
    /// Number of GPUs (disagg: --prefill-gpus + --decode-gpus).
    #[arg(long, default_value_t = 1)]
    pub gpus: usize,
    /// Router in front of the GPUs: random, round-robin, jsq, least-work, power-of-d:D, central.
    #[arg(long, default_value = "round-robin")]
    pub router: RouterSpec,
    /// Base random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Independent replications.
    #[arg(long, default_value_t = 1)]
    pub reps: u32,
}

/// Reads a trace named by `flag`; a bad file is a usage error naming file, line and field.
fn read_trace(path: &Path, flag: &'static str) -> Result<Arc<Trace>, UsageError> {
    let trace = Trace::read(path).map_err(|e| UsageError {
        flag,
        why: e.to_string(),
    })?;
    if trace.adjusted > 0 {
        eprintln!(
            "note: {}: {} rows with ContextTokens 0 or GeneratedTokens 0 served as L >= 1, B = 0",
            path.display(),
            trace.adjusted
        );
    }
    Ok(Arc::new(trace))
}

impl SimArgs {
    /// Checks every value and builds the run configuration.
    pub fn to_config(&self) -> Result<RunConfig, UsageError> {
        if let Some(rate) = self.rate {
            require(
                rate > 0.0 && rate.is_finite(),
                "--rate",
                format!("must be a finite number > 0 requests/s (got {rate})"),
            )?;
        }
        let workload = match &self.workload {
            WorkloadSpec::Synthetic => self.synthetic()?,
            WorkloadSpec::Azure(path) => self.replay(path)?,
        };
        let requests = workload.requests();
        require(
            requests >= 2,
            "--requests",
            format!("must be at least 2 (got {requests})"),
        )?;
        let warmup = self.warmup.unwrap_or(requests / 10);
        require(
            warmup + 1 < requests,
            "--warmup",
            format!(
                "must leave at least 2 measured requests: below --requests - 1 = {} (got {warmup})",
                requests - 1
            ),
        )?;
        require(
            self.k >= 1,
            "--k",
            format!("must be at least 1 (got {})", self.k),
        )?;
        require(
            self.max_decode_batch != Some(0),
            "--max-decode-batch",
            "must be at least 1 (omit it for no cap)",
        )?;
        require(
            self.gpus >= 1,
            "--gpus",
            format!("must be at least 1 (got {})", self.gpus),
        )?;
        let routing = self.router.check(self.gpus);
        require(
            routing.is_ok(),
            "--router",
            routing.err().unwrap_or_default(),
        )?;
        require(
            self.reps >= 1,
            "--reps",
            format!("must be at least 1 (got {})", self.reps),
        )?;
        let kv = self.kv_config()?;
        let limits = BatchLimits {
            max_seqs: self.max_seqs,
            max_tokens: self.max_batched_tokens,
            watermark: self.watermark,
            preemption: self.preemption()?,
        };
        let scheduler = match self.scheduler {
            SchedulerKind::A => SchedulerSpec::A,
            SchedulerKind::B => SchedulerSpec::B {
                k: self.k,
                max_decode_batch: self.max_decode_batch,
            },
            SchedulerKind::Static => SchedulerSpec::Static { k: self.k },
            SchedulerKind::Orca => SchedulerSpec::Orca(limits),
            SchedulerKind::Vllm => SchedulerSpec::Vllm(limits),
            SchedulerKind::Sarathi => SchedulerSpec::Sarathi(limits),
            SchedulerKind::DecodeFirst => SchedulerSpec::DecodeFirst(limits),
            SchedulerKind::Disagg => SchedulerSpec::Disagg(self.disagg(limits)?),
        };
        require(
            limits.preemption == Preemption::Recompute || scheduler.supports_swap(),
            "--preemption",
            format!(
                "'{}' preempts by recompute only; swap needs --scheduler vllm or decode-first",
                self.scheduler
            ),
        )?;
        let gpus = match scheduler {
            SchedulerSpec::Disagg(d) => (d.prefill_gpus + d.decode_gpus) as usize,
            _ => self.gpus,
        };
        self.check_limits(&scheduler, &kv, &workload)?;
        Ok(RunConfig {
            workload,
            engine: EngineConfig {
                scheduler,
                cost: self.cost_model()?,
                gpus,
                router: self.router,
                kv,
            },
            seed: self.seed,
            reps: self.reps,
            warmup,
        })
    }

    /// The preemption mode of --preemption, with the link of --swap-gbps for swap.
    fn preemption(&self) -> Result<Preemption, UsageError> {
        require(
            self.swap_gbps > 0.0 && self.swap_gbps.is_finite(),
            "--swap-gbps",
            format!(
                "must be a finite number of GB/s > 0 (got {})",
                self.swap_gbps
            ),
        )?;
        match self.preemption.as_str() {
            "recompute" => Ok(Preemption::Recompute),
            "swap" => Ok(Preemption::Swap(SwapLink {
                gbytes_per_s: self.swap_gbps,
                kv_bytes_per_token: self.model.shape().kv_bytes_per_token(),
            })),
            other => Err(UsageError::new(
                "--preemption",
                format!("unknown mode '{other}' (allowed: recompute, swap)"),
            )),
        }
    }

    fn synthetic(&self) -> Result<Workload, UsageError> {
        let prompt = self.prompt.clone().unwrap_or(LengthDist::Fixed(128));
        require(
            prompt.min() >= 1,
            "--prompt",
            "prompts must be at least 1 token long",
        )?;
        let lengths_from = match &self.lengths_from {
            Some(path) => Some(read_trace(path, "--lengths-from")?),
            None => None,
        };
        Ok(Workload::Synthetic(SyntheticWorkload {
            rate: self.rate.unwrap_or(DEFAULT_RATE),
            arrivals: self.arrivals.unwrap_or(ArrivalKind::Poisson),
            prompt,
            decode: self.decode.clone().unwrap_or(LengthDist::Fixed(64)),
            requests: self.requests.unwrap_or(DEFAULT_REQUESTS),
            lengths_from,
        }))
    }

    fn replay(&self, path: &Path) -> Result<Workload, UsageError> {
        for (flag, given) in [
            ("--arrivals", self.arrivals.is_some()),
            ("--prompt", self.prompt.is_some()),
            ("--decode", self.decode.is_some()),
            ("--lengths-from", self.lengths_from.is_some()),
        ] {
            require(
                !given,
                flag,
                "not used with --workload azure:PATH, whose trace gives arrivals and lengths",
            )?;
        }
        let trace = read_trace(path, "--workload")?;
        let total = trace.requests.len();
        let requests = self.requests.unwrap_or(total);
        require(
            (2..=total).contains(&requests),
            "--requests",
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
        if let Some(rate) = self.rate {
            let native = replay.rate();
            require(
                native.is_finite(),
                "--rate",
                format!(
                    "cannot rescale {}: its requests all arrive at once",
                    path.display()
                ),
            )?;
            replay.time_scale = native / rate;
        }
        Ok(Workload::Trace(replay))
    }

    fn cost_model(&self) -> Result<Arc<dyn CostModel>, UsageError> {
        let base: Arc<dyn CostModel> = if self.cost == "linear" {
            let linear = LinearCost::new(self.c, self.a, self.b0, self.cost_dist);
            linear.check().map_err(|e| {
                let flag = match e.field {
                    "c" => "--c",
                    "a" => "--a",
                    _ => "--b0",
                };
                UsageError::new(flag, e.why)
            })?;
            Arc::new(linear)
        } else if let Some(gpu) = self.cost.strip_prefix("roofline:") {
            let gpu = GpuSpec::named(gpu).ok_or_else(|| UsageError {
                flag: "--cost",
                why: format!("roofline:{gpu}: the GPU must be h100 or h200"),
            })?;
            Arc::new(RooflineCost::llama_3_1_8b(gpu))
        } else if let Some(p) = Preset::built_in(&self.cost) {
            p.model()
        } else {
            let preset = Preset::read(Path::new(&self.cost)).map_err(|e| UsageError {
                flag: "--cost",
                why: format!(
                    "{e} (--cost takes linear, a built-in preset ({}), a preset TOML file or roofline:GPU)",
                    preset::built_in_names().join(", ")
                ),
            })?;
            preset.model()
        };
        match self.noise_cv {
            None => Ok(base),
            Some(cv) => {
                check_cv("noise-cv", cv).map_err(|e| {
                    UsageError::new("--noise-cv", format!("{}; omit it for no noise", e.why))
                })?;
                Ok(Arc::new(LogNormalNoise::new(base, cv)))
            }
        }
    }

    /// The pools and link of disaggregated serving.
    fn disagg(&self, limits: BatchLimits) -> Result<DisaggSpec, UsageError> {
        require(
            self.prefill_gpus >= 1,
            "--prefill-gpus",
            "must be at least 1",
        )?;
        require(self.decode_gpus >= 1, "--decode-gpus", "must be at least 1")?;
        let total = (self.prefill_gpus + self.decode_gpus) as usize;
        require(
            self.gpus == 1 || self.gpus == total,
            "--gpus",
            format!(
                "disagg uses --prefill-gpus + --decode-gpus = {total} GPUs; omit --gpus (got {})",
                self.gpus
            ),
        )?;
        require(
            self.kv_link_gbps > 0.0 && self.kv_link_gbps.is_finite(),
            "--kv-link-gbps",
            format!("must be a finite number > 0 (got {})", self.kv_link_gbps),
        )?;
        require(
            self.kv_link_latency >= 0.0 && self.kv_link_latency.is_finite(),
            "--kv-link-latency",
            format!(
                "must be a finite number of seconds >= 0 (got {})",
                self.kv_link_latency
            ),
        )?;
        Ok(DisaggSpec {
            limits,
            prefill_gpus: self.prefill_gpus,
            decode_gpus: self.decode_gpus,
            link_gbps: self.kv_link_gbps,
            link_latency: self.kv_link_latency,
            kv_bytes_per_token: self.model.shape().kv_bytes_per_token(),
        })
    }

    /// The KV cache from --kv-capacity or --gpu-mem-gb, unlimited if neither is given.
    fn kv_config(&self) -> Result<KvConfig, UsageError> {
        require(
            self.block_size >= 1,
            "--block-size",
            "must be at least 1 token",
        )?;
        let memory_flag = self.kv_capacity.is_some() || self.gpu_mem_gb.is_some();
        require(
            !memory_flag || self.scheduler.memory_aware(),
            "--scheduler",
            format!(
                "'{}' assumes an unlimited KV cache; drop --kv-capacity/--gpu-mem-gb or pick static, orca, vllm, sarathi or decode-first",
                self.scheduler
            ),
        )?;
        if let Some(tokens) = self.kv_capacity {
            require(
                tokens >= u64::from(self.block_size),
                "--kv-capacity",
                format!(
                    "must hold at least one block of {} tokens (got {tokens})",
                    self.block_size
                ),
            )?;
            return Ok(KvConfig::with_tokens(tokens, self.block_size));
        }
        let Some(gb) = self.gpu_mem_gb else {
            return Ok(KvConfig {
                block_size: self.block_size,
                blocks: None,
            });
        };
        require(
            gb > 0.0 && gb.is_finite(),
            "--gpu-mem-gb",
            format!("must be a finite number of GB > 0 (got {gb})"),
        )?;
        require(
            self.gpu_mem_util > 0.0 && self.gpu_mem_util <= 1.0,
            "--gpu-mem-util",
            format!("must lie in (0, 1] (got {})", self.gpu_mem_util),
        )?;
        let shape = self.model.shape();
        KvConfig::from_memory(gb, self.gpu_mem_util, &shape, self.block_size)
            .filter(|kv| kv.blocks.is_some_and(|b| b > 0))
            .ok_or_else(|| UsageError::new(
                "--gpu-mem-gb",
                format!(
                    "{gb} GB x {} leaves no room for a KV cache beside {}'s {:.1} GB of weights",
                    self.gpu_mem_util,
                    self.model,
                    shape.weight_bytes() / 1e9
                ),
            ))
    }

    /// Checks that the policy's limits let every request of the workload run to the end.
    fn check_limits(
        &self,
        scheduler: &SchedulerSpec,
        kv: &KvConfig,
        workload: &Workload,
    ) -> Result<(), UsageError> {
        let (max_l, max_b) = workload.longest();
        let longest = u64::from(max_l) + u64::from(max_b);
        let Some(limits) = scheduler.limits() else {
            return require(
                kv.fits_alone(longest),
                "--kv-capacity",
                format!("the longest request ({longest} tokens) does not fit the KV cache"),
            );
        };
        require(
            limits.max_seqs >= 1,
            "--max-seqs",
            format!("must be at least 1 (got {})", limits.max_seqs),
        )?;
        require(
            limits.max_tokens >= limits.max_seqs,
            "--max-batched-tokens",
            format!(
                "must be at least --max-seqs = {}, so that every running request can decode in one iteration (got {})",
                limits.max_seqs, limits.max_tokens
            ),
        )?;
        require(
            (0.0..1.0).contains(&limits.watermark),
            "--watermark",
            format!("must lie in [0, 1) (got {})", limits.watermark),
        )?;
        // Whole prefills must fit one iteration: a prompt (Orca), or after a preemption the
        // prompt and all but the last generated token (vLLM, decode-first).
        let whole = match scheduler {
            SchedulerSpec::Orca(_) | SchedulerSpec::Disagg(_) => Some(max_l),
            SchedulerSpec::Vllm(_) | SchedulerSpec::DecodeFirst(_) => {
                Some(max_l + max_b.saturating_sub(1))
            }
            _ => None,
        };
        if let Some(need) = whole {
            require(
                limits.max_tokens >= need,
                "--max-batched-tokens",
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
            "--kv-capacity",
            format!(
                "the longest request ({longest} tokens) and the watermark do not fit the KV cache"
            ),
        )
    }

    fn describe(&self, cfg: &RunConfig) -> Value {
        let workload = match &cfg.workload {
            Workload::Synthetic(w) => json!({
                "kind": "synthetic",
                "arrivals": w.arrivals.to_string(),
                "prompt": w.prompt.to_string(),
                "decode": w.decode.to_string(),
                "lengths_from": w.lengths_from.as_ref().map(|t| t.source.display().to_string()),
            }),
            Workload::Trace(t) => json!({
                "kind": "azure",
                "trace": t.trace.source.display().to_string(),
                "time_scale": t.time_scale,
            }),
        };
        // The linear model's parameters only mean something when it is the model in use.
        let linear = |v: Value| {
            if self.cost == "linear" {
                v
            } else {
                Value::Null
            }
        };
        json!({
            "scheduler": self.scheduler.to_string(),
            "workload": workload,
            "rate": cfg.workload.rate(),
            "requests": cfg.workload.requests(),
            "warmup": cfg.warmup,
            "cost": self.cost,
            "c": linear(json!(self.c)),
            "a": linear(json!(self.a)),
            "b0": linear(json!(self.b0)),
            "cost_dist": linear(json!(self.cost_dist.to_string())),
            "noise_cv": self.noise_cv,
            "k": self.k,
            "max_decode_batch": self.max_decode_batch,
            "max_seqs": self.max_seqs,
            "max_batched_tokens": self.max_batched_tokens,
            "watermark": self.watermark,
            "preemption": self.preemption,
            "swap_gbps": self.swap_gbps,
            "kv_capacity_tokens": cfg.engine.kv.capacity_tokens(),
            "block_size": self.block_size,
            "gpus": cfg.engine.gpus,
            "prefill_gpus": self.prefill_gpus,
            "decode_gpus": self.decode_gpus,
            "kv_link_gbps": self.kv_link_gbps,
            "kv_link_latency": self.kv_link_latency,
            "router": self.router.to_string(),
            "seed": self.seed,
            "reps": self.reps,
        })
    }
}

/// Flags of `llmsim run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    sim: SimArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The JSON document `llmsim run --json` prints.
pub fn result_json(summaries: &[Summary], config: Value, capacity: Option<f64>) -> Value {
    let reps: Vec<Value> = summaries
        .iter()
        .map(|s| serde_json::to_value(s).expect("summaries serialise"))
        .collect();
    let mut out = aggregate_json(&reps);
    out["capacity_rps"] = json!(capacity);
    out["config"] = config;
    out
}

pub fn main(args: RunArgs) -> Result<()> {
    let cfg = args.sim.to_config()?;
    let summaries = cfg.run();
    let doc = result_json(&summaries, args.sim.describe(&cfg), cfg.capacity());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_table(&doc);
    }
    Ok(())
}

fn print_table(doc: &Value) {
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let ci = |obj: &Value, key: &str| {
        obj.get("ci95")
            .and_then(|c| c.get(key))
            .map(|h| format!(" ± {:.4}", num(h)))
            .unwrap_or_default()
    };
    let c = &doc["config"];
    println!(
        "scheduler {} | cost {} | rate {:.4} req/s | {} GPU(s), router {} | {} requests x {} reps (warm-up {}) | seed {}",
        c["scheduler"].as_str().unwrap_or("?"),
        c["cost"].as_str().unwrap_or("?"),
        num(&c["rate"]),
        c["gpus"],
        c["router"].as_str().unwrap_or("?"),
        c["requests"],
        c["reps"],
        c["warmup"],
        c["seed"]
    );
    if doc["unstable"] == true {
        println!(
            "UNSTABLE: the arrival rate exceeds capacity; steady-state figures below are not meaningful"
        );
    }
    for (label, key, unit) in [
        ("throughput", "throughput_rps", "req/s"),
        ("token throughput", "tokens_per_s", "tok/s"),
        ("GPU utilisation", "utilization", ""),
        ("mean in system", "mean_in_system", ""),
        ("mean in queue", "mean_in_queue", ""),
        (
            "load imbalance",
            "load_imbalance",
            "(max/mean GPU busy time)",
        ),
        ("KV utilisation", "kv_utilization", ""),
        ("KV peak", "kv_peak_utilization", ""),
        ("preemptions", "preemptions", ""),
        ("recomputed tokens", "recomputed_tokens", "tok"),
        ("swaps out", "swaps_out", ""),
        ("swaps in", "swaps_in", ""),
        ("swap time", "swap_seconds", "s"),
    ] {
        println!("{label:>18}: {:.4}{} {unit}", num(&doc[key]), ci(doc, key));
    }
    print_per_gpu(doc);
    if let Some(cap) = doc["capacity_rps"].as_f64() {
        println!("{:>18}: {cap:.4} req/s (closed form)", "capacity");
    }
    println!(
        "\n{:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}   (seconds)",
        "", "mean", "p50", "p90", "p95", "p99", "max"
    );
    for key in ["ttft", "tbt", "itl", "e2e"] {
        let d = &doc[key];
        println!(
            "{:>6} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>10.4}{}",
            key.to_uppercase(),
            num(&d["mean"]),
            num(&d["p50"]),
            num(&d["p90"]),
            num(&d["p95"]),
            num(&d["p99"]),
            num(&d["max"]),
            ci(d, "mean").replace(" ± ", "   mean ± "),
        );
    }
    let b = &doc["batches"];
    for kind in ["prefill", "decode", "mixed"] {
        let k = &b[kind];
        if num(&k["batches"]) > 0.0 {
            println!(
                "{kind:>8} batches: {:.0}, mean {:.1} tokens, {:.2} entries",
                num(&k["batches"]),
                num(&k["mean_tokens"]),
                num(&k["mean_entries"])
            );
        }
    }
}

/// Up to this many GPUs get a line each; larger clusters get min / mean / max.
const PER_GPU_LINES: usize = 16;

/// Per-GPU utilisation and request counts (replication means).
fn print_per_gpu(doc: &Value) {
    let column = |key: &str| -> Vec<f64> {
        doc[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
            .unwrap_or_default()
    };
    let (util, reqs) = (column("gpu_utilization"), column("gpu_requests"));
    if util.len() <= PER_GPU_LINES {
        for (g, (u, r)) in util.iter().zip(&reqs).enumerate() {
            println!(
                "{:>18}: utilisation {u:.4}, {r:.0} requests",
                format!("GPU {g}")
            );
        }
    } else {
        let range = |xs: &[f64]| {
            let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (min, llmsim::stats::mean(xs), max)
        };
        let ((u0, u1, u2), (r0, r1, r2)) = (range(&util), range(&reqs));
        println!(
            "{:>18}: utilisation min {u0:.4} / mean {u1:.4} / max {u2:.4}; requests min {r0:.0} / mean {r1:.1} / max {r2:.0}",
            format!("{} GPUs", util.len())
        );
    }
}
