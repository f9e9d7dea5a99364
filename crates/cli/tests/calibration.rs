//! The profiled cost model against the measured H200 profile, `llmsim calibrate`, and how
//! the cost models price chunked and mixed-length prefills.

mod common;

use proptest::prelude::*;
use std::ffi::OsStr;
use std::sync::Arc;

use common::{llmsim, shared, succeed};
use llmsim::calibrate::{fit_error, fit_profiled};
use llmsim::cost::{BatchShape, CostModel, GpuSpec, Preset, RooflineCost, preset};
use llmsim::engine::{EngineConfig, simulate_observed};
use llmsim::kv::KvConfig;
use llmsim::router::RouterSpec;
use llmsim::scheduler::{BatchLimits, Phase, SchedulerSpec};
use llmsim::workload::Request;
use llmsim_study::files::{read_preset, read_profile};

const PROFILE: &str = "calibration/h200_llama-3.1-8b.csv";

/// `llmsim run --json` under Scheduler B with `(requests, rate)` and the `extra` flags, which
/// must succeed; its JSON document.
fn run_b_json((requests, rate): (&str, &str), extra: &[&OsStr]) -> serde_json::Value {
    let args = [
        "run",
        "--json",
        "--scheduler",
        "b",
        "--requests",
        requests,
        "--rate",
        rate,
    ];
    let o = succeed(llmsim().args(args).args(extra));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The bar: the built-in preset predicts every measured H200 iteration with a mean
/// absolute error of at most 5% and no row off by more than 15%.
#[test]
fn built_in_h200_preset_meets_the_error_bar() {
    let Some(path) = shared(PROFILE) else { return };
    let rows = read_profile(&path).unwrap();
    let preset = Preset::built_in("h200-llama3.1-8b").unwrap();
    let e = fit_error(preset.model().as_ref(), &rows);
    assert!(e.mape <= 0.05, "MAPE {}", e.mape);
    assert!(
        e.max <= 0.15,
        "max error {} on row {}",
        e.max,
        rows[e.worst_row].label()
    );
}

/// The embedded numbers are what the fit gives today: the preset cannot drift from the
/// data or the fitting code unnoticed.
#[test]
fn built_in_preset_is_the_fit_of_the_profile() {
    let Some(path) = shared(PROFILE) else { return };
    let fit = fit_profiled(&read_profile(&path).unwrap()).unwrap();
    let p = Preset::built_in("h200-llama3.1-8b").unwrap().profiled;
    let pairs = [
        (fit.setup, p.setup),
        (fit.prefill_setup, p.prefill_setup),
        (fit.per_token, p.per_token),
        (fit.free_tokens, p.free_tokens),
        (fit.prefill_attention, p.prefill_attention),
        (fit.per_kv_token, p.per_kv_token),
        (fit.min_attention_seqs, p.min_attention_seqs),
    ];
    for (got, want) in pairs {
        assert!((got - want).abs() <= 1e-9 * want.abs(), "{fit:?} vs {p:?}");
    }
}

/// calibrate -> preset file -> run --cost FILE, and --check predicts another profile's
/// rows, mixed ones included.
#[test]
fn calibrate_writes_a_preset_that_run_accepts() {
    let Some(path) = shared(PROFILE) else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h200.toml");
    let check = dir.path().join("mixed.csv");
    std::fs::write(
        &check,
        "model,kind,prefill_seqs,prefill_len,prefill_tokens,decode_batch,decode_context,batch_tokens,median_ms\n\
         m,mixed,1,512,512,32,1024,544,17.0\n\
         m,decode,0,0,0,64,1024,64,8.0\n",
    )
    .unwrap();
    let o = succeed(
        llmsim()
            .arg("calibrate")
            .arg(&path)
            .arg("--check")
            .arg(&check)
            .arg("--out")
            .arg(&out),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("57 rows: MAPE") && stdout.contains("mixed 1x512 + 32@1024"),
        "{stdout}"
    );
    assert!(stdout.contains("2 rows: MAPE"), "{stdout}");
    let doc = run_b_json(("500", "2"), &["--cost".as_ref(), out.as_os_str()]);
    // Context-dependent cost: no closed-form capacity is claimed.
    assert!(doc["capacity_rps"].is_null(), "{}", doc["capacity_rps"]);
    assert!(doc["throughput_rps"].as_f64().unwrap() > 1.0);
}

/// A malformed profile row: exit 2, the message names file, line and field, nothing written.
#[test]
fn malformed_profile_row_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    let out = dir.path().join("out.toml");
    std::fs::write(
        &csv,
        "model,kind,prefill_seqs,prefill_len,prefill_tokens,decode_batch,decode_context,batch_tokens,median_ms\n\
         m,prefill,1,16,16,0,0,16,6.3\n\
         m,prefill,2,16,16,0,0,16,6.3\n",
    )
    .unwrap();
    let o = llmsim()
        .arg("calibrate")
        .arg(&csv)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.csv") && err.contains("line 3") && err.contains("prefill_tokens"),
        "{err}"
    );
    assert!(!out.exists() && o.stdout.is_empty());
}

