//! `llmsim run`: one configuration, one or more replications.

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use std::sync::Arc;

use super::{UsageError, require};
use llmsim::cost::{CostDist, LinearCost};
use llmsim::dist::LengthDist;
use llmsim::engine::EngineConfig;
use llmsim::metrics::Summary;
use llmsim::router::RouterSpec;
use llmsim::scheduler::{SchedulerKind, SchedulerSpec};
use llmsim::sim::RunConfig;
use llmsim::stats::aggregate_json;
use llmsim::workload::{ArrivalKind, SyntheticWorkload};

/// The model and workload flags shared by every command that simulates.
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Scheduler: a (FCFS run-to-completion) or b (prefill-prioritizing batching).
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
    /// Most prefills per batch, K (Scheduler B).
    #[arg(long, default_value_t = 4)]
    pub k: u32,
    /// Most decode entries per batch (Scheduler B) [default: no cap].
    #[arg(long)]
    pub max_decode_batch: Option<u32>,
    /// Number of GPUs.
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
        let scheduler = match self.scheduler {
            SchedulerKind::A => SchedulerSpec::A,
            SchedulerKind::B => SchedulerSpec::B {
                k: self.k,
                max_decode_batch: self.max_decode_batch,
            },
        };
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
                gpus: self.gpus,
                router: self.router,
            },
            seed: self.seed,
            reps: self.reps,
            warmup,
        })
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
            "gpus": self.gpus,
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
        (
            "load imbalance",
            "load_imbalance",
            "(max/mean GPU busy time)",
        ),
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
