//! Writing experiment tables to disk: `data_<name>.csv` plus `data_<name>.meta.json`.
//!
//! Every file is written to a temporary file in the destination folder and renamed into
//! place, so an interrupted run leaves either the previous file or the complete new one,
//! never a truncated one. A folder of tables ends with a [`Manifest`] written last, so a
//! run that stopped part-way (some tables new, some old) is recognisable by its absence.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::experiments::Table;

/// The manifest's file name in a data folder.
pub const MANIFEST: &str = "manifest.json";

/// Why writing an output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file or folder could not be created, written or renamed.
    // The cause is part of the message, not a `source()`: a caller printing the error
    // chain would otherwise repeat it.
    #[error("cannot write {path}: {cause}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// A path that must be a folder (or be creatable as one) is, or lies under, a file.
    #[error("{path} is a file, not a folder")]
    NotAFolder {
        /// The file in the way.
        path: PathBuf,
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
    move |cause| OutputError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Held for the whole life of every temporary file (see [`write_lock`]).
static WRITING: Mutex<()> = Mutex::new(());

/// The lock every write of this module holds while its temporary file exists: whoever
/// holds it knows that none exists, and no write starts until the guard is dropped. A
/// signal handler takes it before exiting, so an interrupted run leaves no `.tmp` file.
pub fn write_lock() -> MutexGuard<'static, ()> {
    // A panic mid-write already removed or renamed its temporary; the lock guards no data.
    WRITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Checks, before any work is done, that `dir` is a folder this process can write in, or
/// can be created as one: every existing ancestor is a folder and the nearest one accepts
/// a new file (tried with an empty temporary file, removed at once). Creates nothing.
pub fn check_folder(dir: &Path) -> Result<(), OutputError> {
    let mut existing = dir;
    loop {
        match std::fs::metadata(existing) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(OutputError::NotAFolder {
                    path: existing.to_path_buf(),
                });
            }
            // Missing, or under a file (which the loop finds further up): try the parent.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match existing.parent() {
                    Some(p) if !p.as_os_str().is_empty() => existing = p,
                    _ => {
                        existing = Path::new(".");
                        break;
                    }
                }
            }
            // A name too long, a folder not searchable, ...
            Err(e) => return Err(io(existing)(e)),
        }
    }
    let probe = existing.join(format!(".llmsim-probe.{}.tmp", std::process::id()));
    let _writing = write_lock();
    std::fs::File::create(&probe).map_err(io(existing))?;
    std::fs::remove_file(&probe).map_err(io(&probe))
}

/// Writes `bytes` to `path` through a temporary file in the same folder (so the rename
/// cannot cross file systems) and a rename; the temporary is removed if anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _writing = write_lock();
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|cause| {
        let _ = std::fs::remove_file(&tmp);
        OutputError::Io {
            path: path.to_path_buf(),
            cause,
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

/// One file of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// File name, relative to the folder.
    pub file: String,
    /// Size (bytes).
    pub bytes: u64,
    /// 64-bit FNV-1a hash of the contents, 16 hex digits: catches a file replaced or edited
    /// since (not tampering, which nothing here guards against).
    pub fnv1a64: String,
}

impl ManifestEntry {
    /// The entry of file `file` holding `contents`.
    pub fn of(file: &str, contents: &[u8]) -> Self {
        let hash = contents.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        ManifestEntry {
            file: file.into(),
            bytes: contents.len() as u64,
            fnv1a64: format!("{hash:016x}"),
        }
    }
}

/// `manifest.json`: every file a finished `reproduce` run left in its data folder, written
/// last. A folder without one was written by a run that stopped part-way (or by no run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The program that wrote the files.
    pub generator: String,
    /// The files, by name.
    pub files: Vec<ManifestEntry>,
}

/// The entries of `dir`'s manifest whose files are still as listed; none if it has no
/// readable manifest.
fn still_listed(dir: &Path) -> Vec<ManifestEntry> {
    let Some(manifest) = std::fs::read(dir.join(MANIFEST))
        .ok()
        .and_then(|t| serde_json::from_slice::<Manifest>(&t).ok())
    else {
        return Vec::new();
    };
    manifest
        .files
        .into_iter()
        .filter(|e| {
            std::fs::read(dir.join(&e.file)).is_ok_and(|b| ManifestEntry::of(&e.file, &b) == *e)
        })
        .collect()
}

