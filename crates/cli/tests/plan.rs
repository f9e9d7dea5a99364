//! The capacity planner (`llmsim::plan`, `llmsim plan`): its capacities against closed
//! forms, its GPU count against Erlang C, its answer's stability across seeds, bad input,
//! output files and determinism.

mod common;

use llmsim::config::Config;
use llmsim::dist::LengthDist;
use llmsim::plan::{Bound, Metric, Plan, PlanResult, Slo, Space};
use llmsim::router::RouterSpec;
use llmsim::scheduler::SchedulerKind;
use llmsim::theory;
use llmsim_study::files::Disk;

fn solve(plan: &Plan) -> (Vec<llmsim::plan::Deployment>, PlanResult) {
    let (d, skipped) = plan.deployments(&Disk).expect("a valid plan");
    let r = plan.run(&d, skipped, &|_| {});
    (d, r)
}

/// With stability as the only objective, the goodput capacity is the largest stable rate,
/// which for Schedulers A and B under the linear cost is the closed form. The run above it is
/// refused without simulation (a hard limit), so the check is that the search does not stop
/// short: the closed form lies within the capacity's interval, widened by the search's
/// resolution and the growth test's (it flags growth beyond 2% of the arrivals, so a rate
/// within about 2% of capacity can pass or fail).
#[test]
fn stable_capacity_of_schedulers_a_and_b_is_the_closed_form() {
    // B's queue at 96% of capacity is long enough to look like growth in a short run: it
    // needs 100,000 requests to come within the growth test's 2%.
    for (scheduler, k, requests) in [
        (SchedulerKind::A, None, 20_000),
        (SchedulerKind::B, Some(4), 100_000),
    ] {
        let plan = Plan {
            base: Config {
                scheduler,
                k,
                requests: Some(requests),
                ..Config::default()
            },
            reps: 4,
            rel_tol: 0.01,
            ..Plan::default()
        };
        let (d, r) = solve(&plan);
        let theory = d[0].built.run.capacity().expect("a closed form");
        let p = &r.points[0];
        let slack = p.capacity_ci95 + (p.resolution + 0.02) * theory;
        assert!(
            (p.capacity_rps - theory).abs() <= slack,
            "{scheduler}: planner {} ± {} against closed form {theory}",
            p.capacity_rps,
            p.capacity_ci95
        );
        assert!(p.capacity_rps <= theory, "above a hard limit");
    }
}

/// The M/M/c queue: central router (one shared FCFS line), Scheduler A, prompts of 128
/// tokens and no decode, exponential iteration costs, so each request's service is one
/// exponential prefill. Asked for p99 TTFT (the response time) at most a bound halfway (on a
/// log scale) between the Erlang-C p99 of two neighbouring GPU counts, the planner must pick
/// the larger count, with one dollar per GPU-hour.
#[test]
fn gpu_count_for_a_p99_target_is_the_erlang_c_answer() {
    let lambda = 20.0;
    let base = Config {
        prompt: Some(LengthDist::Fixed(128)),
        decode: Some(LengthDist::Fixed(0)),
        router: RouterSpec::Central,
        requests: Some(20_000),
        ..Config::default()
    };
    let mu = 1.0 / (0.01 + 0.001 * 128.0);
    let p99 = |c: usize| theory::mmc_response_quantile(c, lambda, mu, 0.99);
    // The smallest stable count below 95% load, heavily loaded so that its p99 is far from
    // the next count's: the bound sits between them.
    let c_star = (1..20).find(|&c| lambda < 0.95 * c as f64 * mu).unwrap() + 1;
    let bound = (p99(c_star - 1) * p99(c_star)).sqrt();
    assert!(p99(c_star - 1) > 1.3 * bound && p99(c_star) < bound / 1.3);
    let plan = Plan {
        base,
        slo: Slo {
            bounds: vec![Bound {
                metric: Metric::Ttft,
                percentile: 99,
                max_s: bound,
            }],
            ..Slo::default()
        },
        space: Space {
            gpu_counts: (1..=8).collect(),
            ..Space::default()
        },
        target_rate: Some(lambda),
        ..Plan::default()
    };
    let (_, r) = solve(&plan);
    let picked = &r.points[r.cheapest.expect("some count meets the bound")];
    assert_eq!(
        picked.replicas as usize,
        c_star,
        "Erlang C: p99 {:?} around bound {bound}",
        (p99(c_star - 1), p99(c_star))
    );
}

