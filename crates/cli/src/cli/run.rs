//! `llmsim run`: one configuration, one or more replications. The flags override a
//! `--config` file (TOML, or JSON for a `.json` file) over the library's defaults; the
//! library's [`Config::build`] checks and builds the run.

use anyhow::Result;
use clap::{Args, Command};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;

use super::UsageError;
use llmsim::config::{Built, Config, CostSpec, WorkloadSpec};
use llmsim::cost::CostDist;
use llmsim::dist::LengthDist;
use llmsim::router::RouterSpec;
use llmsim::scheduler::SchedulerKind;
use llmsim::workload::ArrivalKind;
use llmsim_study::files::Disk;

/// The model and workload flags shared by every command that simulates. Each is a field
/// of [`Config`] (the cost flags, of its [`CostSpec`]); a flag not given keeps the
/// `--config` file's value, else the default, shown in the help from [`Config::default`].
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct SimArgs {
    /// Read the run's settings from this TOML file (JSON if it ends in .json; e.g. the
    /// `config` of a `--json` output); flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Scheduler: a (FCFS run-to-completion), b (prefill-prioritizing batching), static
    /// (FasterTransformer), orca, vllm, sarathi, decode-first, disagg (prefill and decode pools).
    #[arg(long)]
    pub scheduler: Option<SchedulerKind>,
    /// Requests: synthetic (drawn from the flags below), multiturn (conversations, see
    /// --turns), azure:PATH (replay an Azure LLM inference trace:
    /// TIMESTAMP,ContextTokens,GeneratedTokens; L = ContextTokens, B = GeneratedTokens - 1;
    /// a 0 in either column is served as 1), or mooncake:PATH (replay a Mooncake trace, JSON
    /// lines: timestamp ms, input_length, output_length, hash_ids per 512-token chunk, the
    /// prompts' prefix identities for --prefix-cache).
    #[arg(long, value_name = "SPEC")]
    pub workload: Option<WorkloadSpec>,
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
    #[serde(flatten)]
    pub cost: CostFlags,
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
    #[arg(long, value_name = "MODE")]
    pub preemption: Option<String>,
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
    #[arg(long, allow_negative_numbers = true)]
    pub gpu_mem_util: Option<f64>,
    /// Tokens per KV block.
    #[arg(long, value_name = "TOKENS")]
    pub block_size: Option<u32>,
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
    #[arg(long)]
    pub gpus: Option<u64>,
    /// Router in front of the GPUs: random, round-robin, jsq, least-work, power-of-d:D, central,
    /// prefix-aware (the GPU whose routed prefixes match the prompt longest, unless load is
    /// imbalanced: SGLang's cache-aware policy), session (a conversation's turns on one GPU).
    #[arg(long)]
    pub router: Option<RouterSpec>,
    /// Prefix caching, on or off (vllm, sarathi, decode-first, with a finite KV cache): each
    /// GPU keeps finished prompts' full KV blocks, keyed by their whole prefix, for later
    /// requests with the same prefix (vLLM's automatic prefix caching; evicted LRU)
    /// [default: off].
    #[arg(long, value_name = "on|off", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub prefix_cache: Option<bool>,
    /// Blocks of a CPU-side tier of each GPU's prefix cache (vLLM's KV offloading, from 1 to
    /// 2^30; needs --prefix-cache on and --gpu, whose PCIe link loads them): every full
    /// block computed is copied to host memory (evicted LRU), and an arriving request whose
    /// GPU hit it extends waits for those blocks to load instead of prefilling them. vLLM's
    /// `--kv-offloading-size GIB` holds GIB x 2^30 / (block size x KV bytes per token on
    /// one GPU) blocks [default: off].
    #[arg(long, value_name = "BLOCKS")]
    pub cpu_kv_blocks: Option<u64>,
    /// Turns per conversation (--workload multiturn; --rate is then sessions per second,
    /// --prompt each new user message, --decode each reply's B) [default: 4].
    #[arg(long)]
    pub turns: Option<u32>,
    /// Mean user think time from a reply's last token to the next turn's arrival (seconds,
    /// exponential; --workload multiturn) [default: 30].
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
    #[arg(long)]
    pub seed: Option<u64>,
    /// Independent replications, from 1 to 10000 (a trace replay with a deterministic cost
    /// model and router: 1, as every replication would be the same).
    #[arg(long)]
    pub reps: Option<u32>,
}

