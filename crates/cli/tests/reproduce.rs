//! `llmsim reproduce --quick`: every file, its seed columns, and the relations the data
//! must satisfy. Pass/fail intervals are 99.9% Student-t intervals built from the files' own
//! 95% half-widths (or, for per-request files, from the sample's standard error), so a
//! correct simulator fails a given check about once in a thousand runs.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use llmsim::cost::{CostDist, LinearCost};
use llmsim::dist::LengthDist;
use llmsim::stats::t_critical;
use llmsim::theory;

/// The seed study's files and their columns, in the seed's order (from the issue).
const SEED_COLUMNS: [(&str, &[&str]); 10] = [
    (
        "data_scheduler_a_baseline.csv",
        &[
            "arrival_times",
            "start_times",
            "completion_times",
            "ttft",
            "tbt",
        ],
    ),
    (
        "data_scheduler_a_throughput_sweep.csv",
        &["arrival_rate", "throughput"],
    ),
    (
        "data_validation_light_traffic.csv",
        &["arrival_times", "completion_times", "ttft", "tbt"],
    ),
    (
        "data_capacity_vs_k.csv",
        &[
            "K_values",
            "sim_mean",
            "sim_std",
            "closed_form_capacity",
            "empirical_capacity",
        ],
    ),
    (
        "data_scheduler_b_throughput_sweep.csv",
        &["arrival_rate", "throughput"],
    ),
    (
        "data_batching_scale.csv",
        &[
            "K",
            "throughput_mean",
            "throughput_ci",
            "mean_TTFT_mean",
            "mean_TTFT_ci",
            "p95_TTFT_mean",
            "p95_TTFT_ci",
            "mean_TBT_mean",
            "mean_TBT_ci",
            "p95_TBT_mean",
            "p95_TBT_ci",
        ],
    ),
    (
        "data_sensitivity_ca.csv",
        &["label", "throughput", "mean_TTFT", "mean_TBT"],
    ),
    (
        "data_sensitivity_regime.csv",
        &["label", "throughput", "mean_TTFT", "p95_TTFT"],
    ),
    (
        "data_scheduler_comparison.csv",
        &[
            "lambda",
            "A_ttft_mean",
            "A_ttft_ci",
            "A_tbt_mean",
            "A_tbt_ci",
            "B_ttft_mean",
            "B_ttft_ci",
            "B_tbt_mean",
            "B_tbt_ci",
        ],
    ),
    (
        "data_multigpu_scaling.csv",
        &[
            "num_gpus",
            "throughput_mean",
            "throughput_ci",
            "mean_TTFT_mean",
            "mean_TTFT_ci",
            "p95_TTFT_mean",
            "p95_TTFT_ci",
        ],
    ),
];

/// Columns `docs/data.md` allows to be empty: K for Scheduler A rows, and the P-K value
/// where Scheduler A is at or above capacity.
const MAY_BE_EMPTY: [(&str, &str); 11] = [
    ("data_multigpu_scaling.csv", "K"),
    ("data_scheduler_comparison.csv", "A_ttft_pk"),
    // No decode runs at the overloaded top rates (prefills always wait): no TBT.
    ("data_scheduler_b_throughput_sweep.csv", "mean_TBT"),
    ("data_scheduler_b_throughput_sweep.csv", "mean_TBT_ci"),
    // A deployment whose queue grows at the target rate has no latencies there.
    ("data_capacity_planning.csv", "ttft_p99"),
    ("data_capacity_planning.csv", "tbt_p99"),
    ("data_capacity_planning.csv", "itl_p99"),
    ("data_capacity_planning.csv", "e2e_p99"),
    ("data_capacity_planning.csv", "latency_s"),
    ("data_capacity_planning.csv", "tokens_per_s"),
    ("data_capacity_planning.csv", "usd_per_m_tokens"),
];

/// One quick run shared by every test (RAYON_NUM_THREADS=2): its data folder and its
/// report folder.
fn quick_dirs() -> &'static (tempfile::TempDir, tempfile::TempDir) {
    static DIR: OnceLock<(tempfile::TempDir, tempfile::TempDir)> = OnceLock::new();
    DIR.get_or_init(|| {
        let (dir, report) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        run_quick(dir.path(), report.path(), "2");
        (dir, report)
    })
}

fn quick_dir() -> &'static Path {
    quick_dirs().0.path()
}