/// Writes each table as `dir/data_<name>.csv` and `dir/data_<name>.meta.json`, creating
/// `dir` if needed, then `dir/manifest.json` listing them and whatever files of an earlier
/// manifest are unchanged (so `--only` adds to a finished folder); returns the CSV paths
/// in table order. The earlier manifest is removed before the first table is written, so
/// if this stops part-way the folder has none.
pub fn write_tables(dir: &Path, tables: &[Table]) -> Result<Vec<PathBuf>, OutputError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let manifest_path = dir.join(MANIFEST);
    let mut listed = still_listed(dir);
    match std::fs::remove_file(&manifest_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&manifest_path)(e)),
        _ => {}
    }
    let mut written = Vec::new();
    let mut put = |name: String, bytes: &[u8]| {
        write_atomic(&dir.join(&name), bytes)?;
        listed.retain(|e| e.file != name);
        listed.push(ManifestEntry::of(&name, bytes));
        Ok::<_, OutputError>(())
    };
    for t in tables {
        let csv_name = format!("data_{}.csv", t.name);
        let csv_path = dir.join(&csv_name);
        put(csv_name, &to_csv(t, &csv_path)?)?;
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
        put(format!("data_{}.meta.json", t.name), text.as_bytes())?;
        written.push(csv_path);
    }
    listed.sort_by(|x, y| x.file.cmp(&y.file));
    let manifest = Manifest {
        generator: format!("llmsim {} reproduce", env!("CARGO_PKG_VERSION")),
        files: listed,
    };
    let mut text = serde_json::to_string_pretty(&manifest).expect("JSON values serialise");
    text.push('\n');
    write_atomic(&manifest_path, text.as_bytes())?;
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

    #[test]
    fn check_folder_refuses_files_in_the_way_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        for bad in [file.clone(), file.join("a/b")] {
            let err = check_folder(&bad).unwrap_err();
            assert!(
                matches!(&err, OutputError::NotAFolder { path } if *path == file),
                "{err}"
            );
        }
        // A name longer than any file system takes is refused, not taken for a new folder.
        let long = dir.path().join("x".repeat(5_000));
        assert!(matches!(check_folder(&long), Err(OutputError::Io { .. })));
        check_folder(&dir.path().join("new/deeper")).unwrap();
        check_folder(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn manifest(dir: &Path) -> Manifest {
        serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap()
    }

    #[test]
    fn the_manifest_lists_every_file_and_keeps_unchanged_ones_of_an_earlier_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = table(vec![vec![1.0.into(), "a".into()]]);
        write_tables(dir.path(), std::slice::from_ref(&t)).unwrap();
        let names = |m: &Manifest| m.files.iter().map(|f| f.file.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&manifest(dir.path())),
            ["data_t.csv", "data_t.meta.json"]
        );
        let csv = std::fs::read(dir.path().join("data_t.csv")).unwrap();
        assert_eq!(
            manifest(dir.path()).files[0],
            ManifestEntry::of("data_t.csv", &csv)
        );

        // A second table added, as `--only` does: both listed.
        t.name = "u";
        write_tables(dir.path(), std::slice::from_ref(&t)).unwrap();
        assert_eq!(names(&manifest(dir.path())).len(), 4);
        // A file edited since is no longer vouched for.
        std::fs::write(dir.path().join("data_t.csv"), b"x,label\n2,b\n").unwrap();
        t.name = "v";
        write_tables(dir.path(), std::slice::from_ref(&t)).unwrap();
        let listed = names(&manifest(dir.path()));
        assert!(!listed.contains(&"data_t.csv".to_string()), "{listed:?}");
        assert_eq!(listed.len(), 5);
    }

    /// A run that stops between two tables leaves no manifest, even where one was.
    #[test]
    fn a_run_stopped_part_way_leaves_no_manifest() {
        let dir = tempfile::tempdir().unwrap();
        write_tables(dir.path(), &[table(vec![vec![1.0.into(), "a".into()]])]).unwrap();
        let mut ragged = table(vec![vec![1.0.into()]]);
        ragged.name = "r";
        let good = table(vec![vec![2.0.into(), "b".into()]]);
        write_tables(dir.path(), &[good, ragged]).unwrap_err();
        assert!(!dir.path().join(MANIFEST).exists());
    }

    /// While `write_lock`'s guard lives no write starts, so none leaves a temporary.
    #[test]
    fn the_write_lock_holds_back_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        let guard = write_lock();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || write_atomic(&path, b"x"))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        drop(guard);
        writer.join().unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }
}
