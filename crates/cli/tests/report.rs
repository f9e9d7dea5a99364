//! The report rendered from `--quick` data: every section and figure present, every
//! placeholder filled, the HTML self-contained.

mod common;

use common::{llmsim, succeed};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SECTIONS: [&str; 19] = [
    "## Summary of findings",
    "## The system and the model",
    "## Assumptions and why they are reasonable",
    "## Validation against queueing theory",
    "### 1. Scheduler A's baseline",
    "### 2. Scheduler A's throughput",
    "### 3. Light traffic",
    "### 4. Scheduler B's capacity against K",
    "### 5. Scheduler B's throughput",
    "### 6. Batching scale",
    "### 7. Sensitivity to c and a",
    "### 8. Short against long requests",
    "### 9. Scheduler comparison",
    "### 10. Multi-GPU scaling",
    "## The schedulers real engines use",
    "## Multi-turn conversations and the prefix cache",
    "## Limitations",
    "## How to reproduce",
    "llmsim 0.1.0",
];

const FIGURES: [&str; 20] = [
    "system",
    "validation",
    "baseline_ttft",
    "light_traffic_ttft",
    "capacity_vs_k",
    "throughput_vs_lambda",
    "batching_scale",
    "sensitivity_ca",
    "sensitivity_regime",
    "ttft_vs_lambda",
    "tbt_vs_lambda",
    "cdf_ttft",
    "cdf_tbt",
    "multigpu_throughput",
    "multigpu_ttft",
    "policy_capacity",
    "policy_latency",
    "multiturn_think",
    "multiturn_cache",
    "capacity_planning_pareto",
];

/// One quick reproduce run shared by the tests: its data folder and its report folder.
fn quick_run() -> (&'static Path, &'static Path) {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, data, report) = RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (data, report) = (dir.path().join("data"), dir.path().join("report"));
        let out = llmsim()
            .args(["reproduce", "--quick", "--out"])
            .arg(&data)
            .arg("--report")
            .arg(&report)
            .output()
            .expect("binary runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, data, report)
    });
    (data, report)
}

#[test]
fn quick_report_has_every_section_and_figure_and_no_placeholder() {
    let (_, report) = quick_run();
    let md = std::fs::read_to_string(report.join("REPORT.md")).unwrap();
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for s in SECTIONS {
        assert!(md.contains(s), "REPORT.md lacks '{s}'");
    }
    for f in FIGURES {
        assert!(
            md.contains(&format!("](figures/{f}.svg)")),
            "REPORT.md lacks figure {f}"
        );
        let svg = std::fs::read_to_string(report.join(format!("figures/{f}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.len() > 2_000,
            "figure {f} looks empty"
        );
        assert!(
            html.contains(&format!("<figure id=\"fig-{f}\"><svg")),
            "index.html lacks figure {f}"
        );
    }
    for text in [&md, &html] {
        assert!(
            !text.contains("{{") && !text.contains("}}"),
            "a placeholder is left"
        );
        assert!(
            !text.contains("NaN") && !text.contains("n/a"),
            "a value is missing"
        );
    }
    // Self-contained: no image, script, stylesheet or link to load from elsewhere (SVG's
    // xmlns names a namespace, it loads nothing).
    for needle in ["<img", "<script", "<link", "src=", "href=\"http", "@import"] {
        assert!(!html.contains(needle), "index.html contains {needle}");
    }
}

#[test]
fn report_without_data_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = llmsim()
        .args(["report", "--data"])
        .arg(dir.path().join("nothing"))
        .arg("--out")
        .arg(dir.path().join("report"))
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data") && err.contains("llmsim reproduce"),
        "{err}"
    );
    assert!(
        !dir.path().join("report").exists(),
        "a failed report leaves nothing"
    );
}

/// A copy of the quick run's data with `damage` done to it, reported on: exit 2, one line
/// naming the flag and what `expect` lists (file, line, field), nothing written.
fn report_on_damaged(damage: impl FnOnce(&Path), expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for f in std::fs::read_dir(quick_run().0).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), data.join(f.file_name())).unwrap();
    }
    damage(&data);
    let report = dir.path().join("report");
    let o = llmsim()
        .args(["report", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&report)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{expect:?}: {err}");
    assert!(
        err.starts_with("error: invalid value for --data: "),
        "{err}"
    );
    for e in expect {
        assert!(err.contains(e), "{expect:?}: {err}");
    }
    assert_eq!(err.lines().count(), 1, "the cause once, on one line: {err}");
    assert!(!report.exists(), "a failed report leaves nothing");
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(text)).unwrap();
}

