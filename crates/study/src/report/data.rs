//! Reading back the CSV files a reproduce run wrote, by column name.

use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::output::{MANIFEST, Manifest, ManifestEntry};

/// A data file could not be used for the report.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file is missing or unreadable.
    #[error("{path}: {why} (run `llmsim reproduce` first to write the data)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A line of the file is malformed, or lacks what the report needs.
    #[error("{path}, line {line}, {field}: {why}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number (a CSV's header is line 1).
        line: u64,
        /// What on the line: `header`, `row`, `column 'NAME'` or `JSON`.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// A meta file beside a CSV lacks a value.
    #[error("{path}: {why} (run `llmsim reproduce` first to write the data)")]
    Meta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The folder's manifest is missing or does not match the files beside it.
    #[error("{path}: {why}; run `llmsim reproduce` again for a complete data folder")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

const NOT_TEXT: &str = "not UTF-8 text (a binary or damaged file?)";

fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::Read {
        path: path.to_path_buf(),
        why: if e.kind() == std::io::ErrorKind::NotFound {
            "missing".into()
        } else {
            e.to_string()
        },
    })
}

/// `bytes` as JSON, or an error naming the line of `path` at fault.
fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, DataError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let why = e.to_string();
        // The line goes in front, as in every other message; the column stays.
        let why = match why.rfind(" at line ") {
            Some(i) => format!("{} (column {})", &why[..i], e.column()),
            None => why,
        };
        DataError::Line {
            path: path.to_path_buf(),
            line: e.line() as u64,
            field: "JSON".into(),
            why,
        }
    })
}

fn meta_json(dir: &Path, name: &str) -> Result<Value, DataError> {
    let path = dir.join(name);
    let meta: Value = parse_json(&path, &read_bytes(&path)?)?;
    if meta.get("parameters").is_some_and(Value::is_object) {
        Ok(meta)
    } else {
        Err(DataError::Meta {
            path,
            why: "no \"parameters\" object".into(),
        })
    }
}

/// The `parameters` object of the meta file `dir/name` that reproduce wrote beside a CSV.
pub fn read_meta(dir: &Path, name: &str) -> Result<Value, DataError> {
    Ok(meta_json(dir, name)?["parameters"].take())
}

/// Checks that `dir` holds what one finished reproduce run wrote, before anything is read
/// for the report: every data file well-formed (errors name its line), each CSV's header
/// the one its meta file lists, a manifest, every file it lists unchanged, and no data file
/// it does not list. A folder that passes cannot mix two runs or hold a hand-edited file.
pub fn check_run(dir: &Path) -> Result<(), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::Read {
        path: dir.to_path_buf(),
        why: e.to_string(),
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("data_") && (n.ends_with(".csv") || n.ends_with(".json")))
        .collect();
    names.sort();
    for name in &names {
        let Some(stem) = name.strip_suffix(".csv") else {
            meta_json(dir, name)?;
            continue;
        };
        let table = Table::read(dir, name)?;
        let columns = &meta_json(dir, &format!("{stem}.meta.json"))?["columns"];
        if columns.as_array().is_none_or(|c| *c != table.headers) {
            return Err(DataError::Line {
                path: table.path,
                line: 1,
                field: "header".into(),
                why: format!("the columns are not those its meta file lists ({columns})"),
            });
        }
    }

    let path = dir.join(MANIFEST);
    let err = |why: String| DataError::Manifest {
        path: path.clone(),
        why,
    };
    let bytes = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(
                "missing: the `llmsim reproduce` run that wrote this folder did not finish (interrupted, or failed part-way), so its files may mix two runs".into(),
            ));
        }
        _ => read_bytes(&path)?,
    };
    let manifest: Manifest = parse_json(&path, &bytes)?;
    for listed in &manifest.files {
        let found = std::fs::read(dir.join(&listed.file))
            .map_err(|_| err(format!("lists {}, which is missing", listed.file)))?;
        let now = ManifestEntry::of(&listed.file, &found);
        if now != *listed {
            return Err(err(format!(
                "{} has changed since the run that listed it ({} bytes, hash {}; listed: {} bytes, hash {})",
                listed.file, now.bytes, now.fnv1a64, listed.bytes, listed.fnv1a64
            )));
        }
    }
    if let Some(name) = names
        .iter()
        .find(|n| !manifest.files.iter().any(|f| f.file == **n))
    {
        return Err(err(format!(
            "does not list {name}, which another run, or one that did not finish, left there"
        )));
    }
    Ok(())
}

