//! Real serving runs (`llmsim fidelity`, `llmsim calibrate --serving`): the runs file of a
//! benchmark of a real engine (the format of `shared/fidelity/README.md`: one row per run
//! and load stage, stage -1 the whole run), its workload, and their simulation as a client
//! measures it.
//!
//! The load generator (inference-perf) runs its stages one after another, each draining
//! before the next starts; stage `s` sends `n = floor(rate x duration)` requests with
//! Poisson gaps, request `k` using prompt `k mod (G x P)` of `G` system prompts each
//! followed by `P` questions, so whole prompts recur and the prefix cache can cover them
//! entirely. Each stage is therefore simulated as its own run from an empty engine; the
//! prefix cache starts cold in every stage (the real one is warm after stage 0, which
//! costs the first `G x P` requests of later stages a hit). The whole-run row pools the
//! requests of all stages. A client's latency is the engine's plus the serving preset's
//! client-side overheads ([`Client`]); ITL follows the file's definition, `(mean E2E - mean TTFT) /
//! (N - 1)` with `N` the client-counted output tokens where the metadata gives them.
//! A run whose prompt plus output exceeds its `max_model_len` has every request rejected,
//! as vLLM rejects them (HTTP 400 before scheduling), so no latency is measured: it is
//! skipped with the reason. A run with CPU KV offload (`cpu_kv_offload`: vLLM's
//! `OffloadingConnector` with an 8 GiB pool per GPU) gets the prefix cache's CPU tier
//! ([`crate::prefix::CpuKv`]) of the size `vllm.log` reported (`cpu_kv_blocks_vllm_log` in
//! the metadata), else of 8 GiB over one block's KV bytes on one GPU. What the simulation
//! leaves out: the re-tokenisation that makes real prompts a few tokens longer than the
//! preset's lengths.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{Config, CostSpec, WorkloadSpec};
use crate::cost::ServingPreset;
use crate::csvio::{CsvError, FieldError, parse_rows};
use crate::dist::LengthDist;
use crate::engine::simulate_records;
use crate::files::Files;
use crate::kv;
use crate::limits::RangeError;
use crate::prefix::{Prefix, mix};
use crate::scheduler::SchedulerKind;
use crate::stats::quantile_sorted;
use crate::workload::{ArrivalKind, Request};

/// The metrics of a runs file, in its column order without `_ms`: TTFT and E2E mean, p90
/// and p99, and the mean ITL.
pub const METRICS: [&str; 7] = [
    "ttft_mean",
    "ttft_p90",
    "ttft_p99",
    "e2e_mean",
    "e2e_p90",
    "e2e_p99",
    "itl_mean",
];

/// The CPU KV pool of the runs with offload on each GPU: `--kv-offloading-size=8.0` (GiB),
/// which vLLM 0.15.1 gives each GPU of a replica (a Llama-3.1-70B replica over 4 GPUs
/// logged 6553 blocks, 8 GiB over one GPU's 1.25 MiB per block) (bytes).
pub const OFFLOAD_POOL_BYTES: f64 = 8.0 * (1u64 << 30) as f64;

/// One value per [`METRICS`] entry (milliseconds).
pub type Latencies = [f64; 7];

/// One load stage: `rate` requests/s for `duration` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Arrival rate (requests/s).
    pub rate: f64,
    /// Length (seconds).
    pub duration: f64,
}

impl Stage {
    /// Requests the load generator sends: `floor(rate x duration)`.
    pub fn requests(&self) -> usize {
        (self.rate * self.duration) as usize
    }
}

/// Parses a schedule `RATExSECONDS;...` (e.g. `5x600;10x600`).
pub fn parse_stages(spec: &str) -> Result<Vec<Stage>, String> {
    spec.split(';')
        .map(|part| {
            let (rate, duration) = part
                .split_once('x')
                .ok_or_else(|| format!("'{part}' is not RATExSECONDS (e.g. 5x600)"))?;
            let num = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0);
            match (num(rate), num(duration)) {
                (Some(rate), Some(duration)) if rate * duration >= 2.0 => {
                    Ok(Stage { rate, duration })
                }
                _ => Err(format!(
                    "'{part}' needs a positive rate and duration whose product (the stage's requests) is at least 2"
                )),
            }
        })
        .collect()
}

/// One serving run: its setup, workload and measured aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct ServingRun {
    /// The run's id.
    pub id: String,
    /// The model served (a Hugging Face id).
    pub model: String,
    /// The GPU label.
    pub gpu: String,
    /// Tensor-parallel degree.
    pub tp: u32,
    /// Token budget per step (`--max-num-batched-tokens`).
    pub max_batched_tokens: u32,
    /// Most running sequences (`--max-num-seqs`).
    pub max_seqs: u32,
    /// `--gpu-memory-utilization`, where known.
    pub gpu_mem_util: Option<f64>,
    /// `--max-model-len` (tokens of prompt plus output a request may ask for), where the
    /// file has the column.
    pub max_model_len: Option<u32>,
    /// Whether prefix caching was on, where a source says (vLLM V1's default is on).
    pub prefix_caching: Option<bool>,
    /// Whether CPU KV offload was on, where a source says (off unless it says so).
    pub cpu_kv_offload: Option<bool>,
    /// The CPU pool's size as the engine's log reported it, where known (blocks).
    pub cpu_kv_blocks: Option<u64>,
    /// The load generator's preset name (`workload` column, e.g. `codegen`), where the
    /// file has it: what `calibrate --serving --holdout workload` groups runs by.
    pub workload: Option<String>,
    /// The load stages, in order.
    pub stages: Vec<Stage>,
    /// Tokens of each system prompt.
    pub system_len: u32,
    /// Tokens of each question.
    pub question_len: u32,
    /// Tokens generated per request (`max_tokens` with `ignore_eos`).
    pub output_len: u32,
    /// System prompts the load generator used.
    pub groups: u32,
    /// Questions per system prompt.
    pub per_group: u32,
    /// Mean output tokens as the client counted them, where known (the ITL definition's
    /// `N`).
    pub client_tokens: Option<f64>,
    /// vLLM engines serving the run side by side (`--data-parallel-size`; 1 unless
    /// `run_metadata.csv` says more).
    pub dp: u32,
    /// Whether the MoE's experts were spread over the GPUs (`--enable-expert-parallel`;
    /// off unless `run_metadata.csv` says so).
    pub expert_parallel: bool,
    /// Measured aggregates by stage (-1 the whole run), in file order.
    pub measured: Vec<(i32, Latencies)>,
}

