//! `llmsim policies`: the policy capacity and comparison experiments (temporary home until
//! they join `llmsim reproduce`).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

use llmsim::experiments::policies::{self, Effort};

/// Flags of `llmsim policies`.
#[derive(Args, Debug)]
pub struct PoliciesArgs {
    /// Folder for data_policy_capacity.csv and data_policy_comparison.csv.
    #[arg(long, default_value = "data")]
    out: PathBuf,
    /// A quick smoke run (few requests and replications) instead of the published sizes.
    #[arg(long)]
    quick: bool,
}

pub fn main(args: PoliciesArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let effort = if args.quick {
        Effort::QUICK
    } else {
        Effort::FULL
    };
    let (cap, cmp) = policies::run(&args.out, effort)?;
    println!(
        "{:<13} {:<11} {:>9} {:>16} {:>16} {:>10} {:>9}",
        "policy", "memory", "bound", "max stable", "fraction", "saturated", "preempt"
    );
    for r in &cap {
        println!(
            "{:<13} {:<11} {:>9.2} {:>9.2} ± {:<5.2} {:>8.3} ± {:<5.3} {:>10.2} {:>9.1}",
            r.policy,
            r.memory,
            r.bound_rps,
            r.max_stable_rps,
            r.max_stable_ci95,
            r.fraction_of_bound,
            r.fraction_ci95,
            r.saturated_rps,
            r.preemptions_at_max
        );
    }
    println!(
        "\n{:<13} {:<11} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "policy",
        "memory",
        "load",
        "tput",
        "TTFT50",
        "TTFT99",
        "TBT50",
        "TBT99",
        "E2E50",
        "E2E99",
        "preempt"
    );
    for r in &cmp {
        println!(
            "{:<13} {:<11} {:>5.2} {:>8.2} {:>8.3} {:>8.3} {:>8.4} {:>8.4} {:>8.2} {:>8.2} {:>7.0}{}",
            r.policy,
            r.memory,
            r.load,
            r.throughput_rps,
            r.ttft_p50,
            r.ttft_p99,
            r.tbt_p50,
            r.tbt_p99,
            r.e2e_p50,
            r.e2e_p99,
            r.preemptions,
            if r.unstable { "  UNSTABLE" } else { "" }
        );
    }
    Ok(())
}
