//! The `llmsim` binary: bad input, output shape, determinism, stability verdicts.

mod common;

use common::llmsim;
use serde_json::Value;

fn run(args: &[&str]) -> std::process::Output {
    llmsim().args(args).output().expect("binary runs")
}

#[test]
fn invalid_values_exit_2_naming_the_flag() {
    for (args, flag) in [
        (&["--rate", "-1"][..], "--rate"),
        (&["--rate", "0"], "--rate"),
        (&["--rate", "NaN"], "--rate"),
        (&["--k", "0"], "--k"),
        (&["--c", "nan"], "--c"),
        (&["--a", "-0.1"], "--a"),
        (&["--b0", "inf"], "--b0"),
        (&["--prompt", "abc"], "--prompt"),
        (&["--prompt", "0"], "--prompt"),
        (&["--decode", "uniform:9:3"], "--decode"),
        (&["--warmup", "1000"], "--warmup"),
        (&["--max-decode-batch", "0"], "--max-decode-batch"),
        (&["--reps", "0"], "--reps"),
        (&["--scheduler", "z"], "--scheduler"),
        (&["--arrivals", "gamma:-1"], "--arrivals"),
        (&["--cost-dist", "weird"], "--cost-dist"),
    ] {
        let out = run(&[&["run", "--requests", "1000"][..], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag),
            "{args:?}: message does not name {flag}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: partial output");
    }
}

fn json(args: &[&str], threads: &str) -> (Value, Vec<u8>) {
    let out = llmsim()
        .args([&["run", "--json"][..], args].concat())
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).expect("valid JSON"),
        out.stdout,
    )
}

#[test]
fn json_has_the_documented_fields() {
    let (doc, _) = json(&["--requests", "2000", "--reps", "3"], "2");
    for key in ["throughput_rps", "tokens_per_s", "utilization"] {
        assert!(doc[key].is_f64(), "{key}");
        assert!(doc["ci95"][key].is_f64(), "ci95.{key}");
    }
    assert!(doc["unstable"].is_boolean());
    for dist in ["ttft", "tbt", "itl", "e2e"] {
        for stat in ["mean", "p50", "p90", "p95", "p99", "max"] {
            assert!(doc[dist][stat].is_f64(), "{dist}.{stat}");
        }
        assert!(doc[dist]["ci95"]["mean"].is_f64(), "{dist}.ci95.mean");
    }
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let args = [
        "--scheduler",
        "b",
        "--requests",
        "5000",
        "--reps",
        "4",
        "--seed",
        "9",
    ];
    let (_, one) = json(&args, "1");
    let (_, two) = json(&args, "2");
    assert_eq!(one, two);
    let (_, other) = json(
        &[
            "--scheduler",
            "b",
            "--requests",
            "5000",
            "--reps",
            "4",
            "--seed",
            "10",
        ],
        "2",
    );
    assert_ne!(one, other);
}

#[test]
fn overload_is_reported_and_finishes() {
    // Scheduler A's capacity with the defaults is 1/0.842 = 1.19 req/s; B's is 5.14 req/s.
    for (sched, rate, unstable) in [
        ("a", "0.9", false),
        ("a", "1.5", true),
        ("b", "3", false),
        ("b", "8", true),
    ] {
        let (doc, _) = json(
            &["--scheduler", sched, "--rate", rate, "--requests", "20000"],
            "2",
        );
        assert_eq!(doc["unstable"], unstable, "scheduler {sched} at {rate}/s");
    }
}

