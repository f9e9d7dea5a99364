//! The file system as the core sees it: a config names traces, presets, GPU cards and
//! model configs by path, and the front end that owns the disk answers for them, so the
//! library itself never touches a file (tests answer from memory).

use std::path::{Path, PathBuf};

/// Reads the files a config names; the front ends implement it over the disk.
pub trait Files {
    /// Whether `path` names an existing regular file.
    fn has_file(&self, path: &Path) -> bool;

    /// The whole content of the file at `path`, in bytes.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;

    /// `path` made absolute with every link resolved, if it can be.
    fn canonical(&self, path: &Path) -> Option<PathBuf>;

    /// The content of the file at `path` as UTF-8 text; not UTF-8 is an `InvalidData`
    /// error worded as the standard library words it.
    fn read_text(&self, path: &Path) -> std::io::Result<String> {
        String::from_utf8(self.read(path)?).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            )
        })
    }
}

/// Files held in memory, for tests: a path is a file exactly when it was added.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Memory(pub std::collections::HashMap<PathBuf, Vec<u8>>);

#[cfg(test)]
impl Files for Memory {
    fn has_file(&self, path: &Path) -> bool {
        self.0.contains_key(path)
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn canonical(&self, path: &Path) -> Option<PathBuf> {
        self.has_file(path)
            .then(|| Path::new("/models/tiny").join(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_is_not_utf8_is_refused_as_the_standard_library_words_it() {
        let mut files = Memory::default();
        files.0.insert("a.toml".into(), vec![b'a', 0xff]);
        files.0.insert("b.toml".into(), b"ok".to_vec());
        let e = files.read_text(Path::new("a.toml")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "stream did not contain valid UTF-8");
        assert_eq!(files.read_text(Path::new("b.toml")).unwrap(), "ok");
        assert!(files.read_text(Path::new("c.toml")).is_err());
    }
}
