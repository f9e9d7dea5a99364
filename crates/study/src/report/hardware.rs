//! The section "Other models on other GPUs": the hardware study's largest sustained rates
//! and prices per million output tokens, every number read from `data_hardware.*`.

use std::path::Path;

use super::data::Table;
use super::figures::chart;
use super::plot::{Point, Series, Style};
use super::study::sig;
use super::template::{self, Values};
use super::{ReportError, Section};

const TEMPLATE: &str = "## Other models on other GPUs

The roofline prices any model of the catalogue on any card of it, a replica being `tp`
GPUs joined by tensor parallelism: FLOPs, weights and KV heads divide across them, and
every layer adds two all-reduces of the batch's activations (over NVLink within a node in
`2 log2 tp` latency steps, as vLLM's switch-based all-reduces scale; over PCIe, on cards
without NVLink, a ring's `2 (tp - 1)`). A mixture-of-experts model computes only the
experts each token uses but reads every distinct expert its batch touches,
`E (1 - (1 - k/E)^tokens)` per layer. With the efficiencies fitted on the H200 profile, the largest arrival rate one
replica sustains (prompts of `{{prompt}}`, outputs of `{{decode}}` tokens, bisection on
{{requests}} requests) and the price of a million output tokens at that rate, at the
illustrative prices per GPU-hour {{prices}}:

{{table}}
Per model, the cheapest layout is {{cheapest}}. These are predictions of a model checked
against one card and one model only (see the roofline's limits above), to rank layouts,
not to quote prices.

![Price per million output tokens under Sarathi-Serve, per GPU, at each model's smallest tensor-parallel degree (log scale).](figures/hardware_price.svg)
";

/// The section, or `None` when the hardware study's files are absent.
pub fn section(dir: &Path) -> Result<Option<Section>, ReportError> {
    if !dir.join("data_hardware.csv").exists() {
        return Ok(None);
    }
    let t = Table::read(dir, "data_hardware.csv")?;
    let meta: serde_json::Value = std::fs::read_to_string(dir.join("data_hardware.meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let p = &meta["parameters"];
    let text = |x: &serde_json::Value| x.as_str().map_or_else(|| x.to_string(), String::from);
    let mut v = Values::new();
    v.insert("prompt".into(), text(&p["prompt"]));
    v.insert("decode".into(), text(&p["decode"]));
    v.insert("requests".into(), text(&p["study"]["requests_per_rep"]));
    let prices: Vec<String> = p["usd_per_gpu_hour"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{} ${}", text(&e["gpu"]), text(&e["usd"])))
                .collect()
        })
        .unwrap_or_default();
    v.insert("prices".into(), format!("({})", prices.join(", ")));

    let (models, gpus, scheds) = (t.text("model")?, t.text("gpu")?, t.text("scheduler")?);
    let tps = t.numbers("tp")?;
    let (rps, usd) = (t.numbers("max_stable_rps")?, t.numbers("usd_per_m_tokens")?);
    let mut table = String::from(
        "| model | GPU | tp | vLLM (req/s) | Sarathi (req/s) | vLLM $/M tokens | Sarathi $/M tokens |\n|---|---|---|---|---|---|---|\n",
    );
    // Rows come in (vllm, sarathi) pairs of one layout.
    let mut pairs = Vec::new();
    for i in 0..t.len() {
        if scheds[i] != "vllm" {
            continue;
        }
        let Some(j) = (0..t.len()).find(|&j| {
            scheds[j] == "sarathi"
                && models[j] == models[i]
                && gpus[j] == gpus[i]
                && tps[j] == tps[i]
        }) else {
            continue;
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            models[i],
            gpus[i],
            tps[i],
            sig(rps[i]),
            sig(rps[j]),
            sig(usd[i]),
            sig(usd[j])
        ));
        pairs.push((i, j));
    }
    v.insert("table".into(), table);

    let mut model_names = models.clone();
    model_names.dedup();
    let mut gpu_names: Vec<String> = Vec::new();
    for g in &gpus {
        if !gpu_names.contains(g) {
            gpu_names.push(g.clone());
        }
    }
    let cheapest: Vec<String> = model_names
        .iter()
        .filter_map(|m| {
            (0..t.len())
                .filter(|&i| &models[i] == m && usd[i].is_finite())
                .min_by(|&a, &b| usd[a].total_cmp(&usd[b]))
                .map(|i| {
                    format!(
                        "{m} on {} {} under {} (${} per million tokens)",
                        tps[i],
                        gpus[i],
                        scheds[i],
                        sig(usd[i])
                    )
                })
        })
        .collect();
    v.insert("cheapest".into(), cheapest.join("; "));

    let series = model_names
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let shift = (k as f64 - (model_names.len() - 1) as f64 / 2.0) * 0.12;
            let points = gpu_names
                .iter()
                .enumerate()
                .filter_map(|(x, g)| {
                    // The smallest tp studied for (m, g) is the first of its rows.
                    pairs
                        .iter()
                        .map(|&(_, j)| j)
                        .find(|&j| &models[j] == m && &gpus[j] == g && usd[j].is_finite())
                        .map(|j| Point::new(x as f64 + shift, usd[j], 0.0))
                })
                .collect();
            Series::new(m.clone(), Style::Markers, points)
        })
        .collect();
    let mut fig = chart(
        "Price per million output tokens (Sarathi-Serve)",
        "GPU",
        "US dollars per million output tokens",
        series,
    );
    fig.categories = gpu_names;
    fig.log_y = true;
    Ok(Some(Section {
        markdown: template::fill(TEMPLATE, &v)?,
        figures: vec![("hardware_price".into(), fig)],
    }))
}
