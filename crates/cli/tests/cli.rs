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
fn a_latency_never_reached_reads_n_a_in_the_table() {
    // At 100 req/s Scheduler A (1.19 req/s capacity) stops at the last arrival, 0.2 s in,
    // before any measured request has its first token.
    let out = run(&["run", "--rate", "100", "--requests", "20"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let ttft = text.lines().find(|l| l.trim_start().starts_with("TTFT"));
    assert!(
        ttft.is_some_and(|l| l.contains("n/a") && !l.contains("NaN")),
        "{text}"
    );
    assert!(
        text.contains("UNSTABLE: the number in system grew"),
        "{text}"
    );
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
        assert_eq!(doc["kv_capacity_tokens"], 4096, "{s}");
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

/// Runs `llmsim run ARGS --json` and returns (exit code, stdout, stderr, seconds taken).
fn timed(args: &[&str]) -> (Option<i32>, Vec<u8>, String, f64) {
    let start = std::time::Instant::now();
    let out = llmsim()
        .args([&["run", "--json"][..], args].concat())
        .output()
        .expect("binary runs");
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed().as_secs_f64(),
    )
}

/// Values a fuzzing campaign found to panic, hang, abort on allocation or print nonsense
/// are rejected before any work: exit 2, nothing on stdout, a message naming the flag and
/// the allowed range, numbers in short form, and no time spent.
#[test]
fn extreme_values_exit_2_at_once_naming_flag_and_range() {
    for (args, flag, range) in [
        (
            &["--arrivals", "gamma:1e200"][..],
            "--arrivals",
            "0.001 to 10 ",
        ),
        (&["--arrivals", "gamma:1e308"], "--arrivals", "0.001 to 10 "),
        (
            &["--arrivals", "gamma:1e-200"],
            "--arrivals",
            "0.001 to 10 ",
        ),
        (
            &["--arrivals", "gamma:1e-320"],
            "--arrivals",
            "0.001 to 10 ",
        ),
        (
            &["--warmup", "18446744073709551615"],
            "--warmup",
            "below --requests - 1",
        ),
        (
            &["--requests", "18446744073709551615"],
            "--requests",
            "at most 4294967295",
        ),
        (
            &["--requests", "4294967296"],
            "--requests",
            "at most 4294967295",
        ),
        (
            &["--gpus", "18446744073709551615"],
            "--gpus",
            "at most 100000",
        ),
        (&["--gpus", "4294967296"], "--gpus", "at most 100000"),
        (&["--reps", "4294967295"], "--reps", "at most 10000"),
        (&["--reps", "1000000"], "--reps", "at most 10000"),
        (
            &[
                "--scheduler",
                "vllm",
                "--prompt",
                "4294967295",
                "--decode",
                "2",
            ],
            "--prompt",
            "at most 16777216",
        ),
        (
            &["--prompt", "uniform:1:4294967295"],
            "--prompt",
            "at most 16777216",
        ),
        (
            &["--prompt", "lognormal:100:1:100000000"],
            "--prompt",
            "at most 16777216",
        ),
        (
            &["--decode", "geometric:64:10000000000"],
            "--decode",
            "not a valid number",
        ),
        (&["--rate", "1e-15"], "--rate", "from 1e-9 to 1e9"),
        (
            &["--rate", "1e-8", "--requests", "100"],
            "--rate",
            "at most 1e9 s",
        ),
        (&["--rate", "1e-320"], "--rate", "from 1e-9 to 1e9"),
        (&["--rate", "1e300"], "--rate", "from 1e-9 to 1e9"),
        (
            &[
                "--scheduler",
                "vllm",
                "--preemption",
                "swap",
                "--swap-gbps",
                "1e-320",
            ],
            "--swap-gbps",
            "from 0.001 to 1000000",
        ),
        (
            &["--scheduler", "disagg", "--kv-link-latency", "1e308"],
            "--kv-link-latency",
            "from 0 to 3600",
        ),
        (
            &["--scheduler", "disagg", "--kv-link-gbps", "1e308"],
            "--kv-link-gbps",
            "from 0.001 to 1000000",
        ),
        (
            &[
                "--scheduler",
                "vllm",
                "--gpu-mem-gb",
                "80",
                "--gpu-mem-util",
                "1e-320",
            ],
            "--gpu-mem-util",
            "no room for a KV cache",
        ),
    ] {
        let requests: &[&str] = if args.contains(&"--requests") {
            &[]
        } else {
            &["--requests", "1000"]
        };
        let (code, stdout, err, secs) = timed(&[requests, args].concat());
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(stdout.is_empty(), "{args:?}: partial output");
        assert!(
            err.contains(flag) && err.contains(range),
            "{args:?}: message lacks {flag} or '{range}': {err}"
        );
        // 1e308 printed in full would be a run of 309 digits.
        assert!(
            !err.as_bytes()
                .windows(25)
                .any(|w| w.iter().all(u8::is_ascii_digit)),
            "{args:?}: a number printed in full: {err}"
        );
        assert!(secs < 5.0, "{args:?}: took {secs} s to reject");
    }
}

/// At the bounds themselves runs are exact: the longest prompt a request may ask for is
/// scheduled whole by vLLM (no wrap-around in its budget or blocks) and every request
/// completes; the slowest rate and the longest KV-link latency give finite, positive
/// latencies of the right size.
#[test]
fn values_at_the_bounds_give_finite_correct_results() {
    let (code, out, err, _) = timed(&[
        "--scheduler",
        "vllm",
        "--prompt",
        "16777216",
        "--decode",
        "2",
        "--requests",
        "10",
        "--warmup",
        "0",
        "--rate",
        "1e-5",
        "--arrivals",
        "det",
        "--cost-dist",
        "det",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let doc: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["completed"], 10.0);
    assert_eq!(doc["config"]["max_batched_tokens"], 16_777_217);
    // Each request alone: prefill c + a L, two decodes c + a each (deterministic costs).
    let e2e = 0.01 + 0.001 * 16_777_216.0 + 2.0 * 0.011;
    let mean = doc["e2e"]["mean"].as_f64().unwrap();
    assert!((mean - e2e).abs() < 1e-6, "E2E {mean}, expected {e2e}");

    // 1,000 requests at 1e-4/s span about 1e7 s: latencies keep their microseconds.
    let (code, out, err, _) =
        timed(&["--rate", "1e-4", "--requests", "1000", "--cost-dist", "det"]);
    assert_eq!(code, Some(0), "{err}");
    let doc: Value = serde_json::from_slice(&out).unwrap();
    let alone = 0.01 + 0.001 * 128.0 + 64.0 * 0.011;
    let mean = doc["e2e"]["mean"].as_f64().unwrap();
    assert!((mean - alone).abs() < 1e-6, "E2E {mean}, expected {alone}");

    let (code, out, err, _) = timed(&[
        "--scheduler",
        "disagg",
        "--kv-link-latency",
        "3600",
        "--requests",
        "200",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let doc: Value = serde_json::from_slice(&out).unwrap();
    let e2e = doc["e2e"]["mean"].as_f64().unwrap();
    assert!(e2e.is_finite() && e2e > 3600.0, "E2E {e2e}");
    assert!(doc["throughput_rps"].as_f64().unwrap().is_finite());
}

/// Policy flags are range-checked whatever the scheduler, and one that the scheduler does
/// not use draws a warning instead of being silently echoed.
#[test]
fn flags_of_other_schedulers_are_checked_and_warned_about() {
    for (args, flag) in [
        (&["--watermark", "5"][..], "--watermark"),
        (&["--max-seqs", "0"], "--max-seqs"),
        (&["--max-batched-tokens", "0"], "--max-batched-tokens"),
        (&["--kv-link-gbps", "-1"], "--kv-link-gbps"),
        (&["--kv-link-latency", "-1"], "--kv-link-latency"),
        (&["--prefill-gpus", "0"], "--prefill-gpus"),
        (&["--decode-gpus", "4294967295"], "--decode-gpus"),
        (&["--swap-gbps", "-1"], "--swap-gbps"),
        (&["--k", "0"], "--k"),
    ] {
        let (code, stdout, err, _) =
            timed(&[&["--scheduler", "a", "--requests", "1000"][..], args].concat());
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(stdout.is_empty() && err.contains(flag), "{args:?}: {err}");
    }
    for (scheduler, args, flag) in [
        ("a", &["--watermark", "0.5"][..], "--watermark"),
        ("a", &["--prefill-gpus", "2"], "--prefill-gpus"),
        ("b", &["--max-seqs", "8"], "--max-seqs"),
        ("orca", &["--watermark", "0.1"], "--watermark"),
        ("vllm", &["--k", "8"], "--k"),
        ("vllm", &["--swap-gbps", "10"], "--swap-gbps"),
        ("sarathi", &["--kv-link-gbps", "10"], "--kv-link-gbps"),
    ] {
        let (code, _, err, _) =
            timed(&[&["--scheduler", scheduler, "--requests", "500"][..], args].concat());
        assert_eq!(code, Some(0), "{scheduler} {args:?}: {err}");
        assert!(
            err.contains("warning") && err.contains(flag) && err.contains("no effect"),
            "{scheduler} {args:?}: no warning: {err}"
        );
    }
    // A flag the scheduler uses draws none.
    let (code, _, err, _) = timed(&[
        "--scheduler",
        "vllm",
        "--watermark",
        "0.1",
        "--requests",
        "500",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
}

/// vLLM-like policies default to vLLM's `max(max_model_len, 2048)` token budget, so an
/// ordinary workload with long prompts runs; the value used is in the config and a note;
/// an explicit budget too small for the workload is still an error.
#[test]
fn whole_prefill_policies_default_to_a_budget_that_fits_the_workload() {
    let long = [
        "--prompt",
        "uniform:256:2048",
        "--decode",
        "geometric:128:512",
        "--requests",
        "1000",
        "--rate",
        "1",
    ];
    for (scheduler, budget) in [
        ("vllm", 2048 + 512 - 1),
        ("decode-first", 2048 + 512 - 1),
        ("orca", 2048),
        ("sarathi", 2048),
    ] {
        let (code, out, err, _) = timed(&[&["--scheduler", scheduler][..], &long].concat());
        assert_eq!(code, Some(0), "{scheduler}: {err}");
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["config"]["max_batched_tokens"], budget, "{scheduler}");
        assert_eq!(doc["completed"], 900.0, "{scheduler}");
        assert_eq!(
            err.contains(&format!("defaults to {budget}")),
            budget > 2048,
            "{scheduler}: {err}"
        );
    }
    let (code, _, err, _) = timed(
        &[
            &["--scheduler", "vllm", "--max-batched-tokens", "2048"][..],
            &long,
        ]
        .concat(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--max-batched-tokens") && err.contains("2559"),
        "{err}"
    );
    // Short requests keep 2048.
    let (code, out, err, _) = timed(&["--scheduler", "vllm", "--requests", "500"]);
    assert_eq!(code, Some(0), "{err}");
    let doc: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["config"]["max_batched_tokens"], 2048);
    assert!(!err.contains("note"), "{err}");
}

#[test]
fn bench_rejects_zero_repetitions() {
    let out = llmsim()
        .args(["bench", "--repeat", "0", "--requests", "1000"])
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--repeat") && err.contains("at least 1"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bench_suite_checks_its_baseline_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_suite = dir.path().join("suite.json");
    std::fs::write(&not_a_suite, "{\"figures\": 3}").unwrap();
    for baseline in [not_a_suite, dir.path().join("missing.json")] {
        let start = std::time::Instant::now();
        let out = run(&["bench", "--suite", "--baseline", baseline.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let name = baseline.file_name().unwrap().to_str().unwrap();
        assert!(err.contains("--baseline") && err.contains(name), "{err}");
        assert!(out.stdout.is_empty());
        // Refused at once, not after a minute of measuring.
        assert!(start.elapsed().as_secs_f64() < 5.0);
    }
    // The suite's own flags need --suite.
    let out = run(&["bench", "--save", "x.json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_json_config_reproduces_the_run_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for flags in [
        &[
            "--scheduler",
            "disagg",
            "--rate",
            "3",
            "--noise-cv",
            "0.3",
            "--reps",
            "3",
        ][..],
        &[
            "--scheduler",
            "vllm",
            "--cost",
            "h200-llama3.1-8b",
            "--gpu-mem-gb",
            "141",
            "--rate",
            "8",
            "--prompt",
            "uniform:16:3000",
        ],
        &[
            "--scheduler",
            "b",
            "--gpus",
            "3",
            "--router",
            "power-of-d:2",
            "--cost-dist",
            "gamma:0.5",
            "--k",
            "2",
        ],
    ] {
        let first = run(&[&["run", "--json", "--requests", "2000"][..], flags].concat());
        assert_eq!(first.status.code(), Some(0), "{flags:?}");
        let doc: Value = serde_json::from_slice(&first.stdout).unwrap();
        let json = dir.path().join("run.json");
        std::fs::write(&json, doc["config"].to_string()).unwrap();
        let config: llmsim::config::Config = serde_json::from_value(doc["config"].clone()).unwrap();
        let toml_file = dir.path().join("run.toml");
        std::fs::write(&toml_file, toml::to_string(&config).unwrap()).unwrap();
        for file in [&json, &toml_file] {
            let again = run(&["run", "--json", "--config", file.to_str().unwrap()]);
            assert_eq!(again.status.code(), Some(0), "{flags:?}");
            assert!(
                again.stdout == first.stdout,
                "{flags:?} from {}",
                file.display()
            );
            // The resolved config gives every setting the run uses: nothing to note.
            assert!(
                again.stderr.is_empty(),
                "{}",
                String::from_utf8_lossy(&again.stderr)
            );
        }
        // A flag overrides the file.
        let other = run(&[
            "run",
            "--json",
            "--config",
            json.to_str().unwrap(),
            "--seed",
            "9",
        ]);
        let other: Value = serde_json::from_slice(&other.stdout).unwrap();
        assert_eq!(other["config"]["seed"], 9);
        assert_ne!(other["ttft"], doc["ttft"]);
    }
}

#[test]
fn bad_config_files_exit_2_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("sheduler = \"vllm\"\n", "sheduler"),
        ("rate = \"fast\"\n", "rate"),
        (
            "scheduler = \"vllm\"\nmax_batched_tokens = 64\n",
            "--max-batched-tokens",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = run(&[
            "run",
            "--config",
            file.to_str().unwrap(),
            "--requests",
            "500",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(
            // A file that does not parse is blamed on --config; a value out of range on its flag.
            err.contains(expected) && err.contains("--config") != expected.starts_with("--"),
            "{text}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = run(&["run", "--config", "/nonexistent/run.toml"]);
    assert_eq!(out.status.code(), Some(2));
}
