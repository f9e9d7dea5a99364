//! `llmsim run`: one configuration, one or more replications.

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::cost::CostArgs;
use super::{UsageError, require};
use llmsim::dist::LengthDist;
use llmsim::engine::EngineConfig;
use llmsim::kv::{DEFAULT_BLOCK_SIZE, KvConfig};
use llmsim::limits::{self, num};
use llmsim::metrics::Summary;
use llmsim::multiturn::MultiTurn;
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

/// Defaults of the synthetic workload's flags (documented in their help).
const DEFAULT_RATE: f64 = 0.5;
const DEFAULT_REQUESTS: usize = 100_000;
/// Defaults of the policy flags that are optional so that a given one can be told apart.
const DEFAULT_K: u32 = 4;
const DEFAULT_SWAP_GBPS: f64 = 25.0;
const DEFAULT_KV_LINK_GBPS: f64 = 100.0;
const DEFAULT_KV_LINK_LATENCY: f64 = 1e-4;

/// The model and workload flags shared by every command that simulates.
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Scheduler: a (FCFS run-to-completion), b (prefill-prioritizing batching), static
    /// (FasterTransformer), orca, vllm, sarathi, decode-first, disagg (prefill and decode pools).
    #[arg(long, default_value = "a")]
    pub scheduler: SchedulerKind,
    /// Requests: synthetic (drawn from the flags below) or azure:PATH (replay an Azure LLM
    /// inference trace: TIMESTAMP,ContextTokens,GeneratedTokens; L = ContextTokens,
    /// B = GeneratedTokens - 1; a 0 in either column is served as 1), or mooncake:PATH
    /// (replay a Mooncake trace, JSON lines: timestamp ms, input_length, output_length,
    /// hash_ids per 512-token chunk, the prompts' prefix identities for --prefix-cache).
    #[arg(long, default_value = "synthetic", value_name = "SPEC")]
    pub workload: WorkloadSpec,
    /// Arrival rate lambda (requests per second, from 1e-9 to 1e9; --requests / --rate
    /// at most 1e9 s, where times stay exact to 0.2 us) [default: 0.5]. With a trace,
    /// replays it with its times scaled to this mean rate.
    #[arg(long, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Requests per replication, from 2 to 4294967295 [default: 100000; with a trace, the
    /// whole trace].
    #[arg(long)]
    pub requests: Option<usize>,
    /// Warm-up requests per replication, simulated but not measured [default: 10% of --requests].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Arrival process: poisson, det, or gamma:CV with CV from 0.001 to 10 [default: poisson].
    #[arg(long)]
    pub arrivals: Option<ArrivalKind>,
    /// Prompt length L (tokens, at most 16777216): N, uniform:LO:HI, geometric:MEAN:MAX, mix:N@P,..., lognormal:MEDIAN:SIGMA:MAX [default: 128].
    #[arg(long, value_name = "SPEC")]
    pub prompt: Option<LengthDist>,
    /// Decode budget B (tokens), same forms as --prompt [default: 64].
    #[arg(long, value_name = "SPEC")]
    pub decode: Option<LengthDist>,
    /// Draw each request's (L, B) pair from this Azure-format trace (uniformly, with
    /// replacement) instead of --prompt and --decode; arrivals stay synthetic.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["prompt", "decode"])]
    pub lengths_from: Option<PathBuf>,
    #[command(flatten)]
    pub costs: CostArgs,
    /// Most prefills per batch, K (Scheduler B); requests per batch (static) [default: 4].
    #[arg(long)]
    pub k: Option<u32>,
    /// Most decode entries per batch (Scheduler B) [default: no cap].
    #[arg(long)]
    pub max_decode_batch: Option<u32>,
    /// Most requests running at once (orca, vllm, sarathi, decode-first, disagg; vLLM's
    /// max_num_seqs) [default: 256].
    #[arg(long)]
    pub max_seqs: Option<u32>,
    /// Most tokens per iteration (orca, vllm, sarathi, decode-first, disagg; Sarathi's token
    /// budget) [default: 2048; where whole prefills run (orca, vllm, decode-first, disagg),
    /// vLLM's max(max_model_len, 2048), with max_model_len the longest prefill the workload
    /// can need: its longest prompt, or for vllm and decode-first the longest L + B - 1 a
    /// recompute rebuilds].
    #[arg(long, value_name = "TOKENS")]
    pub max_batched_tokens: Option<u32>,
    /// Fraction of KV blocks an admission must leave free, in [0, 1) (vllm, sarathi,
    /// decode-first, disagg) [default: 0.01].
    #[arg(long, allow_negative_numbers = true)]
    pub watermark: Option<f64>,
    /// How a running request is preempted when the batch cannot grow (vllm, decode-first):
    /// recompute (drop its KV cache, redo it later) or swap (move it to host memory and
    /// back over a link of --swap-gbps).
    #[arg(long, default_value = "recompute", value_name = "MODE")]
    pub preemption: String,
    /// Host link bandwidth for --preemption swap (GB/s, 1e9 bytes per second, each way;
    /// PCIe 4.0 x16 moves about 25; from 0.001 to 1e6). A swap of C tokens takes C x the
    /// model's KV bytes per token / this [default: 25].
    #[arg(long, allow_negative_numbers = true, value_name = "GB_PER_S")]
    pub swap_gbps: Option<f64>,
    /// KV-cache capacity per GPU (tokens) [default: unlimited, or from --gpu-mem-gb].
    #[arg(long, value_name = "TOKENS", conflicts_with = "gpu_mem_gb")]
    pub kv_capacity: Option<u64>,
    /// Memory of each GPU (GB); the KV cache is what --gpu-mem-util of it leaves after
    /// --model's weights, split across the --tp x --pp GPUs of a replica [default: unlimited,
    /// or --gpu's memory for static, orca, vllm, sarathi, decode-first, disagg].
    #[arg(long, allow_negative_numbers = true, value_name = "GB")]
    pub gpu_mem_gb: Option<f64>,
    /// Fraction of GPU memory the server may use (vLLM's gpu_memory_utilization).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub gpu_mem_util: f64,
    /// Tokens per KV block.
    #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE, value_name = "TOKENS")]
    pub block_size: u32,
    /// Prefill GPUs (disagg; prefill and decode GPUs at most 100000 in all) [default: 1].
    #[arg(long)]
    pub prefill_gpus: Option<u32>,
    /// Decode GPUs (disagg) [default: 1].
    #[arg(long)]
    pub decode_gpus: Option<u32>,
    /// Bandwidth of each prefill GPU's KV link to the decode pool (Gbit/s, from 0.001 to
    /// 1e6; disagg) [default: 100].
    #[arg(long, allow_negative_numbers = true, value_name = "GBPS")]
    pub kv_link_gbps: Option<f64>,
    /// Latency of one KV transfer (seconds, from 0 to 3600; disagg) [default: 0.0001].
    #[arg(long, allow_negative_numbers = true, value_name = "SECONDS")]
    pub kv_link_latency: Option<f64>,
    /// Number of replicas, from 1 to 100000, each of --tp x --pp GPUs (disagg:
    /// --prefill-gpus + --decode-gpus).
    #[arg(long, default_value_t = 1)]
    pub gpus: u64,
    /// Router in front of the GPUs: random, round-robin, jsq, least-work, power-of-d:D, central,
    /// prefix-aware (the GPU whose routed prefixes match the prompt longest, unless load is
    /// imbalanced: SGLang's cache-aware policy), session (a conversation's turns on one GPU).
    #[arg(long, default_value = "round-robin")]
    pub router: RouterSpec,
    /// Prefix caching, on or off (vllm, sarathi, decode-first, with a finite KV cache): each
    /// GPU keeps finished prompts' full KV blocks, keyed by their whole prefix, for later
    /// requests with the same prefix (vLLM's automatic prefix caching; evicted LRU).
    #[arg(long, value_name = "on|off", default_value = "off", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub prefix_cache: bool,
    /// Turns per conversation (--workload multiturn; --rate is then sessions per second,
    /// --prompt each new user message, --decode each reply's B) [default: 4].
    #[arg(long)]
    pub turns: Option<u32>,
    /// Mean time from one turn's arrival to the next (seconds, exponential; --workload
    /// multiturn; it spans the reply's serving and the user's pause) [default: 30].
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub think: Option<f64>,
    /// Tokens of the system prompt that opens each conversation (--workload multiturn)
    /// [default: 0].
    #[arg(long, value_name = "TOKENS")]
    pub system_prompt: Option<u32>,
    /// Distinct system prompts, shared by the conversations that draw each (--workload
    /// multiturn) [default: 1].
    #[arg(long)]
    pub system_prompts: Option<u32>,
    /// Base random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Independent replications, from 1 to 10000 (a trace replay with a deterministic cost
    /// model and router: 1, as every replication would be the same).
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