#[test]
fn unknown_cost_spec_is_a_usage_error() {
    let o = llmsim()
        .args(["run", "--cost", "no-such-preset", "--requests", "10"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--cost") && err.contains("h200-llama3.1-8b"),
        "{err}"
    );
}

/// The roofline's embedded H200 efficiencies are the fit of the profile, and the fit stays
/// within 10% mean error (the roofline cannot see, e.g., an attention kernel that one long
/// sequence leaves idle; its worst rows are about 27% off).
#[test]
fn roofline_efficiencies_are_the_fit_of_the_h200_profile() {
    use llmsim::calibrate::fit_roofline;
    use llmsim::cost::{Efficiency, GpuSpec, ModelShape};
    let Some(path) = shared(PROFILE) else { return };
    let rows = read_profile(&path).unwrap();
    let roof = fit_roofline(&rows, ModelShape::LLAMA_3_1_8B, GpuSpec::H200);
    let want = Efficiency::H200_LLAMA_3_1_8B;
    assert!(
        (roof.eff.compute - want.compute).abs() < 1e-9,
        "{:?}",
        roof.eff
    );
    assert!(
        (roof.eff.memory - want.memory).abs() < 1e-9,
        "{:?}",
        roof.eff
    );
    assert!(
        (roof.eff.overhead - want.overhead).abs() < 1e-12,
        "{:?}",
        roof.eff
    );
    let e = fit_error(&roof, &rows);
    assert!(e.mape <= 0.10, "roofline MAPE {}", e.mape);
}

/// `--cost roofline:GPU` runs, and the H100's lower bandwidth makes decode-heavy serving
/// slower than on the H200.
#[test]
fn roofline_cost_ranks_h100_below_h200() {
    let tbt = |gpu: &str| {
        let cost = format!("roofline:{gpu}");
        let extra = ["--prompt", "256", "--decode", "128", "--cost", &cost];
        let doc = run_b_json(("400", "4"), &extra.map(OsStr::new));
        doc["tbt"]["mean"].as_f64().unwrap()
    };
    assert!(tbt("h100") > tbt("h200"));
}

/// Mixed batches (prompts and decodes in one iteration), measured on an H200 with
/// tools/profile_iterations.py, are predicted by the model fitted to the same harness's
/// prefill-only and decode-only rows: the terms add up.
#[test]
fn mixed_batches_are_predicted_from_pure_rows() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/profiles/h200_llama-3.1-8b_mixed.csv");
    let rows = read_profile(&path).unwrap();
    let (mixed, pure): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.kind == "mixed");
    assert_eq!((pure.len(), mixed.len()), (29, 24));
    let fit = fit_profiled(&pure).unwrap();
    let e = fit_error(&fit, &mixed);
    assert!(e.mape <= 0.05, "MAPE {}", e.mape);
    assert!(
        e.max <= 0.10,
        "max error {} on {}",
        e.max,
        mixed[e.worst_row].label()
    );
}