/// The shared folder beside the project (`../shared`), which may be absent.
fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Whether the shared inputs of `trace_capacity` and `roofline` are there (skipping with a
/// message, or failing under LLMSIM_REQUIRE_SHARED=1, when not).
fn have_shared() -> bool {
    [
        "traces/AzureLLMInferenceTrace_conv.csv",
        "traces/AzureLLMInferenceTrace_code.csv",
        "calibration/h200_llama-3.1-8b.csv",
    ]
    .iter()
    .all(|f| common::shared(f).is_some())
}

/// Runs `llmsim reproduce --quick --out <out> --shared ../shared <extra>`.
fn reproduce(out: &Path, extra: &[&str], threads: &str) -> std::process::Output {
    common::llmsim()
        .args(["reproduce", "--quick", "--out"])
        .arg(out)
        .arg("--shared")
        .arg(shared_dir())
        .args(extra)
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .unwrap()
}

fn run_quick(out: &Path, report: &Path, threads: &str) {
    let o = reproduce(out, &["--report", report.to_str().unwrap()], threads);
    assert!(
        o.status.success(),
        "reproduce failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CSV as named columns of strings.
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn read(name: &str) -> Csv {
        let mut r = csv::Reader::from_path(quick_dir().join(name)).unwrap();
        let header = r.headers().unwrap().iter().map(String::from).collect();
        let rows = r
            .records()
            .map(|rec| rec.unwrap().iter().map(String::from).collect())
            .collect();
        Csv { header, rows }
    }

    fn idx(&self, col: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == col)
            .unwrap_or_else(|| panic!("no column {col}"))
    }

    /// Rows as maps from column name to number (booleans as 0/1, labels and empties skipped).
    fn records(&self) -> Vec<HashMap<&str, f64>> {
        self.rows
            .iter()
            .map(|row| {
                self.header
                    .iter()
                    .zip(row)
                    .filter_map(|(h, v)| {
                        let x = match v.as_str() {
                            "true" => 1.0,
                            "false" => 0.0,
                            v => v.parse().ok()?,
                        };
                        Some((h.as_str(), x))
                    })
                    .collect()
            })
            .collect()
    }
}

/// Replications per configuration, from the file's meta.
fn reps(name: &str) -> usize {
    let meta = quick_dir().join(name.replace(".csv", ".meta.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(meta).unwrap()).unwrap();
    v["parameters"]["study"]["reps"].as_u64().unwrap() as usize
}

/// Widens a 95% half-width over `n` replications to the 99.9% pass interval.
fn pass_tolerance(ci95: f64, n: usize) -> f64 {
    ci95 * t_critical(n, 0.999) / t_critical(n, 0.95)
}

fn seed_cost() -> LinearCost {
    LinearCost::new(0.01, 0.001, 0.0, CostDist::Exponential)
}

/// Files of ours beside the seed's ten, with their own columns only.
const OUR_FILES: [(&str, &[&str]); 7] = [
    (
        "data_latency_cdf.csv",
        &["scheduler", "quantile", "ttft", "tbt"],
    ),
    (
        "data_validation.csv",
        &["model", "metric", "simulated", "simulated_ci", "theory"],
    ),
    (
        "data_policy_capacity.csv",
        &[
            "policy",
            "memory",
            "kv_tokens",
            "bound_rps",
            "max_stable_rps",
        ],
    ),
    (
        "data_policy_comparison.csv",
        &["policy", "memory", "load", "rate_rps", "unstable"],
    ),
    (
        "data_hardware.csv",
        &[
            "model",
            "gpu",
            "tp",
            "scheduler",
            "kv_tokens",
            "max_stable_rps",
        ],
    ),
    (
        "data_multiturn.csv",
        &[
            "sweep",
            "think_s",
            "kv_tokens",
            "hit_rate_mean",
            "hit_rate_ci",
        ],
    ),
    (
        "data_capacity_planning.csv",
        &[
            "index",
            "label",
            "gpu_type",
            "scheduler",
            "router",
            "replicas",
        ],
    ),
];

/// Files of ours written only where the shared inputs are found, with their first columns.
const SHARED_FILES: [(&str, &[&str]); 4] = [
    (
        "data_fidelity.csv",
        &["simulator", "metric", "mape_pct", "runs"],
    ),
    (
        "data_prefix_caching.csv",
        &[
            "policy",
            "prefix_cache",
            "router",
            "gpus",
            "token_hit_rate",
            "p50_ttft",
            "p99_ttft",
            "p99_tbt",
            "unstable",
            "meets_slo",
        ],
    ),
    (
        "data_trace_capacity.csv",
        &[
            "trace",
            "policy",
            "gpus",
            "p99_ttft",
            "p99_tbt",
            "throughput",
            "unstable",
            "meets_slo",
            "min_gpus",
        ],
    ),
    (
        "data_roofline.csv",
        &[
            "kind",
            "shape",
            "batch_tokens",
            "measured_ms",
            "profiled_ms",
            "profiled_error",
            "roofline_ms",
            "roofline_error",
        ],
    ),
];

/// The files the quick run must have written.
fn expected_files() -> Vec<(&'static str, &'static [&'static str])> {
    let mut files: Vec<_> = SEED_COLUMNS.into_iter().chain(OUR_FILES).collect();
    if have_shared() {
        files.extend(SHARED_FILES);
    }
    files
}

#[test]
fn every_file_has_the_seed_columns_first_a_meta_file_and_no_missing_values() {
    for (name, seed) in expected_files() {
        let csv = Csv::read(name);
        assert!(csv.header.len() >= seed.len(), "{name}: {:?}", csv.header);
        assert_eq!(&csv.header[..seed.len()], seed, "{name}");
        assert!(!csv.rows.is_empty(), "{name} has no rows");
        for row in &csv.rows {
            for (h, v) in csv.header.iter().zip(row) {
                let lower = v.to_ascii_lowercase();
                assert!(
                    !lower.contains("nan") && !lower.contains("inf"),
                    "{name}: {h} = {v}"
                );
                if v.is_empty() {
                    assert!(
                        MAY_BE_EMPTY.contains(&(name, h.as_str())),
                        "{name}: {h} is empty"
                    );
                }
            }
        }
        // The roofline comparison replicates nothing; the hardware study bisects once per
        // layout (its cost model is deterministic), and says so; the prefix-caching replays
        // and the fidelity study's simulations (one per real run) are deterministic.
        match name {
            "data_roofline.csv" | "data_prefix_caching.csv" | "data_fidelity.csv" => {}
            "data_hardware.csv" => assert_eq!(reps(name), 1),
            _ => assert!(reps(name) >= 2, "{name}: meta lacks the replication count"),
        }
    }
}

#[test]
fn sweeps_follow_the_seed_design() {
    let a = Csv::read("data_scheduler_a_throughput_sweep.csv");
    let b = Csv::read("data_scheduler_b_throughput_sweep.csv");
    for (csv, n, hi) in [(&a, 20, 3.0), (&b, 10, 8.0)] {
        let rates: Vec<f64> = csv.records().iter().map(|r| r["arrival_rate"]).collect();
        assert_eq!(rates.len(), n);
        assert!((rates[0] - 0.5).abs() < 1e-12 && (rates[n - 1] - hi).abs() < 1e-12);
    }
}

/// Below capacity every arrival leaves: throughput equals lambda. Rows at or above capacity
/// must be marked unstable.
#[test]
fn throughput_equals_lambda_where_stable() {
    for (name, rate_col, thr, ci) in [
        (
            "data_scheduler_a_throughput_sweep.csv",
            "arrival_rate",
            "throughput",
            "throughput_ci",
        ),
        (
            "data_scheduler_b_throughput_sweep.csv",
            "arrival_rate",
            "throughput",
            "throughput_ci",
        ),
        (
            "data_batching_scale.csv",
            "arrival_rate",
            "throughput_mean",
            "throughput_ci",
        ),
        (
            "data_sensitivity_ca.csv",
            "arrival_rate",
            "throughput",
            "throughput_ci",
        ),
        (
            "data_sensitivity_regime.csv",
            "arrival_rate",
            "throughput",
            "throughput_ci",
        ),
        (
            "data_multigpu_scaling.csv",
            "arrival_rate",
            "throughput_mean",
            "throughput_ci",
        ),
    ] {
        let n = reps(name);
        let mut stable = 0;
        for r in Csv::read(name).records() {
            if r["load"] >= 1.0 {
                assert_eq!(r["unstable"], 1.0, "{name}: load {} not marked", r["load"]);
            }
            if r["unstable"] == 0.0 {
                stable += 1;
                let tol = pass_tolerance(r[ci], n);
                assert!(
                    (r[thr] - r[rate_col]).abs() <= tol,
                    "{name}: throughput {} vs lambda {} (tolerance {tol})",
                    r[thr],
                    r[rate_col]
                );
            }
        }
        assert!(stable > 0, "{name}: no stable row");
    }
}

/// Scheduler A never idles while work waits, so once clearly overloaded it completes jobs at
/// its capacity 1 / E[T].
#[test]
fn overloaded_scheduler_a_completes_at_capacity() {
    let name = "data_scheduler_a_throughput_sweep.csv";
    let n = reps(name);
    let cap = theory::scheduler_a_capacity(
        &LengthDist::Fixed(128),
        &LengthDist::Fixed(64),
        &seed_cost(),
    );
    let mut checked = 0;
    for r in Csv::read(name)
        .records()
        .iter()
        .filter(|r| r["load"] >= 1.1)
    {
        let tol = pass_tolerance(r["throughput_ci"], n);
        assert!(
            (r["throughput"] - cap).abs() <= tol,
            "throughput {} vs capacity {cap}",
            r["throughput"]
        );
        checked += 1;
    }
    assert!(checked > 0);
}

/// Scheduler A is an M/G/1 queue: its mean TTFT is the Pollaczek-Khinchine wait plus one
/// prefill. Checked where rho <= 0.8, where a short run's start-up transient is negligible.
#[test]
fn scheduler_a_ttft_matches_pollaczek_khinchine() {
    let name = "data_scheduler_comparison.csv";
    let n = reps(name);
    let (prompt, decode, cost) = (LengthDist::Fixed(128), LengthDist::Fixed(64), seed_cost());
    let job = theory::scheduler_a_job(&prompt, &decode, &cost);
    let mut checked = 0;
    for r in Csv::read(name).records() {
        let lambda = r["lambda"];
        if lambda * job.mean > 0.8 {
            continue;
        }
        let pk = theory::pk_mean_wait(lambda, job) + theory::mean_prefill(&prompt, &cost);
        let tol = pass_tolerance(r["A_ttft_ci"], n);
        assert!(
            (r["A_ttft_mean"] - pk).abs() <= tol,
            "lambda {lambda}: TTFT {} vs P-K {pk} (tolerance {tol})",
            r["A_ttft_mean"]
        );
        assert!((r["A_ttft_pk"] - pk).abs() < 1e-12 * pk);
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} rates with rho <= 0.8");
}

/// In light traffic a request served alone has TTFT = S(L) and TBT = the mean of B draws
/// of S(1). Isolated rows are selected without looking at their own service, so their
/// sample means estimate E[S(L)] and E[S(1)] without bias; the tolerance is the 99.9%
/// normal quantile times the sample's standard error.
#[test]
fn light_traffic_means_match_single_batch_costs() {
    let csv = Csv::read("data_validation_light_traffic.csv");
    let (iso, ttft, tbt, unstable) = (
        csv.idx("isolated"),
        csv.idx("ttft"),
        csv.idx("tbt"),
        csv.idx("unstable"),
    );
    let rows: Vec<&Vec<String>> = csv.rows.iter().filter(|r| r[iso] == "true").collect();
    assert!(csv.rows.iter().all(|r| r[unstable] == "false"));
    assert!(
        rows.len() * 2 > csv.rows.len(),
        "only {} isolated rows",
        rows.len()
    );
    let cost = seed_cost();
    let z = 3.2905; // two-sided 99.9% normal quantile; thousands of rows, so t = z
    for (col, theory_mean) in [
        (ttft, theory::mean_prefill(&LengthDist::Fixed(128), &cost)),
        (tbt, theory::mean_decode_step(&cost)),
    ] {
        let xs: Vec<f64> = rows.iter().map(|r| r[col].parse().unwrap()).collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let se = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
        assert!(
            (mean - theory_mean).abs() <= z * se,
            "{}: mean {mean} vs {theory_mean} (se {se})",
            csv.header[col]
        );
    }
}

/// The closed form is the seed's K / (c + a K (L + B)); pushed to 1.2x capacity, prefill
/// priority starves decodes and completions fall well below it; the bisection bracket is
/// ordered.
#[test]
fn capacity_vs_k_relations() {
    for r in Csv::read("data_capacity_vs_k.csv").records() {
        let k = r["K_values"];
        let seed_formula = k / (0.01 + 0.001 * k * (128.0 + 64.0));
        assert!(
            (r["closed_form_capacity"] - seed_formula).abs() < 1e-9 * seed_formula,
            "K {k}"
        );
        // The overloaded throughput is not a steady state and varies widely between
        // replications; with the quick run's 5 its interval is too wide to separate it from
        // capacity, so the (large) shortfall is checked on the point estimate.
        assert!(
            r["sim_mean"] < r["closed_form_capacity"] && r["sim_std"] > 0.0,
            "K {k}"
        );
        assert!(
            r["empirical_capacity"] < r["empirical_unstable_rate"],
            "K {k}"
        );
        assert!(
            r["empirical_capacity"] > 0.0 && r["unstable"] == 1.0,
            "K {k}"
        );
    }
}

/// With enough GPUs for a stable load the cluster's throughput is lambda; Scheduler A needs
/// 4 GPUs at lambda = 4 (capacity 1.19 per GPU), Scheduler B one (5.14 per GPU).
#[test]
fn multigpu_throughput_is_lambda_once_stable() {
    let name = "data_multigpu_scaling.csv";
    let csv = Csv::read(name);
    let (sched, router) = (csv.idx("scheduler"), csv.idx("router"));
    let mut stable = HashMap::new();
    for (row, r) in csv.rows.iter().zip(csv.records()) {
        assert_eq!(
            row[router],
            llmsim_study::experiments::MULTI_GPU_ROUTER.to_string()
        );
        stable.insert(
            (row[sched].clone(), r["num_gpus"] as u32),
            r["unstable"] == 0.0,
        );
    }
    for (s, g, want) in [
        ("a", 2, false),
        ("a", 4, true),
        ("a", 8, true),
        ("b", 1, true),
        ("b", 8, true),
    ] {
        assert_eq!(
            stable[&(s.to_string(), g)],
            want,
            "scheduler {s} on {g} GPUs"
        );
    }
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    let (one, report) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_quick(one.path(), report.path(), "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(quick_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        2 * expected_files().len() + 1,
        "the seed's 10 CSVs, our 4 (6 with the shared inputs), a meta file each, and the manifest: {files:?}"
    );
    for f in files {
        let other = one.path().join(f.file_name().unwrap());
        assert!(
            std::fs::read(&f).unwrap() == std::fs::read(&other).unwrap(),
            "{} differs",
            f.display()
        );
    }
}

#[test]
fn only_runs_one_experiment_and_bad_names_exit_2_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let o = reproduce(dir.path(), &["--only", "sensitivity_regime"], "2");
    assert!(o.status.success());
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "data_sensitivity_regime.csv",
            "data_sensitivity_regime.meta.json",
            "manifest.json"
        ]
    );

    let empty = tempfile::tempdir().unwrap();
    let o = reproduce(empty.path(), &["--only", "capacity"], "2");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("capacity_vs_k"), "{err}");
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

/// A folder that cannot take the output is bad input found before the simulation: exit 2
/// naming the flag, the cause said once, and nothing created.
#[test]
fn an_unusable_output_folder_exits_2_before_simulating() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    let mut perms = std::fs::metadata(&read_only).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&read_only, perms).unwrap();
    // Root writes anyway, and then so does reproduce.
    let enforced = std::fs::write(read_only.join("probe"), b"").is_err();
    let mut cases = vec![
        ("--out", file.clone(), "not-a-folder is a file"),
        ("--out", file.join("data"), "not-a-folder is a file"),
        ("--report", file.join("report"), "not-a-folder is a file"),
    ];
    if enforced {
        cases.push(("--out", read_only.join("data"), "ermission denied"));
    } else {
        eprintln!("skipping the read-only case: this user writes in read-only folders");
    }
    let fine = dir.path().join("fine");
    for (flag, path, why) in cases {
        let (out, report) = if flag == "--out" {
            (path.clone(), fine.clone())
        } else {
            (fine.clone(), path.clone())
        };
        // The whole study at full scale, minutes of simulation, if the folder were tried
        // only when writing.
        let o = common::output_within(
            common::llmsim()
                .args(["reproduce", "--out"])
                .arg(&out)
                .arg("--report")
                .arg(&report),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|| panic!("{flag} {}: not refused before simulating", path.display()));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("invalid value for {flag}")) && err.contains(why),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "the cause once, on one line: {err}");
        assert!(o.stdout.is_empty());
        assert!(!fine.exists(), "nothing is created");
    }
}

