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
//!
//! Mooncake traces (Qin et al., FAST'25) are JSON lines, `timestamp` (milliseconds),
//! `input_length`, `output_length` and `hash_ids`, one id per 512-token chunk of the prompt
//! (equal ids, equal prefixes up to that chunk's end); [`Trace::from_mooncake`] parses them
//! with the same length rules, each request carrying its ids as its [`Prefix`]. Their rows
//! must be in time order: a file out of order is refused, as the order of a conversation's
//! turns matters to its cache hits.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::PrimitiveDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::csvio::{CsvError, FieldError, parse_rows};
use crate::limits;
use crate::prefix::Prefix;
use crate::request::Request;

/// Tokens per hash id in a Mooncake trace.
pub const MOONCAKE_BLOCK_TOKENS: u32 = 512;

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

/// Parses one Mooncake line: `(timestamp ms, L, B, prefix, adjusted)`.
fn parse_mooncake(line: &str) -> Result<(f64, u32, u32, Prefix, bool), FieldError> {
    let row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| ("row", format!("not a JSON object ({e})")))?;
    let field = |name: &'static str| row.get(name).ok_or_else(|| (name, "missing".to_string()));
    let whole = |name: &'static str| {
        let v = field(name)?;
        match v.as_i64() {
            Some(n) if n < 0 => Err((name, format!("{n} is negative"))),
            Some(n) => Ok(n as u64),
            None => Err((name, format!("{v} is not a whole number"))),
        }
    };
    let ms = field("timestamp")?
        .as_f64()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or((
            "timestamp",
            "must be a number of milliseconds >= 0".to_string(),
        ))?;
    let tokens = |name: &'static str| {
        let n = whole(name)?;
        limits::tokens(name, n).map_err(|e| (name, e.why))?;
        Ok::<u32, FieldError>(n as u32)
    };
    let input = tokens("input_length")?;
    let output = tokens("output_length")?;
    let ids: Box<[u64]> = field("hash_ids")?
        .as_array()
        .ok_or(("hash_ids", "must be a list of whole numbers".to_string()))?
        .iter()
        .map(|v| v.as_u64())
        .collect::<Option<_>>()
        .ok_or((
            "hash_ids",
            "must be a list of whole numbers >= 0".to_string(),
        ))?;
    let prefix = Prefix {
        block_tokens: MOONCAKE_BLOCK_TOKENS,
        ids,
        session: None,
    };
    let need = prefix.ids_for(input);
    if prefix.ids.len() < need {
        return Err((
            "hash_ids",
            format!(
                "{} ids for {input} prompt tokens; one per {MOONCAKE_BLOCK_TOKENS}-token chunk needs {need}",
                prefix.ids.len()
            ),
        ));
    }
    Ok((
        ms,
        input.max(1),
        output.saturating_sub(1),
        prefix,
        input == 0 || output == 0,
    ))
}

impl Trace {
    /// Parses the bytes of a trace CSV; a malformed row is an error naming its line and field; `path` names the source in the trace and in errors
    /// (nothing is read from it).
    pub fn from_csv(bytes: &[u8], path: &Path) -> Result<Trace, CsvError> {
        let mut rows = parse_rows(bytes, path, TRACE_COLUMNS, parse_row)?;
        rows.sort_by_key(|r| r.0);
        let first = rows[0].0;
        let requests = rows
            .iter()
            .map(|&(ns, prompt, decode, _)| Request {
                // Relative nanoseconds first, so the f64 keeps sub-microsecond precision.
                arrival: (ns - first) as f64 * 1e-9,
                prompt,
                decode,
                prefix: None,
                next: None,
            })
            .collect();
        Ok(Trace {
            source: path.to_path_buf(),
            requests,
            adjusted: rows.iter().filter(|r| r.3).count(),
        })
    }

