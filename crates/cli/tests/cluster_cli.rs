//! `llmsim run --gpus/--router` from the outside: bad values exit 2 naming the flag and the
//! allowed values, output shows per-GPU figures, and runs are reproducible to the byte.

mod common;

use common::llmsim;
use std::process::Output;

fn run(args: &[&str]) -> Output {
    llmsim()
        .args(["run", "--requests", "2000"])
        .args(args)
        .output()
        .expect("llmsim runs")
}

fn assert_usage_error(args: &[&str], must_mention: &[&str]) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed results");
    for m in must_mention {
        assert!(err.contains(m), "{args:?}: message lacks '{m}': {err}");
    }
}

#[test]
fn bad_cluster_flags_exit_2_naming_flag_and_allowed_values() {
    assert_usage_error(&["--gpus", "0"], &["--gpus", "at least 1"]);
    let allowed = "random, round-robin, jsq, least-work, power-of-d:D";
    assert_usage_error(&["--router", "fastest"], &["--router", allowed]);
    assert_usage_error(&["--router", "power-of-d:0"], &["--router", allowed]);
    assert_usage_error(
        &["--gpus", "4", "--router", "power-of-d:5"],
        &["--router", "--gpus", allowed],
    );
    // Sizes that overflowed an allocation or a u32 sum are rejected before any work.
    for gpus in ["4294967296", "18446744073709551615"] {
        assert_usage_error(&["--gpus", gpus], &["--gpus", "at most 100000"]);
    }
    assert_usage_error(
        &[
            "--scheduler",
            "disagg",
            "--prefill-gpus",
            "4294967295",
            "--decode-gpus",
            "1",
        ],
        &["--prefill-gpus", "at most 100000"],
    );
    assert_usage_error(
        &[
            "--scheduler",
            "disagg",
            "--prefill-gpus",
            "60000",
            "--decode-gpus",
            "60000",
        ],
        &["--prefill-gpus", "at most 100000", "120000"],
    );
}

#[test]
fn table_shows_per_gpu_figures_and_imbalance() {
    let out = run(&["--gpus", "3", "--rate", "2", "--router", "jsq"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    for line in ["load imbalance", "GPU 0: utilisation", "GPU 2: utilisation"] {
        assert!(table.contains(line), "missing '{line}':\n{table}");
    }
    let out = run(&["--gpus", "40", "--rate", "30", "--router", "power-of-d:2"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("40 GPUs: utilisation min"), "{table}");
    assert!(
        !table.contains("GPU 0:"),
        "one line per GPU for 40 GPUs:\n{table}"
    );
}

#[test]
fn json_has_per_gpu_arrays_summing_to_the_requests() {
    let out = run(&[
        "--gpus", "3", "--rate", "2", "--router", "central", "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reqs: Vec<f64> = doc["gpu_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs.iter().sum::<f64>(), 2000.0);
    assert_eq!(doc["gpu_utilization"].as_array().unwrap().len(), 3);
    assert!(doc["load_imbalance"].as_f64().unwrap() >= 1.0);
}

#[test]
fn one_gpu_json_is_the_same_whatever_the_router() {
    let strip = |out: Output| {
        assert!(out.status.success());
        let mut doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["config"]["router"] = serde_json::Value::Null;
        serde_json::to_vec(&doc).unwrap()
    };
    let base = strip(run(&[
        "--json",
        "--scheduler",
        "b",
        "--rate",
        "4",
        "--reps",
        "2",
    ]));
    for router in ["random", "jsq", "least-work", "power-of-d:1", "central"] {
        let doc = strip(run(&[
            "--json",
            "--scheduler",
            "b",
            "--rate",
            "4",
            "--reps",
            "2",
            "--router",
            router,
        ]));
        assert!(doc == base, "--router {router} changed a one-GPU run");
    }
}

#[test]
fn same_seed_same_bytes_for_randomised_routers() {
    for router in ["random", "power-of-d:2"] {
        let args = [
            "--json", "--gpus", "4", "--rate", "3", "--router", router, "--seed", "7",
        ];
        let (a, b) = (run(&args), run(&args));
        assert!(
            a.status.success() && a.stdout == b.stdout,
            "--router {router}"
        );
        let other = run(&[
            "--json", "--gpus", "4", "--rate", "3", "--router", router, "--seed", "8",
        ]);
        assert!(
            other.stdout != a.stdout,
            "--router {router} ignores the seed"
        );
    }
}