#[test]
fn table_output_is_readable() {
    let out = run(&["run", "--requests", "2000"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["throughput", "TTFT", "TBT", "ITL", "E2E", "capacity"] {
        assert!(text.contains(word), "{word} missing:\n{text}");
    }
}

#[test]
fn invalid_memory_and_batch_limits_exit_2_naming_the_flag() {
    for (args, flag) in [
        (
            &["--scheduler", "a", "--kv-capacity", "100000"][..],
            "--scheduler",
        ),
        (
            &["--scheduler", "vllm", "--kv-capacity", "100"],
            "--kv-capacity",
        ),
        (
            &["--scheduler", "static", "--kv-capacity", "150"],
            "--kv-capacity",
        ),
        (
            &["--scheduler", "vllm", "--gpu-mem-gb", "16"],
            "--gpu-mem-gb",
        ),
        (
            &["--scheduler", "vllm", "--gpu-mem-gb", "-3"],
            "--gpu-mem-gb",
        ),
        (
            &[
                "--scheduler",
                "vllm",
                "--gpu-mem-gb",
                "80",
                "--gpu-mem-util",
                "1.5",
            ],
            "--gpu-mem-util",
        ),
        (&["--scheduler", "orca", "--max-seqs", "0"], "--max-seqs"),
        (
            &[
                "--scheduler",
                "sarathi",
                "--max-seqs",
                "64",
                "--max-batched-tokens",
                "32",
            ],
            "--max-batched-tokens",
        ),
        (
            &["--scheduler", "vllm", "--max-batched-tokens", "150"],
            "--max-batched-tokens",
        ),
        (
            &["--scheduler", "orca", "--max-batched-tokens", "100"],
            "--max-batched-tokens",
        ),
        (
            &["--scheduler", "decode-first", "--watermark", "1"],
            "--watermark",
        ),
        (
            &["--scheduler", "vllm", "--block-size", "0"],
            "--block-size",
        ),
        (&["--scheduler", "vllm", "--model", "gpt-9"], "--model"),
        (
            &["--scheduler", "disagg", "--prefill-gpus", "0"],
            "--prefill-gpus",
        ),
        (
            &["--scheduler", "disagg", "--decode-gpus", "0"],
            "--decode-gpus",
        ),
        (
            &["--scheduler", "disagg", "--kv-link-gbps", "0"],
            "--kv-link-gbps",
        ),
        (
            &["--scheduler", "disagg", "--kv-link-latency", "-1"],
            "--kv-link-latency",
        ),
        (&["--scheduler", "disagg", "--gpus", "3"], "--gpus"),
        (
            &[
                "--scheduler",
                "vllm",
                "--preemption",
                "swap",
                "--swap-gbps",
                "0",
            ],
            "--swap-gbps",
        ),
        (&["--scheduler", "vllm", "--swap-gbps", "-2"], "--swap-gbps"),
        (
            &["--scheduler", "vllm", "--preemption", "foo"],
            "--preemption",
        ),
        (
            &["--scheduler", "sarathi", "--preemption", "swap"],
            "--preemption",
        ),
        (
            &["--scheduler", "disagg", "--preemption", "swap"],
            "--preemption",
        ),
    ] {
        let out = run(&[&["run", "--requests", "1000"][..], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag),
            "{args:?}: message does not name {flag}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: partial output");
    }
}

/// Every memory-aware policy runs from the command line, and a tight cache makes vLLM
/// preempt: the summary reports it, with KV use within the cache.
#[test]
fn memory_aware_policies_run_and_report_kv_use() {
    for s in [
        "static",
        "orca",
        "vllm",
        "sarathi",
        "decode-first",
        "disagg",
    ] {
        let (doc, _) = json(
            &[
                "--scheduler",
                s,
                "--rate",
                "2",
                "--requests",
                "2000",
                "--kv-capacity",
                "4096",
                "--max-batched-tokens",
                "512",
                "--max-seqs",
                "64",
                "--prompt",
                "uniform:16:256",
                "--decode",
                "uniform:1:200",
            ],
            "1",
        );
        let peak = doc["kv_peak_utilization"].as_f64().unwrap();
        assert!(peak > 0.0 && peak <= 1.0, "{s}: peak {peak}");
        assert_eq!(doc["config"]["kv_capacity_tokens"], 4096, "{s}");
        if s == "vllm" {
            assert!(
                doc["preemptions"].as_f64().unwrap() > 0.0,
                "vllm did not preempt"
            );
            assert!(doc["recomputed_tokens"].as_f64().unwrap() > 0.0);
        }
        if s == "disagg" {
            // One prefill and one decode GPU by default; both did work.
            assert_eq!(doc["config"]["gpus"], 2);
            let util = doc["gpu_utilization"].as_array().unwrap();
            assert!(util.iter().all(|u| u.as_f64().unwrap() > 0.0));
        }
    }
}

/// `--preemption swap` makes vLLM swap instead of recompute under the same tight cache:
/// swaps are reported, each swapped request comes back, and nothing is recomputed.
#[test]
fn vllm_swaps_instead_of_recomputing() {
    let (doc, _) = json(
        &[
            "--scheduler",
            "vllm",
            "--preemption",
            "swap",
            "--swap-gbps",
            "16",
            "--rate",
            "2",
            "--requests",
            "2000",
            "--kv-capacity",
            "4096",
            "--max-batched-tokens",
            "512",
            "--max-seqs",
            "64",
            "--prompt",
            "uniform:16:256",
            "--decode",
            "uniform:1:200",
        ],
        "1",
    );
    let num = |k: &str| doc[k].as_f64().unwrap();
    assert!(num("swaps_out") > 0.0, "vllm did not swap");
    assert_eq!(num("swaps_in"), num("swaps_out"));
    assert!(num("swap_bytes") > 0.0 && num("swap_seconds") > 0.0);
    assert_eq!(num("preemptions"), 0.0);
    assert_eq!(num("recomputed_tokens"), 0.0);
    assert_eq!(doc["config"]["preemption"], "swap");
    assert_eq!(doc["config"]["swap_gbps"], 16.0);
    assert!(num("kv_peak_utilization") <= 1.0);
}