#[test]
fn every_column_is_documented() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/data.md"))
            .unwrap();
    for (name, _) in expected_files() {
        assert!(docs.contains(name), "docs/data.md does not describe {name}");
        for col in Csv::read(name).header {
            assert!(
                docs.contains(&format!("`{col}`")),
                "docs/data.md lacks `{col}` of {name}"
            );
        }
    }
}

/// The Mooncake replays: nothing hits with the cache off; with it on, every router gives
/// one GPU the same hits (routing is moot), and on 8 GPUs the prefix-aware router hits
/// more than round-robin, which scatters each prefix over the GPUs.
#[test]
fn prefix_caching_hits_only_with_the_cache_and_most_with_prefix_routing() {
    if !have_shared() {
        return;
    }
    let csv = Csv::read("data_prefix_caching.csv");
    let (p, c, r, g, h) = (
        csv.idx("policy"),
        csv.idx("prefix_cache"),
        csv.idx("router"),
        csv.idx("gpus"),
        csv.idx("token_hit_rate"),
    );
    let hit = |policy: &str, router: &str, gpus: &str| -> f64 {
        let row = csv
            .rows
            .iter()
            .find(|x| x[p] == policy && x[c] == "true" && x[r] == router && x[g] == gpus)
            .unwrap_or_else(|| panic!("no row {policy} {router} {gpus}"));
        row[h].parse().unwrap()
    };
    for row in csv.rows.iter().filter(|x| x[c] == "false") {
        assert_eq!(row[h], "0", "{row:?}");
    }
    for policy in ["vllm", "sarathi"] {
        let one = hit(policy, "round-robin", "1");
        assert!(one > 0.0);
        for router in ["jsq", "session", "prefix-aware"] {
            assert_eq!(hit(policy, router, "1"), one, "{policy} {router}");
        }
        let (scattered, kept) = (
            hit(policy, "round-robin", "8"),
            hit(policy, "prefix-aware", "8"),
        );
        assert!(kept > scattered, "{policy}: {kept} vs {scattered}");
    }
}

