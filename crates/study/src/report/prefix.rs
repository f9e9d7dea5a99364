//! The section "Prefix caching on the Mooncake trace": hit rates and tail latencies with the
//! prefix cache off and on, by router and cluster size, every number read from
//! `data_prefix_caching.*`.

use std::path::Path;

use super::data::{self, DataError, Table};
use super::figures::{chart, hline};
use super::plot::{Point, Series, Style};
use super::study::sig;
use super::template::{self, Values};
use super::{ReportError, Section};
use llmsim::router::{BALANCE_ABS, BALANCE_REL};

const FILE: &str = "data_prefix_caching.csv";

const TEMPLATE: &str = "## Prefix caching on the Mooncake trace

Chat traffic repeats itself: each turn of a conversation resends the turns before it. With
the prefix cache on, a GPU keeps the finished prefills' full KV blocks ({{block}} tokens
each) keyed by their whole prefix, a new request prefills only what its longest cached
prefix lacks, and unreferenced blocks are evicted least recently used when running
requests need the space. A finished request's full blocks of generated tokens stay cached
too, as vLLM's do: nothing matches them, but they take room, ahead of its prompt's in the
eviction order. The Mooncake conversation trace ({{trace_requests}} requests over
{{span_min}} minutes; {{replayed}} replayed{{quick}}) is replayed at its recorded times on
H200s running the `{{preset}}` cost preset without noise (one replication is exact), with
{{kv_tokens}} KV tokens per GPU, under {{policies}}, behind the routers {{routers}}
(session affinity routes as jsq here: the trace records no sessions).

{{table}}
Rows marked * are unstable (the queue grows through the replay). With the cache off the
largest hit rate of any row is {{off_max}} (nothing is reused). On one GPU every router
sends the same requests in the same order, and under vllm their hit rates range from
{{one_lo}} to {{one_hi}}; as
GPUs are added, round-robin scatters each conversation's prefixes over the cluster
({{rr_max}} under vllm on {{max_gpus}} GPUs) while the prefix-aware router keeps them where
they are cached ({{pa_max}}).

{{tail}}

The fewest GPUs with a p99 TTFT under {{slo}} s, searched up
to {{max_gpus}}:

{{fewest}}
![Token hit rate of the prefix cache against the number of H200s, per policy and router (cache on).](figures/prefix_hit_rate.svg)

![vllm: p99 TTFT against the number of H200s, per router, cache off and on (log scale); dashed: the objective.](figures/prefix_ttft.svg)
";

