//! `llmsim validate`: the simulator against queueing theory, as a table.

use anyhow::{Result, bail};
use clap::Args;

use llmsim::validation::{self, Effort};

/// Flags of `llmsim validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Replications per configuration.
    #[arg(long, default_value_t = Effort::FULL.reps)]
    reps: u32,
    /// Requests per replication.
    #[arg(long, default_value_t = Effort::FULL.requests)]
    requests: usize,
    /// Print the checks as JSON.
    #[arg(long)]
    json: bool,
}

pub fn main(args: ValidateArgs) -> Result<()> {
    super::require(
        args.reps >= 2,
        "--reps",
        "needs at least 2 replications for an interval",
    )?;
    super::require(args.requests >= 100, "--requests", "must be at least 100")?;
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
