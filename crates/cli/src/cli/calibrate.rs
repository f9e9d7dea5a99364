//! `llmsim calibrate`: fit the profiled cost model to measured iteration times, report its
//! error row by row, and save it as a preset for `llmsim run --cost FILE`.

use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

use super::UsageError;
use llmsim::calibrate::{
    FitError, ProfileRow, fit_error, fit_profiled, fit_roofline, relative_errors,
};
use llmsim::cost::serving::FIRST_GUESS;
use llmsim::cost::{CostModel, ModelShape, Preset, ProfiledCost, ServingPreset};
use llmsim::serving::{Latencies, METRICS, ServingRun, mape};
use llmsim::serving_fit::{
    FitOptions, Holdout, cross_validate, fit, loss, optional, own_cards, score_preset,
};
use llmsim_study::files::Disk;
use llmsim_study::files::read_profile;
use llmsim_study::output::write_atomic;

/// Flags of `llmsim calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Measured profile to fit (CSV: model,kind,prefill_seqs,prefill_len,prefill_tokens,
    /// decode_batch,decode_context,batch_tokens,median_ms,...).
    #[arg(required_unless_present = "serving", conflicts_with = "serving")]
    profile: Option<PathBuf>,
    /// Fit a serving preset (roofline efficiencies, each card's own but the commonest's,
    /// per-step, per-sequence, per-layer and per-request overheads) to a real engine's runs file (`llmsim fidelity`'s format) instead, with
    /// the simulator in the loop; prints the in-sample and leave-one-run-out errors.
    #[arg(long, value_name = "RUNS")]
    serving: Option<PathBuf>,
    /// Serving fit: the preset to start from: `first-guess` (llmsim's first guess, fitted
    /// on nothing), a built-in serving preset or a file [default: first-guess]. The fit
    /// keeps its `exposed_compute` (0.5 in `first-guess`).
    #[arg(long, value_name = "PRESET", requires = "serving")]
    start: Option<String>,
    /// Serving fit: requests simulated per stage while fitting.
    #[arg(long, value_name = "N", default_value_t = 600, requires = "serving")]
    max_requests: usize,
    /// Serving fit: most loss evaluations of each of the fit's searches (each simulates
    /// every run; three searches when --start exposes compute, one otherwise).
    #[arg(long, value_name = "N", default_value_t = 300, requires = "serving")]
    max_evals: usize,
    /// Serving fit: what each cross-validation refit holds out: one run, or every run of
    /// one model, GPU or workload (the runs file's `workload` column), whose runs are then
    /// predicted by a fit that never saw their kind.
    #[arg(long, value_enum, default_value_t = HoldoutArg::Run, requires = "serving")]
    holdout: HoldoutArg,
    /// Serving fit: most loss evaluations of each search of each cross-validation refit,
    /// which starts from --start like the fit itself, so the runs held out have no say in
    /// it (0: skip them; on many runs the refits take hours, with a progress bar on a
    /// terminal) [default: --max-evals].
    #[arg(long, value_name = "N", alias = "loo-evals", requires = "serving")]
    holdout_evals: Option<usize>,
    /// Also report the fitted model's error on this profile's rows (a held-out test set);
    /// may be repeated.
    #[arg(long, value_name = "CSV")]
    check: Vec<PathBuf>,
    /// Write the fitted model as a preset TOML file for `llmsim run --cost FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Preset name [default: the profile's file stem].
    #[arg(long)]
    name: Option<String>,
    /// Where the numbers come from, recorded in the preset [default: the profile's path].
    #[arg(long)]
    source: Option<String>,
    /// Also fit a roofline model (Llama-3.1-8B shape) to PROFILE, which was measured on this
    /// GPU (a built-in card: h100, h200, ...): its efficiency factors and overhead, and its error on every row
    /// (and on the --check profiles, assumed measured on the same card).
    #[arg(long, value_name = "GPU")]
    roofline: Option<String>,
}

/// `--holdout`'s values: [`Holdout`]'s.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum HoldoutArg {
    Run,
    Model,
    Gpu,
    Workload,
}

impl HoldoutArg {
    fn holdout(self) -> Holdout {
        match self {
            HoldoutArg::Run => Holdout::Run,
            HoldoutArg::Model => Holdout::Model,
            HoldoutArg::Gpu => Holdout::Gpu,
            HoldoutArg::Workload => Holdout::Workload,
        }
    }