fn tools_profile(name: &str) -> Vec<llmsim::calibrate::ProfileRow> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/profiles")
        .join(name);
    read_profile(&path).unwrap()
}

/// The H100 preset meets the same bar on its profile, and is that profile's fit.
#[test]
fn built_in_h100_preset_is_the_fit_of_its_profile() {
    let rows = tools_profile("h100_llama-3.1-8b.csv");
    let preset = Preset::built_in("h100-llama3.1-8b").unwrap();
    let e = fit_error(preset.model().as_ref(), &rows);
    assert!(e.mape <= 0.05 && e.max <= 0.15, "{e:?}");
    assert_eq!(fit_profiled(&rows).unwrap(), preset.profiled);
}

/// The roofline carries a calibration across cards: with the efficiencies fitted on the
/// H200 profile and the H100's datasheet peaks, it predicts the measured H100 rows far
/// better than reusing the H200's profiled model does.
#[test]
fn roofline_predicts_the_h100_from_the_h200_calibration() {
    use llmsim::cost::{GpuSpec, RooflineCost};
    let rows = tools_profile("h100_llama-3.1-8b.csv");
    let roof = fit_error(&RooflineCost::llama_3_1_8b(GpuSpec::H100), &rows);
    let reuse = fit_error(
        Preset::built_in("h200-llama3.1-8b")
            .unwrap()
            .model()
            .as_ref(),
        &rows,
    );
    assert!(roof.mape <= 0.10 && roof.max <= 0.25, "{roof:?}");
    assert!(roof.mape < 0.5 * reuse.mape, "{roof:?} vs {reuse:?}");
}

/// Every cost model that prices prefill attention: the built-in presets and the roofline.
fn attention_models() -> Vec<(String, Arc<dyn CostModel>)> {
    let mut models: Vec<(String, Arc<dyn CostModel>)> = preset::built_in_names()
        .into_iter()
        .map(|n| (n.to_string(), Preset::built_in(n).unwrap().model()))
        .collect();
    for (name, gpu) in [("h100", GpuSpec::H100), ("h200", GpuSpec::H200)] {
        models.push((
            format!("roofline:{name}"),
            Arc::new(RooflineCost::llama_3_1_8b(gpu)),
        ));
    }
    models
}

/// Requests with these prompts and no decodes, all arriving at time 0, prefilled by
/// Sarathi-Serve under a token budget of `budget` on one GPU: the end of the last batch
/// (seconds) and the number of batches.
fn prefill_makespan(prompts: &[u32], budget: u32, cost: Arc<dyn CostModel>) -> (f64, usize) {
    let requests: Vec<Request> = prompts
        .iter()
        .map(|&prompt| Request {
            arrival: 0.0,
            prompt,
            decode: 0,
            prefix: None,
            next: None,
        })
        .collect();
    let config = EngineConfig {
        scheduler: SchedulerSpec::Sarathi(BatchLimits {
            max_seqs: 64,
            max_tokens: budget,
            ..BatchLimits::default()
        }),
        cost,
        gpus: 1,
        router: RouterSpec::RoundRobin,
        kv: KvConfig::unlimited(),
        prefix_cache: false,
        cpu_kv: None,
    };
    let (mut end, mut batches) = (0.0f64, 0);
    simulate_observed(&requests, &config, 1, 0, 0, &mut |ev| {
        end = end.max(ev.end);
        batches += 1;
    });
    (end, batches)
}