/// Another seed picks the same deployment, or one whose capacity interval overlaps.
#[test]
fn another_seed_picks_the_same_or_an_overlapping_deployment() {
    let plan = |seed| Plan {
        base: Config {
            requests: Some(5_000),
            seed,
            ..Config::default()
        },
        slo: Slo {
            bounds: vec!["ttft:p99:3".parse().unwrap()],
            ..Slo::default()
        },
        space: Space {
            schedulers: vec![SchedulerKind::A, SchedulerKind::B],
            gpu_counts: vec![1, 2, 3, 4],
            ks: vec![2, 8],
            ..Space::default()
        },
        target_rate: Some(3.0),
        ..Plan::default()
    };
    let (_, a) = solve(&plan(42));
    let (_, b) = solve(&plan(7));
    let (pa, pb) = (
        &a.points[a.cheapest.unwrap()],
        &b.points[b.cheapest.unwrap()],
    );
    let overlap = (pa.capacity_rps - pb.capacity_rps).abs() <= pa.capacity_ci95 + pb.capacity_ci95;
    assert!(
        pa.index == pb.index || overlap,
        "{} ({} ± {}) against {} ({} ± {})",
        pa.label,
        pa.capacity_rps,
        pa.capacity_ci95,
        pb.label,
        pb.capacity_rps,
        pb.capacity_ci95
    );
}

fn plan_cli(args: &[&str]) -> std::process::Output {
    common::llmsim()
        .arg("plan")
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn bad_input_exits_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "[space]\nnope = 1\n").unwrap();
    let bad_toml = bad_toml.to_str().unwrap();
    for (args, flag) in [
        (vec!["--slo", "ttft:p42:1"], "--slo"),
        (vec!["--slo", "ttft:p99"], "--slo"),
        (vec!["--slo", "ttft:p99:-1"], "--slo"),
        (vec!["--ks", "0", "--schedulers", "b"], "--ks"),
        (vec!["--gpu-counts", "0"], "--gpu-counts"),
        (vec!["--gpu-counts", "3-1"], "--gpu-counts"),
        (
            vec!["--attainment", "1.5", "--slo", "ttft:p99:1"],
            "--attainment",
        ),
        (vec!["--attainment", "0.9"], "--attainment"),
        (vec!["--target-rate", "0"], "--target-rate"),
        (vec!["--gpu-types", "x=nope.toml@1"], "--cost"),
        (vec!["--gpu-types", "x=linear@0"], "--gpu-types"),
        (vec!["--gpu-types", "x=linear"], "--gpu-types"),
        (vec!["--splits", "1-2"], "--splits"),
        (vec!["--preemptions", "drop"], "--preemptions"),
        (vec!["--reps", "0"], "--reps"),
        (vec!["--rel-tol", "0.9"], "--rel-tol"),
        (vec!["--plan", "/nonexistent/plan.toml"], "--plan"),
        (vec!["--plan", bad_toml], "--plan"),
        (vec!["--workload", "azure:/nonexistent.csv"], "--workload"),
    ] {
        let out = plan_cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} should name {flag}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A deployment whose knobs do not build (vllm prefills whole 128-token prompts, which a
/// 64-token budget cannot hold) is skipped with its reason in the table, the CSV and the
/// JSON; the plan fails, naming the flag, only when no deployment builds.
#[test]
fn deployments_that_do_not_build_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let args = |budgets: &'static str, schedulers: &'static str| {
        vec![
            "--requests",
            "1000",
            "--max-seqs",
            "32",
            "--schedulers",
            schedulers,
            "--token-budgets",
            budgets,
            "--reps",
            "2",
            "--slo",
            "ttft:p99:3",
        ]
    };
    let mut table_args = args("64,256", "vllm,sarathi");
    table_args.extend(["--out", dir.path().to_str().unwrap()]);
    let out = plan_cli(&table_args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Skipped, their settings do not build: 1 of 4 deployments")
            && text.contains("skipped   linear vllm x1 round-robin tokens=64")
            && text.contains("max-batched-tokens: "),
        "{text}"
    );
    let csv = std::fs::read_to_string(dir.path().join("plan_skipped.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[1].starts_with("linear vllm x1 round-robin tokens=64,max-batched-tokens,"));
    let mut json_args = args("64,256", "vllm,sarathi");
    json_args.push("--json");
    let r: PlanResult = serde_json::from_slice(&plan_cli(&json_args).stdout).unwrap();
    assert_eq!(r.points.len(), 3);
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].field, "max-batched-tokens");
    let none = plan_cli(&args("64", "vllm"));
    let err = String::from_utf8_lossy(&none.stderr);
    assert_eq!(none.status.code(), Some(2), "{err}");
    assert!(err.contains("--max-batched-tokens"), "{err}");
}

