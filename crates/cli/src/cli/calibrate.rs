//! `llmsim calibrate`: fit the profiled cost model to measured iteration times, report its
//! error row by row, and save it as a preset for `llmsim run --cost FILE`.

use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

use super::UsageError;
use llmsim::calibrate::{
    FitError, ProfileRow, fit_error, fit_profiled, fit_roofline, relative_errors,
};
use llmsim::cost::{CostModel, ModelShape, Preset, ProfiledCost};
use llmsim_study::files::read_profile;
use llmsim_study::output::write_atomic;

/// Flags of `llmsim calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Measured profile to fit (CSV: model,kind,prefill_seqs,prefill_len,prefill_tokens,
    /// decode_batch,decode_context,batch_tokens,median_ms,...).
    profile: PathBuf,
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
    let rows = read(&args.profile, "PROFILE")?;
    let checks = args
        .check
        .iter()
        .map(|p| read(p, "--check").map(|rows| (p, rows)))
        .collect::<Result<Vec<_>, _>>()?;
    let model = fit_profiled(&rows).map_err(|e| UsageError {
        flag: "PROFILE",
        why: format!("{}: {e}", args.profile.display()),
    })?;
    let roof = roofline.map(|(name, gpu)| {
        (
            name,
            gpu,
            fit_roofline(&rows, ModelShape::LLAMA_3_1_8B, gpu),
        )
    });
    if let Some(out) = &args.out {
        let stem = args
            .profile
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
                    args.profile.display(),
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
        args.profile.display(),
        rows.len(),
        count("prefill"),
        count("decode"),
        count("mixed")
    );
    print_parameters(&model);
    report(&format!("fit: {}", args.profile.display()), &model, &rows);
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
            &format!("roofline fit: {}", args.profile.display()),
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