    fn name(self) -> &'static str {
        match self {
            HoldoutArg::Run => "run",
            HoldoutArg::Model => "model",
            HoldoutArg::Gpu => "gpu",
            HoldoutArg::Workload => "workload",
        }
    }
}

pub(super) fn read(path: &Path, flag: &'static str) -> Result<Vec<ProfileRow>, UsageError> {
    read_profile(path).map_err(|e| UsageError {
        flag,
        why: e.to_string(),
    })
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Prints one line per row and the summary line; returns the summary.
pub(super) fn report(title: &str, model: &dyn CostModel, rows: &[ProfileRow]) -> FitError {
    println!("\n{title}");
    println!(
        "{:<28} {:>12} {:>12} {:>9}",
        "batch", "measured ms", "model ms", "error"
    );
    for (row, err) in rows.iter().zip(relative_errors(model, rows)) {
        println!(
            "{:<28} {:>12.4} {:>12.4} {:>9}",
            row.label(),
            row.median_ms,
            model.mean(&row.shape()) * 1e3,
            format!("{:+.2}%", 100.0 * err)
        );
    }
    let e = fit_error(model, rows);
    println!(
        "{} rows: MAPE {}, max error {} ({})",
        rows.len(),
        pct(e.mape),
        pct(e.max),
        rows[e.worst_row].label()
    );
    e
}

fn print_parameters(m: &ProfiledCost) {
    println!("S = c + p [prefill] + a max(0, tokens - b0) + q sum of squared prompt lengths");
    println!("      + d kv_tokens max(1, r / decodes)");
    for (sym, what, value) in [
        ("c", "setup", format!("{:.4} ms", m.setup * 1e3)),
        (
            "p",
            "prefill setup",
            format!("{:.4} ms", m.prefill_setup * 1e3),
        ),
        (
            "a",
            "per token",
            format!("{:.4e} ms/token", m.per_token * 1e3),
        ),
        ("b0", "free tokens", format!("{} tokens", m.free_tokens)),
        (
            "q",
            "prefill attention",
            format!("{:.4e} ms/token^2", m.prefill_attention * 1e3),
        ),
        (
            "d",
            "per KV token read",
            format!("{:.4e} ms/token", m.per_kv_token * 1e3),
        ),
        (
            "r",
            "min attention seqs",
            format!("{} sequences", m.min_attention_seqs),
        ),
    ] {
        println!("  {sym:<3} {what:<20} {value}");
    }
}

/// Checks `--out` before any work: its folder must exist and it must not be a folder.
/// Whether the folder accepts the file is known only by writing it, which happens before
/// anything is printed.
fn check_out(out: &Path) -> Result<(), UsageError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        let why = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist (create it first)"
        };
        return Err(UsageError::new(
            "--out",
            format!("{}: {} {why}", out.display(), dir.display()),
        ));
    }
    if out.is_dir() {
        return Err(UsageError::new(
            "--out",
            format!(
                "{} is a folder; give a file name such as preset.toml",
                out.display()
            ),
        ));
    }
    Ok(())
}

