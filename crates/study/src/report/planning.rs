//! The capacity planner's outputs: its points as a CSV [`Table`](crate::experiments::Table)
//! (`llmsim plan --out`, and `data_capacity_planning.csv` of a reproduce run), its figures
//! (the Pareto front of price against latency, latency against rate of the winners), the
//! self-contained page of `llmsim plan --html`, and the report's "Capacity planning"
//! section, read back from the reproduce run's CSV.

use serde_json::{Value, json};
use std::path::Path;

use super::data::Table as DataTable;
use super::figures::chart;
use super::plot::{Chart, PlotError, Point, Series, Style};
use super::study::sig;
use super::template::{self, Values};
use super::{FIGURE_SIZE, ReportError, Section, html};
use crate::experiments::{Cell, Table};
use llmsim::plan::{PlanResult, PointResult};
use llmsim::stats::MeanCi;

/// The CSV columns: [`PointResult`]'s fields, then whether the point is the cheapest and
/// whether it is on the front.
pub const HEADER: [&str; 26] = [
    "index",
    "label",
    "gpu_type",
    "scheduler",
    "router",
    "replicas",
    "gpus_total",
    "usd_per_hour",
    "capacity_rps",
    "capacity_ci95",
    "resolution",
    "capacity_reps",
    "evals",
    "target_rps",
    "pass_fraction",
    "meets_target",
    "ttft_p99",
    "tbt_p99",
    "itl_p99",
    "e2e_p99",
    "latency_s",
    "tokens_per_s",
    "usd_per_m_tokens",
    "unstable_at_target",
    "cheapest",
    "on_front",
];

/// One point's row of [`HEADER`]; a latency no request reached is empty.
fn row(result: &PlanResult, i: usize) -> Vec<Cell> {
    let p: &PointResult = &result.points[i];
    let reps: Vec<String> = p.capacity_reps.iter().map(f64::to_string).collect();
    vec![
        p.index.into(),
        p.label.clone().into(),
        p.gpu_type.clone().into(),
        p.scheduler.clone().into(),
        p.router.clone().into(),
        p.replicas.into(),
        p.gpus_total.into(),
        p.usd_per_hour.into(),
        p.capacity_rps.into(),
        p.capacity_ci95.into(),
        p.resolution.into(),
        reps.join(";").into(),
        p.evals.into(),
        p.target_rps.into(),
        p.pass_fraction.into(),
        p.meets_target.into(),
        Cell::num_or_empty(p.ttft_p99),
        Cell::num_or_empty(p.tbt_p99),
        Cell::num_or_empty(p.itl_p99),
        Cell::num_or_empty(p.e2e_p99),
        Cell::num_or_empty(p.latency_s),
        Cell::num_or_empty(p.tokens_per_s),
        Cell::num_or_empty(p.usd_per_m_tokens),
        p.unstable_at_target.into(),
        (result.cheapest == Some(i)).into(),
        result.front.contains(&i).into(),
    ]
}

/// The points `which` (indices into `result.points`) as a table named `name`.
pub fn table(
    name: &'static str,
    result: &PlanResult,
    which: &[usize],
    meta: Value,
    headline: String,
) -> Table {
    Table {
        name,
        header: HEADER.to_vec(),
        rows: which.iter().map(|&i| row(result, i)).collect(),
        meta,
        headline,
    }
}

/// The deployments the plan skipped (their settings do not build), as a table named
/// `name`: label, the setting at fault (its flag) and why.
pub fn skipped_table(name: &'static str, result: &PlanResult, meta: Value) -> Table {
    Table {
        name,
        header: vec!["label", "field", "reason"],
        rows: result
            .skipped
            .iter()
            .map(|s| {
                vec![
                    s.label.clone().into(),
                    s.field.clone().into(),
                    s.reason.clone().into(),
                ]
            })
            .collect(),
        meta,
        headline: String::new(),
    }
}

/// Price per hour against the front's latency: every deployment meeting the objectives at
/// the target rate, and the front through them.
pub fn pareto_chart(
    usd: &[f64],
    latency: &[f64],
    meets: &[bool],
    front: &[bool],
    metric: &str,
) -> Chart {
    let pick = |keep: &dyn Fn(usize) -> bool| -> Vec<Point> {
        let mut pts: Vec<Point> = (0..usd.len())
            .filter(|&i| keep(i) && latency[i].is_finite())
            .map(|i| Point::new(usd[i], latency[i], 0.0))
            .collect();
        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        pts
    };
    chart(
        "Price against latency at the target rate",
        "price (US dollars per hour)",
        &format!("{metric} at the target rate (s)"),
        vec![
            Series::new("meets the objectives", Style::Markers, pick(&|i| meets[i])),
            Series::new("Pareto front", Style::Simulated, pick(&|i| front[i])),
        ],
    )
}

