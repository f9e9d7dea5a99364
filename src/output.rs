//! Writing experiment tables to disk: `data_<name>.csv` plus `data_<name>.meta.json`.
//!
//! Every file is written to a temporary file in the destination folder and renamed into
//! place, so an interrupted run leaves either the previous file or the complete new one,
//! never a truncated one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::experiments::Table;

/// Why writing an output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file or folder could not be created, written or renamed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CSV writer failed.
    #[error("cannot write CSV {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: csv::Error,
    },
    /// A row's length differs from the header's (a bug in an experiment).
    #[error("table {name}: row {row} has {got} cells, the header {want}")]
    Ragged {
        /// The table.
        name: String,
        /// The row's index.
        row: usize,
        /// Cells in the row.
        got: usize,
        /// Cells in the header.
        want: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder (so the rename
/// cannot cross file systems) and a rename; the temporary is removed if anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        OutputError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The table as CSV text.
pub fn to_csv(table: &Table, path: &Path) -> Result<Vec<u8>, OutputError> {
    let csv_err = |source| OutputError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&table.header).map_err(csv_err)?;
    let mut cell = String::new();
    for (i, row) in table.rows.iter().enumerate() {
        if row.len() != table.header.len() {
            return Err(OutputError::Ragged {
                name: table.name.into(),
                row: i,
                got: row.len(),
                want: table.header.len(),
            });
        }
        for c in row {
            cell.clear();
            std::fmt::Write::write_fmt(&mut cell, format_args!("{c}"))
                .expect("writing to a String");
            w.write_field(&cell).map_err(csv_err)?;
        }
        w.write_record(None::<&[u8]>).map_err(csv_err)?;
    }
    w.into_inner().map_err(|e| csv_err(e.into_error().into()))
}

/// Writes each table as `dir/data_<name>.csv` and `dir/data_<name>.meta.json`, creating
/// `dir` if needed; returns the CSV paths in table order.
pub fn write_tables(dir: &Path, tables: &[Table]) -> Result<Vec<PathBuf>, OutputError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    for t in tables {
        let csv_path = dir.join(format!("data_{}.csv", t.name));
        write_atomic(&csv_path, &to_csv(t, &csv_path)?)?;
        let meta = serde_json::json!({
            "file": format!("data_{}.csv", t.name),
            "experiment": t.name,
            "generator": format!("llmsim {} reproduce", env!("CARGO_PKG_VERSION")),
            "columns": t.header,
            "headline": t.headline,
            "parameters": t.meta,
        });
        let mut text = serde_json::to_string_pretty(&meta).expect("JSON values serialise");
        text.push('\n');
        write_atomic(
            &dir.join(format!("data_{}.meta.json", t.name)),
            text.as_bytes(),
        )?;
        written.push(csv_path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::Cell;

    fn table(rows: Vec<Vec<Cell>>) -> Table {
        Table {
            name: "t",
            header: vec!["x", "label"],
            rows,
            meta: serde_json::json!({}),
            headline: String::new(),
        }
    }

    #[test]
    fn csv_quotes_labels_and_writes_numbers_exactly() {
        let t = table(vec![
            vec![0.1.into(), "a,b".into()],
            vec![Cell::Empty, true.into()],
        ]);
        let text = String::from_utf8(to_csv(&t, Path::new("t.csv")).unwrap()).unwrap();
        assert_eq!(text, "x,label\n0.1,\"a,b\"\n,true\n");
    }

    #[test]
    fn ragged_rows_are_an_error_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_tables(dir.path(), &[table(vec![vec![1.0.into()]])]).unwrap_err();
        assert!(
            matches!(
                err,
                OutputError::Ragged {
                    row: 0,
                    got: 1,
                    want: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