/// The multi-turn study: every point hits (turns resend their conversation), the largest
/// cache hits more than the smallest and the shortest think time more than the longest,
/// each by more than the two points' 99.9% intervals, both sweeps monotone within them,
/// and no point above the hit rate of every previous prompt cached.
#[test]
fn multiturn_hit_rate_falls_with_think_time_and_rises_with_cache() {
    let name = "data_multiturn.csv";
    let n = reps(name);
    let csv = Csv::read(name);
    let (sweep, mean, ci) = (
        csv.idx("sweep"),
        csv.idx("hit_rate_mean"),
        csv.idx("hit_rate_ci"),
    );
    for kind in ["think", "cache"] {
        let pts: Vec<(f64, f64)> = csv
            .rows
            .iter()
            .filter(|r| r[sweep] == kind)
            .map(|r| (r[mean].parse().unwrap(), r[ci].parse().unwrap()))
            .collect();
        assert_eq!(pts.len(), 5, "{kind}");
        assert!(pts.iter().all(|&(m, _)| m > 0.0 && m < 1.0), "{pts:?}");
        let ((lo, lo_ci), (hi, hi_ci)) = if kind == "think" {
            (pts[pts.len() - 1], pts[0])
        } else {
            (pts[0], pts[pts.len() - 1])
        };
        let tol = pass_tolerance(lo_ci, n) + pass_tolerance(hi_ci, n);
        assert!(hi - lo > tol, "{kind}: {hi} vs {lo} (tolerance {tol})");
        // Monotone from point to point, within the intervals: each session brings all its
        // turns, whatever the think time.
        for w in pts.windows(2) {
            let tol = pass_tolerance(w[0].1, n) + pass_tolerance(w[1].1, n);
            let (before, after) = if kind == "think" {
                (w[1].0, w[0].0)
            } else {
                (w[0].0, w[1].0)
            };
            assert!(before <= after + tol, "{kind}: {pts:?}");
        }
        // Prompts of 640, 897, 1,154 and 1,411 tokens: a turn reuses at most the previous
        // prompt's whole 16-token blocks (512, 640, 896, 1,152 tokens), a bound the largest
        // cache reaches but for each system prompt's first use.
        let ceiling = 3200.0 / 4102.0;
        assert!(pts.iter().all(|&(m, _)| m <= ceiling), "{pts:?}");
        if kind == "cache" {
            assert!(pts[pts.len() - 1].0 > ceiling - 0.01, "{pts:?}");
        }
    }
}

