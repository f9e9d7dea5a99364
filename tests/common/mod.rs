//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A file under the read-only `../shared` folder beside the project, or `None` (with a
/// message) on a user's clone that lacks it. CI sets `LLMSIM_REQUIRE_SHARED=1`, which
/// turns the skip into a failure.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join(rel);
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("LLMSIM_REQUIRE_SHARED").is_some_and(|v| v == "1") {
        panic!("{} is missing and LLMSIM_REQUIRE_SHARED=1", path.display());
    }
    eprintln!(
        "skipping: {} not found (it ships beside the project in CI only)",
        path.display()
    );
    None
}

/// Path of the built `llmsim` binary.
pub fn llmsim() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_llmsim"))
}