#[derive(Deserialize)]
struct RunRow {
    run_id: String,
    stage: i32,
    model: String,
    gpu: String,
    tp: u32,
    max_num_batched_tokens: u32,
    max_num_seqs: u32,
    gpu_memory_utilization: Option<f64>,
    #[serde(default)]
    max_model_len: Option<u32>,
    prefix_caching: String,
    #[serde(default)]
    cpu_kv_offload: Option<String>,
    #[serde(default)]
    workload: Option<String>,
    stages: String,
    system_prompt_len: u32,
    question_len: u32,
    output_len: u32,
    num_system_prompts: u32,
    users_per_system_prompt: u32,
    ttft_mean_ms: f64,
    ttft_p90_ms: f64,
    ttft_p99_ms: f64,
    e2e_mean_ms: f64,
    e2e_p90_ms: f64,
    e2e_p99_ms: f64,
    itl_mean_ms: f64,
}

/// The columns a runs file must have.
pub const RUN_COLUMNS: [&str; 22] = [
    "run_id",
    "stage",
    "model",
    "gpu",
    "tp",
    "max_num_batched_tokens",
    "max_num_seqs",
    "gpu_memory_utilization",
    "prefix_caching",
    "stages",
    "system_prompt_len",
    "question_len",
    "output_len",
    "num_system_prompts",
    "users_per_system_prompt",
    "ttft_mean_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "e2e_mean_ms",
    "e2e_p90_ms",
    "e2e_p99_ms",
    "itl_mean_ms",
];

fn positive(field: &'static str, v: u32) -> Result<(), FieldError> {
    if v == 0 {
        return Err((field, "must be at least 1".into()));
    }
    Ok(())
}

/// A `true`/`false`/`unknown` column (`unknown` or empty: not known).
fn tristate(field: &'static str, text: &str) -> Result<Option<bool>, FieldError> {
    match text {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        "unknown" | "" => Ok(None),
        other => Err((
            field,
            format!("must be true, false or unknown (got '{other}')"),
        )),
    }
}

fn convert_run(r: RunRow) -> Result<ServingRun, FieldError> {
    let stages = parse_stages(&r.stages).map_err(|e| ("stages", e))?;
    if r.stage < -1 || r.stage >= stages.len() as i32 {
        return Err((
            "stage",
            format!(
                "must be -1 (whole run) or a stage of '{}' from 0 (got {})",
                r.stages, r.stage
            ),
        ));
    }
    for (field, v) in [
        ("tp", r.tp),
        ("max_num_batched_tokens", r.max_num_batched_tokens),
        ("max_num_seqs", r.max_num_seqs),
        ("output_len", r.output_len),
        ("num_system_prompts", r.num_system_prompts),
        ("users_per_system_prompt", r.users_per_system_prompt),
    ] {
        positive(field, v)?;
    }
    if r.max_model_len == Some(0) {
        return Err(("max_model_len", "must be at least 1 token, or empty".into()));
    }
    if r.system_prompt_len + r.question_len == 0 {
        return Err((
            "question_len",
            "the prompt (system_prompt_len + question_len) must have at least 1 token".into(),
        ));
    }
    if let Some(u) = r.gpu_memory_utilization
        && !(u > 0.0 && u <= 1.0)
    {
        return Err((
            "gpu_memory_utilization",
            format!("must lie in (0, 1] (got {u})"),
        ));
    }
    let prefix_caching = tristate("prefix_caching", &r.prefix_caching)?;
    let cpu_kv_offload = tristate("cpu_kv_offload", r.cpu_kv_offload.as_deref().unwrap_or(""))?;
    let measured = [
        ("ttft_mean_ms", r.ttft_mean_ms),
        ("ttft_p90_ms", r.ttft_p90_ms),
        ("ttft_p99_ms", r.ttft_p99_ms),
        ("e2e_mean_ms", r.e2e_mean_ms),
        ("e2e_p90_ms", r.e2e_p90_ms),
        ("e2e_p99_ms", r.e2e_p99_ms),
        ("itl_mean_ms", r.itl_mean_ms),
    ];
    for (field, v) in measured {
        if !(v.is_finite() && v > 0.0) {
            return Err((field, format!("must be a positive number of ms (got {v})")));
        }
    }
    Ok(ServingRun {
        id: r.run_id,
        model: r.model,
        gpu: r.gpu,
        tp: r.tp,
        max_batched_tokens: r.max_num_batched_tokens,
        max_seqs: r.max_num_seqs,
        gpu_mem_util: r.gpu_memory_utilization,
        max_model_len: r.max_model_len,
        prefix_caching,
        cpu_kv_offload,
        cpu_kv_blocks: None,
        workload: r.workload.filter(|w| !w.is_empty()),
        stages,
        system_len: r.system_prompt_len,
        question_len: r.question_len,
        output_len: r.output_len,
        groups: r.num_system_prompts,
        per_group: r.users_per_system_prompt,
        client_tokens: None,
        dp: 1,
        expert_parallel: false,
        measured: vec![(r.stage, measured.map(|(_, v)| v))],
    })
}

#[derive(Deserialize)]
struct MetaRow {
    run_id: String,
    harness_shared_prefix_effective: String,
    client_mean_output_tokens: Option<f64>,
    #[serde(default)]
    cpu_kv_blocks_vllm_log: Option<u64>,
    #[serde(default)]
    dp: Option<u32>,
    #[serde(default)]
    expert_parallel: Option<bool>,
}