/// The example: an 8,192-token prompt took 250 ms whole but 221 ms as four
/// 2,048-token chunks, each chunk's attention priced as if it started the prompt. Now the
/// chunks cost the whole prompt's attention plus three more iterations' fixed costs.
#[test]
fn chunked_8192_token_prompt_costs_more_than_whole() {
    let preset = Preset::built_in("h200-llama3.1-8b").unwrap();
    let m = preset.profiled;
    let (whole, one) = prefill_makespan(&[8192], 8192, preset.model());
    let (split, four) = prefill_makespan(&[8192], 2048, preset.model());
    assert_eq!((one, four), (1, 4));
    assert!((whole - 0.2504).abs() < 5e-4, "whole {whole}");
    let extra = 3.0 * (m.setup + m.prefill_setup - m.per_token * m.free_tokens);
    assert!(
        (split - whole - extra).abs() < 1e-12,
        "4 x 2048: {split} s, whole: {whole} s"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Prefilling a prompt in chunks never takes less time than prefilling it whole, under
    /// every attention-pricing model: its attention costs the same, and each extra chunk
    /// pays an iteration's fixed cost (the presets' `c + p` exceed the `a b0` it saves; the
    /// roofline's overhead and its maximum of compute and memory time are subadditive).
    /// One prompt alone, so that the chunking is all that differs.
    #[test]
    fn chunking_never_shortens_a_prefill(prompt in 1u32..32_768, budget in 64u32..8_192) {
        for (name, m) in attention_models() {
            let (whole, _) = prefill_makespan(&[prompt], prompt, m.clone());
            let (split, _) = prefill_makespan(&[prompt], budget, m);
            prop_assert!(
                split >= whole * (1.0 - 1e-12),
                "{}: chunks of {} took {} s, whole {} s",
                name, budget, split, whole
            );
        }
    }
}

/// Whatever a policy schedules (chunks, whole prompts, recomputes after preemption), each
/// batch's prefill attention is `(offset + chunk)^2 - offset^2` summed over its prefill
/// entries, with the offset re-derived here from the batches: 0 at a request's first prefill
/// and again after a preemption by recompute.
#[test]
fn batch_attention_counts_each_chunk_from_its_offset() {
    use proptest::test_runner::{Config, TestRunner};
    let limits = |max_tokens| BatchLimits {
        max_seqs: 8,
        max_tokens,
        watermark: 0.0,
        ..BatchLimits::default()
    };
    let strategy = (
        prop::collection::vec((0.0..0.5f64, 1u32..200, 0u32..40), 2..40),
        0usize..4,
        16u32..64,
    );
    let preemptions = std::cell::Cell::new(0u64);
    TestRunner::new(Config::with_cases(200))
        .run(&strategy, |(rows, which, budget)| {
            let mut t = 0.0;
            let requests: Vec<Request> = rows
                .iter()
                .map(|&(gap, prompt, decode)| {
                    t += gap;
                    Request {
                        arrival: t,
                        prompt,
                        decode,
                        prefix: None,
                        next: None,
                    }
                })
                .collect();
            let scheduler = match which {
                0 => SchedulerSpec::Sarathi(limits(budget)),
                1 => SchedulerSpec::Vllm(limits(240)),
                2 => SchedulerSpec::DecodeFirst(limits(240)),
                _ => SchedulerSpec::Orca(limits(240)),
            };
            let config = EngineConfig {
                scheduler,
                cost: Preset::built_in("h200-llama3.1-8b").unwrap().model(),
                gpus: 1,
                router: RouterSpec::RoundRobin,
                // Room for the longest request and little more: preemptions are common.
                kv: KvConfig::with_tokens(320, 16),
                prefix_cache: false,
                cpu_kv: None,
            };
            let mut offset = vec![0u64; requests.len()];
            let mut wrong = Vec::new();
            simulate_observed(&requests, &config, 7, 0, 0, &mut |ev| {
                for &id in ev.batch.preempted() {
                    offset[id as usize] = 0;
                    preemptions.set(preemptions.get() + 1);
                }
                let mut want = 0u128;
                for e in ev
                    .batch
                    .entries()
                    .iter()
                    .filter(|e| e.phase == Phase::Prefill)
                {
                    let o = &mut offset[e.id as usize];
                    want += BatchShape::chunk_squares(*o, u64::from(e.tokens));
                    *o += u64::from(e.tokens);
                }
                if ev.batch.shape().prefill_squares != want {
                    wrong.push((ev.start, ev.batch.shape().prefill_squares, want));
                }
            });
            prop_assert!(wrong.is_empty(), "(start, priced, re-derived): {:?}", wrong);
            Ok(())
        })
        .unwrap();
    assert!(preemptions.get() > 0, "no preemption was exercised");
}

/// Cost parameters beyond where the arithmetic holds are rejected before anything runs, each
/// naming its flag (or preset field) and range: they used to print a utilisation of 127171
/// (`--noise-cv 1e200`), a mean E2E of 3e-6 s (`--noise-cv 1e20`, truth 0.84 s), a TTFT of 0
/// (`gamma:1e10`), panic (`gamma:1e200`) or print NaN (`setup_s = 1e308`).
#[test]
fn extreme_cost_parameters_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let preset = Preset::built_in("h200-llama3.1-8b").unwrap().to_toml();
    let mut cases: Vec<(Vec<String>, &str)> = [
        ("--noise-cv 1e200", "--noise-cv"),
        ("--noise-cv 1e20", "--noise-cv"),
        ("--noise-cv 10.5", "--noise-cv"),
        ("--cost-dist gamma:1e10", "--cost-dist"),
        ("--cost-dist gamma:1e200", "--cost-dist"),
        ("--c 1e308", "--c"),
        ("--a 1e300", "--a"),
        ("--b0 1e300", "--b0"),
    ]
    .into_iter()
    .map(|(a, flag)| (a.split(' ').map(String::from).collect(), flag))
    .collect();
    for (field, value) in [
        ("setup_s", "1e308"),
        ("per_kv_token_s", "3601.0"),
        ("min_attention_seqs", "1e300"),
    ] {
        let path = dir.path().join(format!("{field}.toml"));
        let text: String = preset
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{field} = ")) {
                    format!("{field} = {value}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&path, text).unwrap();
        cases.push((vec!["--cost".into(), path.display().to_string()], field));
    }
    for (args, names) in cases {
        let o = llmsim()
            .args(["run", "--requests", "200"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(names) && err.contains("at most"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("0000000000000000"), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    // The largest values allowed run and give finite numbers.
    let o = succeed(
        llmsim()
            .args(["run", "--json", "--requests", "2000", "--noise-cv", "10"])
            .args(["--cost-dist", "gamma:10", "--c", "3600", "--rate", "1e-5"]),
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["utilization", "throughput_rps"] {
        let x = doc[key].as_f64().unwrap();
        assert!(x.is_finite() && x > 0.0, "{key} {x}");
    }
    let help = llmsim().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("0 < CV <= 10") && help.contains("at most 3600"));
}

/// Nine rows of the H200 profile: enough to fit, and shipped with the test.
const SMALL_PROFILE: &str = "\
model,kind,prefill_seqs,prefill_len,prefill_tokens,decode_batch,decode_context,batch_tokens,median_ms
m,prefill,1,128,128,0,0,128,7.1995
m,prefill,1,1024,1024,0,0,1024,28.0075
m,prefill,8,128,1024,0,0,1024,28.3926
m,decode,0,0,0,2,128,2,5.6262
m,decode,0,0,0,128,128,128,7.1083
m,decode,0,0,0,4,512,4,5.8265
m,decode,0,0,0,256,512,256,13.1516
m,decode,0,0,0,8,2048,8,6.4443
m,decode,0,0,0,2,8192,2,8.5591
";

/// `calibrate` checks every argument before it prints or writes anything: a bad `--roofline`
/// or an `--out` it cannot write fails with exit 2 naming the flag and nothing on stdout
/// (it used to print the whole fit, then fail with exit 1).
#[test]
fn calibrate_checks_every_argument_before_printing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("small.csv");
    std::fs::write(&csv, SMALL_PROFILE).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let missing = dir.path().join("missing").join("x.toml");
    let under_file = file.join("x.toml");
    let folder = dir.path().to_path_buf();
    let mut cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec!["--roofline".into(), "h300".into()], "--roofline"),
        (vec!["--out".into(), missing.into()], "--out"),
        (vec!["--out".into(), under_file.into()], "--out"),
        (vec!["--out".into(), folder.into()], "--out"),
    ];
    // A folder that refuses new files even to root.
    if cfg!(target_os = "linux") {
        cases.push((vec!["--out".into(), "/proc/llmsim-x.toml".into()], "--out"));
    }
    for (args, flag) in cases {
        let o = llmsim()
            .arg("calibrate")
            .arg(&csv)
            .args(&args)
            .args(
                ["--roofline", "h200"]
                    .iter()
                    .filter(|_| flag != "--roofline"),
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}: printed before failing");
    }
    let out = dir.path().join("ok.toml");
    let o = succeed(
        llmsim()
            .arg("calibrate")
            .arg(&csv)
            .arg("--out")
            .arg(&out)
            .args(["--roofline", "h200"]),
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("9 rows: MAPE"));
    read_preset(&out).unwrap();
}

/// A profile (or trace) that is not UTF-8 text, such as one saved as UTF-16 or a binary
/// file, is named with its line and "not UTF-8 text", not the csv crate's debug dump
/// (`Utf8 { pos: Some(Position { byte: 0, ...`).
#[test]
fn non_utf8_csv_says_so_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let utf16 = dir.path().join("utf16.csv");
    let mut bytes = vec![0xff, 0xfe];
    for unit in SMALL_PROFILE.encode_utf16() {
        bytes.extend(unit.to_le_bytes());
    }
    std::fs::write(&utf16, bytes).unwrap();
    let bad_row = dir.path().join("bad_row.csv");
    let mut bytes = SMALL_PROFILE.as_bytes().to_vec();
    bytes.extend(b"m,decode,0,0,0,2,\xff\xfe,2,5.6\n");
    std::fs::write(&bad_row, bytes).unwrap();
    let workload = format!("azure:{}", utf16.display());
    let cases: [(Vec<&std::ffi::OsStr>, &str); 3] = [
        (vec!["calibrate".as_ref(), utf16.as_os_str()], "line 1"),
        (
            vec!["calibrate".as_ref(), bad_row.as_os_str()],
            "line 11, field decode_context",
        ),
        (
            vec!["run".as_ref(), "--workload".as_ref(), workload.as_ref()],
            "line 1",
        ),
    ];
    for (args, place) in cases {
        let o = llmsim().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("not UTF-8 text") && err.contains(place) && err.contains(".csv"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("Position"), "{args:?}: {err}");
    }
}

/// Profile values the fit cannot use are named with their line and field: times outside a
/// nanosecond to an hour (the fit weighs rows by 1 / time^2), token counts beyond `u32`
/// (whose products used to wrap). All used to be accepted.
#[test]
fn extreme_profile_values_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let (header, rows) = SMALL_PROFILE.split_once('\n').unwrap();
    for (row, field) in [
        ("m,prefill,1,128,128,0,0,128,1e300", "median_ms"),
        ("m,prefill,1,128,128,0,0,128,1e-300", "median_ms"),
        (
            "m,prefill,1,4294967296,4294967296,0,0,4294967296,7.0",
            "prefill_len",
        ),
        (
            "m,decode,0,0,0,2,18446744073709551615,2,5.0",
            "decode_context",
        ),
    ] {
        let csv = dir.path().join("extreme.csv");
        std::fs::write(&csv, format!("{header}\n{row}\n{rows}")).unwrap();
        let o = llmsim().arg("calibrate").arg(&csv).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{row}: {err}");
        assert!(
            err.contains(&format!("line 2, field {field}")),
            "{row}: {err}"
        );
        assert!(o.stdout.is_empty(), "{row}");
    }
}