/// The flags that choose and parameterise the cost model, shared by every command that
/// prices a batch (`run`, `bench`, `cost check`). Each is a field of [`Config`] or of its
/// [`CostSpec`]; a flag not given keeps the config's value.
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct CostFlags {
    /// Iteration cost model: linear (the seed's, set by --c, --a, --b0, --cost-dist), a
    /// built-in preset (h200-llama3.1-8b, h100-llama3.1-8b), a preset TOML file from `llmsim calibrate --out`,
    /// or roofline (--model on --gpu with --tp x --pp GPUs per replica, from datasheet
    /// peaks, efficiencies fitted on the H200 profile); roofline:GPU is roofline with --gpu GPU;
    /// vllm (or a file from `llmsim calibrate --serving`) is the roofline with efficiencies and
    /// overheads fitted to real vLLM runs.
    #[arg(long, value_name = "SPEC")]
    pub cost: Option<String>,
    /// Mean setup cost c of a batch (seconds, at most 3600; --cost linear).
    #[arg(long, allow_negative_numbers = true, value_name = "SECONDS")]
    pub c: Option<f64>,
    /// Mean per-token cost a (seconds per token, at most 3600; --cost linear).
    #[arg(long, allow_negative_numbers = true, value_name = "SECONDS_PER_TOKEN")]
    pub a: Option<f64>,
    /// Tokens per batch at no per-token cost, b0 (tokens, at most 2^32; --cost linear).
    #[arg(long, allow_negative_numbers = true, value_name = "TOKENS")]
    pub b0: Option<f64>,
    /// Batch-to-batch cost variation of --cost linear: det, exp (the seed's), or gamma:CV
    /// (0 < CV <= 10: beyond it a run's batches cannot sample the law's mean).
    #[arg(long)]
    pub cost_dist: Option<CostDist>,
    /// Multiply every iteration's cost by lognormal noise of mean 1 and this coefficient of
    /// variation, 0 < CV <= 10 (any --cost) [default: none].
    #[arg(long, value_name = "CV")]
    pub noise_cv: Option<f64>,
    /// Model served: a built-in name or Hugging Face id (llama-3.1-8b, llama-3.1-70b,
    /// qwen3-30b-a3b, mixtral-8x7b, meta-llama/Llama-2-7b-hf, ...) or the path of a Hugging
    /// Face config.json. Its shape prices --cost roofline and sizes the KV cache.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,
    /// GPU of each replica: a built-in card (a100-40gb, a100-80gb, l4, l40s, h100-sxm,
    /// h100-pcie, h200, b200, mi300x, rtx-4090) or a TOML file of its peaks (peak_flops,
    /// fp8_flops, bandwidth, memory_gb, nvlink, pcie). Prices --cost roofline; its memory
    /// is the default --gpu-mem-gb for memory-aware schedulers.
    #[arg(long, value_name = "NAME|FILE")]
    pub gpu: Option<String>,
    /// Tensor-parallel GPUs per replica, from 1 to 64, dividing the model's heads
    /// (--cost roofline).
    #[arg(long)]
    pub tp: Option<u32>,
    /// Pipeline stages per replica, from 1 to 64 and at most the model's layers
    /// (--cost roofline). A replica is --tp x --pp GPUs; --gpus counts replicas.
    #[arg(long)]
    pub pp: Option<u32>,
}