/// Facts of one run from `run_metadata.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMeta {
    /// The run's id.
    pub id: String,
    /// The prompt structure the load generator really used, `(groups, per group)`.
    pub prefix: Option<(u32, u32)>,
    /// Mean output tokens as the client counted them.
    pub client_tokens: Option<f64>,
    /// The CPU KV pool's size in the engine's log (blocks).
    pub cpu_kv_blocks: Option<u64>,
    /// Data-parallel engines, where given.
    pub dp: Option<u32>,
    /// Whether expert parallelism was on, where given.
    pub expert_parallel: Option<bool>,
}

/// The number after `key=` in `text`.
fn number_after(text: &str, key: &str) -> Option<u32> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&n| n > 0)
}

fn convert_meta(r: MetaRow) -> Result<RunMeta, FieldError> {
    let text = r.harness_shared_prefix_effective;
    let prefix = if text.is_empty() {
        None
    } else {
        match (
            number_after(&text, "num_groups="),
            number_after(&text, "num_prompts_per_group="),
        ) {
            (Some(g), Some(p)) => Some((g, p)),
            _ => {
                return Err((
                    "harness_shared_prefix_effective",
                    format!(
                        "must read 'num_groups=G x num_prompts_per_group=P' with G, P >= 1, or be empty (got '{text}')"
                    ),
                ));
            }
        }
    };
    if let Some(n) = r.client_mean_output_tokens
        && !(n.is_finite() && n >= 1.0)
    {
        return Err((
            "client_mean_output_tokens",
            format!("must be at least 1 token (got {n})"),
        ));
    }
    if r.cpu_kv_blocks_vllm_log == Some(0) {
        return Err((
            "cpu_kv_blocks_vllm_log",
            "must be at least 1 block, or empty".into(),
        ));
    }
    if r.dp == Some(0) {
        return Err(("dp", "must be at least 1 engine, or empty".into()));
    }
    Ok(RunMeta {
        id: r.run_id,
        prefix,
        client_tokens: r.client_mean_output_tokens,
        cpu_kv_blocks: r.cpu_kv_blocks_vllm_log,
        dp: r.dp,
        expert_parallel: r.expert_parallel,
    })
}

/// Parses a runs file's bytes (`path` names it in errors) into runs, the rows of each run
/// merged in file order, with `meta` (from `run_metadata.csv`) applied where it names the
/// run. A run's rows must agree on its setup.
pub fn parse_runs(
    bytes: &[u8],
    path: &Path,
    meta: &[RunMeta],
) -> Result<Vec<ServingRun>, CsvError> {
    let mut line = 1;
    let rows = parse_rows(bytes, path, &RUN_COLUMNS, |r: RunRow| {
        line += 1;
        convert_run(r).map(|run| (line, run))
    })?;
    let mut runs: Vec<ServingRun> = Vec::new();
    for (line, row) in rows {
        match runs.iter_mut().find(|r| r.id == row.id) {
            Some(run) => {
                let same = ServingRun {
                    measured: run.measured.clone(),
                    ..row.clone()
                };
                if same != *run {
                    return Err(CsvError::Row {
                        path: path.to_path_buf(),
                        line: line as u64,
                        field: "run_id".into(),
                        why: format!("run {} has a different setup on an earlier row", row.id),
                    });
                }
                if run.measured.iter().any(|(s, _)| *s == row.measured[0].0) {
                    return Err(CsvError::Row {
                        path: path.to_path_buf(),
                        line: line as u64,
                        field: "stage".into(),
                        why: format!("run {} has stage {} twice", row.id, row.measured[0].0),
                    });
                }
                run.measured.extend(row.measured);
            }
            None => runs.push(row),
        }
    }
    for run in &mut runs {
        if let Some(m) = meta.iter().find(|m| m.id == run.id) {
            if let Some((g, p)) = m.prefix {
                (run.groups, run.per_group) = (g, p);
            }
            run.client_tokens = m.client_tokens;
            run.cpu_kv_blocks = m.cpu_kv_blocks;
            run.dp = m.dp.unwrap_or(1);
            run.expert_parallel = m.expert_parallel.unwrap_or(false);
        }
    }
    Ok(runs)
}

/// The columns `run_metadata.csv` must have.
pub const META_COLUMNS: [&str; 3] = [
    "run_id",
    "harness_shared_prefix_effective",
    "client_mean_output_tokens",
];

/// Parses `run_metadata.csv`'s bytes (`path` names it in errors).
pub fn parse_meta(bytes: &[u8], path: &Path) -> Result<Vec<RunMeta>, CsvError> {
    parse_rows(bytes, path, &META_COLUMNS, convert_meta)
}

impl ServingRun {
    /// Tokens of every prompt.
    pub fn prompt_len(&self) -> u32 {
        self.system_len + self.question_len
    }

    /// Why the run cannot be simulated as it was served, if it cannot: several
    /// data-parallel engines, or experts spread over the GPUs. One engine of `tp` GPUs
    /// with tensor-parallel experts is what is modelled, and scoring another deployment
    /// against it would be wrong, not approximate.
    pub fn unmodelled(&self) -> Option<RangeError> {
        if self.dp > 1 {
            return Some(RangeError {
                field: "dp",
                why: format!(
                    "{} data-parallel engines (run_metadata.csv) are not modelled: fidelity simulates one vLLM engine of tp GPUs",
                    self.dp
                ),
            });
        }
        self.expert_parallel.then(|| RangeError {
            field: "expert_parallel",
            why: "expert parallelism (run_metadata.csv) is not modelled: llmsim splits every expert across the tensor-parallel GPUs".into(),
        })
    }

