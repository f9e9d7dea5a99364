//! `llmsim fidelity`: simulate every run of a real engine's runs file with the cost model a
//! user gets for its model, GPU and TP degree, and print predicted against measured
//! latencies with their errors.

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;

use super::UsageError;
use llmsim::config::CostSpec;
use llmsim::serving::{
    self, DEFAULT_COST, Latencies, METRICS, Scored, ServingRun, pairs, pct_error,
};
use llmsim_study::files::{Disk, read_serving_runs};
use llmsim_study::output::write_atomic;

/// Flags of `llmsim fidelity`.
#[derive(Args, Debug)]
pub struct FidelityArgs {
    /// Runs file (CSV in the format of shared/fidelity/README.md); a run_metadata.csv
    /// beside it is read too.
    runs: PathBuf,
    /// Cost model: a serving preset (built-in `vllm` or a file from `calibrate --serving`),
    /// roofline, or any other `run --cost` model [default: vllm].
    #[arg(long)]
    cost: Option<String>,
    /// Simulate at most this many requests per stage (faster; the real stages sent all).
    #[arg(long, value_name = "N")]
    max_requests: Option<usize>,
    /// Random seed of the arrival times.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Write one CSV row per run, stage and metric:
    /// run_id,stage,metric,measured,predicted,pct_error.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Reads the runs file, naming it, its line and field on a format error.
pub fn read_runs(path: &std::path::Path) -> Result<Vec<ServingRun>, UsageError> {
    read_serving_runs(path).map_err(|e| UsageError::new("RUNS", e.to_string()))
}

/// Simulates `runs` under `--cost` (or the default), returning the cost model and scores.
pub fn simulate(
    runs: &[ServingRun],
    cost: Option<&str>,
    max_requests: Option<usize>,
    seed: u64,
) -> Result<(CostSpec, Vec<Scored>), UsageError> {
    let spec = CostSpec::parse(cost.unwrap_or(DEFAULT_COST));
    let scored = serving::fidelity(runs, &spec, max_requests, seed, &Disk).map_err(|e| {
        let flag = if e.field == "max-requests" {
            "--max-requests"
        } else {
            "--cost"
        };
        UsageError::new(flag, e.why)
    })?;
    Ok((spec, scored))
}

fn stage_name(stage: i32) -> String {
    if stage < 0 {
        "all".into()
    } else {
        stage.to_string()
    }
}

fn metrics_json(x: &Latencies) -> Value {
    Value::Object(
        METRICS
            .iter()
            .zip(x)
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

pub fn main(args: FidelityArgs) -> Result<()> {
    let runs = read_runs(&args.runs)?;
    let (spec, scored) = simulate(&runs, args.cost.as_deref(), args.max_requests, args.seed)?;
    let mape = serving::mape(&runs, &scored);
    if let Some(out) = &args.out {
        let mut csv = String::from("run_id,stage,metric,measured,predicted,pct_error\n");
        for (run, stage, m, p) in pairs(&runs, &scored) {
            for (i, metric) in METRICS.iter().enumerate() {
                writeln!(
                    csv,
                    "{},{stage},{metric},{:.4},{:.4},{:.4}",
                    run.id,
                    m[i],
                    p[i],
                    pct_error(p[i], m[i])
                )?;
            }
        }
        write_atomic(out, csv.as_bytes()).map_err(|e| UsageError::new("--out", e.to_string()))?;
    }
    let skipped: Vec<(&str, &str)> = scored
        .iter()
        .filter_map(|s| {
            s.predicted
                .as_ref()
                .err()
                .map(|e| (s.id.as_str(), e.as_str()))
        })
        .collect();
    if args.json {
        let rows: Vec<Value> = pairs(&runs, &scored)
            .map(|(run, stage, m, p)| {
                let err: Latencies = std::array::from_fn(|i| pct_error(p[i], m[i]));
                json!({
                    "run_id": run.id, "stage": stage, "model": run.model, "gpu": run.gpu,
                    "tp": run.tp, "measured": metrics_json(&m), "predicted": metrics_json(&p),
                    "pct_error": metrics_json(&err),
                })
            })
            .collect();
        let doc = json!({
            "cost": spec.to_string(),
            "rows": rows,
            "skipped": skipped.iter().map(|(id, why)| json!({"run_id": id, "reason": why})).collect::<Vec<_>>(),
            "mape_whole_run": metrics_json(&mape),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{} runs from {}, cost model {spec}; latencies in ms (measured / predicted / error)",
        runs.len(),
        args.runs.display()
    );
    println!(
        "{:<40} {:>5} {:>26} {:>26} {:>26} {:>26} {:>26}",
        "run", "stage", "ttft_mean", "ttft_p99", "e2e_mean", "e2e_p99", "itl_mean"
    );
    for (run, stage, m, p) in pairs(&runs, &scored) {
        let cell = |i: usize| format!("{:.1}/{:.1}/{:+.1}%", m[i], p[i], pct_error(p[i], m[i]));
        println!(
            "{:<40} {:>5} {:>26} {:>26} {:>26} {:>26} {:>26}",
            run.id,
            stage_name(stage),
            cell(0),
            cell(2),
            cell(3),
            cell(5),
            cell(6)
        );
    }
    for (id, why) in &skipped {
        println!("skipped {id}: {why}");
    }
    println!(
        "\nMAPE over {} simulated runs, each by its whole-run row or its stages' mean ({} skipped):",
        runs.len() - skipped.len(),
        skipped.len()
    );
    for (metric, v) in METRICS.iter().zip(mape) {
        println!("  {metric:<10} {v:>7.2}%");
    }
    if let Some(out) = &args.out {
        println!("wrote {}", out.display());
    }
    Ok(())
}
