//! `llmsim fidelity` and `llmsim calibrate --serving` end to end: format errors, skipped
//! runs, the CSV and JSON outputs, a serving preset that `run --cost FILE` accepts, and
//! the scores on the real vLLM runs in `../shared/fidelity` (skipped without them).

mod common;

use std::path::Path;

const HEADER: &str = "run_id,stage,model,gpu,tp,max_num_batched_tokens,max_num_seqs,gpu_memory_utilization,prefix_caching,stages,system_prompt_len,question_len,output_len,num_system_prompts,users_per_system_prompt,ttft_mean_ms,ttft_p90_ms,ttft_p99_ms,e2e_mean_ms,e2e_p90_ms,e2e_p99_ms,itl_mean_ms";

fn row(id: &str, stage: i32, model: &str, gpu: &str, stages: &str) -> String {
    format!(
        "{id},{stage},{model},{gpu},1,2048,128,0.9,true,{stages},100,400,40,10,10,30,35,40,400,450,500,9"
    )
}

fn write(dir: &Path, rows: &[String]) -> std::path::PathBuf {
    let path = dir.join("runs.csv");
    std::fs::write(&path, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
    path
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_format_error_exits_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = row(
        "a",
        0,
        "meta-llama/Llama-3.1-8B-Instruct",
        "H100-80GB",
        "2x10",
    );
    let bad = good.replace(",2x10,", ",2 per 10,");
    let path = write(dir.path(), &[good, bad]);
    for cmd in [
        vec!["fidelity", path.to_str().unwrap()],
        vec!["calibrate", "--serving", path.to_str().unwrap()],
    ] {
        let out = common::llmsim().args(&cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("runs.csv") && err.contains("line 3") && err.contains("stages"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    // A bad run_metadata.csv beside it is named too.
    std::fs::write(
        dir.path().join("run_metadata.csv"),
        "run_id,harness_shared_prefix_effective,client_mean_output_tokens\na,,0.5\n",
    )
    .unwrap();
    let out = common::llmsim()
        .args(["fidelity", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("run_metadata.csv") && err.contains("client_mean_output_tokens"),
        "{err}"
    );
}

#[test]
fn unknown_runs_are_listed_and_the_outputs_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &[
            row(
                "known",
                -1,
                "meta-llama/Llama-3.1-8B-Instruct",
                "H100-80GB",
                "2x10",
            ),
            row(
                "known",
                0,
                "meta-llama/Llama-3.1-8B-Instruct",
                "H100-80GB",
                "2x10",
            ),
            row("model", -1, "someone/Unknown-7B", "H100-80GB", "2x10"),
            row(
                "card",
                -1,
                "meta-llama/Llama-3.1-8B-Instruct",
                "TPU-v9",
                "2x10",
            ),
        ],
    );
    let csv = dir.path().join("errors.csv");
    let out = common::succeed(common::llmsim().args([
        "fidelity",
        path.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]));
    let text = stdout(&out);
    assert!(
        text.contains("skipped model: model:") && text.contains("someone/Unknown-7B"),
        "{text}"
    );
    assert!(
        text.contains("skipped card: gpu:") && text.contains("TPU-v9"),
        "{text}"
    );
    assert!(text.contains("2 skipped"), "{text}");
    let rows = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines[0], "run_id,stage,metric,measured,predicted,pct_error");
    // Two stage rows of the known run, seven metrics each.
    assert_eq!(lines.len(), 1 + 2 * 7);
    assert!(lines[1].starts_with("known,-1,ttft_mean,30.0000,"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("known,0,itl_mean,9.0000,"))
    );
    let json = common::llmsim()
        .args(["fidelity", path.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["cost"], "vllm");
    assert_eq!(doc["skipped"].as_array().unwrap().len(), 2);
    // The CSV's predicted value is the JSON's, to the CSV's 4 decimals.
    let e2e = doc["rows"][0]["predicted"]["e2e_mean"].as_f64().unwrap();
    let line = lines
        .iter()
        .find(|l| l.starts_with("known,-1,e2e_mean,"))
        .unwrap();
    let from_csv: f64 = line.split(',').nth(4).unwrap().parse().unwrap();
    assert!((from_csv - e2e).abs() < 1e-4);
}

/// A serving fit writes a preset (with the second card's own efficiencies) that
/// `fidelity --cost FILE` and `run --cost FILE` (with a model, GPU and TP degree) accept.
#[test]
fn calibrate_serving_writes_a_preset_run_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &[
            row(
                "a",
                0,
                "meta-llama/Llama-3.1-8B-Instruct",
                "H100-80GB",
                "2x10",
            ),
            row("b", 0, "Qwen/Qwen3-14B", "A100-80GB", "2x10"),
            row("c", 0, "Qwen/Qwen3-14B", "A100-80GB", "3x10"),
        ],
    );
    let preset = dir.path().join("fitted.toml");
    let out = common::succeed(
        common::llmsim()
            .args([
                "calibrate",
                "--serving",
                path.to_str().unwrap(),
                "--max-evals",
                "10",
            ])
            .args(["--loo-evals", "3", "--out", preset.to_str().unwrap()]),
    );
    let text = stdout(&out);
    for want in [
        "fitted to 3 runs",
        "roofline.memory",
        "schedule_lag_steps",
        "roofline.exposed_compute 5.000000e-1  (not fitted",
        // The A100, with the most runs, prices with [roofline], the H100 with its own.
        "gpu.h100-sxm.compute",
        "in-sample MAPE",
        "leave-one-run-out MAPE (3 runs held out;",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let written = std::fs::read_to_string(&preset).unwrap();
    assert!(written.contains("[gpu.h100-sxm]"), "{written}");
    common::succeed(
        common::llmsim()
            .args([
                "run",
                "--scheduler",
                "sarathi",
                "--cost",
                preset.to_str().unwrap(),
            ])
            .args([
                "--model",
                "llama-3.1-70b",
                "--gpu",
                "h100",
                "--tp",
                "4",
                "--rate",
                "2",
            ])
            .args(["--requests", "200", "--json"]),
    );
    let fid = common::llmsim()
        .args([
            "fidelity",
            path.to_str().unwrap(),
            "--cost",
            preset.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(fid.status.success());
    // A profiled preset cannot price a parallel layout.
    let out = common::llmsim()
        .args([
            "run",
            "--cost",
            "h100-llama3.1-8b",
            "--model",
            "llama-3.1-8b",
            "--tp",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--holdout model` refits without each model's runs and prints each fold and the MAPE
/// over every run held out; a model with too few other runs is listed as not held out.
/// `--holdout workload` on a file without a workload column exits 2 before any fit.
#[test]
fn calibrate_serving_holds_out_by_model_and_rejects_a_missing_workload() {
    let dir = tempfile::tempdir().unwrap();
    let llama = "meta-llama/Llama-3.1-8B-Instruct";
    let path = write(
        dir.path(),
        &[
            row("a", 0, llama, "H100-80GB", "2x10"),
            row("b", 0, llama, "H100-80GB", "3x10"),
            row("c", 0, "Qwen/Qwen3-14B", "H100-80GB", "2x10"),
        ],
    );
    let calibrate = |holdout: &str| {
        let mut cmd = common::llmsim();
        cmd.args(["calibrate", "--serving", path.to_str().unwrap()])
            .args(["--max-evals", "4", "--holdout", holdout]);
        cmd
    };
    let text = stdout(&common::succeed(&mut calibrate("model")));
    for want in [
        "leave-one-model-out (each fold refitted",
        "meta-llama/Llama-3.1-8B-Instruct (runs a b): not held out, 1 other run(s)",
        "Qwen/Qwen3-14B (runs c): ttft_mean ",
        "leave-one-model-out MAPE (1 runs held out;",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let out = calibrate("workload").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--holdout") && err.contains("run a has no workload"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// The real runs: with no flags, the built-in `vllm` preset (fitted on these runs) meets
/// the in-sample bounds on the whole-run rows, and no run is skipped.
#[test]
fn the_real_runs_score_within_the_targets() {
    let Some(runs) = common::shared("fidelity/vllm_runs.csv") else {
        return;
    };
    let out =
        common::succeed(common::llmsim().args(["fidelity", runs.to_str().unwrap(), "--json"]));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["skipped"].as_array().unwrap().len(), 0);
    let mape = &doc["mape_whole_run"];
    for (metric, bound) in [("e2e_mean", 8.0), ("itl_mean", 8.0), ("ttft_mean", 15.0)] {
        let v = mape[metric].as_f64().unwrap();
        assert!(v <= bound, "{metric}: {v}% > {bound}%");
    }
}
