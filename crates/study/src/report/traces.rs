//! The section "Real GPUs and real traffic": the calibrated H200 cost model, the roofline
//! against the measured iterations, and the GPUs each policy needs for the Azure traces,
//! every number read from `data_roofline.*` and `data_trace_capacity.*`.

use serde_json::Value;
use std::path::Path;

use super::Section;
use super::data::{self, DataError, Table};
use super::figures::{chart, hline, points};
use super::plot::{Chart, Series, Style};
use super::study::sig;
use super::template::{self, Values};

/// The section's text, with `{{name}}` placeholders.
const TEMPLATE: &str = r#"## Real GPUs and real traffic

The seed's cost model has two assumed parameters and its traffic is Poisson. This section
uses a cost model fitted to a real GPU instead, and replays recorded traffic on it.

### The calibrated H200 cost model

Every GPU here runs the built-in cost preset `{{preset}}`, which `llmsim calibrate` fitted
to {{profile_rows}} measured iterations of a Llama-3.1-8B-shaped model on one NVIDIA H200
(bf16, CUDA-graph iterations; rows of prefill-only and decode-only batches). One
iteration over a batch of `T` tokens, `P` of them prompt tokens, and `n_d` decodes reading
`K` KV-cache tokens in all, costs

`S = c + p [P > 0] + a max(0, T - b0) + q Q + d K max(1, r / n_d)`

where `Q` sums `(o + k)^2 - o^2` over the prefill entries, each a chunk of `k` prompt
tokens after `o` already prefilled (a whole prompt of `L` adds `L^2`), so a prompt's
chunks pay exactly its whole attention. The fit gives `c` = {{c_ms}} ms, `p` =
{{p_ms}} ms, `a` = {{a_us}} µs per token beyond `b0` = {{b0}} tokens, `q` = {{q_ps}} ps per squared prompt token, `d` = {{d_ns}} ns per KV token
read, and `r` = {{r}} sequences (below which decode attention does not fill the GPU). Its
error on the measured rows is {{pf_mape}}% on average (MAPE), at most {{pf_max}}%
({{pf_worst}}). The simulations add lognormal noise of coefficient of variation
{{noise_cv}} to every iteration, so replications of the same trace differ.

A roofline model needs no profile beyond three fitted numbers:
`S = overhead + max(FLOPs / (e_c peak), bytes / (e_m bandwidth))` with the H200's
{{peak_tflops}} TFLOP/s and {{bandwidth_tbs}} TB/s. Fitted to the same rows it reaches
{{eff_compute}} of peak arithmetic and {{eff_memory}} of peak bandwidth, with an overhead of
{{overhead_ms}} ms per iteration; its MAPE is {{rf_mape}}%, at most {{rf_max}}%
({{rf_worst}}). By kind of batch:

{{roofline_table}}
The simulations below use the profiled preset, whose extra terms (the prefill path's fixed
cost, decode attention on an under-filled GPU) the roofline lacks.