pub fn main(args: CalibrateArgs) -> Result<()> {
    if let Some(runs) = &args.serving {
        return serving_main(runs, &args);
    }
    let profile = args
        .profile
        .clone()
        .expect("clap requires PROFILE without --serving");
    // Every argument is checked, and every result computed and saved, before anything is
    // printed: a bad flag fails with nothing on standard output.
    let roofline = match &args.roofline {
        Some(name) => Some((
            name,
            llmsim::gpu::find(name)
                .ok_or_else(|| UsageError {
                    flag: "--roofline",
                    why: format!(
                        "'{name}' is not a built-in GPU ({})",
                        llmsim::gpu::names().join(", ")
                    ),
                })?
                .spec,
        )),
        None => None,
    };
    if let Some(out) = &args.out {
        check_out(out)?;
    }
    let rows = read(&profile, "PROFILE")?;
    let checks = args
        .check
        .iter()
        .map(|p| read(p, "--check").map(|rows| (p, rows)))
        .collect::<Result<Vec<_>, _>>()?;
    let model = fit_profiled(&rows).map_err(|e| UsageError {
        flag: "PROFILE",
        why: format!("{}: {e}", profile.display()),
    })?;
    let roof = roofline.map(|(name, gpu)| {
        (
            name,
            gpu,
            fit_roofline(&rows, ModelShape::LLAMA_3_1_8B, gpu),
        )
    });
    if let Some(out) = &args.out {
        let stem = profile
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        let preset = Preset {
            name: args
                .name
                .clone()
                .or(stem)
                .unwrap_or_else(|| "profiled".into()),
            source: args.source.clone().unwrap_or_else(|| {
                format!(
                    "llmsim calibrate fit to {} ({} rows)",
                    profile.display(),
                    rows.len()
                )
            }),
            profiled: model,
        };
        write_atomic(out, preset.to_toml().as_bytes())
            .map_err(|e| UsageError::new("--out", e.to_string()))?;
    }
    let count = |kind: &str| rows.iter().filter(|r| r.kind == kind).count();
    println!(
        "fitted to {} ({} rows: {} prefill, {} decode, {} mixed), least squares on relative error",
        profile.display(),
        rows.len(),
        count("prefill"),
        count("decode"),
        count("mixed")
    );
    print_parameters(&model);
    report(&format!("fit: {}", profile.display()), &model, &rows);
    for (path, rows) in &checks {
        report(&format!("check: {}", path.display()), &model, rows);
    }
    if let Some((name, gpu, roof)) = roof {
        println!(
            "\nroofline: Llama-3.1-8B on {name} ({:.0} TFLOP/s bf16, {:.2} TB/s): fitted compute \
             efficiency {:.3}, memory efficiency {:.3}, overhead {:.4} ms",
            gpu.peak_flops * 1e-12,
            gpu.bandwidth * 1e-12,
            roof.eff.compute,
            roof.eff.memory,
            roof.eff.overhead * 1e3
        );
        report(
            &format!("roofline fit: {}", profile.display()),
            &roof,
            &rows,
        );
        for (path, rows) in &checks {
            report(&format!("roofline check: {}", path.display()), &roof, rows);
        }
    }
    if let Some(out) = &args.out {
        println!("\nwrote {}", out.display());
    }
    Ok(())
}

/// The serving preset `--start` names (a built-in one or a file).
fn start_preset(start: Option<&str>) -> Result<ServingPreset, UsageError> {
    let name = start.unwrap_or(FIRST_GUESS);
    if name == FIRST_GUESS {
        return Ok(ServingPreset::first_guess());
    }
    if let Some(p) = ServingPreset::built_in(name) {
        return Ok(p);
    }
    let text = std::fs::read_to_string(name).map_err(|e| {
        UsageError::new(
            "--start",
            format!(
                "'{name}' is neither {FIRST_GUESS}, a built-in serving preset ({}) nor a readable file: {e}",
                llmsim::cost::serving::built_in_names().join(", ")
            ),
        )
    })?;
    ServingPreset::parse(&text, name).map_err(|e| UsageError::new("--start", e))
}

fn print_mape(title: &str, mape: &Latencies) {
    let cells: Vec<String> = METRICS
        .iter()
        .zip(mape)
        .map(|(m, v)| format!("{m} {v:.2}%"))
        .collect();
    println!("{title}: {}", cells.join(", "));
}