/// The trace replays: per (trace, speedup, policy), the size flagged minimal meets both
/// SLOs and every smaller size tried does not, the size just below it was tried (unless the
/// search started there), a search that found none reached 16 GPUs, and adding GPUs never
/// makes p99 TTFT worse by more than the two sizes' 99.9% intervals.
#[test]
fn trace_capacity_minimal_gpus_meet_the_slo_and_one_fewer_does_not() {
    if !have_shared() {
        return;
    }
    let name = "data_trace_capacity.csv";
    let n = reps(name);
    let csv = Csv::read(name);
    let (trace, policy) = (csv.idx("trace"), csv.idx("policy"));
    type Rows<'a> = Vec<HashMap<&'a str, f64>>;
    let mut groups: HashMap<(String, String, String), Rows> = HashMap::new();
    let speed = csv.idx("speedup");
    for (row, r) in csv.rows.iter().zip(csv.records()) {
        groups
            .entry((row[trace].clone(), row[speed].clone(), row[policy].clone()))
            .or_default()
            .push(r);
    }
    // 2 traces x 2 speeds x 5 policies.
    assert_eq!(groups.len(), 20, "{:?}", groups.keys());
    for (key, rows) in &groups {
        for r in rows {
            let meets = r["p99_ttft"] < 1.0 && r["p99_tbt"] < 0.1;
            assert_eq!(
                r["meets_slo"] == 1.0,
                meets,
                "{key:?} at {} GPUs",
                r["gpus"]
            );
        }
        let gpus: Vec<f64> = rows.iter().map(|r| r["gpus"]).collect();
        assert!(gpus.windows(2).all(|w| w[0] < w[1]), "{key:?}: {gpus:?}");
        let minimal: Vec<&HashMap<&str, f64>> =
            rows.iter().filter(|r| r["min_gpus"] == 1.0).collect();
        assert!(minimal.len() <= 1, "{key:?}");
        match minimal.first() {
            Some(m) => {
                assert_eq!(m["meets_slo"], 1.0, "{key:?}");
                for r in rows.iter().filter(|r| r["gpus"] < m["gpus"]) {
                    assert_eq!(r["meets_slo"], 0.0, "{key:?} at {} GPUs", r["gpus"]);
                }
                if m["gpus"] > gpus[0] {
                    assert!(gpus.contains(&(m["gpus"] - 1.0)), "{key:?}: {gpus:?}");
                } else if key.2 != "a" {
                    assert_eq!(m["gpus"], 1.0, "{key:?}");
                }
            }
            None => {
                assert_eq!(*gpus.last().unwrap(), 16.0, "{key:?}: {gpus:?}");
                assert!(rows.iter().all(|r| r["meets_slo"] == 0.0), "{key:?}");
            }
        }
        for w in rows.windows(2) {
            let tol =
                pass_tolerance(w[0]["p99_ttft_ci"], n) + pass_tolerance(w[1]["p99_ttft_ci"], n);
            assert!(
                w[1]["p99_ttft"] <= w[0]["p99_ttft"] + tol,
                "{key:?}: p99 TTFT {} on {} GPUs, {} on {}",
                w[0]["p99_ttft"],
                w[0]["gpus"],
                w[1]["p99_ttft"],
                w[1]["gpus"]
            );
        }
    }
}

