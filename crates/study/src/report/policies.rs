//! The real-engine policies section: how far each policy's stable throughput reaches towards
//! the capacity bound, and the latencies each delivers at the same loads.

use std::path::Path;

use super::data::{self, Table};
use super::figures::{chart, hline};
use super::plot::{Point, Series, Style};
use super::study::sig;
use super::template::{self, Values};
use super::{ReportError, Section};

const TEMPLATE: &str = "## The schedulers real engines use

Beyond the seed's two schedulers, llmsim models the policies of real serving engines, each
with a paged KV cache of finite size: static batching (FasterTransformer), Orca's
iteration-level scheduling, vLLM (prefill-first continuous batching with preemption by
recompute), Sarathi-Serve's chunked prefills under a token budget, and decode-first. All
share one batch cost, so differences are the policy's.

**Capacity.** Li, Dai and Peng (2025) bound the throughput of any policy whose largest
batch of `b` tokens takes `t_b` seconds: at most `b / t_b` tokens per second, here
{{bound}} requests/s for prompts of `{{prompt}}` and outputs of `{{decode}}` tokens with
`{{cost}}` and `b` = {{b}}. They prove that work-conserving mixed batching reaches it and
that static batching and prefill-prioritizing vLLM can fall short. Each policy's largest
stable arrival rate, found by bisection ({{reps}} replications of {{requests}} requests),
as a fraction of the bound:

{{capacity_table}}

With ample memory ({{ample}}), Orca reaches {{orca}} and Sarathi {{sarathi}} of the bound,
vLLM {{vllm}} and static batching {{static}}. {{verdict}} With less memory the KV cache, not
compute, limits every policy.

![Largest stable rate as a fraction of the bound, per policy and memory, with 95% intervals.](figures/policy_capacity.svg)

**Latency at the same load.** At {{load}} of the bound with ample memory, on the same
requests:

{{comparison_table}}

![p99 TTFT and p99 TBT per policy at the same load (ample memory), log scale.](figures/policy_latency.svg)
";

