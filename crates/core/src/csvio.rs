//! Reading typed CSV rows with errors that name the file, line and field.
//!
//! Shared by the GPU profile reader ([`crate::calibrate`]) and the trace reader
//! ([`crate::trace`]): each row is deserialised by column name, then checked and converted
//! by the caller, whose complaints come back with the row's line number.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Why a CSV file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{}, line {line}, field {field}: {why}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// The column at fault (`header` or `row` when no single column is).
        field: String,
        /// What is wrong and what is expected.
        why: String,
    },
    /// The file has a header but no data rows.
    #[error("{}: no data rows after the header", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// A complaint about one field of a row: `(column, why)`.
pub type FieldError = (&'static str, String);

/// Why a field cannot be read when its bytes are not UTF-8 (a binary file, or text saved as
/// UTF-16 or Latin-1), in words rather than the csv crate's debug form.
fn not_utf8(err: &csv::Utf8Error) -> String {
    format!(
        "not UTF-8 text (byte {} of the field is invalid); save the file as UTF-8 CSV",
        err.valid_up_to() + 1
    )
}

/// Parses every data row of the CSV `bytes` as `R` (columns matched by header name;
/// `columns` must all be present), converting each with `convert`. Stops at the first bad
/// row. `path` only names the source in errors: nothing is read from it.
pub fn parse_rows<R: DeserializeOwned, T>(
    bytes: &[u8],
    path: &Path,
    columns: &[&str],
    mut convert: impl FnMut(R) -> Result<T, FieldError>,
) -> Result<Vec<T>, CsvError> {
    let row_err = |line: u64, field: &str, why: String| CsvError::Row {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        why,
    };
    let io_err = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(source) => CsvError::Io {
            path: path.to_path_buf(),
            source,
        },
        csv::ErrorKind::Utf8 { pos, err } => {
            row_err(pos.map_or(1, |p| p.line()), "header", not_utf8(&err))
        }
        kind => row_err(1, "header", format!("{kind:?}")),
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader.headers().map_err(io_err)?.clone();
    for col in columns {
        if !headers.iter().any(|h| h == *col) {
            return Err(row_err(
                1,
                "header",
                format!(
                    "missing column {col} (expected columns: {})",
                    columns.join(",")
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            match e.into_kind() {
                csv::ErrorKind::Io(source) => CsvError::Io {
                    path: path.to_path_buf(),
                    source,
                },
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => row_err(
                    line,
                    "row",
                    format!("{len} fields where the header has {expected_len}"),
                ),
                csv::ErrorKind::Utf8 { err, .. } => row_err(
                    line,
                    headers.get(err.field()).unwrap_or("row"),
                    not_utf8(&err),
                ),
                kind => row_err(line, "row", format!("{kind:?}")),
            }
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let row: R = record.deserialize(Some(&headers)).map_err(|e| {
            let (field, why) = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => (
                    err.field()
                        .and_then(|i| headers.get(i as usize))
                        .unwrap_or("row")
                        .to_string(),
                    err.kind().to_string(),
                ),
                other => ("row".to_string(), format!("{other:?}")),
            };
            row_err(line, &field, why)
        })?;
        out.push(convert(row).map_err(|(field, why)| row_err(line, field, why))?);
    }
    if out.is_empty() {
        return Err(CsvError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}