const CAP: &str = "data_capacity_vs_k.csv";

#[test]
fn a_missing_truncated_binary_or_renamed_csv_is_named_with_its_line() {
    report_on_damaged(
        |d| std::fs::remove_file(d.join(CAP)).unwrap(),
        &[CAP, "missing"],
    );
    // Cut in the middle of the third line.
    report_on_damaged(
        |d| {
            edit(&d.join(CAP), |t| {
                let third = t.match_indices('\n').nth(1).unwrap().0;
                t[..third + 10].to_string()
            })
        },
        &[CAP, "line 3", "fields where the header has"],
    );
    report_on_damaged(
        |d| std::fs::write(d.join(CAP), [0x89, b'P', b'N', b'G', 0xff, 0, 1, 2]).unwrap(),
        &[CAP, "line 1", "not UTF-8 text"],
    );
    report_on_damaged(
        |d| edit(&d.join(CAP), |t| t.replacen("K_values", "K", 1)),
        &[CAP, "line 1, header", "meta file"],
    );
    report_on_damaged(
        |d| {
            edit(&d.join(CAP), |t| {
                t.lines().next().unwrap().to_string() + "\n"
            })
        },
        &[CAP, "line 2", "no data rows"],
    );
}

#[test]
fn a_corrupt_meta_file_is_named_with_its_line_and_field() {
    let meta = "data_capacity_vs_k.meta.json";
    // Line 2 of the pretty-printed file is `"columns": [`.
    report_on_damaged(
        |d| {
            edit(&d.join(meta), |t| {
                t.replacen("\"columns\": [", "\"columns\": (", 1)
            })
        },
        &[meta, "line 2", "JSON"],
    );
    report_on_damaged(
        |d| {
            edit(&d.join(meta), |t| {
                t.replacen("\"parameters\"", "\"params\"", 1)
            })
        },
        &[meta, "parameters"],
    );
    let sweep = "data_scheduler_a_throughput_sweep.meta.json";
    report_on_damaged(
        |d| {
            edit(&d.join(sweep), |t| {
                t.replacen("\"seed\": 42", "\"seed\": \"x\"", 1)
            })
        },
        &[sweep, "has changed"],
    );
    report_on_damaged(
        |d| edit(&d.join(sweep), |t| t.replacen("\"reps\"", "\"rep\"", 1)),
        &[sweep, "has changed"],
    );
}

/// A folder that is not one finished run's: no manifest (the run was interrupted), a file
/// changed or added since, or one the manifest lists gone.
#[test]
fn a_folder_not_from_one_finished_run_is_refused() {
    report_on_damaged(
        |d| std::fs::remove_file(d.join("manifest.json")).unwrap(),
        &["manifest.json: missing", "did not finish"],
    );
    report_on_damaged(
        |d| edit(&d.join(CAP), |t| t.replacen('1', "2", 1)),
        &["manifest.json", CAP, "has changed"],
    );
    report_on_damaged(
        |d| {
            std::fs::copy(d.join(CAP), d.join("data_extra.csv")).unwrap();
            std::fs::copy(
                d.join("data_capacity_vs_k.meta.json"),
                d.join("data_extra.meta.json"),
            )
            .unwrap();
        },
        &["manifest.json", "does not list data_extra"],
    );
    report_on_damaged(
        |d| {
            edit(&d.join("manifest.json"), |t| {
                t.replacen(
                    "\"files\": [",
                    "\"files\": [{\"file\": \"gone.csv\", \"bytes\": 1, \"fnv1a64\": \"0\"},",
                    1,
                )
            })
        },
        &["manifest.json", "gone.csv, which is missing"],
    );
}

/// `--only` adds to a finished folder: the report still accepts it.
#[test]
fn only_keeps_a_finished_folder_reportable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for f in std::fs::read_dir(quick_run().0).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), data.join(f.file_name())).unwrap();
    }
    succeed(
        llmsim()
            .args([
                "reproduce",
                "--quick",
                "--only",
                "sensitivity_regime",
                "--seed",
                "7",
            ])
            .arg("--out")
            .arg(&data),
    );
    succeed(
        llmsim()
            .args(["report", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(dir.path().join("report")),
    );
}