/// Reads the Mooncake trace of `--workload mooncake:PATH`; a bad file is a usage error
/// naming file, line and field.
fn read_mooncake(path: &Path) -> Result<Arc<Trace>, UsageError> {
    let trace =
        Trace::read_mooncake(path).map_err(|e| UsageError::new("--workload", e.to_string()))?;
    if trace.adjusted > 0 {
        eprintln!(
            "note: {}: {} rows with input_length 0 or output_length 0 served as L >= 1, B = 0",
            path.display(),
            trace.adjusted
        );
    }
    Ok(Arc::new(trace))
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
fn check_window(t: &TraceReplay, warmup: usize) -> Result<(), UsageError> {
    let arrivals = &t.trace.requests;
    require(
        arrivals[t.requests - 1].arrival > arrivals[warmup].arrival,
        "--workload",
        format!(
            "requests {} to {} of {} all arrive at the same instant, so the measurement window (first measured arrival to last) has no length: lower --warmup or replay more requests",
            warmup + 1,
            t.requests,
            t.trace.source.display()
        ),
    )
}

impl SimArgs {
    /// Checks every value and builds the run configuration.
    pub fn to_config(&self) -> Result<RunConfig, UsageError> {
        self.check_given()?;
        let workload = match &self.workload {
            WorkloadSpec::Synthetic => self.synthetic()?,
            WorkloadSpec::Azure(path) => self.replay(path, read_trace(path, "--workload")?)?,
            WorkloadSpec::Mooncake(path) => self.replay(path, read_mooncake(path)?)?,
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
        let routing = self.router.check(gpus);
        require(
            routing.is_ok(),
            "--router",
            routing.err().unwrap_or_default(),
        )?;
        let kv = self.kv_config()?;
        let defaults = BatchLimits::default();
        let limits = BatchLimits {
            max_seqs: self.max_seqs.unwrap_or(defaults.max_seqs),
            max_tokens: self.max_batched_tokens(&workload),
            watermark: self.watermark.unwrap_or(defaults.watermark),
            preemption: self.preemption()?,
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
            _ => gpus,
        };
        self.check_limits(&scheduler, &kv, &workload)?;
        let engine = EngineConfig {
            scheduler,
            cost: self.costs.build()?,
            gpus,
            router: self.router,
            kv,
            prefix_cache: self.prefix_cache,
        };
        limits::prefix_cache(&engine)?;
        limits::replications(&workload, &engine, self.reps)?;
        // Only once the run is sure to go ahead, so an error is never preceded by advice.
        self.warn_unused();
        Ok(RunConfig {
            workload,
            engine,
            seed: self.seed,
            reps: self.reps,
            warmup,
        })
    }

    /// Checks the range of every flag given, whether or not the scheduler uses it, so that
    /// no nonsense value is accepted and echoed.
    fn check_given(&self) -> Result<(), UsageError> {
        limits::gpus("gpus", self.gpus)?;
        limits::reps(self.reps)?;
        require(self.k != Some(0), "--k", "must be at least 1 (got 0)")?;
        require(
            self.max_decode_batch != Some(0),
            "--max-decode-batch",
            "must be at least 1 (omit it for no cap)",
        )?;
        require(
            self.max_seqs != Some(0),
            "--max-seqs",
            "must be at least 1 (got 0)",
        )?;
        require(
            self.max_batched_tokens != Some(0),
            "--max-batched-tokens",
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
        Ok(())
    }

    /// Warns on stderr about each flag given that the chosen configuration does not use.
    fn warn_unused(&self) {
        use SchedulerKind::*;
        let s = self.scheduler;
        let continuous = [Orca, Vllm, Sarathi, DecodeFirst, Disagg];
        for (flag, given, users) in [
            ("--k", self.k.is_some(), &[B, Static][..]),
            ("--max-decode-batch", self.max_decode_batch.is_some(), &[B]),
            ("--max-seqs", self.max_seqs.is_some(), &continuous),
            (
                "--max-batched-tokens",
                self.max_batched_tokens.is_some(),
                &continuous,
            ),
            (
                "--watermark",
                self.watermark.is_some(),
                &[Vllm, Sarathi, DecodeFirst, Disagg],
            ),
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
                eprintln!(
                    "warning: {flag} has no effect with --scheduler {s} (it applies to {})",
                    names.join(", ")
                );
            }
        }
        if self.swap_gbps.is_some() && self.preemption != "swap" {
            eprintln!("warning: --swap-gbps has no effect without --preemption swap");
        }
    }

    /// --max-batched-tokens, or its default. vLLM without chunked prefill sets
    /// `max_num_batched_tokens = max(max_model_len, 2048)`, so any sequence the model takes
    /// can be prefilled in one iteration; policies that run prefills whole get the same
    /// rule with `max_model_len` the longest prefill the workload can need. The value used
    /// is in the JSON config, and a note says when it is not 2048.
    fn max_batched_tokens(&self, workload: &Workload) -> u32 {
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
            eprintln!(
                "note: --max-batched-tokens defaults to {tokens}, the longest prefill '{}' runs whole (vLLM's max(max_model_len, {default}))",
                self.scheduler
            );
        }
        tokens
    }

    /// The preemption mode of --preemption, with the link of --swap-gbps for swap.
    fn preemption(&self) -> Result<Preemption, UsageError> {
        match self.preemption.as_str() {
            "recompute" => Ok(Preemption::Recompute),
            "swap" => Ok(Preemption::Swap(SwapLink {
                gbytes_per_s: self.swap_gbps.unwrap_or(DEFAULT_SWAP_GBPS),
                kv_bytes_per_token: self.costs.model()?.shape.kv_bytes_per_token(),
            })),
            other => Err(UsageError::new(
                "--preemption",
                format!("unknown mode '{other}' (allowed: recompute, swap)"),
            )),
        }
    }

    fn synthetic(&self) -> Result<Workload, UsageError> {
        let lengths_from = match &self.lengths_from {
            Some(path) => Some(read_trace(path, "--lengths-from")?),
            None => None,
        };
        Ok(Workload::Synthetic(SyntheticWorkload {
            rate: self.rate.unwrap_or(DEFAULT_RATE),
            arrivals: self.arrivals.unwrap_or(ArrivalKind::Poisson),
            prompt: self.prompt.clone().unwrap_or(LengthDist::Fixed(128)),
            decode: self.decode.clone().unwrap_or(LengthDist::Fixed(64)),
            requests: self.requests.unwrap_or(DEFAULT_REQUESTS),
            lengths_from,
        }))
    }

    /// The conversations of --workload multiturn.
    fn multiturn(&self) -> Workload {
        Workload::MultiTurn(MultiTurn {
            session_rate: self.rate.unwrap_or(DEFAULT_RATE),
            turns: self.turns.unwrap_or(4),
            think_s: self.think.unwrap_or(30.0),
            user: self.prompt.clone().unwrap_or(LengthDist::Fixed(128)),
            decode: self.decode.clone().unwrap_or(LengthDist::Fixed(64)),
            system_tokens: self.system_prompt.unwrap_or(0),
            system_prompts: self.system_prompts.unwrap_or(1),
            requests: self.requests.unwrap_or(DEFAULT_REQUESTS),
        })
    }

    /// The conversation flags apply to --workload multiturn only.
    fn check_multiturn_flags(&self) -> Result<(), UsageError> {
        for (flag, given) in [
            ("--turns", self.turns.is_some()),
            ("--think", self.think.is_some()),
            ("--system-prompt", self.system_prompt.is_some()),
            ("--system-prompts", self.system_prompts.is_some()),
        ] {
            require(
                !given || self.workload == WorkloadSpec::MultiTurn,
                flag,
                "only used with --workload multiturn",
            )?;
        }
        Ok(())
    }

    fn replay(&self, path: &Path, trace: Arc<Trace>) -> Result<Workload, UsageError> {
        for (flag, given) in [
            ("--arrivals", self.arrivals.is_some()),
            ("--prompt", self.prompt.is_some()),
            ("--decode", self.decode.is_some()),
            ("--lengths-from", self.lengths_from.is_some()),
        ] {
            require(
                !given,
                flag,
                "not used with a trace (--workload azure:PATH or mooncake:PATH), which gives arrivals and lengths",
            )?;
        }
        let total = trace.requests.len();
        require(
            total >= 2,
            "--workload",
            format!(
                "{} holds {total} request; a replay needs at least 2",
                path.display()
            ),
        )?;
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
        let native = replay.rate();
        require(
            native.is_finite(),
            "--workload",
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
                "--workload",
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
    fn disagg(&self, limits: BatchLimits) -> Result<DisaggSpec, UsageError> {
        let spec = DisaggSpec {
            limits,
            prefill_gpus: self.prefill_gpus.unwrap_or(1),
            decode_gpus: self.decode_gpus.unwrap_or(1),
            link_gbps: self.kv_link_gbps.unwrap_or(DEFAULT_KV_LINK_GBPS),
            link_latency: self.kv_link_latency.unwrap_or(DEFAULT_KV_LINK_LATENCY),
            kv_bytes_per_token: self.costs.model()?.shape.kv_bytes_per_token(),
        };
        limits::disagg(&spec)?;
        let total = u64::from(spec.prefill_gpus) + u64::from(spec.decode_gpus);
        require(
            self.gpus == 1 || self.gpus == total,
            "--gpus",
            format!(
                "disagg uses --prefill-gpus + --decode-gpus = {total} GPUs; omit --gpus (got {})",
                self.gpus
            ),
        )?;
        Ok(spec)
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
        let Some((gb, mem_flag)) = self.gpu_memory()? else {
            return Ok(KvConfig {
                block_size: self.block_size,
                blocks: None,
            });
        };
        require(
            gb > 0.0 && gb.is_finite(),
            mem_flag,
            format!("must be a finite number of GB > 0 (got {})", num(gb)),
        )?;
        require(
            self.gpu_mem_util > 0.0 && self.gpu_mem_util <= 1.0,
            "--gpu-mem-util",
            format!("must lie in (0, 1] (got {})", num(self.gpu_mem_util)),
        )?;
        let model = self.costs.model()?;
        let parallel = self.costs.parallel(&model.shape)?;
        let weights_gb = model.shape.weights_bytes() / 1e9 / f64::from(parallel.gpus());
        KvConfig::from_memory(gb, self.gpu_mem_util, &model.shape, parallel, self.block_size)
            .filter(|kv| kv.blocks.is_some_and(|b| b > 0))
            .ok_or_else(|| {
                // Blame the utilisation when the whole GPU would hold the weights.
                let flag = if gb > weights_gb {
                    "--gpu-mem-util"
                } else {
                    mem_flag
                };
                UsageError::new(
                    flag,
                    format!(
                        "{} GB x {} leaves no room for a KV cache beside {}'s {weights_gb:.1} GB of weights per GPU (split over --tp x --pp = {} GPUs)",
                        num(gb),
                        num(self.gpu_mem_util),
                        model.name,
                        parallel.gpus(),
                    ),
                )
            })
    }

    /// Each GPU's memory (GB) and the flag that gave it: --gpu-mem-gb, else --gpu's card
    /// for a memory-aware scheduler without --kv-capacity; `None` for an unlimited cache.
    fn gpu_memory(&self) -> Result<Option<(f64, &'static str)>, UsageError> {
        if let Some(gb) = self.gpu_mem_gb {
            return Ok(Some((gb, "--gpu-mem-gb")));
        }
        if self.kv_capacity.is_some() || !self.scheduler.memory_aware() {
            return Ok(None);
        }
        Ok(self.costs.gpu()?.map(|g| (g.memory_gb, "--gpu")))
    }

    /// Checks that the policy's limits let every request of the workload run to the end.
    fn check_limits(
        &self,
        scheduler: &SchedulerSpec,
        kv: &KvConfig,
        workload: &Workload,
    ) -> Result<(), UsageError> {
        let longest = workload.longest(|l, b| l + b);
        let kv_flag = match self.gpu_memory()? {
            Some((_, flag)) => flag,
            None => "--kv-capacity",
        };
        let Some(limits) = scheduler.limits() else {
            return require(
                kv.fits_alone(longest),
                kv_flag,
                format!("the longest request ({longest} tokens) does not fit the KV cache"),
            );
        };
        limits::batch_limits(&limits)?;
        if let Some(need) = whole_prefill(scheduler.kind(), workload) {
            require(
                u64::from(limits.max_tokens) >= need,
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
            kv_flag,
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
                "kind": if matches!(self.workload, WorkloadSpec::Mooncake(_)) { "mooncake" } else { "azure" },
                "trace": t.trace.source.display().to_string(),
                "time_scale": t.time_scale,
            }),
            Workload::MultiTurn(m) => json!({
                "kind": "multiturn",
                "session_rate": m.session_rate,
                "turns": m.turns,
                "think_s": m.think_s,
                "user": m.user.to_string(),
                "decode": m.decode.to_string(),
                "system_tokens": m.system_tokens,
                "system_prompts": m.system_prompts,
            }),
        };
        // The linear model's parameters only mean something when it is the model in use.
        let linear = |v: Value| {
            if self.costs.cost == "linear" {
                v
            } else {
                Value::Null
            }
        };
        // The values in effect: the policy's limits where it has them, else the flags or
        // their defaults.
        let defaults = BatchLimits::default();
        let limits = cfg.engine.scheduler.limits();
        json!({
            "scheduler": self.scheduler.to_string(),
            "workload": workload,
            "rate": cfg.workload.rate(),
            "requests": cfg.workload.requests(),
            "warmup": cfg.warmup,
            "cost": self.costs.cost,
            "c": linear(json!(self.costs.c)),
            "a": linear(json!(self.costs.a)),
            "b0": linear(json!(self.costs.b0)),
            "cost_dist": linear(json!(self.costs.cost_dist.to_string())),
            "noise_cv": self.costs.noise_cv,
            "model": self.costs.model,
            "gpu": self.costs.gpu,
            "gpu_mem_gb": self.gpu_memory().ok().flatten().map(|(gb, _)| gb),
            "tp": self.costs.tp,
            "pp": self.costs.pp,
            "k": self.k.unwrap_or(DEFAULT_K),
            "max_decode_batch": self.max_decode_batch,
            "max_seqs": limits.map_or(self.max_seqs.unwrap_or(defaults.max_seqs), |l| l.max_seqs),
            "max_batched_tokens": limits.map_or(
                self.max_batched_tokens.unwrap_or(defaults.max_tokens),
                |l| l.max_tokens
            ),
            "watermark": self.watermark.unwrap_or(defaults.watermark),
            "preemption": self.preemption,
            "swap_gbps": self.swap_gbps.unwrap_or(DEFAULT_SWAP_GBPS),
            "kv_capacity_tokens": cfg.engine.kv.capacity_tokens(),
            "block_size": self.block_size,
            "gpus": cfg.engine.gpus,
            "gpus_total": cfg.engine.gpus as u64 * u64::from(self.costs.tp * self.costs.pp),
            "prefill_gpus": self.prefill_gpus.unwrap_or(1),
            "decode_gpus": self.decode_gpus.unwrap_or(1),
            "kv_link_gbps": self.kv_link_gbps.unwrap_or(DEFAULT_KV_LINK_GBPS),
            "kv_link_latency": self.kv_link_latency.unwrap_or(DEFAULT_KV_LINK_LATENCY),
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
            "UNSTABLE: the number in system grew over the window, or the rate is at or above a hard capacity; steady-state figures below are not meaningful"
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
    let pc = &doc["prefix_cache"];
    if pc.is_object() {
        for (label, key, unit) in [
            ("token hit rate", "token_hit_rate", ""),
            ("block hit rate", "block_hit_rate", ""),
            ("prompt tokens", "prompt_tokens", "tok"),
            ("prefilled of them", "computed_tokens", "tok"),
            ("evictions", "evictions", "blocks"),
            ("cache share of KV", "kv_share", ""),
        ] {
            println!("{label:>18}: {:.4}{} {unit}", num(&pc[key]), ci(pc, key));
        }
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
        // `null` (no measured request got that far) reads as n/a, not NaN.
        let cell = |k: &str| {
            d[k].as_f64()
                .map_or("n/a".to_string(), |x| format!("{x:.4}"))
        };
        println!(
            "{:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}{}",
            key.to_uppercase(),
            cell("mean"),
            cell("p50"),
            cell("p90"),
            cell("p95"),
            cell("p99"),
            cell("max"),
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
