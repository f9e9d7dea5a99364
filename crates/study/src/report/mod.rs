//! The report: a paper-like document generated from the data a reproduce run wrote, as one
//! self-contained HTML page (`index.html`, figures inline) and as Markdown (`REPORT.md` with
//! `figures/*.svg`). Every number in the prose is a named value computed from the data, and
//! filling fails if the template names a value nobody computed.

pub mod data;
mod diagram;
mod fidelity;
pub mod figures;
pub mod hardware;
pub mod html;
mod multiturn;
pub mod planning;
pub mod plot;
mod policies;
pub mod prefix;
pub mod study;
pub mod template;
pub mod traces;

use std::path::{Path, PathBuf};

use crate::output::{OutputError, write_atomic};

/// The report's text, with `{{name}}` placeholders.
const TEMPLATE: &str = include_str!("report.md");

/// An optional part of the report, present when its data files are: filled Markdown (its
/// figures referenced as `figures/NAME.svg`) and the figures it references.
pub struct Section {
    /// The section's text, starting with a `## ` heading, every placeholder filled.
    pub markdown: String,
    /// Figures by file stem.
    pub figures: Vec<(String, plot::Chart)>,
}

/// Figure size (pixels).
const FIGURE_SIZE: (u32, u32) = (820, 480);

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A data file is missing or malformed, or the folder is not one finished run's.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// The template names a value nobody computed.
    #[error(transparent)]
    Template(#[from] template::MissingValue),
    /// A figure could not be drawn.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    /// A file could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// The HTML page.
    pub html: PathBuf,
    /// The Markdown text.
    pub markdown: PathBuf,
    /// The figures, one SVG each.
    pub figures: Vec<PathBuf>,
}

/// The run's seed and scale, from a meta file the reproduce run wrote beside its CSVs.
fn study_values(data: &Path, values: &mut template::Values) -> Result<(), ReportError> {
    const FILE: &str = "data_scheduler_a_throughput_sweep.meta.json";
    let study = &data::read_meta(data, FILE)?["study"];
    for (name, key) in [
        ("seed", "seed"),
        ("reps", "reps"),
        ("requests", "requests_per_rep"),
        ("warmup", "warmup_requests"),
    ] {
        let n = study[key].as_u64().ok_or_else(|| data::DataError::Meta {
            path: data.join(FILE),
            why: format!("no whole number at parameters.study.{key}"),
        })?;
        values.insert(name.into(), n.to_string());
    }
    let quick = study["reps"].as_u64().unwrap_or(0) < 10;
    values.insert(
        "quick_note".into(),
        if quick {
            " **This is a `--quick` smoke run: samples are small and the numbers are not results.**"
                .into()
        } else {
            String::new()
        },
    );
    values.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    Ok(())
}

/// Checks that `data` is one finished reproduce run's ([`data::check_run`]), reads its
/// CSV files and writes `index.html`, `REPORT.md` and `figures/` into
/// `out`, each file atomically.
pub fn write(data: &Path, out: &Path) -> Result<Written, ReportError> {
    data::check_run(data)?;
    let built = study::build(data)?;
    let mut values = built.values;
    study_values(data, &mut values)?;
    let mut markdown = template::fill(TEMPLATE, &values)?;
    let mut charts = built.figures;
    // Optional sections go before the limitations, in a fixed order.
    let extra: Vec<Section> = [
        policies::section(data)?,
        traces::section(data)?,
        hardware::section(data)?,
        prefix::section(data)?,
        multiturn::section(data)?,
        fidelity::section(data)?,
        planning::section(data)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let at = markdown.find("\n## Limitations").unwrap_or(markdown.len());
    let mut inserted = String::new();
    for section in extra {
        inserted.push('\n');
        inserted.push_str(section.markdown.trim_end());
        inserted.push('\n');
        charts.extend(section.figures);
    }
    markdown.insert_str(at, &inserted);

    let mut svgs = vec![("system".to_string(), diagram::system())];
    for (name, chart) in &charts {
        svgs.push((name.clone(), chart.to_svg(FIGURE_SIZE.0, FIGURE_SIZE.1)?));
    }
    // Folders are made only once everything is built, so bad data leaves nothing behind.
    let fig_dir = out.join("figures");
    std::fs::create_dir_all(&fig_dir).map_err(|cause| OutputError::Io {
        path: fig_dir.clone(),
        cause,
    })?;
    let mut figures = Vec::new();
    for (name, svg) in &svgs {
        let path = fig_dir.join(format!("{name}.svg"));
        write_atomic(&path, svg.as_bytes())?;
        figures.push(path);
    }
    let html_path = out.join("index.html");
    let md_path = out.join("REPORT.md");
    write_atomic(&md_path, markdown.as_bytes())?;
    let title = markdown
        .lines()
        .next()
        .unwrap_or("llmsim report")
        .trim_start_matches("# ");
    write_atomic(&html_path, html::page(title, &markdown, &svgs).as_bytes())?;
    Ok(Written {
        html: html_path,
        markdown: md_path,
        figures,
    })
}
