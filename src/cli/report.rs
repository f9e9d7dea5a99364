//! `llmsim report`: the HTML and Markdown report from the data of a reproduce run.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Flags of `llmsim report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Folder holding the CSV and meta files of `llmsim reproduce`.
    #[arg(long, default_value = "data", value_name = "DIR")]
    pub data: PathBuf,
    /// Folder for index.html, REPORT.md and figures/ (created if missing).
    #[arg(long, default_value = "report", value_name = "DIR")]
    pub out: PathBuf,
}

/// Writes the report and says where it is.
pub fn write(data: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let written = llmsim::report::write(data, out)?;
    println!(
        "wrote the report: {} ({} figures; Markdown edition {})",
        written.html.display(),
        written.figures.len(),
        written.markdown.display()
    );
    Ok(())
}

pub fn main(args: ReportArgs) -> Result<()> {
    write(&args.data, &args.out)
}
