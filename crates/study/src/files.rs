//! The disk for the front ends: the core reads no file, so the study, the command line
//! and the Python bindings read traces, profiles and presets here and hand the core
//! [`Disk`] to answer for the files a config names.

use std::path::{Path, PathBuf};

use llmsim::calibrate::{ProfileRow, parse_profile};
use llmsim::cost::Preset;
use llmsim::cost::preset::PresetError;
use llmsim::csvio::CsvError;
use llmsim::files::Files;
use llmsim::trace::Trace;

/// The real file system, through `std::fs`.
pub struct Disk;

impl Files for Disk {
    fn has_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn canonical(&self, path: &Path) -> Option<PathBuf> {
        path.canonicalize().ok()
    }
}

/// The bytes of the file at `path`; failing to read is an error naming it.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, CsvError> {
    Disk.read(path).map_err(|source| CsvError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a trace CSV; a malformed row is an error naming its line and field.
pub fn read_trace(path: &Path) -> Result<Trace, CsvError> {
    Trace::from_csv(&read_bytes(path)?, path)
}

/// Reads a Mooncake trace (JSON lines); a malformed line is an error naming its line and
/// field.
pub fn read_mooncake(path: &Path) -> Result<Trace, CsvError> {
    let text = Disk.read_text(path).map_err(|source| CsvError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Trace::from_mooncake(&text, path)
}

/// Reads and checks a GPU profile CSV.
pub fn read_profile(path: &Path) -> Result<Vec<ProfileRow>, CsvError> {
    parse_profile(&read_bytes(path)?, path)
}

/// Reads a cost preset TOML file.
pub fn read_preset(path: &Path) -> Result<Preset, PresetError> {
    let text = Disk.read_text(path).map_err(|source| PresetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Preset::parse(&text, &path.display().to_string())
}

/// Reads a serving runs file (`llmsim fidelity`'s format) and, when a `run_metadata.csv`
/// lies beside it, that file's facts.
pub fn read_serving_runs(path: &Path) -> Result<Vec<llmsim::serving::ServingRun>, CsvError> {
    let meta_path = path.with_file_name("run_metadata.csv");
    let meta = if meta_path.is_file() {
        llmsim::serving::parse_meta(&read_bytes(&meta_path)?, &meta_path)?
    } else {
        Vec::new()
    };
    llmsim::serving::parse_runs(&read_bytes(path)?, path, &meta)
}
