//! Command-line front end: parses flags, validates them into library configs, and prints.
//! Invalid input exits with code 2 and a message naming the flag; nothing is written.

mod bench;
mod calibrate;
mod cost;
mod fidelity;
mod plan;
mod progress;
mod report;
mod reproduce;
mod run;
mod validate;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use llmsim::limits::RangeError;

/// A discrete-event simulator of LLM inference serving.
#[derive(Parser)]
#[command(name = "llmsim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate one configuration and print its metrics.
    Run(run::RunArgs),
    /// Compare the simulator with closed-form queueing results.
    Validate(validate::ValidateArgs),
    /// Measure simulation speed (requests and batches simulated per second).
    Bench(bench::BenchArgs),
    /// Fit a cost model to measured GPU iteration times and save it as a preset.
    Calibrate(calibrate::CalibrateArgs),
    /// Check a cost model against measured iteration times.
    Cost(cost::CostCmd),
    /// Score the simulator against a real engine's runs (predicted vs measured latencies).
    Fidelity(fidelity::FidelityArgs),
    /// Run the seed study's ten experiments and ours, write their CSVs to data/, then the report.
    Reproduce(reproduce::ReproduceArgs),
    /// Find the cheapest deployment (GPUs, policy, router, knobs) meeting latency objectives.
    Plan(Box<plan::PlanArgs>),
    /// Write the HTML and Markdown report from the data of a reproduce run.
    Report(report::ReportArgs),
}

/// A command-line value that is well-formed but not allowed.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {flag}: {why}")]
pub struct UsageError {
    flag: &'static str,
    why: String,
}

impl UsageError {
    /// The error for `flag`, saying `why`.
    pub fn new(flag: &'static str, why: impl Into<String>) -> Self {
        UsageError {
            flag,
            why: why.into(),
        }
    }
}

impl From<RangeError> for UsageError {
    /// A library setting's error, naming the flag of the same name. The name is leaked:
    /// a usage error ends the process, and the flag stays a plain `&'static str`.
    fn from(e: RangeError) -> Self {
        UsageError {
            flag: Box::leak(format!("--{}", e.field).into_boxed_str()),
            why: e.why,
        }
    }
}

/// Fails with a message naming `flag` unless `ok`.
pub fn require(ok: bool, flag: &'static str, why: impl Into<String>) -> Result<(), UsageError> {
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(flag, why))
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let defaults = llmsim::config::Config::default();
    let cmd = Cli::command()
        .mut_subcommand("run", |c| {
            run::show_defaults(c, &run::SimArgs::from_config(&defaults))
        })
        .mut_subcommand("bench", |c| {
            run::show_defaults(c, &run::SimArgs::from_config(&bench::base()))
        })
        .mut_subcommand("cost", |c| {
            c.mut_subcommand("check", |c| {
                run::show_defaults(c, &run::CostFlags::from_config(&defaults))
            })
        });
    let cli = Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Run(args) => run::main(args),
        Command::Validate(args) => validate::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Calibrate(args) => calibrate::main(args),
        Command::Cost(args) => cost::main(args),
        Command::Fidelity(args) => fidelity::main(args),
        Command::Reproduce(args) => reproduce::main(args),
        Command::Report(args) => report::main(args),
        Command::Plan(args) => plan::main(*args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                2
            } else {
                1
            }
        }
    }
}
