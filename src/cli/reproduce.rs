//! `llmsim reproduce`: runs the seed study's ten experiments and writes their CSVs.

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

use llmsim::experiments::{self, Experiment, Scale, Study};
use llmsim::output;

/// Flags of `llmsim reproduce`.
#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// Folder for the CSV and meta files (created if missing).
    #[arg(long, default_value = "data", value_name = "DIR")]
    out: PathBuf,
    /// Run one experiment only, by name (e.g. capacity_vs_k) or file name.
    #[arg(long, value_name = "NAME")]
    only: Option<Experiment>,
    /// Small samples (5 replications of 2,000 requests): a smoke run, not results.
    #[arg(long)]
    quick: bool,
    /// Base random seed of every experiment.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Folder for the report written after the data (skipped with --only).
    #[arg(long, default_value = "report", value_name = "DIR")]
    report: PathBuf,
}

pub fn main(args: ReproduceArgs) -> Result<()> {
    let which: Vec<Experiment> = match args.only {
        Some(e) => vec![e],
        None => Experiment::ALL.to_vec(),
    };
    let scale = if args.quick {
        Scale::QUICK
    } else {
        Scale::FULL
    };
    let study = Study {
        seed: args.seed,
        scale,
    };
    // Drawn only when stderr is a terminal, so logs and pipes stay clean.
    let bar = ProgressBar::with_draw_target(
        Some(experiments::planned_runs(&which, &scale)),
        ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} replications, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let start = Instant::now();
    let tables = experiments::run(&which, study, &|n| bar.inc(n));
    bar.finish_and_clear();
    let written = output::write_tables(&args.out, &tables)?;
    println!(
        "llmsim reproduce: {} experiment(s), seed {}, {} replications x {} requests (warm-up {}) per configuration{}",
        which.len(),
        study.seed,
        scale.reps,
        scale.requests,
        scale.warmup(),
        if args.quick {
            " [--quick: smoke run, not results]"
        } else {
            ""
        }
    );
    for t in &tables {
        println!("  {:<30} {}", t.name, t.headline);
    }
    let dir = std::fs::canonicalize(&args.out).unwrap_or(args.out);
    println!(
        "wrote {} CSV files (+ .meta.json) to {} in {:.1} s; columns and units: docs/data.md",
        written.len(),
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    // The report needs every experiment's data.
    if args.only.is_none() {
        super::report::write(&dir, &args.report)?;
    }
    Ok(())
}