/// `llmsim calibrate --serving RUNS`.
fn serving_main(path: &Path, args: &CalibrateArgs) -> Result<()> {
    let start = start_preset(args.start.as_deref())?;
    if let Some(out) = &args.out {
        check_out(out)?;
    }
    if args.max_requests < 2 {
        return Err(UsageError::new("--max-requests", "must be at least 2").into());
    }
    let runs = super::fidelity::read_runs(path)?;
    let opts = FitOptions {
        max_requests: Some(args.max_requests),
        seed: 42,
        max_evals: args.max_evals,
        step: 0.5,
    };
    let scored = score_preset(&runs, &start, &opts, &Disk);
    let (fitted, skipped): (Vec<_>, Vec<_>) = runs
        .iter()
        .cloned()
        .zip(&scored)
        .partition(|(_, s)| s.predicted.is_ok());
    let runs: Vec<ServingRun> = fitted.into_iter().map(|(r, _)| r).collect();
    if runs.len() < 2 {
        return Err(UsageError::new(
            "--serving",
            format!(
                "{}: fewer than 2 runs simulate, nothing to fit",
                path.display()
            ),
        )
        .into());
    }
    if let Some(run) = runs
        .iter()
        .find(|r| args.holdout.holdout().key(r).is_none())
    {
        return Err(UsageError::new(
            "--holdout",
            format!(
                "{}: run {} has no workload (the file's workload column is missing or empty); hold out by run, model or gpu instead",
                path.display(),
                run.id
            ),
        )
        .into());
    }
    let (cards, optional) = (own_cards(&runs), optional(&runs));
    let fitted = fit(&runs, &start, &cards, optional, &opts, &Disk);
    let name = args.name.clone().unwrap_or_else(|| start.name.clone());
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let preset = ServingPreset {
        name,
        source: args.source.clone().unwrap_or_else(|| {
            format!(
                "llmsim calibrate --serving {} (runs {}; {} requests per stage, soft-L1 on log ratios)",
                path.display(),
                ids.join(" "),
                args.max_requests
            )
        }),
        ..fitted.preset.clone()
    };
    if let Some(out) = &args.out {
        write_atomic(out, preset.to_toml().as_bytes())
            .map_err(|e| UsageError::new("--out", e.to_string()))?;
    }
    println!(
        "fitted to {} runs of {} in {} evaluations (loss {:.4} from {:.4})",
        runs.len(),
        path.display(),
        fitted.evals,
        fitted.loss,
        loss(&runs, &score_preset(&runs, &start, &opts, &Disk)),
    );
    for (run, s) in &skipped {
        if let Err(why) = &s.predicted {
            println!("skipped {}: {why}", run.id);
        }
    }
    for ((name, lo, hi), v) in ServingPreset::fit_bounds(&cards, optional)
        .iter()
        .zip(preset.fit_params(&cards, optional))
    {
        println!("  {name:<20} {v:.6e}  (bounds {lo} to {hi})");
    }
    println!(
        "  {:<20} {:.6e}  (not fitted: --start's)",
        "roofline.exposed_compute", preset.roofline.exposed_compute
    );
    if !optional.link {
        println!(
            "  {:<20} {:.6e}  (not fitted: no run spans GPUs over NVLink; --start's)",
            "roofline.link_latency", preset.roofline.link_latency
        );
    }
    if !optional.per_layer {
        println!(
            "  {:<20} {:.6e}  (not fitted: every run's model has as many layers; --start's)",
            "roofline.per_layer", preset.roofline.per_layer
        );
    }
    let full = FitOptions {
        max_requests: None,
        ..opts
    };
    let in_sample = score_preset(&runs, &preset, &full, &Disk);
    print_mape(
        "in-sample MAPE (whole-run rows, every request)",
        &mape(&runs, &in_sample),
    );
    let evals = args.holdout_evals.unwrap_or(args.max_evals);
    if evals > 0 {
        cross_validation(
            &runs,
            &start,
            args.holdout,
            &FitOptions {
                max_evals: evals,
                ..opts
            },
        );
    }
    if let Some(out) = &args.out {
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// Prints each fold's held-out errors and their MAPE over every run held out.
fn cross_validation(runs: &[ServingRun], start: &ServingPreset, by: HoldoutArg, opts: &FitOptions) {
    let folds = llmsim::serving_fit::groups(runs, by.holdout()).len();
    let title = format!("leave-one-{}-out", by.name());
    // The refits take hours on many runs (three searches each when compute is exposed).
    let bar = super::progress::bar(folds as u64, &format!("{title} refits"));
    let folds = cross_validate(runs, start, by.holdout(), opts, &Disk, || bar.inc(1));
    bar.finish_and_clear();
    let (mut held, mut scored) = (Vec::new(), Vec::new());
    println!("{title} (each fold refitted from --start on the other runs):");
    for fold in folds {
        let members: Vec<ServingRun> = fold.runs.iter().map(|&i| runs[i].clone()).collect();
        let ids: Vec<&str> = members.iter().map(|r| r.id.as_str()).collect();
        let label = format!("  {} (runs {})", fold.key, ids.join(" "));
        match fold.scored {
            Ok(s) => {
                let m = mape(&members, &s);
                let cells: Vec<String> = [0, 3, 6]
                    .iter()
                    .map(|&i| format!("{} {:.2}%", METRICS[i], m[i]))
                    .collect();
                println!("{label}: {}", cells.join(", "));
                held.extend(members);
                scored.extend(s);
            }
            Err(why) => println!("{label}: not held out, {why}"),
        }
    }
    if held.is_empty() {
        println!("{title}: no fold could be held out");
    } else {
        print_mape(
            &format!(
                "{title} MAPE ({} runs held out; whole-run rows; each refit from --start)",
                held.len()
            ),
            &mape(&held, &scored),
        );
    }
}
