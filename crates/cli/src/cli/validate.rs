//! `llmsim validate`: the simulator against queueing theory, as a table.

use anyhow::{Result, bail};
use clap::Args;

use llmsim::validation::{self, Effort};

/// Most replications per configuration: each is kept until its check is computed.
const MAX_REPS: u32 = 1_000;

/// Most requests per replication: a replication holds all its requests and their records
/// in memory while it runs, and one runs per thread.
const MAX_REQUESTS: usize = 1_000_000;

/// Flags of `llmsim validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Replications per configuration (2 to 1000).
    #[arg(long, default_value_t = Effort::FULL.reps)]
    reps: u32,
    /// Requests per replication (100 to 1000000; the backlog checks of Scheduler B always
    /// run 40,000 after a backlog of 1,000).
    #[arg(long, default_value_t = Effort::FULL.requests)]
    requests: usize,
    /// Print the checks as JSON.
    #[arg(long)]
    json: bool,
}

pub fn main(args: ValidateArgs) -> Result<()> {
    super::require(
        (2..=MAX_REPS).contains(&args.reps),
        "--reps",
        format!(
            "must be from 2 (an interval needs two) to {MAX_REPS} (got {})",
            args.reps
        ),
    )?;
    super::require(
        (100..=MAX_REQUESTS).contains(&args.requests),
        "--requests",
        format!(
            "must be from 100 to {MAX_REQUESTS} requests per replication (got {})",
            args.requests
        ),
    )?;
    let checks = validation::all(Effort {
        reps: args.reps,
        requests: args.requests,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        println!(
            "{:<24} {:>14} {:>11} {:>11} {:>11}  result   model",
            "metric", "simulated", "± 95% CI", "theory", "± 99.9%"
        );
        for c in &checks {
            println!(
                "{:<24} {:>14.6} {:>11.6} {:>11.6} {:>11.6}  {:<7}  {}",
                c.metric,
                c.simulated.mean,
                c.simulated.ci95,
                c.theory,
                c.tolerance,
                if c.pass { "ok" } else { "FAIL" },
                c.model
            );
        }
    }
    let failed = checks.iter().filter(|c| !c.pass).count();
    if failed > 0 {
        bail!(
            "{failed} of {} checks outside their 99.9% interval",
            checks.len()
        );
    }
    Ok(())
}