/// The front's latency against the arrival rate, one series per winner.
pub fn curves_chart(curves: &[(String, Vec<(f64, MeanCi)>)], metric: &str) -> Chart {
    chart(
        "Latency against arrival rate of the front's deployments",
        "arrival rate (requests/s)",
        &format!("{metric} (s)"),
        curves
            .iter()
            .map(|(name, pts)| {
                let points = pts
                    .iter()
                    .filter(|(_, m)| m.mean.is_finite())
                    .map(|&(x, m)| Point::new(x, m.mean, m.ci95))
                    .collect();
                Series::new(name.clone(), Style::Simulated, points)
            })
            .collect(),
    )
}

/// The Markdown table of `which`'s points.
fn markdown_rows(result: &PlanResult, which: &[(String, usize)]) -> String {
    let mut t = String::from(
        "| | deployment | GPUs | $/hour | capacity (req/s, 95%) | p99 TTFT (s) | p99 TBT (s) | $/M tokens |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (tag, i) in which {
        let p = &result.points[*i];
        t.push_str(&format!(
            "| {tag} | {} | {} | {} | {} ± {} | {} | {} | {} |\n",
            p.label,
            p.gpus_total,
            sig(p.usd_per_hour),
            sig(p.capacity_rps),
            sig(p.capacity_ci95),
            sig(p.ttft_p99),
            sig(p.tbt_p99),
            sig(p.usd_per_m_tokens)
        ));
    }
    t
}

/// The page of `llmsim plan --html`: the question, the answer's tables and both figures,
/// self-contained in the report's style. `curves` are the front's latency-rate curves.
pub fn page(
    question: &str,
    result: &PlanResult,
    curves: &[(String, Vec<(f64, MeanCi)>)],
) -> Result<String, PlotError> {
    let mut winners: Vec<(String, usize)> = Vec::new();
    if let Some(i) = result.cheapest {
        winners.push(("cheapest".into(), i));
    }
    winners.extend(result.runners_up.iter().map(|&i| ("runner-up".into(), i)));
    let front: Vec<(String, usize)> = result.front.iter().map(|&i| ("front".into(), i)).collect();
    let answer = match result.cheapest {
        Some(i) => format!(
            "The cheapest deployment meeting the objectives at {} requests/s is **{}**, at ${} per hour.",
            sig(result.target_rps),
            result.points[i].label,
            sig(result.points[i].usd_per_hour)
        ),
        None => format!(
            "No deployment searched meets the objectives at {} requests/s.",
            sig(result.target_rps)
        ),
    };
    let metric = &result.front_latency;
    let markdown = format!(
        "# Capacity plan\n\n{question}\n\n{answer}\n\n## Cheapest and runners-up\n\n{}\n## Pareto front\n\n{}\n\
![Price per hour against {metric} at the target rate: every deployment meeting the objectives, and the front.](figures/plan_pareto.svg)\n\n\
![{metric} against the arrival rate for the front's deployments (mean and 95% interval over replications).](figures/plan_curves.svg)\n\n\
{} deployments were searched; `--out` writes every one to `plan_points.csv`.{}\n",
        markdown_rows(result, &winners),
        markdown_rows(result, &front),
        result.points.len(),
        match result.skipped.len() {
            0 => String::new(),
            n => format!(
                " {n} more were skipped because their settings do not build (`plan_skipped.csv`)."
            ),
        }
    );
    let flags = |f: &dyn Fn(&PointResult, usize) -> bool| -> Vec<bool> {
        result
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| f(p, i))
            .collect()
    };
    let usd: Vec<f64> = result.points.iter().map(|p| p.usd_per_hour).collect();
    let lat: Vec<f64> = result.points.iter().map(|p| p.latency_s).collect();
    let pareto = pareto_chart(
        &usd,
        &lat,
        &flags(&|p, _| p.meets_target),
        &flags(&|_, i| result.front.contains(&i)),
        metric,
    );
    let figures = vec![
        (
            "plan_pareto".to_string(),
            pareto.to_svg(FIGURE_SIZE.0, FIGURE_SIZE.1)?,
        ),
        (
            "plan_curves".to_string(),
            curves_chart(curves, metric).to_svg(FIGURE_SIZE.0, FIGURE_SIZE.1)?,
        ),
    ];
    Ok(html::page("Capacity plan", &markdown, &figures))
}

/// The planner's question in words, for pages and metas.
pub fn describe(plan: &llmsim::plan::Plan, result: &PlanResult) -> Value {
    json!({
        "study": {
            "seed": plan.base.seed,
            "reps": plan.reps,
            "requests_per_rep": plan.base.requests,
            "warmup_requests": plan.base.warmup,
        },
        "target_rps": result.target_rps,
        "slo": plan.slo,
        "space": plan.space,
        "rel_tol": plan.rel_tol,
        "workload": plan.base.workload.to_string(),
    })
}

const TEMPLATE: &str = "## Capacity planning

