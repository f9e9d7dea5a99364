//! `llmsim report`: the HTML and Markdown report from the data of a reproduce run.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

use llmsim_study::output;
use llmsim_study::report::ReportError;

use super::UsageError;

/// Flags of `llmsim report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Folder holding the CSV and meta files of a finished `llmsim reproduce` run (its
    /// manifest.json lists them).
    #[arg(long, default_value = "data", value_name = "DIR")]
    pub data: PathBuf,
    /// Folder for index.html, REPORT.md and figures/ (created if missing).
    #[arg(long, default_value = "report", value_name = "DIR")]
    pub out: PathBuf,
}

/// Writes the report and says where it is.
pub fn write(data: &std::path::Path, out: &std::path::Path) -> Result<(), ReportError> {
    let written = llmsim_study::report::write(data, out)?;
    println!(
        "wrote the report: {} ({} figures; Markdown edition {})",
        written.html.display(),
        written.figures.len(),
        written.markdown.display()
    );
    Ok(())
}

pub fn main(args: ReportArgs) -> Result<()> {
    output::check_folder(&args.out).map_err(|e| UsageError::new("--out", e.to_string()))?;
    if !args.data.is_dir() {
        return Err(UsageError::new(
            "--data",
            format!(
                "{} is not a folder (run `llmsim reproduce` first to write the data)",
                args.data.display()
            ),
        )
        .into());
    }
    super::reproduce::stop_cleanly_on_signal();
    write(&args.data, &args.out).map_err(|e| match e {
        // Missing, malformed or mismatched data is bad input; failing to write is not.
        ReportError::Data(e) => UsageError::new("--data", e.to_string()).into(),
        e => e.into(),
    })
}