/// The columns' distinct values, in their first order.
fn distinct(xs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in xs {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// The row of `t` for (policy, cache, router, gpus), if present.
fn row(t: &Table, policy: &str, cache: bool, router: &str, gpus: &str) -> Option<usize> {
    let (p, c, r, g) = (
        t.text("policy").ok()?,
        t.text("prefix_cache").ok()?,
        t.text("router").ok()?,
        t.text("gpus").ok()?,
    );
    (0..t.len())
        .find(|&i| p[i] == policy && c[i] == cache.to_string() && r[i] == router && g[i] == gpus)
}

/// The section, or `None` when the prefix-caching study's files are absent (skipped for
/// lack of the shared trace).
pub fn section(dir: &Path) -> Result<Option<Section>, ReportError> {
    if !dir.join(FILE).is_file() {
        return Ok(None);
    }
    let meta = data::read_meta(dir, "data_prefix_caching.meta.json")?;
    let num = |key: &str| {
        meta.pointer(key)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| DataError::Meta {
                path: dir.join("data_prefix_caching.meta.json"),
                why: format!("no number at {key}"),
            })
    };
    let mut v = Values::new();
    let trace_requests = num("/trace/requests")?;
    let replayed = num("/study/requests_per_rep")?;
    v.insert("trace_requests".into(), format!("{trace_requests}"));
    v.insert("replayed".into(), format!("{replayed}"));
    v.insert(
        "quick".into(),
        if replayed < trace_requests {
            ", the first ones only (`--quick`): these numbers are not results".into()
        } else {
            String::new()
        },
    );
    v.insert("span_min".into(), sig(num("/trace/span_s")? / 60.0));
    v.insert("block".into(), format!("{}", num("/block_size")?));
    v.insert(
        "kv_tokens".into(),
        format!("{}", num("/kv_capacity_tokens")?),
    );
    let slo = num("/slo/p99_ttft_s")?;
    v.insert("slo".into(), format!("{slo}"));
    v.insert(
        "preset".into(),
        meta["cost_preset"].as_str().unwrap_or("").into(),
    );

    let t = Table::read(dir, FILE)?;
    let policies = distinct(&t.text("policy")?);
    let routers = distinct(&t.text("router")?);
    let gpus = distinct(&t.text("gpus")?);
    let (hit, p99, tbt) = (
        t.numbers("token_hit_rate")?,
        t.numbers("p99_ttft")?,
        t.numbers("p99_tbt")?,
    );
    let (unstable, meets) = (t.text("unstable")?, t.text("meets_slo")?);
    let quote = |xs: &[String]| {
        xs.iter()
            .map(|x| format!("`{x}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    v.insert("policies".into(), quote(&policies));
    v.insert("routers".into(), quote(&routers));
    let max_gpus = gpus.last().cloned().unwrap_or_default();
    v.insert("max_gpus".into(), max_gpus.clone());

    let cell = |i: Option<usize>, x: &[f64]| match i {
        Some(i) => format!(
            "{}{}",
            sig(x[i]),
            if unstable[i] == "true" { "*" } else { "" }
        ),
        None => "-".into(),
    };
    let mut table = String::from(
        "| policy | router | GPUs | hit rate (on) | p99 TTFT off (s) | p99 TTFT on (s) | p99 TBT off (s) | p99 TBT on (s) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for p in &policies {
        for r in &routers {
            for g in &gpus {
                let (off, on) = (row(&t, p, false, r, g), row(&t, p, true, r, g));
                table.push_str(&format!(
                    "| {p} | {r} | {g} | {} | {} | {} | {} | {} |\n",
                    on.map_or("-".into(), |i| sig(hit[i])),
                    cell(off, &p99),
                    cell(on, &p99),
                    cell(off, &tbt),
                    cell(on, &tbt),
                ));
            }
        }
    }
    v.insert("table".into(), table);
    let first = policies.first().cloned().unwrap_or_default();
    let hit_of =
        |r: &str, g: &str| row(&t, &first, true, r, g).map_or_else(|| "-".into(), |i| sig(hit[i]));
    let cache = t.text("prefix_cache")?;
    let off_max = (0..t.len())
        .filter(|&i| cache[i] == "false")
        .map(|i| hit[i])
        .fold(0.0, f64::max);
    v.insert("off_max".into(), sig(off_max));
    let one: Vec<f64> = routers
        .iter()
        .filter_map(|r| row(&t, &first, true, r, "1").map(|i| hit[i]))
        .collect();
    let lo = one.iter().copied().fold(f64::INFINITY, f64::min);
    v.insert("one_lo".into(), sig(lo));
    v.insert("one_hi".into(), sig(one.iter().copied().fold(lo, f64::max)));
    // The cluster size where prefix-aware routing's p99 TTFT is largest relative to jsq's
    // (vllm, cache on, stable rows only).
    let queue = t.numbers("mean_in_queue")?;
    let worst = gpus
        .iter()
        .filter_map(|g| {
            let (pa, jsq) = (
                row(&t, &first, true, "prefix-aware", g)?,
                row(&t, &first, true, "jsq", g)?,
            );
            (unstable[pa] == "false" && unstable[jsq] == "false")
                .then(|| (p99[pa] / p99[jsq], g.clone(), pa, jsq))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let (worst_gpus, worst) = match worst {
        Some((_, g, pa, jsq)) => (g, Some((pa, jsq))),
        None => ("-".into(), None),
    };
    let mean_prompt = num("/trace/mean_prompt_tokens")?;
    let tail = match worst {
        Some((pa, jsq)) if p99[pa] > p99[jsq] => {
            let off = |r: &str| {
                row(&t, &first, false, r, &worst_gpus).map_or_else(|| "-".into(), |i| sig(p99[i]))
            };
            format!(
                "More hits need not mean a shorter tail. Where the prefix-aware router's p99 \
                 TTFT most exceeds jsq's (vllm, cache on: {worst_gpus} GPUs), it hits {} of \
                 the prompt tokens against jsq's {}, yet its p99 TTFT is {} s against {} s, \
                 and it keeps {} requests waiting on average against jsq's {} (cache off, \
                 where a hit saves nothing: p99 {} s against {} s). The router follows a \
                 prompt's cached prefix unless the GPUs' outstanding requests differ by more \
                 than {BALANCE_ABS} and {BALANCE_REL} times (SGLang's defaults), so the turns \
                 of long conversations pile onto the GPU holding them while another has room: \
                 with prompts of {mean_prompt:.0} tokens on average here, {BALANCE_ABS} \
                 requests are {:.0} tokens of prefill, and the guard acts only once queues \
                 that long have formed.",
                sig(hit[pa]),
                sig(hit[jsq]),
                sig(p99[pa]),
                sig(p99[jsq]),
                sig(queue[pa]),
                sig(queue[jsq]),
                off("prefix-aware"),
                off("jsq"),
                mean_prompt * f64::from(BALANCE_ABS),
            )
        }
        _ => "On every cluster size where both are stable, the prefix-aware router's p99 \
              TTFT is at most jsq's (vllm, cache on)."
            .into(),
    };
    v.insert("tail".into(), tail);
    v.insert("rr_max".into(), hit_of("round-robin", &max_gpus));
    v.insert("pa_max".into(), hit_of("prefix-aware", &max_gpus));

    let mut fewest = String::new();
    for p in &policies {
        for cache in [false, true] {
            let per_router: Vec<String> = routers
                .iter()
                .map(|r| {
                    let n = gpus
                        .iter()
                        .find(|g| row(&t, p, cache, r, g).is_some_and(|i| meets[i] == "true"))
                        .cloned()
                        .unwrap_or_else(|| format!("> {max_gpus}"));
                    format!("{r} {n}")
                })
                .collect();
            fewest.push_str(&format!(
                "- {p}, cache {}: {}\n",
                if cache { "on" } else { "off" },
                per_router.join(", ")
            ));
        }
    }
    v.insert("fewest".into(), fewest);

    let x_max = gpus
        .iter()
        .filter_map(|g| g.parse::<f64>().ok())
        .fold(1.0, f64::max);
    let curve = |p: &str, cache: bool, r: &str, y: &[f64]| -> Vec<Point> {
        gpus.iter()
            .filter_map(|g| {
                let i = row(&t, p, cache, r, g)?;
                Some(Point::new(g.parse().ok()?, y[i], 0.0))
            })
            .collect()
    };
    let mut hits = Vec::new();
    for p in &policies {
        for r in &routers {
            hits.push(Series::new(
                format!("{p}, {r}"),
                Style::Simulated,
                curve(p, true, r, &hit),
            ));
        }
    }
    let mut ttft = Vec::new();
    for cache in [false, true] {
        for r in &routers {
            ttft.push(Series::new(
                format!("{r}, cache {}", if cache { "on" } else { "off" }),
                Style::Simulated,
                curve(&first, cache, r, &p99),
            ));
        }
    }
    ttft.push(hline("objective", slo, 1.0, x_max));
    let fig_hit = chart(
        "Mooncake conversation trace: prefix-cache token hit rate",
        "H200 GPUs",
        "token hit rate",
        hits,
    );
    let mut fig_ttft = chart(
        &format!("Mooncake conversation trace, {first}: p99 TTFT"),
        "H200 GPUs",
        "p99 TTFT (s)",
        ttft,
    );
    fig_ttft.log_y = true;
    Ok(Some(Section {
        markdown: template::fill(TEMPLATE, &v)?,
        figures: vec![
            ("prefix_hit_rate".into(), fig_hit),
            ("prefix_ttft".into(), fig_ttft),
        ],
    }))
}