These efficiencies, fitted once on this profile, are what the roofline uses for every
other card and model (`--cost roofline --gpu G --model M --tp N`; `llmsim cost check`
prints any cost model's error on a profile without fitting). The shared calibration folder
holds this one profile, so the {{rf_mape}}% MAPE is the roofline's whole measured record:
no other card, model or parallel layout has been checked against measurements. What it
cannot see: a card or software stack reaching other fractions of its peaks (other kernels,
fp8, ROCm); attention kernels that a few sequences leave under-filled; uneven expert
routing (it assumes each token picks its experts uniformly, and no expert parallelism);
all-reduces overlapped with compute or slowed by contention (links run at their peaks plus
a fixed latency per step); more than one batch in flight in a pipeline; and the memory
that activations, CUDA graphs and fragmentation take from the KV cache.

### GPUs needed for the Azure traces

The Azure LLM inference traces of 16 November 2023 (Patel et al., "Splitwise", ISCA 2024;
CC-BY 4.0) hold one hour of a conversation service ({{conv_requests}} requests,
{{conv_rate}} requests/s on average) and of a code-completion service ({{code_requests}}
requests, {{code_rate}} requests/s).{{prefix_note}} Each is replayed at its recorded times and
{{speedup_hi}} times faster (the same requests, arrival times divided by {{speedup_hi}}),
on clusters of H200s behind the `{{router}}` router, under Schedulers A and B (`K` = 4) and
the Orca, vLLM and Sarathi-Serve policies; the last three get the KV cache an H200's
{{gpu_mem_gb}} GB leave beside the weights ({{kv_tokens}} tokens per GPU). The objective is
a p99 TTFT under {{slo_ttft}} s and a p99 TBT under {{slo_tbt_ms}} ms, each the mean over
{{reps}} replications. The table gives the smallest cluster meeting both, searched up to
{{max_gpus}} GPUs.

{{gpu_table}}
{{best_sentence}}

![Conversation trace at {{speedup_hi}}x: p99 TTFT against the number of H200s, per policy (mean ± 95% interval over {{reps}} replications); dashed: the objective.](figures/trace_conv_ttft.svg)

![Conversation trace at {{speedup_hi}}x: p99 TBT against the number of H200s, per policy; dashed: the objective.](figures/trace_conv_tbt.svg)

Every replication replays the same requests, so the intervals cover the iteration-time
noise only, not other hours of traffic; and the search assumes that adding a GPU never
makes the tail worse, which the file lets one check (the size below each minimum was
simulated and fails).
"#;

fn num(v: &Value, dir: &Path, file: &str, key: &str) -> Result<f64, DataError> {
    v.pointer(key)
        .and_then(Value::as_f64)
        .ok_or(DataError::Meta {
            path: dir.join(file),
            why: format!("no number at {key}"),
        })
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// The section, or `None` when either data file is absent (the experiments were skipped
/// for lack of the shared traces or profile).
pub fn section(dir: &Path) -> Result<Option<Section>, DataError> {
    const CAP: &str = "data_trace_capacity.csv";
    const ROOF: &str = "data_roofline.csv";
    if !dir.join(CAP).is_file() || !dir.join(ROOF).is_file() {
        return Ok(None);
    }
    let mut v = Values::new();
    let mut put = |k: &str, x: String| {
        v.insert(k.into(), x);
    };

    // Cost model and roofline.
    let rm = data::read_meta(dir, "data_roofline.meta.json")?;
    let rnum = |key: &str| num(&rm, dir, "data_roofline.meta.json", key);
    let text = |key: &str| {
        rm.pointer(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    put("preset", text("/cost_preset"));
    put("profile_rows", format!("{}", rnum("/profile_rows")?));
    put("c_ms", sig(rnum("/profiled_parameters/setup_s")? * 1e3));
    put(
        "p_ms",
        sig(rnum("/profiled_parameters/prefill_setup_s")? * 1e3),
    );
    put("a_us", sig(rnum("/profiled_parameters/per_token_s")? * 1e6));
    put(
        "b0",
        format!("{}", rnum("/profiled_parameters/free_tokens")?),
    );
    put(
        "q_ps",
        sig(rnum("/profiled_parameters/prefill_attention_s")? * 1e12),
    );
    put(
        "d_ns",
        sig(rnum("/profiled_parameters/per_kv_token_s")? * 1e9),
    );
    put(
        "r",
        format!("{}", rnum("/profiled_parameters/min_attention_seqs")?),
    );
    put("pf_mape", pct(rnum("/profiled_fit/mape")?));
    put("pf_max", pct(rnum("/profiled_fit/max")?));
    put("pf_worst", text("/profiled_worst_row"));
    put("rf_mape", pct(rnum("/roofline_fit/mape")?));
    put("rf_max", pct(rnum("/roofline_fit/max")?));
    put("rf_worst", text("/roofline_worst_row"));
    put("eff_compute", sig(rnum("/roofline_efficiency/compute")?));
    put("eff_memory", sig(rnum("/roofline_efficiency/memory")?));
    put(
        "overhead_ms",
        sig(rnum("/roofline_efficiency/overhead")? * 1e3),
    );
    put("peak_tflops", sig(rnum("/gpu/peak_flops")? * 1e-12));
    put(
        "bandwidth_tbs",
        sig(rnum("/gpu/bandwidth_bytes_per_s")? * 1e-12),
    );

    let roof = Table::read(dir, ROOF)?;
    let kinds = roof.text("kind")?;
    let (pe, re) = (
        roof.numbers("profiled_error")?,
        roof.numbers("roofline_error")?,
    );
    let bound = roof.text("roofline_bound")?;
    let mut table = String::from(
        "| batches | rows | preset MAPE | preset max | roofline MAPE | roofline max | roofline memory-bound rows |\n|---|---|---|---|---|---|---|\n",
    );
    let mut seen: Vec<&str> = Vec::new();
    for k in &kinds {
        if !seen.contains(&k.as_str()) {
            seen.push(k);
        }
    }
    let groups: Vec<(String, Vec<usize>)> = seen
        .iter()
        .map(|k| {
            (
                k.to_string(),
                (0..kinds.len()).filter(|&i| kinds[i] == *k).collect(),
            )
        })
        .chain(std::iter::once(("all".into(), (0..kinds.len()).collect())))
        .collect();
    for (name, idx) in groups {
        let n = idx.len() as f64;
        let mape = |e: &[f64]| idx.iter().map(|&i| e[i].abs()).sum::<f64>() / n;
        let max = |e: &[f64]| idx.iter().map(|&i| e[i].abs()).fold(0.0, f64::max);
        let mem = idx.iter().filter(|&&i| bound[i] == "memory").count();
        table.push_str(&format!(
            "| {name} | {} | {}% | {}% | {}% | {}% | {mem} |\n",
            idx.len(),
            pct(mape(&pe)),
            pct(max(&pe)),
            pct(mape(&re)),
            pct(max(&re)),
        ));
    }
    put("roofline_table", table);

    // Traces.
    let cm = data::read_meta(dir, "data_trace_capacity.meta.json")?;
    let cfile = "data_trace_capacity.meta.json";
    let cnum = |key: &str| num(&cm, dir, cfile, key);
    for (i, label) in ["conv", "code"].iter().enumerate() {
        put(
            &format!("{label}_requests"),
            format!("{}", cnum(&format!("/traces/{i}/requests"))?),
        );
        put(
            &format!("{label}_rate"),
            sig(cnum(&format!("/traces/{i}/rate_rps"))?),
        );
    }
    let replayed = cnum("/study/requests_per_rep").ok();
    put(
        "prefix_note",
        replayed.map_or(String::new(), |n| {
            format!(" This run replays only the first {n} requests of each (`--quick`): its numbers are not results.")
        }),
    );
    let speedup_hi = cnum("/speedups/1")?;
    put("speedup_hi", format!("{speedup_hi}"));
    put("noise_cv", format!("{}", cnum("/noise_cv")?));
    put("gpu_mem_gb", format!("{}", cnum("/gpu_mem_gb")?));
    put("kv_tokens", format!("{}", cnum("/kv_capacity_tokens")?));
    put("slo_ttft", format!("{}", cnum("/slo/p99_ttft_s")?));
    put("slo_tbt_ms", format!("{}", cnum("/slo/p99_tbt_s")? * 1e3));
    put("reps", format!("{}", cnum("/study/reps")?));
    let max_gpus = cnum("/max_gpus")?;
    put("max_gpus", format!("{max_gpus}"));
    put(
        "router",
        cm.pointer("/router")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
    );

    let cap = Table::read(dir, CAP)?;
    let (traces, policies) = (cap.text("trace")?, cap.text("policy")?);
    let speedups = cap.numbers("speedup")?;
    let gpus = cap.numbers("gpus")?;
    let minimal = cap.text("min_gpus")?;
    let mut order: Vec<String> = Vec::new();
    for p in &policies {
        if !order.contains(p) {
            order.push(p.clone());
        }
    }
    let mut combos: Vec<(String, f64)> = Vec::new();
    for (t, s) in traces.iter().zip(&speedups) {
        if !combos.iter().any(|(ct, cs)| ct == t && cs == s) {
            combos.push((t.clone(), *s));
        }
    }
    let mut gt = format!(
        "| trace | replay speed | {} |\n|---|---|{}\n",
        order.join(" | "),
        "---|".repeat(order.len())
    );
    let mut best = String::new();
    for (t, s) in &combos {
        let mut cells = Vec::new();
        let mut fewest: Option<(f64, Vec<&str>)> = None;
        for p in &order {
            let min = (0..gpus.len()).find(|&i| {
                &traces[i] == t && speedups[i] == *s && &policies[i] == p && minimal[i] == "true"
            });
            let any =
                (0..gpus.len()).any(|i| &traces[i] == t && speedups[i] == *s && &policies[i] == p);
            cells.push(match (min, any) {
                (Some(i), _) => format!("{}", gpus[i]),
                (None, true) => format!("> {max_gpus}"),
                (None, false) => "-".into(),
            });
            if let Some(i) = min {
                match &mut fewest {
                    Some((n, ps)) if gpus[i] == *n => ps.push(p),
                    Some((n, _)) if gpus[i] > *n => {}
                    _ => fewest = Some((gpus[i], vec![p])),
                }
            }
        }
        let name = if t == "conv" { "conversation" } else { "code" };
        gt.push_str(&format!("| {name} | {s}x | {} |\n", cells.join(" | ")));
        best.push_str(&match fewest {
            Some((n, ps)) => format!(
                "- {name} at {s}x: {n} GPU{} ({})\n",
                if n == 1.0 { "" } else { "s" },
                ps.join(", ")
            ),
            None => format!("- {name} at {s}x: none within {max_gpus} GPUs\n"),
        });
    }
    put("gpu_table", gt);
    put(
        "best_sentence",
        format!("The fewest GPUs any policy needs, and which policies need that few:\n\n{best}"),
    );

    // Figures: the conversation trace at the higher speed.
    let conv = cap
        .filter("trace", "conv")?
        .filter("speedup", &speedup_hi.to_string())?;
    let mut figs_ttft = Vec::new();
    let mut figs_tbt = Vec::new();
    let mut x_max: f64 = 1.0;
    for p in &order {
        let t = conv.filter("policy", p)?;
        if t.is_empty() {
            continue;
        }
        x_max = x_max.max(t.numbers("gpus")?.iter().copied().fold(0.0, f64::max));
        figs_ttft.push(Series::new(
            p.as_str(),
            Style::Simulated,
            points(&t, "gpus", "p99_ttft", Some("p99_ttft_ci"))?,
        ));
        figs_tbt.push(Series::new(
            p.as_str(),
            Style::Simulated,
            points(&t, "gpus", "p99_tbt", Some("p99_tbt_ci"))?,
        ));
    }
    let slo_ttft = cnum("/slo/p99_ttft_s")?;
    let slo_tbt = cnum("/slo/p99_tbt_s")?;
    figs_ttft.push(hline("objective", slo_ttft, 1.0, x_max));
    figs_tbt.push(hline("objective", slo_tbt, 1.0, x_max));
    let mut c1 = chart(
        &format!("Conversation trace at {speedup_hi}x: p99 TTFT"),
        "H200 GPUs",
        "p99 TTFT (s)",
        figs_ttft,
    );
    c1.log_y = true;
    let mut c2 = chart(
        &format!("Conversation trace at {speedup_hi}x: p99 TBT"),
        "H200 GPUs",
        "p99 TBT (s)",
        figs_tbt,
    );
    c2.log_y = true;
    let figures: Vec<(String, Chart)> = vec![
        ("trace_conv_ttft".into(), c1),
        ("trace_conv_tbt".into(), c2),
    ];
    let markdown = template::fill(TEMPLATE, &v).map_err(|e| DataError::Meta {
        path: dir.join(CAP),
        why: e.to_string(),
    })?;
    Ok(Some(Section { markdown, figures }))
}