/// The roofline file has one row per profile row, its errors are its predictions' errors,
/// its summary matches the rows, and the fitted efficiencies are the built-in ones.
#[test]
fn roofline_rows_errors_and_efficiencies_are_consistent() {
    let Some(profile) = common::shared("calibration/h200_llama-3.1-8b.csv") else {
        return;
    };
    let measured = llmsim_study::files::read_profile(&profile).unwrap();
    let csv = Csv::read("data_roofline.csv");
    let records = csv.records();
    assert_eq!(records.len(), measured.len());
    let mut abs_err = 0.0;
    for (r, m) in records.iter().zip(&measured) {
        assert_eq!(r["measured_ms"], m.median_ms);
        for (pred, err) in [
            ("profiled_ms", "profiled_error"),
            ("roofline_ms", "roofline_error"),
        ] {
            let want = (r[pred] - r["measured_ms"]) / r["measured_ms"];
            assert!(
                (r[err] - want).abs() < 1e-12,
                "{pred}: {} vs {want}",
                r[err]
            );
        }
        abs_err += r["roofline_error"].abs();
    }
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(quick_dir().join("data_roofline.meta.json")).unwrap(),
    )
    .unwrap();
    let p = &meta["parameters"];
    let mape = p["roofline_fit"]["mape"].as_f64().unwrap();
    assert!((mape - abs_err / records.len() as f64).abs() < 1e-12);
    let eff = llmsim::cost::Efficiency::H200_LLAMA_3_1_8B;
    for (key, want) in [
        ("compute", eff.compute),
        ("memory", eff.memory),
        ("overhead", eff.overhead),
    ] {
        let got = p["roofline_efficiency"][key].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-9 * want, "{key}: {got} vs {want}");
    }
}