/// One CSV file held in memory.
#[derive(Debug, Clone)]
pub struct Table {
    path: PathBuf,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Each row's 1-based line in the file.
    lines: Vec<u64>,
}

impl Table {
    /// Reads `dir/name`: UTF-8 text, a header, and at least one row with as many fields.
    pub fn read(dir: &Path, name: &str) -> Result<Self, DataError> {
        let path = dir.join(name);
        let bytes = read_bytes(&path)?;
        let line_err = |line: u64, field: &str, why: String| DataError::Line {
            path: path.clone(),
            line,
            field: field.into(),
            why,
        };
        let csv_err = |e: csv::Error| {
            let line = e.position().map_or(1, |p| p.line());
            match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => line_err(
                    line,
                    "row",
                    format!(
                        "{len} fields where the header has {expected_len} (a truncated or damaged file?)"
                    ),
                ),
                _ => line_err(line, "row", e.to_string()),
            }
        };
        if bytes.is_empty() {
            return Err(line_err(1, "header", "the file is empty".into()));
        }
        // The csv crate checks a record's UTF-8 only once it has split it into fields.
        if let Err(e) = std::str::from_utf8(&bytes) {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            return Err(line_err(line as u64, "row", NOT_TEXT.into()));
        }
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let headers = reader
            .headers()
            .map_err(csv_err)?
            .iter()
            .map(String::from)
            .collect();
        let (mut rows, mut lines) = (Vec::new(), Vec::new());
        for record in reader.records() {
            let record = record.map_err(csv_err)?;
            lines.push(record.position().map_or(0, |p| p.line()));
            rows.push(record.iter().map(String::from).collect());
        }
        if rows.is_empty() {
            return Err(line_err(
                2,
                "row",
                "no data rows after the header (a truncated file?)".into(),
            ));
        }
        Ok(Table {
            path,
            headers,
            rows,
            lines,
        })
    }

    fn index(&self, column: &str) -> Result<usize, DataError> {
        self.headers
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| DataError::Line {
                path: self.path.clone(),
                line: 1,
                field: "header".into(),
                why: format!("no column '{column}' (the report needs it)"),
            })
    }

    /// The text of every cell in `column`.
    pub fn text(&self, column: &str) -> Result<Vec<String>, DataError> {
        let i = self.index(column)?;
        Ok(self.rows.iter().map(|r| r[i].clone()).collect())
    }

    /// Every cell of `column` as a number (`NaN` for an empty cell).
    pub fn numbers(&self, column: &str) -> Result<Vec<f64>, DataError> {
        let i = self.index(column)?;
        self.rows
            .iter()
            .zip(&self.lines)
            .map(|(r, &line)| match r[i].trim() {
                "" => Ok(f64::NAN),
                v => v.parse().map_err(|_| DataError::Line {
                    path: self.path.clone(),
                    line,
                    field: format!("column '{column}'"),
                    why: format!("'{v}' is not a number"),
                }),
            })
            .collect()
    }

    /// The rows whose `column` reads `value`.
    pub fn filter(&self, column: &str, value: &str) -> Result<Table, DataError> {
        let i = self.index(column)?;
        let (rows, lines) = self
            .rows
            .iter()
            .zip(&self.lines)
            .filter(|(r, _)| r[i] == value)
            .map(|(r, l)| (r.clone(), *l))
            .unzip();
        Ok(Table {
            path: self.path.clone(),
            headers: self.headers.clone(),
            rows,
            lines,
        })
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the file has no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
