//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A file under the read-only `../shared` folder beside the project, or `None` (with a
/// message) on a user's clone that lacks it. CI sets `LLMSIM_REQUIRE_SHARED=1`, which
/// turns the skip into a failure.
pub fn shared(rel: &str) -> Option<PathBuf> {
    // The project root is two folders up from this crate's.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../..")
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

/// The built `llmsim` binary, run from the project root (two folders above this crate), as
/// a user runs it: its defaults (`../shared`, `data/`) are relative to there.
pub fn llmsim() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_llmsim"));
    cmd.current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    cmd
}

/// Runs `cmd` to its end and returns its output, failing the test with the command's
/// stderr unless it exited successfully.
pub fn succeed(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("the binary starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` with its output captured, killing it once `limit` has passed: its output, or
/// `None` when it had to be killed (a hang, for a caller that expects a quick answer).
pub fn output_within(
    cmd: &mut std::process::Command,
    limit: std::time::Duration,
) -> Option<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Drained on their own threads, so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    status.map(|status| std::process::Output {
        status,
        stdout,
        stderr,
    })
}