impl CostFlags {
    /// The flags that give the cost settings of `cfg` (the inverse of [`CostFlags::apply`]).
    pub fn from_config(cfg: &Config) -> CostFlags {
        let (base, noise_cv) = cfg.cost.split();
        let linear = match base {
            CostSpec::Linear { c, a, b0, dist } => Some((*c, *a, *b0, *dist)),
            _ => None,
        };
        CostFlags {
            cost: Some(base.to_string()),
            c: linear.map(|l| l.0),
            a: linear.map(|l| l.1),
            b0: linear.map(|l| l.2),
            cost_dist: linear.map(|l| l.3),
            noise_cv,
            model: Some(cfg.model.clone()),
            gpu: cfg.gpu.clone(),
            tp: Some(cfg.tp),
            pp: Some(cfg.pp),
        }
    }

    /// Overrides `cfg`'s cost settings with the flags given; warnings for cost flags the
    /// model ignores.
    pub fn apply(&self, cfg: &mut Config) -> Vec<String> {
        let (cost, notes) = cfg.cost.with_flags(
            self.cost.as_deref(),
            self.c,
            self.a,
            self.b0,
            self.cost_dist,
            self.noise_cv,
        );
        cfg.cost = cost;
        set(&mut cfg.model, &self.model);
        set_some(&mut cfg.gpu, &self.gpu);
        set(&mut cfg.tp, &self.tp);
        set(&mut cfg.pp, &self.pp);
        notes
    }
}

/// Overwrites `field` with the flag's value where the flag is given.
fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
    if let Some(v) = flag {
        *field = v.clone();
    }
}

/// Overwrites an optional `field` with the flag's value where the flag is given.
fn set_some<T: Clone>(field: &mut Option<T>, flag: &Option<T>) {
    if flag.is_some() {
        field.clone_from(flag);
    }
}

impl SimArgs {
    /// The flags that give every setting of `cfg` (the inverse of [`SimArgs::apply`]).
    pub fn from_config(cfg: &Config) -> SimArgs {
        SimArgs {
            config: None,
            scheduler: Some(cfg.scheduler),
            workload: Some(cfg.workload.clone()),
            rate: cfg.rate,
            requests: cfg.requests,
            warmup: cfg.warmup,
            arrivals: cfg.arrivals,
            prompt: cfg.prompt.clone(),
            decode: cfg.decode.clone(),
            lengths_from: cfg.lengths_from.clone(),
            cost: CostFlags::from_config(cfg),
            k: cfg.k,
            max_decode_batch: cfg.max_decode_batch,
            max_seqs: cfg.max_seqs,
            max_batched_tokens: cfg.max_batched_tokens,
            watermark: cfg.watermark,
            preemption: Some(cfg.preemption.clone()),
            swap_gbps: cfg.swap_gbps,
            kv_capacity: cfg.kv_capacity,
            gpu_mem_gb: cfg.gpu_mem_gb,
            gpu_mem_util: Some(cfg.gpu_mem_util),
            block_size: Some(cfg.block_size),
            prefill_gpus: cfg.prefill_gpus,
            decode_gpus: cfg.decode_gpus,
            kv_link_gbps: cfg.kv_link_gbps,
            kv_link_latency: cfg.kv_link_latency,
            gpus: Some(cfg.gpus),
            router: Some(cfg.router),
            prefix_cache: Some(cfg.prefix_cache),
            cpu_kv_blocks: cfg.cpu_kv_blocks,
            turns: cfg.turns,
            think: cfg.think,
            system_prompt: cfg.system_prompt,
            system_prompts: cfg.system_prompts,
            seed: Some(cfg.seed),
            reps: Some(cfg.reps),
        }
    }

