//! The report rendered from `--quick` data: every section and figure present, every
//! placeholder filled, the HTML self-contained.

mod common;

use common::llmsim;

const SECTIONS: [&str; 18] = [
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
    "## Limitations",
    "## How to reproduce",
    "llmsim 0.1.0",
];

const FIGURES: [&str; 17] = [
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
];

#[test]
fn quick_report_has_every_section_and_figure_and_no_placeholder() {
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
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("llmsim reproduce"), "{err}");
    assert!(
        !dir.path().join("report").exists(),
        "a failed report leaves nothing"
    );
}
