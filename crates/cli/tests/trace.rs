//! Azure trace replay (`--workload azure:PATH`) and `--lengths-from`.

mod common;

use common::{llmsim, shared, succeed};
use std::path::Path;

const HEADER: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n";

/// A small trace in the Azure format: 40 requests, one every 0.25 s.
fn small_trace(dir: &Path) -> std::path::PathBuf {
    let mut text = HEADER.to_string();
    for i in 0..40u32 {
        let (s, frac) = (10 + i / 4, (i % 4) * 2_500_000);
        text += &format!(
            "2023-11-16 18:15:{s:02}.{frac:07},{},{}\n",
            100 + 37 * i,
            1 + i % 9
        );
    }
    let path = dir.join("trace.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let o = succeed(llmsim().args(["run", "--json"]).args(args));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn replay_serves_every_request_at_the_recorded_or_scaled_rate() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("azure:{}", small_trace(dir.path()).display());
    let base = [
        "--workload",
        &spec,
        "--scheduler",
        "b",
        "--cost",
        "h200-llama3.1-8b",
    ];
    let doc = run_json(&base);
    assert_eq!(doc["config"]["requests"], 40);
    assert!((doc["config"]["rate"].as_f64().unwrap() - 4.0).abs() < 1e-9);
    let doc = run_json(&[&base[..], &["--rate", "16"]].concat());
    assert!((doc["config"]["rate"].as_f64().unwrap() - 16.0).abs() < 1e-9);
    assert!(doc["capacity_rps"].is_null());
    let doc = run_json(&[&base[..], &["--requests", "10", "--warmup", "0"]].concat());
    assert_eq!(doc["config"]["requests"], 10);
}

/// Same seed, same bytes, with noise on the iteration costs.
#[test]
fn trace_runs_repeat_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("azure:{}", small_trace(dir.path()).display());
    let args = [
        "run",
        "--json",
        "--workload",
        &spec,
        "--cost",
        "h200-llama3.1-8b",
        "--noise-cv",
        "0.2",
        "--reps",
        "3",
    ];
    let a = llmsim().args(args).output().unwrap();
    let b = llmsim().args(args).output().unwrap();
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn malformed_trace_row_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        format!(
            "{HEADER}2023-11-16 18:15:10.0000000,100,5\n2023-11-16 18:15:11.0000000,100,five\n"
        ),
    )
    .unwrap();
    for flag in ["--workload", "--lengths-from"] {
        let value = if flag == "--workload" {
            format!("azure:{}", path.display())
        } else {
            path.display().to_string()
        };
        let o = llmsim()
            .args(["run", "--requests", "10", flag, &value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("bad.csv") && err.contains("line 3") && err.contains("GeneratedTokens"),
            "{err}"
        );
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn replay_rejects_overridden_flags_and_impossible_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("azure:{}", small_trace(dir.path()).display());
    for (args, flag) in [
        (&["--prompt", "64"][..], "--prompt"),
        (&["--requests", "41"][..], "--requests"),
        (&["--requests", "1", "--rate", "2"][..], "--requests"),
    ] {
        let o = llmsim()
            .args(["run", "--workload", &spec])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

/// `--lengths-from` keeps synthetic arrivals and draws lengths only from the trace's pairs.
#[test]
fn lengths_from_draws_the_trace_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_trace(dir.path()).display().to_string();
    let doc = run_json(&[
        "--lengths-from",
        &path,
        "--requests",
        "2000",
        "--rate",
        "1",
        "--a",
        "0.00001",
    ]);
    assert_eq!(doc["config"]["requests"], 2000);
    assert!(doc["capacity_rps"].is_null());
    // Emitted tokens per request, B + 1 = GeneratedTokens, average 4.75 over the 40 pairs
    // (the synthetic default, B = 64, would give 65).
    let tokens_per_req =
        doc["tokens_per_s"].as_f64().unwrap() / doc["throughput_rps"].as_f64().unwrap();
    assert!((tokens_per_req - 4.75).abs() < 0.5, "{tokens_per_req}");
}

/// The real one-hour conversation trace replays on one calibrated H200 under Scheduler B.
#[test]
fn azure_conversation_trace_replays_on_a_calibrated_h200() {
    let Some(path) = shared("traces/AzureLLMInferenceTrace_conv.csv") else {
        return;
    };
    let spec = format!("azure:{}", path.display());
    let doc = run_json(&[
        "--workload",
        &spec,
        "--scheduler",
        "b",
        "--cost",
        "h200-llama3.1-8b",
    ]);
    assert_eq!(doc["config"]["requests"], 19_366);
    assert_eq!(doc["unstable"], false);
    let ttft = doc["ttft"]["mean"].as_f64().unwrap();
    assert!(ttft > 0.0 && ttft < 1.0, "mean TTFT {ttft}");
}

/// Runs `llmsim run ARGS`, which must print nothing on stdout; returns its exit code and
/// stderr.
fn fails(args: &[&str]) -> (Option<i32>, String) {
    let o = llmsim().arg("run").args(args).output().unwrap();
    assert!(o.status.code() != Some(0) || !o.stdout.is_empty());
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Traces that cannot be replayed exactly are rejected naming the file (and line and field
/// for a row), not a flag the user did not give, and without hanging or wrapping.
#[test]
fn unreplayable_traces_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, rows, must) in [
        (
            "one.csv",
            "2023-11-16 18:15:46.5,100,5\n",
            &["one.csv holds 1 request"][..],
        ),
        (
            "same.csv",
            "2023-11-16 18:15:46.5,100,5\n2023-11-16 18:15:46.5,100,5\n2023-11-16 18:15:46.5,10,5\n",
            &["same.csv", "all arrive at once"],
        ),
        (
            "context.csv",
            "2023-11-16 18:15:46.5,4294967295,5\n2023-11-16 18:15:47.5,10,5\n",
            &["context.csv, line 2, field ContextTokens", "16777216"],
        ),
        (
            "generated.csv",
            "2023-11-16 18:15:46.5,10,5\n2023-11-16 18:15:47.5,10,4294967295\n",
            &["generated.csv, line 3, field GeneratedTokens", "16777216"],
        ),
        // Three requests at the same instant after the first: with one request of
        // warm-up the measurement window has no length.
        (
            "window.csv",
            "2023-11-16 18:15:46.5,10,5\n2023-11-16 18:15:47.5,10,5\n2023-11-16 18:15:47.5,10,5\n2023-11-16 18:15:47.5,10,5\n",
            &["window.csv", "no length"],
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{HEADER}{rows}")).unwrap();
        let spec = format!("azure:{}", path.display());
        let (code, err) = fails(&["--workload", &spec, "--scheduler", "vllm", "--warmup", "1"]);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(
            err.contains("--workload") && !err.contains("--requests"),
            "{name}: {err}"
        );
        for m in must {
            assert!(err.contains(m), "{name}: lacks '{m}': {err}");
        }
    }
}

/// A replay with a deterministic cost model and router is the same in every replication,
/// so more than one is refused rather than printed with a 95% interval of width 0. With
/// service noise the replications are independent draws and the interval is real.
#[test]
fn deterministic_replays_refuse_identical_replications() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("azure:{}", small_trace(dir.path()).display());
    let base = ["--workload", &spec, "--scheduler", "b"];
    for cost in [
        &["--cost", "h200-llama3.1-8b"][..],
        &["--cost", "roofline:h200"],
        &["--cost-dist", "det"],
        &["--cost-dist", "det", "--gpus", "2", "--router", "jsq"],
    ] {
        let (code, err) = fails(&[&base[..], cost, &["--reps", "3"]].concat());
        assert_eq!(code, Some(2), "{cost:?}: {err}");
        assert!(
            err.contains("--reps") && err.contains("deterministic") && err.contains("--noise-cv"),
            "{cost:?}: {err}"
        );
    }
    for varying in [
        &["--cost", "h200-llama3.1-8b", "--noise-cv", "0.2"][..],
        &["--cost-dist", "exp"],
        &["--cost-dist", "det", "--gpus", "2", "--router", "random"],
    ] {
        let doc = run_json(&[&base[..], varying, &["--reps", "3"]].concat());
        let half = doc["ttft"]["ci95"]["mean"].as_f64().unwrap();
        assert!(half > 0.0, "{varying:?}: interval {half}");
    }
    // One replication of a deterministic replay is fine, and prints no interval.
    let doc = run_json(&[&base[..], &["--cost-dist", "det"]].concat());
    assert!(doc.get("ci95").is_none());
}

/// vLLM serves the real conversation trace with its default token budget, which follows
/// the trace's longest prefill after a recompute (vLLM's max(max_model_len, 2048)).
#[test]
fn vllm_replays_the_conversation_trace_with_its_default_budget() {
    let Some(path) = shared("traces/AzureLLMInferenceTrace_conv.csv") else {
        return;
    };
    let spec = format!("azure:{}", path.display());
    let o = llmsim()
        .args(["run", "--json", "--workload", &spec])
        .args(["--cost", "h200-llama3.1-8b", "--scheduler", "vllm"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["config"]["max_batched_tokens"], 14_087);
    assert!(err.contains("defaults to 14087"), "{err}");
    assert_eq!(doc["completed"], 19_366.0 - 1_936.0);
}