`llmsim plan` answers the question a serving simulator is usually asked: which deployment
(GPU count, policy, knobs, router) serves a workload within its latency objectives at the
lowest price. For each deployment it finds the *goodput capacity*, the largest arrival rate
at which the objectives hold, by a search on the rate run separately in each of
{{reps}} replications with that replication's random numbers at every rate (so the
capacities are independent draws and give a 95% interval); closed forms bound the search
from above where they exist, and a family of deployments differing only in GPU count is
searched in increasing count from the line through the previous counts' capacities. Here
the seed's workload and cost model, {{deployments}} deployments ({{space}}), p99 TTFT at
most {{ttft}} s at {{target}} requests/s, one dollar per GPU-hour; the search took
{{evals}} simulations.

{{table}}
{{meeting}} of the {{deployments}} deployments meet the objective at the target rate; the
cheapest is {{cheapest}}, and the table shows it with the Pareto front.

![Price per hour against p99 TTFT at the target rate: every deployment meeting the objective, and the Pareto front.](figures/capacity_planning_pareto.svg)
";

/// The section, or `None` when the planning experiment's file is absent.
pub fn section(dir: &Path) -> Result<Option<Section>, ReportError> {
    const FILE: &str = "data_capacity_planning.csv";
    if !dir.join(FILE).exists() {
        return Ok(None);
    }
    let t = DataTable::read(dir, FILE)?;
    // The experiment's parameters (read_meta returns them).
    let p = &super::data::read_meta(dir, "data_capacity_planning.meta.json")?;
    let labels = t.text("label")?;
    let (usd, lat) = (t.numbers("usd_per_hour")?, t.numbers("latency_s")?);
    let (cap, ci) = (t.numbers("capacity_rps")?, t.numbers("capacity_ci95")?);
    let evals = t.numbers("evals")?;
    let flag = |c: &str| -> Result<Vec<bool>, ReportError> {
        Ok(t.text(c)?.iter().map(|x| x == "true").collect())
    };
    let (meets, cheapest, front) = (flag("meets_target")?, flag("cheapest")?, flag("on_front")?);
    let mut table = String::from(
        "| deployment | $/hour | capacity (req/s, 95%) | p99 TTFT at target (s) | |\n|---|---|---|---|---|\n",
    );
    let mut shown: Vec<usize> = (0..t.len()).filter(|&i| front[i] || cheapest[i]).collect();
    shown.sort_by(|&a, &b| usd[a].total_cmp(&usd[b]).then(lat[b].total_cmp(&lat[a])));
    for i in shown {
        let tag = match (cheapest[i], front[i]) {
            (true, true) => "cheapest, front",
            (true, false) => "cheapest",
            _ => "front",
        };
        table.push_str(&format!(
            "| {} | {} | {} ± {} | {} | {tag} |\n",
            labels[i],
            sig(usd[i]),
            sig(cap[i]),
            sig(ci[i]),
            sig(lat[i]),
        ));
    }
    let text = |x: &Value| x.as_str().map_or_else(|| x.to_string(), String::from);
    let mut v = Values::new();
    v.insert("reps".into(), text(&p["study"]["reps"]));
    v.insert("deployments".into(), t.len().to_string());
    v.insert(
        "target".into(),
        sig(p["target_rps"].as_f64().unwrap_or(f64::NAN)),
    );
    v.insert(
        "ttft".into(),
        sig(p["slo"]["bounds"][0]["max_s"].as_f64().unwrap_or(f64::NAN)),
    );
    let s = &p["space"];
    v.insert(
        "space".into(),
        format!(
            "policies {}, K {}, {} to {} GPUs",
            s["schedulers"].as_array().map_or(String::new(), |a| a
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(", ")),
            s["ks"].as_array().map_or(String::new(), |a| a
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(", ")),
            text(&s["gpu_counts"][0]),
            text(
                &s["gpu_counts"][s["gpu_counts"]
                    .as_array()
                    .map_or(0, |a| a.len().saturating_sub(1))]
            ),
        ),
    );
    v.insert(
        "evals".into(),
        (evals.iter().sum::<f64>() as u64).to_string(),
    );
    v.insert("table".into(), table);
    v.insert(
        "meeting".into(),
        meets.iter().filter(|&&m| m).count().to_string(),
    );
    v.insert(
        "cheapest".into(),
        (0..t.len())
            .find(|&i| cheapest[i])
            .map_or("none".into(), |i| {
                format!("{} (${} per hour)", labels[i], sig(usd[i]))
            }),
    );
    let markdown = template::fill(TEMPLATE, &v)?;
    let pareto = Chart {
        title: "Capacity planning: price against p99 TTFT".into(),
        ..pareto_chart(&usd, &lat, &meets, &front, "p99 TTFT")
    };
    Ok(Some(Section {
        markdown,
        figures: vec![("capacity_planning_pareto".into(), pareto)],
    }))
}
