//! Models, GPUs and parallel layouts on the command line: `--model NAME|config.json`,
//! `--gpu NAME|TOML`, `--tp`/`--pp`, and `llmsim cost check`.

mod common;

use common::{llmsim, shared};
use llmsim::calibrate::fit_error;
use llmsim::cost::{GpuSpec, Parallel, RooflineCost};
use llmsim::kv::{KvConfig, ModelShape};
use llmsim_study::files::read_profile;
use serde_json::Value;
use std::io::Write;

fn run(args: &[&str]) -> std::process::Output {
    llmsim().args(args).output().expect("binary runs")
}

fn json_run(args: &[&str]) -> Value {
    let base = ["run", "--requests", "200", "--rate", "1", "--json"];
    let out = run(&[&base[..], args].concat());
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn file(text: &str, suffix: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// Qwen3-30B-A3B's config.json keys (an MoE), as on its Hugging Face page.
const QWEN3_MOE: &str = r#"{"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 2048,
  "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
  "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8,
  "num_hidden_layers": 48, "num_key_value_heads": 4, "tie_word_embeddings": false,
  "vocab_size": 151936, "torch_dtype": "bfloat16"}"#;

#[test]
fn a_config_file_sizes_the_cache_like_the_built_in() {
    let cfg = file(QWEN3_MOE, ".json");
    let path = cfg.path().to_str().unwrap();
    let common = ["--scheduler", "vllm", "--gpu-mem-gb", "80"];
    let from_file = json_run(&[&common[..], &["--model", path]].concat());
    let built_in = json_run(&[&common[..], &["--model", "Qwen/Qwen3-30B-A3B"]].concat());
    let tokens = &from_file["kv_capacity_tokens"];
    assert_eq!(tokens, &built_in["kv_capacity_tokens"]);
    // By hand: 72e9 bytes less 2 x 30,532,110,336 of weights (the checkpoint's
    // 30,532,122,624 less its 12,288 q/k-norm weights), over 98,304 bytes a token.
    let shape = ModelShape::from_hf_config(QWEN3_MOE).unwrap();
    assert_eq!(shape.params(), 30_532_110_336.0);
    let want = ((80.0 * 0.9 * 1e9 - 2.0 * 30_532_110_336.0) / 98_304.0) as u64 / 16 * 16;
    assert_eq!(tokens.as_u64(), Some(want));
}

/// `--gpus` counts replicas of `--tp x --pp` GPUs; `--gpu` gives the memory.
#[test]
fn replicas_and_gpus_are_reported_apart() {
    let doc = json_run(&[
        "--scheduler",
        "vllm",
        "--cost",
        "roofline",
        "--gpu",
        "h100",
        "--model",
        "llama-3.1-70b",
        "--tp",
        "4",
        "--gpus",
        "2",
    ]);
    let c = &doc["config"];
    assert_eq!(c["gpus"], 2);
    assert_eq!(doc["gpus_total"], 8);
    assert_eq!(c["gpu_mem_gb"], 80.0);
    let model = llmsim::model::catalogue::find("llama-3.1-70b")
        .unwrap()
        .shape;
    let kv = KvConfig::from_memory(80.0, 0.9, &model, Parallel { tp: 4, pp: 1 }, 16).unwrap();
    assert_eq!(doc["kv_capacity_tokens"].as_u64(), kv.capacity_tokens());
}

#[test]
fn bad_models_gpus_and_layouts_exit_2_naming_the_flag() {
    let bad_json = file("{\"hidden_size\": 64", ".json");
    let no_key = file(r#"{"hidden_size": 64, "num_attention_heads": 4}"#, ".json");
    let bad_gpu = file(
        "peak_flops = 1e12\nbandwidth = -1\nmemory_gb = 8\npcie = 1e9\n",
        ".toml",
    );
    let (bj, nk, bg) = (
        bad_json.path().to_str().unwrap(),
        no_key.path().to_str().unwrap(),
        bad_gpu.path().to_str().unwrap(),
    );
    for (args, flag, says) in [
        (&["--model", "gpt-9"][..], "--model", "gpt-9"),
        (&["--model", bj], "--model", "JSON"),
        (&["--model", nk], "--model", "num_hidden_layers"),
        (&["--cost", "roofline", "--gpu", "h20"], "--gpu", "h20"),
        (&["--cost", "roofline", "--gpu", bg], "--gpu", "bandwidth"),
        (&["--cost", "roofline"], "--gpu", "needs a GPU"),
        (
            &["--cost", "roofline:h100", "--gpu", "h200"],
            "--gpu",
            "h100",
        ),
        (&["--cost", "roofline:h20"], "--cost", "h20"),
        (&["--cost", "roofline:h200", "--tp", "3"], "--tp", "divide"),
        (&["--cost", "roofline:h200", "--tp", "0"], "--tp", "from 1"),
        (
            &["--cost", "roofline:h200", "--pp", "33"],
            "--pp",
            "32 layers",
        ),
        (&["--tp", "2"], "--tp", "roofline"),
        (
            &[
                "--scheduler",
                "vllm",
                "--model",
                "llama-3.1-70b",
                "--gpu",
                "l4",
            ],
            "--gpu",
            "weights",
        ),
    ] {
        let out = run(&[&["run", "--requests", "100"][..], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag) && err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

/// The last line of `cost check` on the H200 profile is the roofline's error computed by
/// the library; rows of another model are refused unless --model names it.
#[test]
fn cost_check_reports_the_roofline_error_without_fitting() {
    let Some(path) = shared("calibration/h200_llama-3.1-8b.csv") else {
        return;
    };
    let p = path.to_str().unwrap();
    let out = run(&["cost", "check", "--cost", "roofline:h200", p]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = read_profile(&path).unwrap();
    let e = fit_error(&RooflineCost::llama_3_1_8b(GpuSpec::H200), &rows);
    let want = format!(
        "{} rows: MAPE {:.2}%, max error {:.2}%",
        rows.len(),
        100.0 * e.mape,
        100.0 * e.max
    );
    assert!(text.contains(&want), "{text}\nwant {want}");
    assert_eq!(
        text.lines().filter(|l| l.contains('%')).count(),
        rows.len() + 1
    );
    let out = run(&[
        "cost",
        "check",
        "--cost",
        "roofline:h200",
        "--model",
        "qwen2.5-7b",
        p,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("line 2, field model") && err.contains("--model"),
        "{err}"
    );
}

#[test]
fn cost_check_accepts_a_profile_of_any_built_in_by_alias() {
    let csv = "model,kind,prefill_seqs,prefill_len,prefill_tokens,decode_batch,decode_context,batch_tokens,median_ms\n\
               mixtral-8x7b,decode,0,0,0,8,1024,8,20.0\n\
               mixtral-8x7b,prefill,1,512,512,0,0,512,40.0\n";
    let f = file(csv, ".csv");
    let out = run(&[
        "cost",
        "check",
        "--cost",
        "roofline",
        "--gpu",
        "h100",
        "--tp",
        "2",
        "--model",
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        f.path().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 rows: MAPE"), "{text}");
}

/// A profile of a model read from its config.json names it by the config's folder (a
/// downloaded Hugging Face repository) or file stem.
#[test]
fn cost_check_matches_a_config_file_by_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("Qwen3-30B-A3B-local");
    std::fs::create_dir(&repo).unwrap();
    let config = repo.join("config.json");
    std::fs::write(&config, QWEN3_MOE).unwrap();
    let rows = |model: &str| {
        file(
            &format!(
                "model,kind,prefill_seqs,prefill_len,prefill_tokens,decode_batch,decode_context,batch_tokens,median_ms\n\
                 {model},decode,0,0,0,8,1024,8,20.0\n"
            ),
            ".csv",
        )
    };
    let check = |csv: &tempfile::NamedTempFile| {
        run(&[
            "cost",
            "check",
            "--cost",
            "roofline:h100",
            "--model",
            config.to_str().unwrap(),
            csv.path().to_str().unwrap(),
        ])
    };
    assert!(check(&rows("qwen3-30b-a3b-local")).status.success());
    let out = check(&rows("qwen3-30b-a3b"));
    assert_eq!(out.status.code(), Some(2));
}