/// The section, or `None` when the policy files are absent.
pub fn section(dir: &Path) -> Result<Option<Section>, ReportError> {
    if !dir.join("data_policy_capacity.csv").exists() {
        return Ok(None);
    }
    let cap = Table::read(dir, "data_policy_capacity.csv")?;
    let cmp = Table::read(dir, "data_policy_comparison.csv")?;
    const META: &str = "data_policy_capacity.meta.json";
    let p = data::read_meta(dir, META)?;
    let mut v = Values::new();
    for (name, key) in [
        ("prompt", "/prompt"),
        ("decode", "/decode"),
        ("cost", "/cost"),
        ("b", "/max_batched_tokens"),
        ("reps", "/study/reps"),
        ("requests", "/study/requests_per_rep"),
    ] {
        let text = match p.pointer(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(x @ serde_json::Value::Number(_)) => x.to_string(),
            _ => {
                return Err(data::DataError::Meta {
                    path: dir.join(META),
                    why: format!("no value at parameters{key}"),
                }
                .into());
            }
        };
        v.insert(name.into(), text);
    }
    v.insert("bound".into(), sig(cap.numbers("bound_rps")?[0]));

    let memories: Vec<String> = {
        let mut m = cap.text("memory")?;
        m.dedup();
        m
    };
    let ample = memories.first().cloned().unwrap_or_default();
    v.insert("ample".into(), ample.clone());
    let policies: Vec<String> = cap.filter("memory", &ample)?.text("policy")?;

    let mut rows = format!(
        "| policy | {} |\n|---|{}\n",
        memories.join(" | "),
        "---|".repeat(memories.len())
    );
    let mut series = Vec::new();
    for (j, m) in memories.iter().enumerate() {
        let t = cap.filter("memory", m)?;
        let (f, ci) = (t.numbers("fraction_of_bound")?, t.numbers("fraction_ci95")?);
        let shift = (j as f64 - (memories.len() - 1) as f64 / 2.0) * 0.12;
        series.push(Series::new(
            format!(
                "{m} ({} KV tokens)",
                t.text("kv_tokens")?.first().cloned().unwrap_or_default()
            ),
            Style::Markers,
            f.iter()
                .zip(&ci)
                .enumerate()
                .map(|(i, (&y, &c))| Point::new(i as f64 + shift, y, c))
                .collect(),
        ));
    }
    for (i, policy) in policies.iter().enumerate() {
        let mut cells = Vec::new();
        for m in &memories {
            let t = cap.filter("memory", m)?;
            let (f, ci) = (t.numbers("fraction_of_bound")?, t.numbers("fraction_ci95")?);
            cells.push(format!("{} ± {}", sig(f[i]), sig(ci[i])));
        }
        rows.push_str(&format!("| {policy} | {} |\n", cells.join(" | ")));
    }
    v.insert("capacity_table".into(), rows);
    let ample_t = cap.filter("memory", &ample)?;
    let frac = ample_t.numbers("fraction_of_bound")?;
    let of = |name: &str| {
        policies
            .iter()
            .position(|p| p == name)
            .map_or(f64::NAN, |i| frac[i])
    };
    for name in ["orca", "sarathi", "vllm", "static"] {
        v.insert(name.into(), sig(of(name)));
    }
    let mixed = of("orca").min(of("sarathi"));
    let others = of("vllm").max(of("static"));
    v.insert(
        "verdict".into(),
        if mixed > others {
            "This is Li, Dai and Peng's qualitative result: the work-conserving mixed policies outlast vLLM and static batching."
        } else {
            "This does not show Li, Dai and Peng's ordering in our model at these settings."
        }
        .into(),
    );
    series.push(hline("the bound", 1.0, -0.5, policies.len() as f64 - 0.5));
    let mut capc = chart(
        "Largest stable rate against the bound",
        "policy",
        "fraction of the bound",
        series,
    );
    capc.categories = policies.clone();
    capc.y_max = Some(1.3);

    // Latencies at the highest load of the comparison, ample memory.
    let loads = cmp.numbers("load")?;
    let top = loads.iter().copied().fold(f64::MIN, f64::max);
    v.insert("load".into(), sig(top));
    let ample_cmp = cmp.filter("memory", &ample)?;
    let top_text = ample_cmp
        .text("load")?
        .into_iter()
        .find(|l| l.parse::<f64>().ok() == Some(top))
        .unwrap_or_default();
    let at = ample_cmp.filter("load", &top_text)?;
    let names = at.text("policy")?;
    let unstable = at.text("unstable")?;
    let (t99, b99, e99, thr) = (
        at.numbers("ttft_p99")?,
        at.numbers("tbt_p99")?,
        at.numbers("e2e_p99")?,
        at.numbers("throughput_rps")?,
    );
    let mut table = String::from(
        "| policy | throughput (req/s) | p99 TTFT (s) | p99 TBT (s) | p99 E2E (s) | stable |\n|---|---|---|---|---|---|\n",
    );
    for i in 0..at.len() {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            names[i],
            sig(thr[i]),
            sig(t99[i]),
            sig(b99[i]),
            sig(e99[i]),
            if unstable[i] == "true" { "no" } else { "yes" }
        ));
    }
    v.insert("comparison_table".into(), table);
    let pts = |ys: &[f64], shift: f64| {
        ys.iter()
            .enumerate()
            .map(|(i, &y)| Point::new(i as f64 + shift, y, 0.0))
            .collect()
    };
    let mut lat = chart(
        &format!(
            "Tail latency per policy at {} of the bound ({ample})",
            sig(top)
        ),
        "policy",
        "seconds",
        vec![
            Series::new("p99 TTFT", Style::Markers, pts(&t99, -0.1)),
            Series::new("p99 TBT", Style::Markers, pts(&b99, 0.1)),
        ],
    );
    lat.categories = names;
    lat.log_y = true;

    Ok(Some(Section {
        markdown: template::fill(TEMPLATE, &v)?,
        figures: vec![
            ("policy_capacity".into(), capc),
            ("policy_latency".into(), lat),
        ],
    }))
}
