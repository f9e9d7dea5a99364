//! What an experiment returns: a rectangular table with its parameters and a headline.

use serde_json::Value;
use std::fmt;

use llmsim::stats::MeanCi;

/// One CSV cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A number, written in Rust's shortest round-trip form.
    Num(f64),
    /// A count.
    Int(u64),
    /// A label.
    Text(String),
    /// A flag, written `true` / `false`.
    Bool(bool),
    /// No value (only where `docs/data.md` says a column may be empty).
    Empty,
}

impl From<f64> for Cell {
    fn from(x: f64) -> Self {
        Cell::Num(x)
    }
}

impl Cell {
    /// A number, or no value for `NaN`: a latency no measured request reached
    /// ([`Dist`](llmsim::metrics::Dist)).
    pub fn num_or_empty(x: f64) -> Self {
        if x.is_nan() {
            Cell::Empty
        } else {
            Cell::Num(x)
        }
    }
}

impl From<u64> for Cell {
    fn from(x: u64) -> Self {
        Cell::Int(x)
    }
}

impl From<u32> for Cell {
    fn from(x: u32) -> Self {
        Cell::Int(x.into())
    }
}

impl From<usize> for Cell {
    fn from(x: usize) -> Self {
        Cell::Int(x as u64)
    }
}

impl From<bool> for Cell {
    fn from(x: bool) -> Self {
        Cell::Bool(x)
    }
}

impl From<&str> for Cell {
    fn from(x: &str) -> Self {
        Cell::Text(x.into())
    }
}

impl From<String> for Cell {
    fn from(x: String) -> Self {
        Cell::Text(x)
    }
}

impl From<Option<f64>> for Cell {
    fn from(x: Option<f64>) -> Self {
        x.map_or(Cell::Empty, Cell::Num)
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Num(x) => write!(f, "{x}"),
            Cell::Int(x) => write!(f, "{x}"),
            Cell::Text(s) => f.write_str(s),
            Cell::Bool(b) => write!(f, "{b}"),
            Cell::Empty => Ok(()),
        }
    }
}

/// A mean and its 95% half-width as two cells, `<name>` / `<name>_ci` style.
pub fn mean_ci(m: MeanCi) -> [Cell; 2] {
    [m.mean.into(), m.ci95.into()]
}

/// One experiment's results.
#[derive(Debug, Clone)]
pub struct Table {
    /// The experiment's name; the file is `data_<name>.csv`.
    pub name: &'static str,
    /// Column names: the seed's first, then ours.
    pub header: Vec<&'static str>,
    /// Rows, each as long as the header.
    pub rows: Vec<Vec<Cell>>,
    /// Parameters and seed, written beside the CSV as `data_<name>.meta.json`.
    pub meta: Value,
    /// One line for the run's summary screen.
    pub headline: String,
}
