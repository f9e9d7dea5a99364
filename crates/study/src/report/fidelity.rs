//! The section "Against a real engine": llmsim's whole-run errors on the real vLLM runs
//! beside the other simulators' published ones, every number read from `data_fidelity.*`.

use std::path::Path;

use super::data::{self, DataError, Table};
use super::figures::chart;
use super::plot::{Point, Series, Style};
use super::template::{self, Values};
use super::{ReportError, Section};

const FILE: &str = "data_fidelity.csv";
const META: &str = "data_fidelity.meta.json";

const TEMPLATE: &str = "## Against a real engine

The shared folder holds {{runs}} real vLLM 0.15.1 serving runs of the public sim-to-real
study (H100 and A100 GPUs, tensor parallelism 1 to 4; staged Poisson load with shared-prefix
prompts, streamed, measured on the client). `llmsim fidelity` simulates each with the cost
model a user gets without a flag, the built-in serving preset `{{preset}}` (a roofline with
fitted efficiencies, per-step, per-sequence, per-layer and per-request overheads, a
scheduling lag and the latency of a step of an all-reduce over NVLink; {{cards}}{{exposed}}), under `sarathi` (vLLM V1's token budget shared by decodes and prefill chunks) with
prefix caching on. **The preset was fitted on these same runs** ({{fitted_on}}), so
llmsim's errors here are in-sample; the leave-one-run-out errors of `llmsim calibrate
--serving`, and its errors on runs of a model, card or load it was not fitted on
(`--holdout`), are in README.md. The other simulators' errors are as they published them
(BLIS and Vidur replay the real per-request traces; the trainval runs were BLIS's training
data; LLMServingSim simulated the first 300 requests only). Mean absolute percentage error
over the whole-run rows ({{skipped}} runs skipped):

{{table}}
![MAPE per metric over the whole-run rows, per simulator (log scale).](figures/fidelity_mape.svg)
";

/// The section, or `None` when the fidelity study's files are absent (skipped for lack of
/// the shared runs).
pub fn section(dir: &Path) -> Result<Option<Section>, ReportError> {
    if !dir.join(FILE).is_file() {
        return Ok(None);
    }
    let meta = data::read_meta(dir, META)?;
    let bad = |why: String| DataError::Meta {
        path: dir.join(META),
        why,
    };
    let mut v = Values::new();
    v.insert(
        "runs".into(),
        meta["runs"]
            .as_u64()
            .ok_or_else(|| bad("no number at /runs".into()))?
            .to_string(),
    );
    v.insert(
        "preset".into(),
        meta["cost_preset"]
            .as_str()
            .ok_or_else(|| bad("no text at /cost_preset".into()))?
            .into(),
    );
    let ids: Vec<&str> = meta["fitted_on"]
        .as_array()
        .ok_or_else(|| bad("no list at /fitted_on".into()))?
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    v.insert("fitted_on".into(), format!("runs {}", ids.join(", ")));
    let cards: Vec<&String> = meta["preset_parameters"]["gpu"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    v.insert(
        "cards".into(),
        if cards.is_empty() {
            "the same efficiencies on every card".into()
        } else {
            let names: Vec<String> = cards.iter().map(|c| format!("`{c}`")).collect();
            format!(
                "{} with efficiencies of its own, every other card priced from a fitted card that runs the same kernels, else from the card the global ones were fitted on (its memory efficiency scaled by the published STREAM copy fractions of the two cards, where both are known)",
                names.join(", ")
            )
        },
    );
    let exposed = meta["preset_parameters"]["roofline"]["exposed_compute"]
        .as_f64()
        .unwrap_or(0.0);
    v.insert(
        "exposed".into(),
        if exposed > 0.0 {
            format!(
                "; a memory-bound step also pays {:.0}% of its arithmetic, which its memory traffic does not hide",
                100.0 * exposed
            )
        } else {
            String::new()
        },
    );
    v.insert(
        "skipped".into(),
        meta["skipped"].as_array().map_or(0, Vec::len).to_string(),
    );
    let t = Table::read(dir, FILE)?;
    let (sims, metrics, mape, runs) = (
        t.text("simulator")?,
        t.text("metric")?,
        t.numbers("mape_pct")?,
        t.text("runs")?,
    );
    let mut names: Vec<String> = Vec::new();
    let mut cols: Vec<String> = Vec::new();
    for i in 0..t.len() {
        if !names.contains(&sims[i]) {
            names.push(sims[i].clone());
        }
        if !cols.contains(&metrics[i]) {
            cols.push(metrics[i].clone());
        }
    }
    let cell = |s: &str, m: &str| (0..t.len()).find(|&i| sims[i] == s && metrics[i] == m);
    let mut table = format!(
        "| simulator | runs | {} |\n|---|---|{}\n",
        cols.join(" | "),
        "---|".repeat(cols.len())
    );
    let mut series = Vec::new();
    for name in &names {
        let n = (0..t.len())
            .find(|&i| sims[i] == *name)
            .map_or("", |i| runs[i].as_str());
        let cells: Vec<String> = cols
            .iter()
            .map(|m| cell(name, m).map_or_else(|| "-".into(), |i| format!("{:.1}%", mape[i])))
            .collect();
        table.push_str(&format!("| {name} | {n} | {} |\n", cells.join(" | ")));
        let points = cols
            .iter()
            .enumerate()
            .filter_map(|(x, m)| cell(name, m).map(|i| Point::new(x as f64, mape[i], 0.0)))
            .collect();
        series.push(Series::new(name.clone(), Style::Markers, points));
    }
    v.insert("table".into(), table);
    let mut fig = chart(
        "Against a real engine: whole-run MAPE per metric",
        "metric",
        "MAPE (%)",
        series,
    );
    fig.categories = cols;
    fig.log_y = true;
    Ok(Some(Section {
        markdown: template::fill(TEMPLATE, &v)?,
        figures: vec![("fidelity_mape".into(), fig)],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table and figure from a small data file: one row per simulator with "-" where it
    /// published nothing, a marker per published metric.
    #[test]
    fn the_section_tabulates_every_simulator() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "simulator,metric,mape_pct,runs\nllmsim,ttft_mean,6.5,3\nllmsim,e2e_mean,5.25,3\npeer,e2e_mean,20,2\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(META),
            r#"{"parameters": {"runs": 3, "cost_preset": "vllm", "fitted_on": ["1", "2", "x"], "skipped": [], "preset_parameters": {"roofline": {"exposed_compute": 0.5}}}}"#,
        )
        .unwrap();
        let s = section(dir.path()).unwrap().unwrap();
        assert!(
            s.markdown
                .contains("| simulator | runs | ttft_mean | e2e_mean |"),
            "{}",
            s.markdown
        );
        assert!(
            s.markdown.contains("| llmsim | 3 | 6.5% | 5.2% |"),
            "{}",
            s.markdown
        );
        assert!(s.markdown.contains("| peer | 2 | - | 20.0% |"));
        assert!(s.markdown.contains("(runs 1, 2, x)") && s.markdown.contains("3 real vLLM"));
        assert!(
            s.markdown.contains("also pays 50% of its arithmetic"),
            "{}",
            s.markdown
        );
        let fig = &s.figures[0].1;
        assert_eq!(fig.series.len(), 2);
        assert_eq!(fig.series[1].points.len(), 1);
        assert!(
            section(tempfile::tempdir().unwrap().path())
                .unwrap()
                .is_none()
        );
    }
}
