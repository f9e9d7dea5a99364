//! `llmsim reproduce`: runs the seed study's ten experiments and writes their CSVs.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

use llmsim_study::experiments::{self, Experiment, Scale, Study};
use llmsim_study::output;

use super::UsageError;

/// Flags of `llmsim reproduce`.
#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// Folder for the CSV and meta files (created if missing).
    #[arg(long, default_value = "data", value_name = "DIR")]
    out: PathBuf,
    /// Run one experiment only, by name (e.g. capacity_vs_k) or file name; the names are
    /// listed in docs/data.md.
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
    /// Folder of the inputs that do not ship with the project: the Azure traces
    /// (traces/AzureLLMInferenceTrace_{conv,code}.csv) for trace_capacity and the H200
    /// profile (calibration/h200_llama-3.1-8b.csv) for roofline; an experiment whose inputs
    /// are missing is skipped [default: $LLMSIM_SHARED, else ../shared].
    #[arg(long, value_name = "DIR")]
    shared: Option<PathBuf>,
}

/// On SIGINT, SIGTERM or SIGHUP: lets the file being written (if any) be renamed into
/// place, starts no other, and exits with code 130. No temporary file is left behind, and a
/// data folder cut short lacks its manifest, which `llmsim report` refuses.
pub(super) fn stop_cleanly_on_signal() {
    // Fails only when a handler is already set, and this process sets one once.
    let _ = ctrlc::set_handler(|| {
        let _no_more_writes = output::write_lock();
        eprintln!("llmsim: interrupted; no temporary file left behind");
        std::process::exit(130);
    });
}

pub fn main(args: ReproduceArgs) -> Result<()> {
    // A folder that cannot take the output is found before the simulation, not after it.
    output::check_folder(&args.out).map_err(|e| UsageError::new("--out", e.to_string()))?;
    if args.only.is_none() {
        output::check_folder(&args.report)
            .map_err(|e| UsageError::new("--report", e.to_string()))?;
    }
    stop_cleanly_on_signal();
    let shared = args
        .shared
        .clone()
        .unwrap_or_else(experiments::default_shared);
    let require = std::env::var_os("LLMSIM_REQUIRE_SHARED").is_some_and(|v| v == "1");
    let mut which: Vec<Experiment> = Vec::new();
    for e in args.only.map_or(Experiment::ALL.to_vec(), |e| vec![e]) {
        let missing = e.missing_inputs(&shared);
        if missing.is_empty() {
            which.push(e);
            continue;
        }
        let files = missing
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if require || args.only.is_some() {
            return Err(UsageError::new(
                "--shared",
                format!(
                    "{e} needs {files}, which is missing (give the folder holding traces/ and calibration/ with --shared DIR or LLMSIM_SHARED=DIR{})",
                    if require {
                        "; LLMSIM_REQUIRE_SHARED=1 forbids skipping it"
                    } else {
                        ""
                    }
                ),
            )
            .into());
        }
        eprintln!(
            "llmsim reproduce: skipping {e}: {files} not found (pass --shared DIR or set LLMSIM_SHARED; its report section is omitted)"
        );
        // An earlier run's file of this experiment would otherwise sit beside this run's
        // data and reach its report as if it belonged to it.
        for stale in [e.file_name(), e.file_name().replace(".csv", ".meta.json")] {
            let path = args.out.join(stale);
            if path.exists() {
                std::fs::remove_file(&path)
                    .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))?;
                eprintln!(
                    "llmsim reproduce: removed {} of an earlier run",
                    path.display()
                );
            }
        }
    }
    let scale = if args.quick {
        Scale::QUICK
    } else {
        Scale::FULL
    };
    let study = Study {
        seed: args.seed,
        scale,
    };
    let bar = super::progress::bar(experiments::planned_runs(&which, &scale), "replications");
    let start = Instant::now();
    let tables = experiments::run_with_shared(&which, study, shared, &|n| bar.inc(n));
    bar.finish_and_clear();
    // A malformed shared input is bad input: exit 2, and nothing has been written yet.
    let tables = tables.map_err(|e| UsageError::new("--shared", e.to_string()))?;
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