/// With the shared inputs the report has the trace and prefix-caching sections before the
/// limitations, with their figures.
#[test]
fn the_report_has_the_trace_sections_with_the_shared_inputs() {
    if !have_shared() {
        return;
    }
    let text = std::fs::read_to_string(quick_dirs().1.path().join("REPORT.md")).unwrap();
    let limits = text.find("\n## Limitations").unwrap();
    for heading in [
        "\n## Real GPUs and real traffic\n",
        "\n## Prefix caching on the Mooncake trace\n",
    ] {
        let at = text.find(heading).expect(heading);
        assert!(at < limits, "{heading}");
    }
    for fig in [
        "trace_conv_ttft",
        "trace_conv_tbt",
        "prefix_hit_rate",
        "prefix_ttft",
    ] {
        assert!(text.contains(&format!("figures/{fig}.svg")));
        assert!(
            quick_dirs()
                .1
                .path()
                .join(format!("figures/{fig}.svg"))
                .is_file()
        );
    }
}

/// Without the shared inputs the two experiments are skipped with a message naming the
/// missing file, and the report lacks their section; under LLMSIM_REQUIRE_SHARED=1, or when
/// named with --only, a missing input is an error.
#[test]
fn missing_shared_inputs_skip_the_experiments_unless_required() {
    let (out, report) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nowhere = out.path().join("no-shared-here");
    let run = |extra: &[&str], require: bool| {
        let mut cmd = common::llmsim();
        cmd.args(["reproduce", "--quick", "--out"])
            .arg(out.path())
            .arg("--shared")
            .arg(&nowhere)
            .args(extra)
            .env_remove("LLMSIM_REQUIRE_SHARED");
        if require {
            cmd.env("LLMSIM_REQUIRE_SHARED", "1");
        }
        cmd.output().unwrap()
    };
    for only in ["roofline", "trace_capacity"] {
        let o = run(&["--only", only], false);
        assert_eq!(o.status.code(), Some(2), "{only}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--shared") && err.contains("LLMSIM_SHARED"),
            "{err}"
        );
        let file = if only == "roofline" {
            "h200_llama-3.1-8b.csv"
        } else {
            "AzureLLMInferenceTrace_conv.csv"
        };
        assert!(err.contains(file), "{err}");
    }
    let o = run(&[], true);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("LLMSIM_REQUIRE_SHARED"), "{err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

    // A file left by an earlier run with the inputs must not survive into this run's data.
    std::fs::write(out.path().join("data_roofline.csv"), "stale").unwrap();
    let o = run(&["--report", report.path().to_str().unwrap()], false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("skipping trace_capacity") && err.contains("AzureLLMInferenceTrace_conv.csv"),
        "{err}"
    );
    assert!(err.contains("skipping roofline"), "{err}");
    // The seed's ten and our seven, each with its meta file, and the manifest.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 35);
    let text = std::fs::read_to_string(report.path().join("REPORT.md")).unwrap();
    assert!(!text.contains("Real GPUs and real traffic"));
    assert!(!text.contains("Prefix caching on the Mooncake trace"));
}