    /// Overrides `cfg` with the flags given; warnings for cost flags the model ignores.
    pub fn apply(&self, cfg: &mut Config) -> Vec<String> {
        set(&mut cfg.scheduler, &self.scheduler);
        set(&mut cfg.workload, &self.workload);
        set_some(&mut cfg.rate, &self.rate);
        set_some(&mut cfg.requests, &self.requests);
        set_some(&mut cfg.warmup, &self.warmup);
        set_some(&mut cfg.arrivals, &self.arrivals);
        set_some(&mut cfg.prompt, &self.prompt);
        set_some(&mut cfg.decode, &self.decode);
        set_some(&mut cfg.lengths_from, &self.lengths_from);
        let notes = self.cost.apply(cfg);
        set_some(&mut cfg.k, &self.k);
        set_some(&mut cfg.max_decode_batch, &self.max_decode_batch);
        set_some(&mut cfg.max_seqs, &self.max_seqs);
        set_some(&mut cfg.max_batched_tokens, &self.max_batched_tokens);
        set_some(&mut cfg.watermark, &self.watermark);
        set(&mut cfg.preemption, &self.preemption);
        set_some(&mut cfg.swap_gbps, &self.swap_gbps);
        // The two ways of sizing the KV cache exclude each other: a flag replaces the file's.
        if self.kv_capacity.is_some() || self.gpu_mem_gb.is_some() {
            cfg.kv_capacity = self.kv_capacity;
            cfg.gpu_mem_gb = self.gpu_mem_gb;
        }
        set(&mut cfg.gpu_mem_util, &self.gpu_mem_util);
        set(&mut cfg.block_size, &self.block_size);
        set_some(&mut cfg.prefill_gpus, &self.prefill_gpus);
        set_some(&mut cfg.decode_gpus, &self.decode_gpus);
        set_some(&mut cfg.kv_link_gbps, &self.kv_link_gbps);
        set_some(&mut cfg.kv_link_latency, &self.kv_link_latency);
        set(&mut cfg.gpus, &self.gpus);
        set(&mut cfg.router, &self.router);
        set(&mut cfg.prefix_cache, &self.prefix_cache);
        set_some(&mut cfg.cpu_kv_blocks, &self.cpu_kv_blocks);
        set_some(&mut cfg.turns, &self.turns);
        set_some(&mut cfg.think, &self.think);
        set_some(&mut cfg.system_prompt, &self.system_prompt);
        set_some(&mut cfg.system_prompts, &self.system_prompts);
        set(&mut cfg.seed, &self.seed);
        set(&mut cfg.reps, &self.reps);
        notes
    }

    /// The config: `--config`'s file (or `base` without one) overridden by the flags, with
    /// the warnings about flags the cost model ignores.
    pub fn config(&self, base: Config) -> Result<(Config, Vec<String>), UsageError> {
        let mut cfg = match &self.config {
            Some(path) => read_config(path)?,
            None => base,
        };
        let notes = self.apply(&mut cfg);
        Ok((cfg, notes))
    }

    /// The config of [`SimArgs::config`], checked and built (see [`build`]).
    pub fn build(&self, base: Config) -> Result<Built, UsageError> {
        let (cfg, notes) = self.config(base)?;
        build(&cfg, notes)
    }
}

/// Checks `cfg` and builds the run; prints `notes` and the config's own on stderr only once
/// the run is sure to go ahead, so an error is never preceded by advice.
pub fn build(cfg: &Config, mut notes: Vec<String>) -> Result<Built, UsageError> {
    let built = cfg.build(&Disk)?;
    notes.extend(built.notes.iter().cloned());
    for note in notes {
        eprintln!("{note}");
    }
    Ok(built)
}

/// Reads a config file: JSON if its name ends in `.json`, else TOML.
pub(super) fn read_config(path: &std::path::Path) -> Result<Config, UsageError> {
    let bad = |why: String| UsageError::new("--config", format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
    } else {
        toml::from_str(&text).map_err(|e| bad(e.to_string()))
    }
}

