//! `llmsim cost check`: a cost model's error on a measured profile,
//! without fitting.

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

use super::UsageError;
use super::calibrate::{read, report};
use super::run::CostFlags;
use llmsim::config::Config;
use llmsim_study::files::Disk;

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
    cost: CostFlags,
    /// Measured profile (the CSV format of `llmsim calibrate`); every row's `model` must
    /// name --model.
    profile: PathBuf,
}

pub fn main(cmd: CostCmd) -> Result<()> {
    let CostCommand::Check(args) = cmd.command;
    let mut cfg = Config::default();
    for note in args.cost.apply(&mut cfg) {
        eprintln!("{note}");
    }
    let (cost, hw) = cfg.cost_model(&Disk).map_err(UsageError::from)?;
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
    let spec = cfg.cost.to_string();
    println!(
        "cost {spec} | model {} | gpu {} | tp {} x pp {}",
        model.name,
        cfg.gpu
            .as_deref()
            .or(spec.strip_prefix("roofline:"))
            .unwrap_or("-"),
        cfg.tp,
        cfg.pp
    );
    report(
        &format!("check: {}", args.profile.display()),
        cost.as_ref(),
        &rows,
    );
    Ok(())
}
