//! The section "Multi-turn conversations and the prefix cache": the synthetic study's hit
//! rates against think time and cache size, every number read from `data_multiturn.*`.

use std::path::Path;

use super::data::{self, DataError, Table};
use super::figures::{chart, points};
use super::plot::{Series, Style};
use super::study::sig;
use super::template::{self, Values};
use super::{ReportError, Section};

const FILE: &str = "data_multiturn.csv";

const TEMPLATE: &str = "## Multi-turn conversations and the prefix cache

Synthetic conversations (`--workload multiturn`) show what the hit rate depends on.
Sessions start at {{session_rate}} per second, each of {{turns}} turns whose prompt is the
whole conversation so far plus a {{message}}-token user message, after a
{{system}}-token system prompt drawn from {{system_prompts}}; one H200 (`{{preset}}`) serves
them under vllm with the prefix cache on ({{reps}} replications of {{requests}} turns; mean
and 95% interval).

The loop is closed: a turn arrives an exponential think time after the reply to the turn
before it is complete, and every session brings all its turns, so the mix of first and
later turns is the same at every think time. Only prompts are matched: a reply's full
blocks stay cached once its turn is done, as vLLM's do, but under keys of their own that
the next turn, resending the reply under its conversation's prefix ids, does not match, so
they only take room, and a turn can reuse at most the previous turn's prompt: were every
prompt still cached at the next turn, the hit rate would be {{ceiling}}; were only the
system prompts, {{floor}}.

With a KV cache of {{think_cache}} tokens, the hit rate is {{think_first}} at a mean think
time of {{think_lo}} s and {{think_last}} at {{think_hi}} s (lowest, {{think_min}}, at
{{think_min_at}} s), towards the system-prompt-only {{floor}}: longer think times keep more
sessions open at once, whose prefixes evict one another before their next turns come.
With a {{cache_think}} s think time, the hit rate goes from {{cache_first}} with
{{cache_lo}} tokens of cache (too little to keep even the system prompts) to
{{cache_last}} with {{cache_hi}}, where every open conversation stays cached: the
{{ceiling}} above, less the first use of each system prompt.

![Token hit rate against the mean think time (KV cache of {{think_cache}} tokens).](figures/multiturn_think.svg)