/// Appends `[default: V]` to the help of each flag of `cmd` whose default is given by
/// `defaults` (flags that give the defaults, e.g. [`SimArgs::from_config`] of the library's
/// config) and whose help does not state a default already, so the help shows the library's.
pub fn show_defaults(cmd: Command, defaults: &impl Serialize) -> Command {
    let defaults = serde_json::to_value(defaults).expect("flags serialise");
    let mut cmd = cmd;
    for (id, value) in defaults.as_object().expect("a struct").iter() {
        let shown = match value {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        cmd = cmd.mut_arg(id, |arg| {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.contains("[default") {
                arg
            } else {
                let long = arg
                    .get_long_help()
                    .map(|h| h.to_string())
                    .unwrap_or(help.clone());
                arg.help(format!("{help} [default: {shown}]"))
                    .long_help(format!("{long} [default: {shown}]"))
            }
        });
    }
    cmd
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

pub fn main(args: RunArgs) -> Result<()> {
    let built = args.sim.build(Config::default())?;
    let doc = built.report(&built.run.run());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_table(&doc, &built.resolved);
    }
    Ok(())
}

fn print_table(doc: &Value, config: &Config) {
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let ci = |obj: &Value, key: &str| {
        obj.get("ci95")
            .and_then(|c| c.get(key))
            .map(|h| format!(" ± {:.4}", num(h)))
            .unwrap_or_default()
    };
    // One line per (label, key, unit): the figure and its confidence interval.
    let print_figures = |obj: &Value, rows: &[(&str, &str, &str)]| {
        for (label, key, unit) in rows {
            println!("{label:>18}: {:.4}{} {unit}", num(&obj[*key]), ci(obj, key));
        }
    };
    let c = &doc["config"];
    println!(
        "scheduler {} | cost {} | rate {:.4} req/s | {} GPU(s), router {} | {} requests x {} reps (warm-up {}) | seed {}",
        c["scheduler"].as_str().unwrap_or("?"),
        config.cost,
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
    print_figures(
        doc,
        &[
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
        ],
    );
    let pc = &doc["prefix_cache"];
    if pc.is_object() {
        print_figures(
            pc,
            &[
                ("token hit rate", "token_hit_rate", ""),
                ("block hit rate", "block_hit_rate", ""),
                ("prompt tokens", "prompt_tokens", "tok"),
                ("prefilled of them", "computed_tokens", "tok"),
                ("evictions", "evictions", "blocks"),
                ("cache share of KV", "kv_share", ""),
            ],
        );
        let cpu = &pc["cpu_tier"];
        if cpu.is_object() {
            print_figures(
                cpu,
                &[
                    ("CPU tier hits", "hit_tokens", "tok"),
                    ("CPU tier loads", "loads", ""),
                    ("CPU load time", "load_seconds", "s"),
                    ("CPU tier evictions", "evictions", "blocks"),
                ],
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// Three configs that between them set every setting away from its default (three,
    /// since --lengths-from excludes --prompt and --decode, --kv-capacity --gpu-mem-gb, and
    /// the conversation settings need --workload multiturn).
    fn everything() -> [Config; 3] {
        let first = Config {
            scheduler: SchedulerKind::Vllm,
            workload: WorkloadSpec::Synthetic,
            rate: Some(3.0),
            requests: Some(500),
            warmup: Some(7),
            arrivals: Some(ArrivalKind::Gamma { cv: 2.0 }),
            prompt: Some("uniform:16:256".parse().unwrap()),
            decode: Some("geometric:20.5:300".parse().unwrap()),
            lengths_from: None,
            cost: CostSpec::with_noise(
                CostSpec::Linear {
                    c: 0.02,
                    a: 2e-4,
                    b0: 8.0,
                    dist: CostDist::Gamma { cv: 0.5 },
                },
                Some(0.3),
            ),
            k: Some(3),
            max_decode_batch: Some(9),
            max_seqs: Some(64),
            max_batched_tokens: Some(4096),
            watermark: Some(0.02),
            preemption: "swap".into(),
            swap_gbps: Some(16.0),
            kv_capacity: Some(8192),
            gpu_mem_gb: None,
            gpu_mem_util: 0.8,
            model: "llama-3.1-70b".into(),
            gpu: Some("h200".into()),
            tp: 2,
            pp: 2,
            block_size: 32,
            prefill_gpus: Some(2),
            decode_gpus: Some(3),
            kv_link_gbps: Some(50.0),
            kv_link_latency: Some(0.001),
            gpus: 5,
            router: RouterSpec::PowerOfD(2),
            prefix_cache: true,
            cpu_kv_blocks: Some(1023),
            turns: None,
            think: None,
            system_prompt: None,
            system_prompts: None,
            seed: 7,
            reps: 4,
        };
        let second = Config {
            workload: WorkloadSpec::Azure("trace.csv".into()),
            prompt: None,
            decode: None,
            lengths_from: Some("lengths.csv".into()),
            cost: CostSpec::Roofline {
                gpu: Some("h100".into()),
            },
            kv_capacity: None,
            gpu_mem_gb: Some(80.0),
            ..first.clone()
        };
        let third = Config {
            workload: WorkloadSpec::MultiTurn,
            turns: Some(3),
            think: Some(5.0),
            system_prompt: Some(100),
            system_prompts: Some(2),
            ..first.clone()
        };
        [first, second, third]
    }

    /// The command line that gives every setting of `cfg`.
    fn argv(cfg: &Config) -> Vec<String> {
        let flags = serde_json::to_value(SimArgs::from_config(cfg)).unwrap();
        let mut argv = vec!["llmsim".to_string(), "run".into()];
        for (id, value) in flags.as_object().unwrap() {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            argv.push(format!("--{}", id.replace('_', "-")));
            argv.push(text);
        }
        argv
    }

    #[test]
    fn every_flag_maps_to_a_config_setting_and_back() {
        let mut given = std::collections::BTreeSet::new();
        for cfg in everything() {
            let argv = argv(&cfg);
            let cli = super::super::Cli::try_parse_from(&argv).unwrap();
            let super::super::Command::Run(args) = cli.command else {
                panic!("run");
            };
            let mut back = Config::default();
            assert!(args.sim.apply(&mut back).is_empty());
            assert_eq!(back, cfg, "{argv:?}");
            given.extend(
                argv.iter()
                    .filter_map(|a| a.strip_prefix("--").map(String::from)),
            );
        }
        // Every flag of `llmsim run` but --config and --json was given above.
        let cmd = super::super::Cli::command();
        let run = cmd.find_subcommand("run").unwrap();
        let flags: std::collections::BTreeSet<String> = run
            .get_arguments()
            .filter_map(|a| a.get_long().map(String::from))
            .filter(|f| !["config", "json"].contains(&f.as_str()))
            .collect();
        assert_eq!(given, flags);
    }

    #[test]
    fn flags_override_the_file_and_cost_flags_keep_its_model() {
        let [file, _, _] = everything();
        let args = SimArgs {
            seed: Some(1),
            cost: CostFlags {
                c: Some(0.05),
                noise_cv: Some(0.1),
                ..CostFlags::default()
            },
            ..SimArgs::default()
        };
        let mut cfg = file.clone();
        assert!(args.apply(&mut cfg).is_empty());
        assert_eq!(cfg.seed, 1);
        let expected = CostSpec::with_noise(
            CostSpec::Linear {
                c: 0.05,
                a: 2e-4,
                b0: 8.0,
                dist: CostDist::Gamma { cv: 0.5 },
            },
            Some(0.1),
        );
        assert_eq!(cfg.cost, expected);
        // A linear parameter with another model has no effect, and says so.
        let mut cfg = Config {
            cost: CostSpec::Roofline {
                gpu: Some("h200".into()),
            },
            ..file
        };
        let notes = args.apply(&mut cfg);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("--c has no effect with --cost roofline:h200"));
    }
}