    /// Parses the text of a Mooncake trace (JSON lines); a malformed line is an error naming
    /// its line and field: a field missing or not a whole number (`hash_ids`: a list of
    /// them), a negative or too long length, fewer hash ids than the prompt has 512-token
    /// chunks, or a timestamp before the previous line's; `path` names
    /// the source in the trace and in errors (nothing is read from it).
    pub fn from_mooncake(text: &str, path: &Path) -> Result<Trace, CsvError> {
        let mut requests = Vec::new();
        let mut adjusted = 0;
        let mut last_ms = f64::NEG_INFINITY;
        let mut first_ms = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row_err = |(field, why): FieldError| CsvError::Row {
                path: path.to_path_buf(),
                line: i as u64 + 1,
                field: field.to_string(),
                why,
            };
            let (ms, prompt, decode, prefix, adj) = parse_mooncake(line).map_err(row_err)?;
            if ms < last_ms {
                return Err(row_err((
                    "timestamp",
                    format!(
                        "{ms} ms is before the previous line's {last_ms} ms; rows must be in time order"
                    ),
                )));
            }
            last_ms = ms;
            let first = *first_ms.get_or_insert(ms);
            adjusted += usize::from(adj);
            requests.push(Request {
                arrival: (ms - first) * 1e-3,
                prompt,
                decode,
                prefix: Some(Arc::new(prefix)),
                next: None,
            });
        }
        if requests.is_empty() {
            return Err(CsvError::Row {
                path: path.to_path_buf(),
                line: 1,
                field: "row".into(),
                why: "no requests: the file holds no JSON lines".into(),
            });
        }
        Ok(Trace {
            source: path.to_path_buf(),
            requests,
            adjusted,
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

    fn csv(text: &str) -> Result<Trace, CsvError> {
        Trace::from_csv(text.as_bytes(), Path::new("trace.csv"))
    }

    fn mooncake(text: &str) -> Result<Trace, CsvError> {
        Trace::from_mooncake(text, Path::new("trace.jsonl"))
    }

    #[test]
    fn rows_become_requests() {
        let f = String::from(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n\
             2023-11-16 18:15:46.5000000,374,44\n\
             2023-11-16 18:15:48.2500000,0,0\n\
             2023-11-16 18:15:47,10,1\n",
        );
        let t = csv(&f).unwrap();
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
    fn text_parses_without_any_file() {
        // The source exists nowhere: parsing must not touch it, only name it.
        let source = Path::new("/nowhere/given.csv");
        let t = Trace::from_csv(
            b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,8,3\n",
            source,
        )
        .unwrap();
        assert_eq!((t.requests[0].prompt, t.requests[0].decode), (8, 2));
        assert_eq!(t.source, source);
        let e = Trace::from_csv(b"TIMESTAMP,ContextTokens\n", source).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nowhere/given.csv, line 1, field header: missing column"),
            "{e}"
        );
        let e = Trace::from_mooncake("{\"timestamp\": 0}\n", Path::new("/nowhere/m.jsonl"))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nowhere/m.jsonl, line 1, field input_length"),
            "{e}"
        );
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
            let f = String::from(&format!("TIMESTAMP,ContextTokens,GeneratedTokens\n{body}"));
            match csv(&f).unwrap_err() {
                CsvError::Row {
                    line: l, field: fl, ..
                } => assert_eq!((l, fl.as_str()), (line, field), "{body}"),
                e => panic!("{body}: {e}"),
            }
        }
        let f = String::from("TIMESTAMP,Context,GeneratedTokens\n");
        let e = csv(&f).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("ContextTokens"), "{e}");
    }

    #[test]
    fn mooncake_rows_become_requests_with_prefixes() {
        let f = String::from(
            "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [7, 8]}\n\
             \n\
             {\"timestamp\": 1500, \"input_length\": 0, \"output_length\": 0, \"hash_ids\": []}\n",
        );
        let t = mooncake(&f).unwrap();
        let got: Vec<(f64, u32, u32)> = t
            .requests
            .iter()
            .map(|r| (r.arrival, r.prompt, r.decode))
            .collect();
        assert_eq!(got, vec![(0.0, 600, 4), (1.5, 1, 0)]);
        let p = t.requests[0].prefix.as_ref().unwrap();
        assert_eq!((p.block_tokens, &p.ids[..]), (512, &[7, 8][..]));
        assert_eq!(t.adjusted, 1);
    }

    #[test]
    fn bad_mooncake_rows_name_line_and_field() {
        let ok = r#"{"timestamp": 5, "input_length": 10, "output_length": 2, "hash_ids": [1]}"#;
        for (bad, field) in [
            (
                r#"{"input_length": 10, "output_length": 2, "hash_ids": [1]}"#,
                "timestamp",
            ),
            (
                r#"{"timestamp": 6, "output_length": 2, "hash_ids": [1]}"#,
                "input_length",
            ),
            (
                r#"{"timestamp": 6, "input_length": -3, "output_length": 2, "hash_ids": [1]}"#,
                "input_length",
            ),
            (
                r#"{"timestamp": 6, "input_length": 3, "output_length": -2, "hash_ids": [1]}"#,
                "output_length",
            ),
            (
                r#"{"timestamp": 6, "input_length": 3, "output_length": 2.5, "hash_ids": [1]}"#,
                "output_length",
            ),
            (
                r#"{"timestamp": 6, "input_length": 1025, "output_length": 2, "hash_ids": [1, 2]}"#,
                "hash_ids",
            ),
            (
                r#"{"timestamp": 6, "input_length": 3, "output_length": 2, "hash_ids": [-1]}"#,
                "hash_ids",
            ),
            (
                r#"{"timestamp": 6, "input_length": 3, "output_length": 2}"#,
                "hash_ids",
            ),
            (
                r#"{"timestamp": 4, "input_length": 3, "output_length": 2, "hash_ids": [1]}"#,
                "timestamp",
            ),
            (
                r#"{"timestamp": 6, "input_length": 99999999, "output_length": 2, "hash_ids": [1]}"#,
                "input_length",
            ),
            ("[1, 2]", "row"),
        ] {
            let f = String::from(&format!("{ok}\n{bad}\n"));
            match mooncake(&f).unwrap_err() {
                CsvError::Row {
                    line, field: fl, ..
                } => assert_eq!((line, fl.as_str()), (2, field), "{bad}"),
                e => panic!("{bad}: {e}"),
            }
        }
        let e = mooncake("").unwrap_err().to_string();
        assert!(e.contains("line 1, field row: no requests"), "{e}");
    }
}