    /// Why vLLM rejects every request of the run, if it does: prompt plus output tokens
    /// above `max_model_len` (vLLM checks `prompt + max_tokens <= max_model_len` before a
    /// request reaches the scheduler).
    pub fn rejected(&self) -> Option<RangeError> {
        let asked = self.prompt_len() + self.output_len;
        let limit = self.max_model_len?;
        (asked > limit).then(|| RangeError {
            field: "max_model_len",
            why: format!(
                "every request asks for {asked} tokens (prompt {} + output {}), above max_model_len {limit}: vLLM rejects them all, so there is nothing to score",
                self.prompt_len(),
                self.output_len
            ),
        })
    }

    /// The config of stage `stage` (its first `max_requests` requests, if given) under
    /// `cost`: vLLM V1's policy (`sarathi`: one token budget per step shared by decodes
    /// and prefill chunks, recompute preemption) with the run's knobs, prefix caching
    /// unless a source says it was off, the KV cache from the GPU's memory.
    pub fn config(
        &self,
        stage: Stage,
        cost: &CostSpec,
        max_requests: Option<usize>,
        seed: u64,
    ) -> Config {
        let requests = max_requests.map_or(stage.requests(), |m| m.min(stage.requests()));
        Config {
            scheduler: SchedulerKind::Sarathi,
            workload: WorkloadSpec::Synthetic,
            rate: Some(stage.rate),
            requests: Some(requests.max(2)),
            warmup: Some(0),
            arrivals: Some(ArrivalKind::Poisson),
            prompt: Some(LengthDist::Fixed(self.prompt_len())),
            decode: Some(LengthDist::Fixed(self.output_len - 1)),
            cost: cost.clone(),
            max_seqs: Some(self.max_seqs),
            max_batched_tokens: Some(self.max_batched_tokens),
            gpu_mem_util: self.gpu_mem_util.unwrap_or(0.9),
            model: self.model.clone(),
            gpu: Some(self.gpu.clone()),
            tp: self.tp,
            prefix_cache: self.prefix_caching.unwrap_or(true),
            seed,
            ..Config::default()
        }
    }

    /// `config` with the CPU tier of the run's offload, if it had one: the pool's blocks
    /// from the engine's log, else [`OFFLOAD_POOL_BYTES`] over one block's KV bytes on one
    /// GPU, rounded down.
    pub fn offload(&self, mut config: Config, files: &dyn Files) -> Result<Config, RangeError> {
        if self.cpu_kv_offload == Some(true) {
            config.cpu_kv_blocks = Some(match self.cpu_kv_blocks {
                Some(blocks) => blocks,
                None => {
                    let hw = config.hardware(files)?;
                    let block = f64::from(config.block_size)
                        * kv::bytes_per_token_per_gpu(&hw.model.shape, hw.parallel);
                    (OFFLOAD_POOL_BYTES / block) as u64
                }
            });
        }
        Ok(config)
    }

    /// The shared prompts: `groups x per_group` prefixes of one id per token, the system
    /// prompt's tokens named by its group and the question's by its group and index, so
    /// that prompts of a group share exactly the system prompt. Request `k` uses prompt
    /// `k mod (groups x per_group)`; the prompts cycle through the groups so that
    /// consecutive requests have different system prompts, like the generator's shuffled
    /// list.
    fn prompts(&self) -> Vec<Arc<Prefix>> {
        let n = self.groups * self.per_group;
        (0..n)
            .map(|k| {
                let (g, q) = (u64::from(k % self.groups), u64::from(k / self.groups));
                let system = mix(g.wrapping_mul(2).wrapping_add(1));
                let question = mix(system ^ mix(q + 1));
                let ids = (0..self.prompt_len())
                    .map(|t| {
                        if t < self.system_len {
                            system
                        } else {
                            question
                        }
                    })
                    .collect();
                Arc::new(Prefix {
                    block_tokens: 1,
                    ids,
                    session: None,
                })
            })
            .collect()
    }

    /// Simulates every stage under `cost` (each with at most `max_requests` requests, if
    /// given) and returns the client-side aggregates by stage, then the whole run (-1),
    /// with `client`'s overheads added to each request's TTFT and E2E. The config
    /// of each stage is checked as `llmsim run` checks it (an unknown model or GPU, a
    /// model too large for the GPU, fail here).
    pub fn simulate(
        &self,
        cost: &CostSpec,
        client: Client,
        max_requests: Option<usize>,
        seed: u64,
        files: &dyn Files,
    ) -> Result<Vec<(i32, Latencies)>, RangeError> {
        if let Some(e) = self.unmodelled().or_else(|| self.rejected()) {
            return Err(e);
        }
        let prompts = self.prompts();
        let mut all = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        for (s, &stage) in self.stages.iter().enumerate() {
            let built = self
                .offload(
                    self.config(stage, cost, max_requests, seed.wrapping_add(s as u64)),
                    files,
                )?
                .build(files)?;
            let requests: Vec<Request> = built
                .run
                .workload
                .iter(built.run.seed, 0)
                .enumerate()
                .map(|(k, r)| Request {
                    prefix: Some(prompts[k % prompts.len()].clone()),
                    ..r
                })
                .collect();
            let sim = simulate_records(&requests, &built.run.engine, built.run.seed, 0, 0);
            let (mut ttft, mut e2e) = (Vec::new(), Vec::new());
            for (r, rec) in requests.iter().zip(&sim.records) {
                let tbt = (rec.completion - rec.first_token) / f64::from(r.decode.max(1));
                let shift = client.request_s + client.lag_steps * tbt;
                ttft.push(rec.first_token - r.arrival + shift);
                e2e.push(rec.completion - r.arrival + shift);
            }
            out.push((s as i32, self.aggregate(&mut ttft, &mut e2e)));
            all.0.extend(ttft);
            all.1.extend(e2e);
        }
        out.push((-1, self.aggregate(&mut all.0, &mut all.1)));
        Ok(out)
    }

