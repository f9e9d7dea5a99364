//! `llmsim cost check`: a cost model's error on a measured profile,
//! without fitting.

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

use super::UsageError;
use super::calibrate::{read, report};
use llmsim::config::{Config, DEFAULT_MODEL};
use llmsim::cost::CostDist;
use llmsim_study::files::Disk;

/// The flags that choose and parameterise a cost model.
#[derive(Args, Debug, Clone)]
pub struct CostArgs {
    /// Iteration cost model: linear (the seed's, set by --c, --a, --b0, --cost-dist), a
    /// built-in preset (h200-llama3.1-8b, h100-llama3.1-8b), a preset TOML file from `llmsim calibrate --out`,
    /// or roofline (--model on --gpu with --tp x --pp GPUs per replica, from datasheet
    /// peaks, efficiencies fitted on the H200 profile); roofline:GPU is roofline with --gpu GPU.
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
    /// Model served: a built-in name or Hugging Face id (llama-3.1-8b, llama-3.1-70b,
    /// qwen3-30b-a3b, mixtral-8x7b, meta-llama/Llama-2-7b-hf, ...) or the path of a Hugging
    /// Face config.json. Its shape prices --cost roofline and sizes the KV cache.
    #[arg(long, default_value = DEFAULT_MODEL, value_name = "NAME|PATH")]
    pub model: String,
    /// GPU of each replica: a built-in card (a100-40gb, a100-80gb, l4, l40s, h100-sxm,
    /// h100-pcie, h200, b200, mi300x, rtx-4090) or a TOML file of its peaks (peak_flops,
    /// fp8_flops, bandwidth, memory_gb, nvlink, pcie). Prices --cost roofline; its memory
    /// is the default --gpu-mem-gb for memory-aware schedulers.
    #[arg(long, value_name = "NAME|FILE")]
    pub gpu: Option<String>,
    /// Tensor-parallel GPUs per replica, from 1 to 64, dividing the model's heads
    /// (--cost roofline).
    #[arg(long, default_value_t = 1)]
    pub tp: u32,
    /// Pipeline stages per replica, from 1 to 64 and at most the model's layers
    /// (--cost roofline). A replica is --tp x --pp GPUs; --gpus counts replicas.
    #[arg(long, default_value_t = 1)]
    pub pp: u32,
}

impl CostArgs {
    /// The library config of these flags, the rest at their defaults: the cost model is
    /// resolved by the same code as `llmsim run`'s.
    pub fn config(&self) -> Config {
        let (cost, _) = Config::default().cost.with_flags(
            Some(&self.cost),
            Some(self.c),
            Some(self.a),
            Some(self.b0),
            Some(self.cost_dist),
            self.noise_cv,
        );
        Config {
            cost,
            model: self.model.clone(),
            gpu: self.gpu.clone(),
            tp: self.tp,
            pp: self.pp,
            ..Config::default()
        }
    }
}

/// `llmsim cost`.
#[derive(Args, Debug)]
pub struct CostCmd {
    #[command(subcommand)]
    command: CostCommand,
}

#[derive(Subcommand, Debug)]
enum CostCommand {
    /// Print a cost model's predicted and the measured time of every row of a profile, with
    /// the MAPE and the largest error; nothing is fitted.
    Check(CheckArgs),
}

/// Flags of `llmsim cost check`.
#[derive(Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    cost: CostArgs,
    /// Measured profile (the CSV format of `llmsim calibrate`); every row's `model` must
    /// name --model.
    profile: PathBuf,
}

pub fn main(cmd: CostCmd) -> Result<()> {
    let CostCommand::Check(args) = cmd.command;
    let (cost, hw) = args
        .cost
        .config()
        .cost_model(&Disk)
        .map_err(UsageError::from)?;
    let model = hw.model;
    let rows = read(&args.profile, "PROFILE")?;
    if let Some((i, row)) = rows
        .iter()
        .enumerate()
        .find(|(_, r)| !model.answers_to(&r.model))
    {
        return Err(UsageError::new(
            "--model",
            format!(
                "{}: line {}, field model: '{}' is not the model checked ('{}'); pass --model {}",
                args.profile.display(),
                i + 2,
                row.model,
                model.name,
                row.model
            ),
        )
        .into());
    }
    println!(
        "cost {} | model {} | gpu {} | tp {} x pp {}",
        args.cost.cost,
        model.name,
        args.cost
            .gpu
            .as_deref()
            .or(args.cost.cost.strip_prefix("roofline:"))
            .unwrap_or("-"),
        args.cost.tp,
        args.cost.pp
    );
    report(
        &format!("check: {}", args.profile.display()),
        cost.as_ref(),
        &rows,
    );
    Ok(())
}
