//! Reading back the CSV files a reproduce run wrote, by column name.

use std::path::{Path, PathBuf};

/// A CSV file could not be used for the report.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file is missing or unreadable.
    #[error("{path}: {source} (run `llmsim reproduce` first to write the data)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: csv::Error,
    },
    /// A column the report needs is absent.
    #[error("{path}: no column '{column}'")]
    Column {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: String,
    },
    /// A cell that should hold a number does not.
    #[error("{path}: row {row}, column '{column}': '{value}' is not a number")]
    Number {
        /// The file.
        path: PathBuf,
        /// 1-based data row.
        row: usize,
        /// The column.
        column: String,
        /// The cell's text.
        value: String,
    },
    /// A meta file beside a CSV is missing, malformed or lacks a value.
    #[error("{path}: {why} (run `llmsim reproduce` first to write the data)")]
    Meta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// One CSV file held in memory.
#[derive(Debug, Clone)]
pub struct Table {
    path: PathBuf,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Reads `dir/name`.
    pub fn read(dir: &Path, name: &str) -> Result<Self, DataError> {
        let path = dir.join(name);
        let err = |source| DataError::Read {
            path: path.clone(),
            source,
        };
        let mut reader = csv::Reader::from_path(&path).map_err(err)?;
        let headers = reader
            .headers()
            .map_err(err)?
            .iter()
            .map(String::from)
            .collect();
        let rows = reader
            .records()
            .map(|r| r.map(|r| r.iter().map(String::from).collect()))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        Ok(Table {
            path,
            headers,
            rows,
        })
    }

    fn index(&self, column: &str) -> Result<usize, DataError> {
        self.headers
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| DataError::Column {
                path: self.path.clone(),
                column: column.into(),
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
            .enumerate()
            .map(|(row, r)| match r[i].trim() {
                "" => Ok(f64::NAN),
                v => v.parse().map_err(|_| DataError::Number {
                    path: self.path.clone(),
                    row: row + 1,
                    column: column.into(),
                    value: v.into(),
                }),
            })
            .collect()
    }

    /// The rows whose `column` reads `value`.
    pub fn filter(&self, column: &str, value: &str) -> Result<Table, DataError> {
        let i = self.index(column)?;
        Ok(Table {
            path: self.path.clone(),
            headers: self.headers.clone(),
            rows: self
                .rows
                .iter()
                .filter(|r| r[i] == value)
                .cloned()
                .collect(),
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