    /// The aggregates of per-request TTFTs and E2Es (seconds) in ms; sorts them.
    fn aggregate(&self, ttft: &mut [f64], e2e: &mut [f64]) -> Latencies {
        ttft.sort_by(f64::total_cmp);
        e2e.sort_by(f64::total_cmp);
        let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        let tokens = self.client_tokens.unwrap_or(f64::from(self.output_len));
        let itl = (mean(e2e) - mean(ttft)) / (tokens - 1.0).max(1.0);
        [
            mean(ttft),
            quantile_sorted(ttft, 0.9),
            quantile_sorted(ttft, 0.99),
            mean(e2e),
            quantile_sorted(e2e, 0.9),
            quantile_sorted(e2e, 0.99),
            itl,
        ]
        .map(|s| s * 1e3)
    }
}

/// Signed error of `predicted` against `measured` (percent).
pub fn pct_error(predicted: f64, measured: f64) -> f64 {
    100.0 * (predicted - measured) / measured
}

/// What a client measures beyond the engine's request latency ([`ServingPreset`]'s
/// `request_overhead_s` and `schedule_lag_steps`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Client {
    /// Added to every request (seconds).
    pub request_s: f64,
    /// Added to every request in units of its own mean inter-token time (steps).
    pub lag_steps: f64,
}

impl Client {
    /// The client-side overheads of `preset`.
    pub fn of(preset: &ServingPreset) -> Client {
        Client {
            request_s: preset.request_overhead_s,
            lag_steps: preset.schedule_lag_steps,
        }
    }
}

/// The serving preset `cost` names (a built-in one or a file that is one), whose
/// `request_overhead_s` a client-side comparison adds; `None` for other cost models.
pub fn serving_preset(cost: &CostSpec, files: &dyn Files) -> Option<ServingPreset> {
    match cost.split().0 {
        CostSpec::Preset { name } => ServingPreset::built_in(name),
        CostSpec::File { path } => files
            .read_text(path)
            .ok()
            .filter(|t| ServingPreset::looks_like(t))
            .and_then(|t| ServingPreset::parse(&t, "").ok()),
        _ => None,
    }
}

/// One run's predictions, or why it was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The run's id.
    pub id: String,
    /// Predicted aggregates by stage (-1 the whole run), or the reason it was not simulated.
    pub predicted: Result<Vec<(i32, Latencies)>, String>,
}

/// Simulates every run under `cost` (in parallel with the `parallel` feature; results in
/// run order), adding `client`'s overheads to every request. A run whose config does not
/// build (an unknown model or GPU, a model that does not fit) is kept with the reason.
pub fn score(
    runs: &[ServingRun],
    cost: &CostSpec,
    client: Client,
    max_requests: Option<usize>,
    seed: u64,
    files: &(dyn Files + Sync),
) -> Vec<Scored> {
    crate::sim::map_reps(runs.len() as u32, |i| {
        let run = &runs[i as usize];
        Scored {
            id: run.id.clone(),
            predicted: run
                .simulate(cost, client, max_requests, seed, files)
                .map_err(|e| format!("{}: {}", e.field, e.why)),
        }
    })
}

/// The cost model a run gets unless told otherwise (`llmsim fidelity` without `--cost`):
/// the built-in serving preset fitted to real vLLM runs, a roofline with its efficiencies
/// and overheads for any model, GPU and TP degree.
pub const DEFAULT_COST: &str = "vllm";

/// `llmsim fidelity`'s scoring: simulates every run under `cost` (a serving preset's
/// client-side overheads added when `cost` is one) with at most `max_requests` requests
/// per stage (all if `None`). A `cost` file that `files` lacks, or fewer than 2 requests,
/// are errors naming the setting (`cost`, `max-requests`).
pub fn fidelity(
    runs: &[ServingRun],
    cost: &CostSpec,
    max_requests: Option<usize>,
    seed: u64,
    files: &(dyn Files + Sync),
) -> Result<Vec<Scored>, RangeError> {
    if let CostSpec::File { path } = cost
        && !files.has_file(path)
    {
        return Err(RangeError {
            field: "cost",
            why: format!(
                "'{}' is neither a built-in cost model nor a file",
                path.display()
            ),
        });
    }
    if max_requests.is_some_and(|n| n < 2) {
        return Err(RangeError {
            field: "max-requests",
            why: "must be at least 2".into(),
        });
    }
    let client = serving_preset(cost, files).map_or(Client::default(), |p| Client::of(&p));
    Ok(score(runs, cost, client, max_requests, seed, files))
}

