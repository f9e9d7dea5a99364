//! Request traces in the format of the Azure LLM inference traces (2023):
//! `TIMESTAMP,ContextTokens,GeneratedTokens`, timestamps like `2023-11-16 18:15:46.6805900`.
//!
//! A row becomes a [`Request`] with `L = ContextTokens` and `B = GeneratedTokens - 1` (the
//! prefill emits the first generated token; each decode iteration one more). Two edge cases
//! the simulator cannot represent literally are adjusted, and counted in
//! [`Trace::adjusted`]:
//!
//! - `GeneratedTokens = 0` becomes `B = 0`: the request is served as one that stops after
//!   its prefill's token (every served request emits at least that one);
//! - `ContextTokens = 0` becomes `L = 1`: the prefill still processes one (start) token.
//!
//! Rows are replayed in timestamp order; a file out of order is sorted (stably). A row
//! asking for more than [`limits::MAX_TOKENS`] in either column is an error naming its line.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use time::PrimitiveDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::csvio::{CsvError, FieldError, read_rows};
use crate::limits;
use crate::request::Request;

/// The trace's columns.
pub const TRACE_COLUMNS: &[&str] = &["TIMESTAMP", "ContextTokens", "GeneratedTokens"];

/// `YYYY-MM-DD HH:MM:SS[.fraction]`, any number of fraction digits.
const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]");

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Row {
    TIMESTAMP: String,
    ContextTokens: u64,
    GeneratedTokens: u64,
}

/// A request trace, read once and shared (behind an `Arc`) by every replication.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The file it was read from.
    pub source: PathBuf,
    /// Requests in arrival order; arrivals in seconds after the first request.
    pub requests: Vec<Request>,
    /// Rows whose lengths were adjusted (see the module documentation).
    pub adjusted: usize,
}

/// Parses one row: `(nanoseconds since the Unix epoch, L, B, adjusted)`.
fn parse_row(row: Row) -> Result<(i128, u32, u32, bool), FieldError> {
    let at = PrimitiveDateTime::parse(&row.TIMESTAMP, TIMESTAMP).map_err(|e| {
        (
            "TIMESTAMP",
            format!(
                "'{}' is not YYYY-MM-DD HH:MM:SS.fffffff ({e})",
                row.TIMESTAMP
            ),
        )
    })?;
    let tokens = |field: &'static str, v: u64| {
        limits::tokens(field, v).map_err(|e| (field, e.why))?;
        Ok::<u32, FieldError>(v as u32)
    };
    let context = tokens("ContextTokens", row.ContextTokens)?;
    let generated = tokens("GeneratedTokens", row.GeneratedTokens)?;
    Ok((
        at.assume_utc().unix_timestamp_nanos(),
        context.max(1),
        generated.saturating_sub(1),
        context == 0 || generated == 0,
    ))
}

impl Trace {
    /// Reads a trace file; a malformed row is an error naming its line and field.
    pub fn read(path: &Path) -> Result<Trace, CsvError> {
        let mut rows = read_rows(path, TRACE_COLUMNS, parse_row)?;
        rows.sort_by_key(|r| r.0);
        let first = rows[0].0;
        let requests = rows
            .iter()
            .map(|&(ns, prompt, decode, _)| Request {
                // Relative nanoseconds first, so the f64 keeps sub-microsecond precision.
                arrival: (ns - first) as f64 * 1e-9,
                prompt,
                decode,
            })
            .collect();
        Ok(Trace {
            source: path.to_path_buf(),
            requests,
            adjusted: rows.iter().filter(|r| r.3).count(),
        })
    }

    /// Time from the first arrival to the last (seconds).
    pub fn span(&self) -> f64 {
        self.requests.last().map_or(0.0, |r| r.arrival)
    }

    /// Mean arrival rate, `(n - 1) / span` (requests/s); 0 when all arrive at once.
    pub fn rate(&self) -> f64 {
        let span = self.span();
        if span > 0.0 {
            (self.requests.len() - 1) as f64 / span
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn rows_become_requests() {
        let f = write(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n\
             2023-11-16 18:15:46.5000000,374,44\n\
             2023-11-16 18:15:48.2500000,0,0\n\
             2023-11-16 18:15:47,10,1\n",
        );
        let t = Trace::read(f.path()).unwrap();
        let got: Vec<(f64, u32, u32)> = t
            .requests
            .iter()
            .map(|r| (r.arrival, r.prompt, r.decode))
            .collect();
        assert_eq!(got, vec![(0.0, 374, 43), (0.5, 10, 0), (1.75, 1, 0)]);
        assert_eq!(t.adjusted, 1);
        assert!((t.rate() - 2.0 / 1.75).abs() < 1e-12);
    }

    #[test]
    fn malformed_rows_name_line_and_field() {
        for (body, line, field) in [
            ("2023-11-16 18:15:46.5,12,x\n", 2, "GeneratedTokens"),
            (
                "2023-11-16 18:15:46.5,12,3\n2023-13-16 18:15:46.5,12,3\n",
                3,
                "TIMESTAMP",
            ),
            ("2023-11-16 18:15:46.5,-4,3\n", 2, "ContextTokens"),
            ("2023-11-16 18:15:46.5,4\n", 2, "row"),
            ("2023-11-16 18:15:46.5,4294967295,3\n", 2, "ContextTokens"),
            ("2023-11-16 18:15:46.5,4,4294967295\n", 2, "GeneratedTokens"),
            ("2023-11-16 18:15:46.5,4,16777217\n", 2, "GeneratedTokens"),
        ] {
            let f = write(&format!("TIMESTAMP,ContextTokens,GeneratedTokens\n{body}"));
            match Trace::read(f.path()).unwrap_err() {
                CsvError::Row {
                    line: l, field: fl, ..
                } => assert_eq!((l, fl.as_str()), (line, field), "{body}"),
                e => panic!("{body}: {e}"),
            }
        }
        let f = write("TIMESTAMP,Context,GeneratedTokens\n");
        let e = Trace::read(f.path()).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("ContextTokens"), "{e}");
    }
}