/// A malformed shared input is bad input: exit 2 naming the file, line and field, and no
/// file written.
#[test]
fn a_malformed_shared_trace_exits_2_and_writes_nothing() {
    let (shared, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let traces = shared.path().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    let good = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n";
    std::fs::write(traces.join("AzureLLMInferenceTrace_code.csv"), good).unwrap();
    let bad = format!("{good}2023-11-16 18:15:51.0000000,many,3\n");
    std::fs::write(traces.join("AzureLLMInferenceTrace_conv.csv"), bad).unwrap();
    let o = common::llmsim()
        .args(["reproduce", "--quick", "--only", "trace_capacity", "--out"])
        .arg(out.path())
        .arg("--shared")
        .arg(shared.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("AzureLLMInferenceTrace_conv.csv") && err.contains("ContextTokens"),
        "{err}"
    );
    assert!(err.contains('4'), "the message names line 4: {err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { files_under(&p) } else { vec![p] }
        })
        .collect()
}

/// SIGINT or SIGTERM during a run: exit 130, no temporary file left, and a data folder
/// without a manifest, which `llmsim report` refuses (exit 2) instead of reporting on it.
#[test]
fn an_interrupted_reproduce_leaves_no_temporary_and_a_folder_report_refuses() {
    for (signal, after_ms) in [("INT", 1_000), ("TERM", 2_500)] {
        let dir = tempfile::tempdir().unwrap();
        let (data, report) = (dir.path().join("data"), dir.path().join("report"));
        // Full scale: minutes of work, so the signal always comes mid-run.
        let mut child = common::llmsim()
            .args(["reproduce", "--out"])
            .arg(&data)
            .arg("--report")
            .arg(&report)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        let killed = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "SIG{signal}: still running"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(130), "SIG{signal}: {err}");
        assert!(err.contains("interrupted"), "{err}");
        let left = files_under(dir.path());
        assert!(
            left.iter().all(|f| !f.to_string_lossy().ends_with(".tmp")),
            "SIG{signal} left {left:?}"
        );
        assert!(!data.join("manifest.json").exists());
        std::fs::create_dir_all(&data).unwrap();
        let o = common::llmsim()
            .args(["report", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&report)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("manifest.json: missing"), "{err}");
    }
}

/// The hardware study: every model is studied, its price per million tokens is the
/// replica's hourly price over its token rate, and twice the GPUs hold more KV tokens.
#[test]
fn hardware_prices_follow_the_rates() {
    let csv = Csv::read("data_hardware.csv");
    let rows = csv.records();
    let text = |i: usize, col: &str| csv.rows[i][csv.idx(col)].clone();
    for model in ["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b"] {
        assert!(
            (0..rows.len()).any(|i| text(i, "model") == model),
            "{model}"
        );
    }
    for (i, r) in rows.iter().enumerate() {
        assert!(
            r["max_stable_rps"] > 0.0 && r["tokens_per_s"] > 0.0,
            "row {i}"
        );
        let want = r["usd_per_hour"] / 3600.0 / r["tokens_per_s"] * 1e6;
        assert!((r["usd_per_m_tokens"] / want - 1.0).abs() < 1e-9, "row {i}");
        for (j, s) in rows.iter().enumerate() {
            let same = ["model", "gpu", "scheduler"]
                .iter()
                .all(|c| text(i, c) == text(j, c));
            if same && s["tp"] == 2.0 * r["tp"] {
                assert!(s["kv_tokens"] > r["kv_tokens"], "rows {i}, {j}");
            }
        }
    }
}