/// `(run, stage, measured, predicted)` of every stage that both sides have, in run order.
pub fn pairs<'a>(
    runs: &'a [ServingRun],
    scored: &'a [Scored],
) -> impl Iterator<Item = (&'a ServingRun, i32, Latencies, Latencies)> + 'a {
    runs.iter().zip(scored).flat_map(|(run, s)| {
        let predicted = s.predicted.as_deref().unwrap_or(&[]);
        run.measured.iter().filter_map(move |&(stage, m)| {
            predicted
                .iter()
                .find(|(p, _)| *p == stage)
                .map(|&(_, p)| (run, stage, m, p))
        })
    })
}

/// Mean absolute percentage error per metric over the simulated runs, each run counted
/// once: by its whole-run row (stage -1), or, for a run given by stage rows alone, by the
/// mean of its stages' errors; NaN for no simulated run.
pub fn mape(runs: &[ServingRun], scored: &[Scored]) -> Latencies {
    let per_run: Vec<Latencies> = runs
        .iter()
        .zip(scored)
        .filter_map(|(run, s)| {
            let errors: Vec<(i32, Latencies)> =
                pairs(std::slice::from_ref(run), std::slice::from_ref(s))
                    .map(|(_, stage, m, p)| {
                        (stage, std::array::from_fn(|i| pct_error(p[i], m[i]).abs()))
                    })
                    .collect();
            if let Some(&(_, whole)) = errors.iter().find(|(stage, _)| *stage == -1) {
                return Some(whole);
            }
            let n = errors.len() as f64;
            (n > 0.0)
                .then(|| std::array::from_fn(|i| errors.iter().map(|e| e.1[i]).sum::<f64>() / n))
        })
        .collect();
    let n = per_run.len() as f64;
    std::array::from_fn(|i| per_run.iter().map(|e| e[i]).sum::<f64>() / n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `runs` scored on the plain roofline, with no client overheads and no files.
    fn score_on_roofline(runs: &[ServingRun]) -> Vec<Scored> {
        let files = crate::files::Memory::default();
        let cost = CostSpec::Roofline { gpu: None };
        score(runs, &cost, Client::default(), None, 1, &files)
    }

    /// The header of a runs file with every column [`RUN_COLUMNS`] names, plus one it
    /// ignores.
    pub(crate) const HEADER: &str = "run_id,stage,model,gpu,tp,max_num_batched_tokens,max_num_seqs,gpu_memory_utilization,prefix_caching,stages,system_prompt_len,question_len,output_len,num_system_prompts,users_per_system_prompt,ttft_mean_ms,ttft_p90_ms,ttft_p99_ms,e2e_mean_ms,e2e_p90_ms,e2e_p99_ms,itl_mean_ms,source";

    /// A row of run `id`, stage `stage`, with `stages` and measured values `m`.
    pub(crate) fn row(id: &str, stage: i32, model: &str, stages: &str, m: f64) -> String {
        format!(
            "{id},{stage},{model},H100-80GB,1,2048,128,,unknown,{stages},100,400,50,9,5,{m},{m},{m},{m},{m},{m},{m},src"
        )
    }

    fn parse(text: &str) -> Result<Vec<ServingRun>, CsvError> {
        parse_runs(text.as_bytes(), Path::new("runs.csv"), &[])
    }

    #[test]
    fn stages_parse_and_bad_ones_say_why() {
        let s = parse_stages("2.5x600;6x600").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].requests(), s[1].requests()), (1500, 3600));
        for bad in ["", "5", "5x", "0x600", "-1x10", "1x1", "nanx5", "5x600;"] {
            assert!(parse_stages(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_merge_into_runs_and_metadata_applies() {
        let text = [
            HEADER.to_string(),
            row(
                "a",
                -1,
                "meta-llama/Llama-3.1-8B-Instruct",
                "5x10;10x10",
                9.0,
            ),
            row(
                "a",
                0,
                "meta-llama/Llama-3.1-8B-Instruct",
                "5x10;10x10",
                8.0,
            ),
            row("b", 0, "Qwen/Qwen3-14B", "4x10", 7.0),
        ]
        .join("\n");
        let meta = parse_meta(
            b"run_id,harness_shared_prefix_effective,client_mean_output_tokens\na,num_groups=10 x num_prompts_per_group=10 (measured),45.5\nb,,\n",
            Path::new("run_metadata.csv"),
        )
        .unwrap();
        let runs = parse_runs(text.as_bytes(), Path::new("runs.csv"), &meta).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].measured, vec![(-1, [9.0; 7]), (0, [8.0; 7])]);
        assert_eq!((runs[0].groups, runs[0].per_group), (10, 10));
        assert_eq!(runs[0].client_tokens, Some(45.5));
        // No effective structure: the configured one stays.
        assert_eq!(
            (runs[1].groups, runs[1].per_group, runs[1].client_tokens),
            (9, 5, None)
        );
        assert_eq!(runs[0].prefix_caching, None);
    }

    /// A format error names the file, the line (the header is line 1) and the field.
    #[test]
    fn format_errors_name_file_line_and_field() {
        let good = row("a", 0, "m", "5x10", 1.0);
        for (bad, field) in [
            (good.replace(",5x10,", ",5y10,"), "stages"),
            (good.replacen(",0,", ",3,", 1), "stage"),
            (good.replace(",H100-80GB,1,", ",H100-80GB,0,"), "tp"),
            (good.replace(",H100-80GB,1,", ",H100-80GB,x,"), "tp"),
            (good.replace(",unknown,", ",maybe,"), "prefix_caching"),
            (
                good.replace(",128,,", ",128,1.5,"),
                "gpu_memory_utilization",
            ),
            (good.replace(",1,src", ",-1,src"), "itl_mean_ms"),
        ] {
            let text = format!("{HEADER}\n{good}\n{bad}\n");
            let e = parse(&text).unwrap_err().to_string();
            assert!(
                e.contains("runs.csv") && e.contains("line 3") && e.contains(field),
                "{field}: {e}"
            );
        }
        let e = parse(&HEADER.replace(",stages,", ",stagez,"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("stages"), "{e}");
        let twice = format!("{HEADER}\n{good}\n{good}\n");
        assert!(parse(&twice).unwrap_err().to_string().contains("twice"));
        let other = format!(
            "{HEADER}\n{good}\n{}\n",
            good.replacen(",0,m,", ",-1,n,", 1)
        );
        let e = parse(&other).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("run_id"), "{e}");
        let meta = parse_meta(
            b"run_id,harness_shared_prefix_effective,client_mean_output_tokens\na,10 x 10,\n",
            Path::new("m.csv"),
        )
        .unwrap_err()
        .to_string();
        assert!(meta.contains("line 2") && meta.contains("harness_shared_prefix_effective"));
    }

    /// Prompts of a group share exactly the system prompt; every prompt recurs every
    /// `groups x per_group` requests.
    #[test]
    fn shared_prompts_share_the_system_prompt_only() {
        let text = format!("{HEADER}\n{}", row("a", 0, "m", "5x10", 1.0));
        let run = &parse(&text).unwrap()[0];
        let p = run.prompts();
        assert_eq!(p.len(), 45);
        assert_eq!(p[0].ids.len(), 500);
        // Prompts 0 and 9 are group 0's first two questions.
        assert_eq!(p[0].ids[..100], p[9].ids[..100]);
        assert_ne!(p[0].ids[100], p[9].ids[100]);
        assert_ne!(p[0].ids[0], p[1].ids[0]);
        let keys = |k: usize| p[k].block_keys(16, 31).collect::<Vec<_>>();
        assert_eq!(keys(0)[..6], keys(9)[..6]);
        assert_ne!(keys(0)[6], keys(9)[6]);
    }

    /// The aggregates by hand: mean, numpy-linear p90/p99, and the file's ITL
    /// `(mean E2E - mean TTFT) / (N - 1)`, with `N` the client's count where given.
    #[test]
    fn aggregates_by_hand() {
        let text = format!("{HEADER}\n{}", row("a", 0, "m", "5x10", 1.0));
        let mut run = parse(&text).unwrap().remove(0);
        let mut ttft = [0.01, 0.03, 0.02];
        let mut e2e = [1.0, 3.0, 2.0];
        let a = run.aggregate(&mut ttft, &mut e2e);
        let want_itl = (2000.0 - 20.0) / 49.0;
        for (got, want) in a
            .iter()
            .zip([20.0, 28.0, 29.8, 2000.0, 2800.0, 2980.0, want_itl])
        {
            assert!((got - want).abs() < 1e-9, "{a:?}");
        }
        run.client_tokens = Some(34.0);
        assert!((run.aggregate(&mut ttft, &mut e2e)[6] - 1980.0 / 33.0).abs() < 1e-9);
    }

    /// Client overheads shift every request's TTFT and E2E alike: by `request_s`, and by
    /// `lag_steps` of its own inter-token time, which a single request's run gives back.
    #[test]
    fn client_overheads_shift_ttft_and_e2e() {
        let text = format!(
            "{HEADER}\n{}",
            row("a", 0, "meta-llama/Llama-3.1-8B", "0.2x10", 1.0)
        );
        let run = parse(&text).unwrap().remove(0);
        let files = crate::files::Memory::default();
        let cost = CostSpec::Roofline { gpu: None };
        let at = |client| run.simulate(&cost, client, None, 1, &files).unwrap();
        let base = at(Client::default());
        let shifted = at(Client {
            request_s: 0.005,
            lag_steps: 0.0,
        });
        for i in [0, 1, 2, 3, 4, 5] {
            assert!((shifted[0].1[i] - base[0].1[i] - 5.0).abs() < 1e-9);
        }
        assert!((shifted[0].1[6] - base[0].1[6]).abs() < 1e-9);
        // At 0.2 requests/s two requests rarely overlap: the lag adds about one ITL.
        let lagged = at(Client {
            request_s: 0.0,
            lag_steps: 1.0,
        });
        let added = lagged[0].1[0] - base[0].1[0];
        assert!((added / base[0].1[6] - 1.0).abs() < 0.05, "{added}");
        // The whole run pools its one stage.
        assert_eq!(base[1].0, -1);
        assert_eq!(base[0].1, base[1].1);
    }

    /// `max_model_len` is optional (a file without the column, an empty cell: no limit); a
    /// run whose prompt + output (500 + 50 tokens here) exceeds it is skipped with the
    /// reason, one that fits it exactly is simulated; 0 is a format error.
    #[test]
    fn max_model_len_rejects_requests_that_exceed_it() {
        let header = HEADER.replace(
            ",gpu_memory_utilization,",
            ",gpu_memory_utilization,max_model_len,",
        );
        let row_with = |id: &str, len: &str| {
            row(id, 0, "meta-llama/Llama-3.1-8B", "0.5x10", 1.0)
                .replace(",128,,unknown,", &format!(",128,,{len},unknown,"))
        };
        let text = format!(
            "{header}\n{}\n{}\n{}\n",
            row_with("over", "549"),
            row_with("exact", "550"),
            row_with("none", "")
        );
        let runs = parse(&text).unwrap();
        let limits: Vec<_> = runs.iter().map(|r| r.max_model_len).collect();
        assert_eq!(limits, [Some(549), Some(550), None]);
        assert_eq!(
            parse(&format!("{HEADER}\n{}", row("a", 0, "m", "5x10", 1.0))).unwrap()[0]
                .max_model_len,
            None
        );
        let s = score_on_roofline(&runs);
        let why = s[0].predicted.as_ref().unwrap_err();
        assert!(
            why.starts_with("max_model_len:") && why.contains("550 tokens") && why.contains("549"),
            "{why}"
        );
        assert!(s[1].predicted.is_ok() && s[2].predicted.is_ok());
        let e = parse(&format!("{header}\n{}\n", row_with("zero", "0")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("max_model_len"), "{e}");
    }

    /// `workload` is optional: read where the file has it, `None` for an empty cell or
    /// no column.
    #[test]
    fn workload_is_read_where_the_file_has_it() {
        let header = HEADER.replace(",stages,", ",workload,stages,");
        let with = |w: &str| {
            row("a", 0, "m", "2x10", 1.0).replace(",unknown,2x10,", &format!(",unknown,{w},2x10,"))
        };
        let text = format!(
            "{header}\n{}\n{}\n",
            with("codegen"),
            with("").replace("a,", "b,")
        );
        let runs = parse(&text).unwrap();
        assert_eq!(runs[0].workload.as_deref(), Some("codegen"));
        assert_eq!(runs[1].workload, None);
        let plain = format!("{HEADER}\n{}\n", row("a", 0, "m", "2x10", 1.0));
        assert_eq!(parse(&plain).unwrap()[0].workload, None);
    }

    /// `cpu_kv_offload` is optional (no column, an empty cell: off); a run with it gets
    /// the CPU tier of the size the metadata's `cpu_kv_blocks_vllm_log` gives, else 8 GiB
    /// over one GPU's block: Llama-3.1-8B holds 2 x 32 layers x 8 KV heads x 128 x 2 bytes
    /// = 128 KiB per token, 2 MiB per 16-token block, so 4096 blocks on one GPU and 8192
    /// on each of two (its KV heads split over them).
    #[test]
    fn cpu_kv_offload_turns_the_cpu_tier_on_at_the_pool_size() {
        let header = HEADER.replace(",prefix_caching,", ",prefix_caching,cpu_kv_offload,");
        let row_with = |id: &str, tp: u32, offload: &str| {
            row(id, 0, "meta-llama/Llama-3.1-8B", "0.5x10", 1.0)
                .replace(",H100-80GB,1,", &format!(",H100-80GB,{tp},"))
                .replace(",unknown,", &format!(",unknown,{offload},"))
        };
        let text = format!(
            "{header}\n{}\n{}\n{}\n{}\n{}\n",
            row_with("on", 1, "true"),
            row_with("tp2", 2, "true"),
            row_with("logged", 1, "true"),
            row_with("off", 1, "false"),
            row_with("blank", 1, ""),
        );
        let meta = parse_meta(
            b"run_id,harness_shared_prefix_effective,client_mean_output_tokens,cpu_kv_blocks_vllm_log\nlogged,,,1023\noff,,,\n",
            Path::new("run_metadata.csv"),
        )
        .unwrap();
        let runs = parse_runs(text.as_bytes(), Path::new("runs.csv"), &meta).unwrap();
        let files = crate::files::Memory::default();
        let cost = CostSpec::Roofline { gpu: None };
        let blocks: Vec<Option<u64>> = runs
            .iter()
            .map(|r| {
                let config = r.offload(r.config(r.stages[0], &cost, None, 1), &files);
                config.unwrap().cpu_kv_blocks
            })
            .collect();
        assert_eq!(blocks, [Some(4096), Some(8192), Some(1023), None, None]);
        assert_eq!(
            parse(&format!("{HEADER}\n{}", row("a", 0, "m", "5x10", 1.0))).unwrap()[0]
                .cpu_kv_offload,
            None
        );
        // The tier is built as `run` builds it, on the run's card.
        let built = runs[0]
            .offload(runs[0].config(runs[0].stages[0], &cost, None, 1), &files)
            .unwrap()
            .build(&files)
            .unwrap();
        let tier = built.run.engine.cpu_kv.unwrap();
        assert_eq!(
            (tier.blocks, tier.link.kv_bytes_per_token),
            (4096, 131_072.0)
        );
        assert_eq!(tier.link.gbytes_per_s, 64.0);
        let e = parse(&format!("{header}\n{}\n", row_with("bad", 1, "yes")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("cpu_kv_offload"), "{e}");
        let e = parse_meta(
            b"run_id,harness_shared_prefix_effective,client_mean_output_tokens,cpu_kv_blocks_vllm_log\na,,,0\n",
            Path::new("m.csv"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 2") && e.contains("cpu_kv_blocks_vllm_log"),
            "{e}"
        );
    }

    #[test]
    fn unknown_models_are_skipped_with_the_reason() {
        let text = format!(
            "{HEADER}\n{}",
            row("a", 0, "nobody/NoModel-1B", "5x10", 1.0)
        );
        let runs = parse(&text).unwrap();
        let s = score_on_roofline(&runs);
        let why = s[0].predicted.as_ref().unwrap_err();
        assert!(
            why.starts_with("model:") && why.contains("nobody/NoModel-1B"),
            "{why}"
        );
        assert!(mape(&runs, &s).iter().all(|v| v.is_nan()));
    }

    /// A run served by several data-parallel engines, or with its experts spread over the
    /// GPUs, is skipped with the reason naming `run_metadata.csv`'s column, not simulated
    /// as one engine; `dp` 1 or empty and `expert_parallel` false are simulated; `dp` 0 is
    /// a format error.
    #[test]
    fn data_and_expert_parallel_runs_are_skipped_with_the_reason() {
        let model = "meta-llama/Llama-3.1-8B";
        let text = ["one", "blank", "dp2", "ep"]
            .map(|id| row(id, 0, model, "0.5x10", 1.0))
            .join("\n");
        let meta = parse_meta(
            b"run_id,harness_shared_prefix_effective,client_mean_output_tokens,dp,expert_parallel\none,,,1,false\nblank,,,,\ndp2,,,2,false\nep,,,1,true\n",
            Path::new("run_metadata.csv"),
        )
        .unwrap();
        let runs = parse_runs(
            format!("{HEADER}\n{text}").as_bytes(),
            Path::new("r.csv"),
            &meta,
        )
        .unwrap();
        let s = score_on_roofline(&runs);
        assert!(s[0].predicted.is_ok() && s[1].predicted.is_ok());
        let why = |i: usize| s[i].predicted.clone().unwrap_err();
        assert!(
            why(2).starts_with("dp: 2 data-parallel engines"),
            "{}",
            why(2)
        );
        assert!(why(3).starts_with("expert_parallel:"), "{}", why(3));
        let bad = parse_meta(
            b"run_id,harness_shared_prefix_effective,client_mean_output_tokens,dp\na,,,0\n",
            Path::new("run_metadata.csv"),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("line 2") && bad.contains("dp"), "{bad}");
    }

    /// Each run counts once: by its whole-run row, or by the mean of its stages' errors
    /// when it has none.
    #[test]
    fn mape_counts_each_run_once() {
        let text = [
            HEADER.to_string(),
            row("a", -1, "llama-3.1-8b", "5x10", 100.0),
            row("a", 0, "llama-3.1-8b", "5x10", 100.0),
            row("b", 0, "llama-3.1-8b", "5x10;5x10", 100.0),
            row("b", 1, "llama-3.1-8b", "5x10;5x10", 100.0),
        ]
        .join("\n");
        let runs = parse(&text).unwrap();
        let lat = |v: f64| [v; 7];
        let scored = vec![
            Scored {
                id: "a".into(),
                predicted: Ok(vec![(-1, lat(110.0)), (0, lat(150.0))]),
            },
            Scored {
                id: "b".into(),
                predicted: Ok(vec![(0, lat(80.0)), (1, lat(140.0))]),
            },
        ];
        // a: 10% (its whole run); b: the mean of 20% and 40%, 30%.
        for v in mape(&runs, &scored) {
            assert!((v - 20.0).abs() < 1e-9, "{v}");
        }
    }
}