/// A small search's files and JSON, identical whatever the thread count.
#[test]
fn writes_csvs_and_json_the_same_on_any_thread_count() {
    let run = |threads: &str, dir: &std::path::Path| {
        let out = common::succeed(
            common::llmsim()
                .env("RAYON_NUM_THREADS", threads)
                .args([
                    "plan",
                    "--requests",
                    "2000",
                    "--schedulers",
                    "a,b",
                    "--gpu-counts",
                    "1-3",
                    "--slo",
                    "ttft:p99:3",
                    "--target-rate",
                    "2",
                    "--json",
                    "--out",
                ])
                .arg(dir),
        );
        out.stdout
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = run("1", a.path());
    let two = run("2", b.path());
    assert_eq!(one, two);
    let r: PlanResult = serde_json::from_slice(&one).unwrap();
    assert_eq!(r.points.len(), 6);
    let cheapest = &r.points[r.cheapest.unwrap()];
    assert!(cheapest.meets_target && cheapest.capacity_rps >= 2.0 * 0.9);
    for name in ["plan_points.csv", "plan_front.csv"] {
        let x = std::fs::read(a.path().join(name)).unwrap();
        assert_eq!(x, std::fs::read(b.path().join(name)).unwrap(), "{name}");
    }
    let points = std::fs::read_to_string(a.path().join("plan_points.csv")).unwrap();
    assert_eq!(points.lines().count(), 7);
    assert!(points.starts_with("index,label,gpu_type,"));
    let front = std::fs::read_to_string(a.path().join("plan_front.csv")).unwrap();
    assert_eq!(front.lines().count(), r.front.len() + 1);
    let leftovers: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

/// `--html` writes one self-contained page with the Pareto plot and the latency curves.
#[test]
fn html_page_is_self_contained_with_both_figures() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("plan.html");
    let out = plan_cli(&[
        "--requests",
        "2000",
        "--schedulers",
        "b",
        "--gpu-counts",
        "1-2",
        "--slo",
        "ttft:p99:3",
        "--target-rate",
        "2",
        "--html",
        page.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    for fig in ["plan_pareto", "plan_curves"] {
        assert!(
            html.contains(&format!("<figure id=\"fig-{fig}\"><svg")),
            "{fig}"
        );
    }
    for needle in ["<img", "<script", "src=", "NaN", "{{"] {
        assert!(!html.contains(needle), "{needle}");
    }
    assert!(html.contains("The cheapest deployment meeting the objectives"));
}