![Token hit rate against the KV cache's size (think time {{cache_think}} s; x: log2 of the tokens).](figures/multiturn_cache.svg)
";

/// The token hit rate of a session of `turns` turns, after a `system`-token system prompt,
/// with user messages of `message` tokens and replies of `message + 1` (the decode budget
/// is `message`), over KV blocks of `block` tokens: when only the system prompt's full
/// blocks are cached at each turn, and when also the previous turn's prompt is (a turn
/// reuses only whole blocks, short of its last token).
fn hit_bounds(turns: u64, system: u64, message: u64, block: u64) -> (f64, f64) {
    let whole = |tokens: u64| tokens / block * block;
    let (mut prompts, mut floor, mut ceiling) = (0, 0, 0);
    let mut before = 0;
    let mut prompt = system + message;
    for _ in 0..turns {
        let most = whole(prompt - 1);
        prompts += prompt;
        floor += whole(system).min(most);
        ceiling += whole(system).max(whole(before)).min(most);
        before = prompt;
        prompt += 2 * message + 1;
    }
    (
        floor as f64 / prompts as f64,
        ceiling as f64 / prompts as f64,
    )
}

/// The section, or `None` when the multi-turn study's files are absent (`--only` ran
/// other experiments).
pub fn section(dir: &Path) -> Result<Option<Section>, ReportError> {
    if !dir.join(FILE).is_file() {
        return Ok(None);
    }
    let meta = data::read_meta(dir, "data_multiturn.meta.json")?;
    let text = |key: &str| {
        meta.pointer(key)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), String::from))
            .ok_or_else(|| DataError::Meta {
                path: dir.join("data_multiturn.meta.json"),
                why: format!("no value at {key}"),
            })
    };
    let mut v = Values::new();
    for (name, key) in [
        ("session_rate", "/session_rate"),
        ("turns", "/turns"),
        ("message", "/message_tokens"),
        ("system", "/system_prompt_tokens"),
        ("system_prompts", "/system_prompts"),
        ("preset", "/cost_preset"),
        ("reps", "/study/reps"),
        ("requests", "/study/requests_per_rep"),
    ] {
        v.insert(name.into(), text(key)?);
    }
    let int = |key: &str| -> Result<u64, DataError> {
        text(key)?.parse().map_err(|_| DataError::Meta {
            path: dir.join("data_multiturn.meta.json"),
            why: format!("{key} is not a whole number"),
        })
    };
    let (floor, ceiling) = hit_bounds(
        int("/turns")?,
        int("/system_prompt_tokens")?,
        int("/message_tokens")?,
        int("/block_size")?,
    );
    v.insert("floor".into(), sig(floor));
    v.insert("ceiling".into(), sig(ceiling));
    let t = Table::read(dir, FILE)?;
    let think = t.filter("sweep", "think")?;
    let cache = t.filter("sweep", "cache")?;
    // Each sweep's first and last rows: the smallest and largest setting.
    let ends = |t: &Table, col: &str| -> Result<[String; 4], DataError> {
        let (x, h) = (t.numbers(col)?, t.numbers("hit_rate_mean")?);
        let n = t.len().max(1) - 1;
        Ok([
            format!("{}", x.first().copied().unwrap_or(f64::NAN)),
            format!("{}", x.get(n).copied().unwrap_or(f64::NAN)),
            sig(h.first().copied().unwrap_or(f64::NAN)),
            sig(h.get(n).copied().unwrap_or(f64::NAN)),
        ])
    };
    let [lo, hi, first, last] = ends(&think, "think_s")?;
    v.insert("think_lo".into(), lo);
    v.insert("think_hi".into(), hi);
    v.insert("think_first".into(), first);
    v.insert("think_last".into(), last);
    let (xs, hs) = (think.numbers("think_s")?, think.numbers("hit_rate_mean")?);
    let min = (0..hs.len()).min_by(|&a, &b| hs[a].total_cmp(&hs[b]));
    v.insert(
        "think_min".into(),
        min.map_or_else(String::new, |i| sig(hs[i])),
    );
    v.insert(
        "think_min_at".into(),
        min.map_or_else(String::new, |i| format!("{}", xs[i])),
    );
    v.insert(
        "think_cache".into(),
        format!(
            "{}",
            think
                .numbers("kv_tokens")?
                .first()
                .copied()
                .unwrap_or(f64::NAN)
        ),
    );
    let [lo, hi, first, last] = ends(&cache, "kv_tokens")?;
    v.insert("cache_lo".into(), lo);
    v.insert("cache_hi".into(), hi);
    v.insert("cache_first".into(), first);
    v.insert("cache_last".into(), last);
    v.insert(
        "cache_think".into(),
        format!(
            "{}",
            cache
                .numbers("think_s")?
                .first()
                .copied()
                .unwrap_or(f64::NAN)
        ),
    );

    let fig_think = chart(
        "Multi-turn conversations: hit rate against think time",
        "mean think time (s)",
        "token hit rate",
        vec![Series::new(
            "vllm, prefix cache on",
            Style::Simulated,
            points(&think, "think_s", "hit_rate_mean", Some("hit_rate_ci"))?,
        )],
    );
    let mut cache_pts = points(&cache, "kv_tokens", "hit_rate_mean", Some("hit_rate_ci"))?;
    for p in &mut cache_pts {
        p.x = p.x.log2();
    }
    let fig_cache = chart(
        "Multi-turn conversations: hit rate against KV cache size",
        "log2 of the KV cache (tokens)",
        "token hit rate",
        vec![Series::new(
            "vllm, prefix cache on",
            Style::Simulated,
            cache_pts,
        )],
    );
    Ok(Some(Section {
        markdown: template::fill(TEMPLATE, &v)?,
        figures: vec![
            ("multiturn_think".into(), fig_think),
            ("multiturn_cache".into(), fig_cache),
        ],
    }))
}

#[cfg(test)]
mod tests {
    use super::hit_bounds;

    #[test]
    fn hit_bounds_by_hand() {
        // Prompts 640, 897, 1154, 1411 tokens (4,102 in all); the system prompt is 32 whole
        // blocks; the previous prompts hold 40, 56 and 72 whole blocks.
        let (floor, ceiling) = hit_bounds(4, 512, 128, 16);
        assert_eq!(floor, 2048.0 / 4102.0);
        assert_eq!(ceiling, (512.0 + 640.0 + 896.0 + 1152.0) / 4102.0);
        // No system prompt: nothing is shared but the conversation; 20-token prompt, then
        // 61 and 102, reusing 16 and 48 tokens.
        assert_eq!(hit_bounds(3, 0, 20, 16), (0.0, 64.0 / 183.0));
    }
}
