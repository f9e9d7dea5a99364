//! The cost-model flags shared by `llmsim run` and `llmsim cost check` (model, GPU,
//! parallel layout), and `llmsim cost check`: a cost model's error on a measured profile,
//! without fitting.

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::calibrate::{read, report};
use super::{UsageError, require};
use llmsim::cost::{
    CostDist, CostModel, GpuSpec, LinearCost, LogNormalNoise, ModelShape, Parallel, Preset,
    RooflineCost, check_cv, preset,
};
use llmsim::{gpu, model};

/// Largest tensor-parallel degree and pipeline depth.
const MAX_DEGREE: u32 = 64;

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
    #[arg(long, default_value = "llama-3.1-8b", value_name = "NAME|PATH")]
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

/// A model as given to `--model`: its name and shape.
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

impl CostArgs {
    /// The model of --model.
    pub fn model(&self) -> Result<NamedModel, UsageError> {
        if let Some(m) = model::catalogue::find(&self.model) {
            return Ok(NamedModel {
                name: m.name.to_string(),
                aliases: Vec::new(),
                shape: m.shape,
            });
        }
        let path = Path::new(&self.model);
        if !path.is_file() {
            return Err(UsageError::new(
                "--model",
                format!(
                    "'{}' is neither a built-in model ({}, or a Hugging Face id of one) nor a config.json file",
                    self.model,
                    model::catalogue::names().join(", ")
                ),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError::new("--model", format!("{}: {e}", path.display())))?;
        let shape = ModelShape::from_hf_config(&text)
            .map_err(|e| UsageError::new("--model", format!("{}: {e}", path.display())))?;
        let folder = path.canonicalize().ok().and_then(|p| {
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

    /// The GPU named by `name`: a built-in card or a TOML file.
    fn gpu_named(name: &str, flag: &'static str) -> Result<GpuSpec, UsageError> {
        if let Some(g) = gpu::find(name) {
            return Ok(g.spec);
        }
        let path = Path::new(name);
        if !path.is_file() {
            return Err(UsageError::new(
                flag,
                format!(
                    "'{name}' is neither a built-in GPU ({}) nor a TOML file",
                    gpu::names().join(", ")
                ),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError::new(flag, format!("{}: {e}", path.display())))?;
        GpuSpec::from_toml(&text)
            .map_err(|e| UsageError::new(flag, format!("{}: {e}", path.display())))
    }

    /// The GPU of --gpu or of `--cost roofline:GPU` (which must agree), if either is given.
    pub fn gpu(&self) -> Result<Option<GpuSpec>, UsageError> {
        let from_cost = match self.cost.strip_prefix("roofline:") {
            Some(name) => Some((name, Self::gpu_named(name, "--cost")?)),
            None => None,
        };
        let from_flag = match &self.gpu {
            Some(name) => Some((name.as_str(), Self::gpu_named(name, "--gpu")?)),
            None => None,
        };
        match (from_cost, from_flag) {
            (Some((a, x)), Some((b, y))) if x != y => Err(UsageError::new(
                "--gpu",
                format!("'{b}' is not the GPU '{a}' of --cost roofline:{a}; give one of them"),
            )),
            (a, b) => Ok(a.or(b).map(|(_, g)| g)),
        }
    }

    /// The replica's layout from --tp and --pp, checked against `model`.
    pub fn parallel(&self, model: &ModelShape) -> Result<Parallel, UsageError> {
        for (flag, v) in [("--tp", self.tp), ("--pp", self.pp)] {
            require(
                (1..=MAX_DEGREE).contains(&v),
                flag,
                format!("must be from 1 to {MAX_DEGREE} (got {v})"),
            )?;
        }
        require(
            model.heads.is_multiple_of(self.tp),
            "--tp",
            format!(
                "must divide the model's {} attention heads (got {})",
                model.heads, self.tp
            ),
        )?;
        require(
            self.pp <= model.layers,
            "--pp",
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
            parallel == Parallel::SINGLE || self.is_roofline(),
            "--tp",
            "--tp and --pp need --cost roofline: the other cost models price one measured GPU",
        )?;
        Ok(parallel)
    }

    fn is_roofline(&self) -> bool {
        self.cost == "roofline" || self.cost.starts_with("roofline:")
    }

    /// The cost model these flags describe.
    pub fn build(&self) -> Result<Arc<dyn CostModel>, UsageError> {
        let model = self.model()?;
        let parallel = self.parallel(&model.shape)?;
        let gpu = self.gpu()?;
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
        } else if self.is_roofline() {
            let gpu = gpu.ok_or_else(|| {
                UsageError::new(
                    "--gpu",
                    format!(
                        "--cost roofline needs a GPU: --gpu NAME|FILE or roofline:GPU ({})",
                        gpu::names().join(", ")
                    ),
                )
            })?;
            Arc::new(RooflineCost {
                parallel,
                ..RooflineCost::new(model.shape, gpu)
            })
        } else if let Some(p) = Preset::built_in(&self.cost) {
            p.model()
        } else {
            let preset = Preset::read(Path::new(&self.cost)).map_err(|e| UsageError {
                flag: "--cost",
                why: format!(
                    "{e} (--cost takes linear, a built-in preset ({}), a preset TOML file, roofline or roofline:GPU)",
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
    let model = args.cost.model()?;
    let cost = args.cost.build()?;
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
