//! Against a real engine (ours; needs the shared runs): llmsim's whole-run errors on the
//! real vLLM runs of `shared/fidelity` with the cost model a user gets without a flag (the
//! built-in `vllm` serving preset), beside the errors other simulators published for the
//! same runs (`peer_predictions.csv`), per metric.

use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

use super::Experiment;
use super::grid::Ctx;
use super::table::Table;
use crate::files::{Disk, read_bytes, read_serving_runs};
use llmsim::config::CostSpec;
use llmsim::cost::ServingPreset;
use llmsim::csvio::{CsvError, parse_rows};
use llmsim::serving::{Client, METRICS, mape, score};

/// The runs file, under the shared folder.
pub const RUNS: &str = "fidelity/vllm_runs.csv";
/// The peers' published predictions, under the shared folder.
pub const PEERS: &str = "fidelity/peer_predictions.csv";
/// The serving preset scored: what `llmsim fidelity` uses without `--cost`.
pub const PRESET: &str = "vllm";

#[derive(Deserialize)]
struct PeerRow {
    run_id: String,
    stage: i32,
    simulator: String,
    metric: String,
    pct_error: f64,
}

/// Rows `(simulator, metric, MAPE %, runs)`: llmsim first (every metric), then each peer
/// in name order, for the metrics it published, over its whole-run rows.
pub fn run(ctx: &Ctx) -> Result<Table, CsvError> {
    let runs = read_serving_runs(&ctx.shared.join(RUNS))?;
    let peers_path = ctx.shared.join(PEERS);
    let peers = parse_rows(
        &read_bytes(&peers_path)?,
        &peers_path,
        &["run_id", "stage", "simulator", "metric", "pct_error"],
        |r: PeerRow| Ok(r),
    )?;
    let preset = ServingPreset::built_in(PRESET).expect("built-in serving preset");
    let cost = CostSpec::Preset {
        name: PRESET.into(),
    };
    let scored = score(
        &runs,
        &cost,
        Client::of(&preset),
        None,
        ctx.study.seed,
        &Disk,
    );
    let simulated = scored.iter().filter(|s| s.predicted.is_ok()).count();
    let ours = mape(&runs, &scored);
    let mut rows: Vec<Vec<super::table::Cell>> = METRICS
        .iter()
        .zip(ours)
        .map(|(m, v)| vec!["llmsim".into(), (*m).into(), v.into(), simulated.into()])
        .collect();
    // (simulator, metric) -> (sum of |error|, rows, runs)
    let mut by: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    for p in peers.iter().filter(|p| p.stage == -1) {
        let e = by
            .entry((p.simulator.clone(), p.metric.clone()))
            .or_default();
        e.0 += p.pct_error.abs();
        e.1 += 1;
    }
    let mut sims: Vec<&String> = by.keys().map(|(s, _)| s).collect();
    sims.dedup();
    for sim in sims {
        for m in METRICS {
            if let Some(&(sum, n)) = by.get(&(sim.clone(), m.to_string())) {
                rows.push(vec![
                    sim.as_str().into(),
                    m.into(),
                    (sum / n as f64).into(),
                    n.into(),
                ]);
            }
        }
    }
    let skipped: Vec<String> = scored
        .iter()
        .filter_map(|s| s.predicted.as_ref().err().map(|e| format!("{}: {e}", s.id)))
        .collect();
    let fitted_on: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let runs_with_peers: usize = peers
        .iter()
        .map(|p| p.run_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Ok(Table {
        name: Experiment::Fidelity.name(),
        header: vec!["simulator", "metric", "mape_pct", "runs"],
        rows,
        meta: json!({
            "study": { "seed": ctx.study.seed, "reps": 1 },
            "runs_file": ctx.shared.join(RUNS).display().to_string(),
            "peers_file": peers_path.display().to_string(),
            "runs": runs.len(),
            "runs_with_peer_predictions": runs_with_peers,
            "skipped": skipped,
            "cost_preset": PRESET,
            "preset_parameters": preset,
            "fitted_on": fitted_on,
        }),
        headline: format!(
            "{simulated} real vLLM runs: llmsim MAPE E2E {:.1}%, ITL {:.1}%, TTFT {:.1}% (whole run, preset {PRESET})",
            ours[3], ours[6], ours[0]
        ),
    })
}
