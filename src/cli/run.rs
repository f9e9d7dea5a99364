//! `llmsim run`: one configuration, one or more replications.

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use std::sync::Arc;

use super::{UsageError, require};
use llmsim::cost::{CostDist, LinearCost};
use llmsim::dist::LengthDist;
use llmsim::engine::EngineConfig;
use llmsim::kv::{DEFAULT_BLOCK_SIZE, KvConfig, ModelPreset};
use llmsim::metrics::Summary;
use llmsim::router::RouterSpec;
use llmsim::scheduler::{BatchLimits, DisaggSpec, SchedulerKind, SchedulerSpec};
use llmsim::sim::RunConfig;
use llmsim::stats::aggregate_json;
use llmsim::workload::{ArrivalKind, SyntheticWorkload};

/// The model and workload flags shared by every command that simulates.
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Scheduler: a (FCFS run-to-completion), b (prefill-prioritizing batching), static
    /// (FasterTransformer), orca, vllm, sarathi, decode-first, disagg (prefill and decode pools).
    #[arg(long, default_value = "a")]
    pub scheduler: SchedulerKind,
    /// Arrival rate lambda (requests per second).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.5)]
    pub rate: f64,
    /// Requests per replication.
    #[arg(long, default_value_t = 100_000)]
    pub requests: usize,
    /// Warm-up requests per replication, simulated but not measured [default: 10% of --requests].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Arrival process: poisson, det, or gamma:CV.
    #[arg(long, default_value = "poisson")]
    pub arrivals: ArrivalKind,
    /// Prompt length L (tokens): N, uniform:LO:HI, geometric:MEAN:MAX, mix:N@P,..., lognormal:MEDIAN:SIGMA:MAX.
    #[arg(long, default_value = "128", value_name = "SPEC")]
    pub prompt: LengthDist,
    /// Decode budget B (tokens), same forms as --prompt.
    #[arg(long, default_value = "64", value_name = "SPEC")]
    pub decode: LengthDist,
    /// Mean setup cost c of a batch (seconds).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.01,
        value_name = "SECONDS"
    )]
    pub c: f64,
    /// Mean per-token cost a (seconds per token).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.001,
        value_name = "SECONDS_PER_TOKEN"
    )]
    pub a: f64,
    /// Tokens per batch at no per-token cost, b0 (tokens).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0.0,
        value_name = "TOKENS"
    )]
    pub b0: f64,
    /// Batch-to-batch cost variation: det, exp (the seed's), or gamma:CV.
    #[arg(long, default_value = "exp")]
    pub cost_dist: CostDist,
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
    /// Router in front of the GPUs.
    #[arg(long, default_value = "round-robin")]
    pub router: RouterSpec,
    /// Base random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Independent replications.
    #[arg(long, default_value_t = 1)]
    pub reps: u32,
}

impl SimArgs {
    /// Checks every value and builds the run configuration.
    pub fn to_config(&self) -> Result<RunConfig, UsageError> {
        require(
            self.rate > 0.0 && self.rate.is_finite(),
            "--rate",
            format!("must be a finite number > 0 requests/s (got {})", self.rate),
        )?;
        require(
            self.requests >= 2,
            "--requests",
            format!("must be at least 2 (got {})", self.requests),
        )?;
        let warmup = self.warmup.unwrap_or(self.requests / 10);
        require(
            warmup + 1 < self.requests,
            "--warmup",
            format!(
                "must leave at least 2 measured requests: below --requests - 1 = {} (got {warmup})",
                self.requests - 1
            ),
        )?;
        require(
            self.c > 0.0 && self.c.is_finite(),
            "--c",
            format!("must be a finite number of seconds > 0 (got {})", self.c),
        )?;
        require(
            self.a >= 0.0 && self.a.is_finite(),
            "--a",
            format!(
                "must be a finite number of seconds per token >= 0 (got {})",
                self.a
            ),
        )?;
        require(
            self.b0 >= 0.0 && self.b0.is_finite(),
            "--b0",
            format!("must be a finite number of tokens >= 0 (got {})", self.b0),
        )?;
        require(
            self.prompt.min() >= 1,
            "--prompt",
            "prompts must be at least 1 token long",
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
        let gpus = match scheduler {
            SchedulerSpec::Disagg(d) => (d.prefill_gpus + d.decode_gpus) as usize,
            _ => self.gpus,
        };
        self.check_limits(&scheduler, &kv)?;
        Ok(RunConfig {
            workload: SyntheticWorkload {
                rate: self.rate,
                arrivals: self.arrivals,
                prompt: self.prompt.clone(),
                decode: self.decode.clone(),
                requests: self.requests,
            },
            engine: EngineConfig {
                scheduler,
                cost: Arc::new(LinearCost::new(self.c, self.a, self.b0, self.cost_dist)),
                gpus,
                router: self.router,
                kv,
            },
            seed: self.seed,
            reps: self.reps,
            warmup,
        })
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
    fn check_limits(&self, scheduler: &SchedulerSpec, kv: &KvConfig) -> Result<(), UsageError> {
        let max_of = |d: &LengthDist| d.pmf().last().map_or(0, |&(n, _)| n);
        let (max_l, max_b) = (max_of(&self.prompt), max_of(&self.decode));
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
        json!({
            "scheduler": self.scheduler.to_string(),
            "rate": self.rate,
            "requests": self.requests,
            "warmup": cfg.warmup,
            "arrivals": self.arrivals.to_string(),
            "prompt": self.prompt.to_string(),
            "decode": self.decode.to_string(),
            "c": self.c,
            "a": self.a,
            "b0": self.b0,
            "cost_dist": self.cost_dist.to_string(),
            "k": self.k,
            "max_decode_batch": self.max_decode_batch,
            "max_seqs": self.max_seqs,
            "max_batched_tokens": self.max_batched_tokens,
            "watermark": self.watermark,
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
        "scheduler {} | rate {} req/s | {} GPU(s), router {} | {} requests x {} reps (warm-up {}) | seed {}",
        c["scheduler"].as_str().unwrap_or("?"),
        c["rate"],
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
        ("KV utilisation", "kv_utilization", ""),
        ("KV peak", "kv_peak_utilization", ""),
        ("preemptions", "preemptions", ""),
        ("recomputed tokens", "recomputed_tokens", "tok"),
    ] {
        println!("{label:>18}: {:.4}{} {unit}", num(&doc[key]), ci(doc, key));
    }
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
