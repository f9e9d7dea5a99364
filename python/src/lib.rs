//! The `llmsim._llmsim` extension module: the Rust side of the `llmsim` Python package.
//! Configs cross the boundary as JSON text of [`llmsim::config::Config`] (the package's
//! `Config` is that JSON as a dict); results as JSON text in the `--json` format and
//! per-request columns as little-endian byte buffers that numpy reads without a copy
//! per request. Simulation runs on worker threads with the GIL released while the calling
//! thread checks for Ctrl-C every few milliseconds; an interrupt sets a flag that the
//! engine reads every few thousand events, so even one long replication stops promptly.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use rayon::prelude::*;

use llmsim::calibrate::{fit_error, fit_profiled};
use llmsim::config::{Built, Config, CostSpec};
use llmsim::cost::{Preset, preset};
use llmsim::limits::RangeError;
use llmsim::metrics::Summary;
use llmsim::plan::{Deployment, Family, Plan, PointResult, Skipped};
use llmsim_study::files::{Disk, read_profile, read_serving_runs};

/// A setting out of range as the message of a ValueError, naming the field as Python
/// spells it.
fn message(e: RangeError) -> String {
    format!("{}: {}", e.field.replace('-', "_"), e.why)
}

/// A config from JSON; a value that does not parse raises ValueError naming its field
/// (found by parsing each field alone, as serde's messages name only the position).
fn parse(config: &str) -> Result<Config, String> {
    serde_json::from_str(config).map_err(|e| {
        let field = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(config)
            .ok()
            .and_then(|fields| {
                fields.into_iter().find_map(|(k, v)| {
                    let alone = serde_json::Value::Object([(k.clone(), v)].into_iter().collect());
                    serde_json::from_value::<Config>(alone)
                        .is_err()
                        .then_some(k)
                })
            });
        format!("{}: {e}", field.as_deref().unwrap_or("config"))
    })
}

/// The checked run of a config (JSON), or why not.
fn try_build(config: &str) -> Result<Built, String> {
    parse(config)?.build(&Disk).map_err(message)
}

fn build(config: &str) -> PyResult<Built> {
    try_build(config).map_err(PyValueError::new_err)
}

fn to_json<T: serde::Serialize>(x: &T) -> String {
    serde_json::to_string(x).expect("configs and summaries serialise")
}

/// How often the calling thread looks for Ctrl-C while a simulation runs.
const SIGNAL_POLL: Duration = Duration::from_millis(20);

/// Runs `work` on a worker thread with the GIL released, checking for Ctrl-C every
/// [`SIGNAL_POLL`]; on an interrupt, sets the flag `work` is given, waits for it to give up
/// (`None`) and raises KeyboardInterrupt.
fn interruptible<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&AtomicBool) -> Option<T> + Send,
) -> PyResult<T> {
    let cancel = AtomicBool::new(false);
    // The worker's answer (`Some` once it ended; a panic is carried over to this thread, so
    // that Python gets a PanicException rather than a wait that never ends), and its signal.
    let answer: (Mutex<Option<thread::Result<Option<T>>>>, Condvar) = Default::default();
    thread::scope(|scope| {
        scope.spawn(|| {
            let out = panic::catch_unwind(AssertUnwindSafe(|| work(&cancel)));
            *answer.0.lock().expect("the waiter never panics holding it") = Some(out);
            answer.1.notify_one();
        });
        // Waits up to `timeout` (forever when `None`) for the worker; its answer if it ended.
        let wait = |timeout: Option<Duration>| {
            let slot = answer.0.lock().expect("the worker never panics holding it");
            let pending = |s: &mut Option<thread::Result<Option<T>>>| s.is_none();
            let mut slot = match timeout {
                Some(t) => {
                    answer
                        .1
                        .wait_timeout_while(slot, t, pending)
                        .expect("not poisoned")
                        .0
                }
                None => answer.1.wait_while(slot, pending).expect("not poisoned"),
            };
            slot.take()
                .map(|out| out.unwrap_or_else(|e| panic::resume_unwind(e)))
        };
        loop {
            if let Some(done) = py.detach(|| wait(Some(SIGNAL_POLL))) {
                return Ok(done.expect("work gives up only when cancelled"));
            }
            if let Err(interrupt) = py.check_signals() {
                cancel.store(true, Ordering::Relaxed);
                // The worker stops within about a millisecond; let it, without the GIL.
                py.detach(|| wait(None));
                return Err(interrupt);
            }
        }
    })
}

/// Runs `jobs` (config index, replication) in parallel, interruptibly; summaries in job
/// order.
fn run_jobs(py: Python<'_>, built: &[Built], jobs: &[(usize, u32)]) -> PyResult<Vec<Summary>> {
    interruptible(py, |cancel| {
        jobs.par_iter()
            .map(|&(i, rep)| built[i].run.run_one_cancellable(rep, Some(cancel)))
            .collect()
    })
}

/// The default config as JSON.
#[pyfunction]
fn default_config() -> String {
    to_json(&Config::default())
}

/// The cost model (JSON) `current` overridden as `llmsim run`'s cost flags do: `spec` in
/// `--cost`'s forms, the linear parameters and noise of `--c`, `--a`, `--b0`, `--cost-dist`
/// and `--noise-cv` (see `CostSpec::with_flags`), as JSON; and warnings for parameters the
/// model ignores.
#[pyfunction]
#[pyo3(signature = (current, spec=None, c=None, a=None, b0=None, cost_dist=None, noise_cv=None))]
fn cost_spec(
    current: &str,
    spec: Option<&str>,
    c: Option<f64>,
    a: Option<f64>,
    b0: Option<f64>,
    cost_dist: Option<&str>,
    noise_cv: Option<f64>,
) -> PyResult<(String, Vec<String>)> {
    let dist = cost_dist
        .map(str::parse)
        .transpose()
        .map_err(|e| PyValueError::new_err(format!("cost_dist: {e}")))?;
    let current: CostSpec =
        serde_json::from_str(current).map_err(|e| PyValueError::new_err(format!("cost: {e}")))?;
    let (cost, notes) = current.with_flags(spec, c, a, b0, dist, noise_cv);
    Ok((to_json(&cost), notes))
}

/// Checks a config (JSON); returns the resolved config (JSON) and the notes.
#[pyfunction]
fn validate(config: &str) -> PyResult<(String, Vec<String>)> {
    let built = build(config)?;
    Ok((to_json(&built.resolved), built.notes))
}

/// Runs a config (JSON); returns the `--json` document and the per-replication summaries.
#[pyfunction]
fn run(py: Python<'_>, config: &str) -> PyResult<(String, Vec<String>, Vec<String>)> {
    let built = build(config)?;
    let jobs: Vec<(usize, u32)> = (0..built.run.reps).map(|r| (0, r)).collect();
    let summaries = run_jobs(py, std::slice::from_ref(&built), &jobs)?;
    let doc = built.report(&summaries);
    let reps = summaries.iter().map(to_json).collect();
    Ok((doc.to_string(), reps, built.notes))
}

/// Runs many configs (JSON) in parallel; their `--json` documents in the given order.
/// Every config is checked before any runs; a bad one raises ValueError naming its index.
#[pyfunction]
fn sweep(py: Python<'_>, configs: Vec<String>) -> PyResult<Vec<String>> {
    let built = configs
        .iter()
        .enumerate()
        .map(|(i, c)| try_build(c).map_err(|e| PyValueError::new_err(format!("configs[{i}]: {e}"))))
        .collect::<PyResult<Vec<Built>>>()?;
    let jobs: Vec<(usize, u32)> = built
        .iter()
        .enumerate()
        .flat_map(|(i, b)| (0..b.run.reps).map(move |r| (i, r)))
        .collect();
    let summaries = run_jobs(py, &built, &jobs)?;
    let mut rest = summaries.as_slice();
    Ok(built
        .iter()
        .map(|b| {
            let (mine, tail) = rest.split_at(b.run.reps as usize);
            rest = tail;
            b.report(mine).to_string()
        })
        .collect())
}

/// Replication `rep` of a config (JSON) with per-request records: a dict of column name to
/// little-endian bytes (`f64` times in seconds; `u32` ids, lengths and GPUs; `u8` flags).
#[pyfunction]
fn requests<'py>(py: Python<'py>, config: &str, rep: u32) -> PyResult<Bound<'py, PyDict>> {
    let built = build(config)?;
    if rep >= built.run.reps {
        return Err(PyValueError::new_err(format!(
            "rep: must be below reps = {} (got {rep})",
            built.run.reps
        )));
    }
    let (reqs, out) = interruptible(py, |cancel| {
        built.run.simulate_records_cancellable(rep, Some(cancel))
    })?;
    let warmup = built.run.warmup;
    let f64s = |f: &dyn Fn(usize) -> f64| -> Vec<u8> {
        (0..reqs.len()).flat_map(|i| f(i).to_le_bytes()).collect()
    };
    let u32s = |f: &dyn Fn(usize) -> u32| -> Vec<u8> {
        (0..reqs.len()).flat_map(|i| f(i).to_le_bytes()).collect()
    };
    let columns: [(&str, Vec<u8>); 9] = [
        ("id", u32s(&|i| i as u32)),
        ("arrival", f64s(&|i| reqs[i].arrival)),
        ("prompt", u32s(&|i| reqs[i].prompt)),
        ("decode", u32s(&|i| reqs[i].decode)),
        ("start", f64s(&|i| out.records[i].start)),
        ("first_token", f64s(&|i| out.records[i].first_token)),
        ("completion", f64s(&|i| out.records[i].completion)),
        ("gpu", u32s(&|i| out.records[i].gpu)),
        (
            "measured",
            (0..reqs.len()).map(|i| u8::from(i >= warmup)).collect(),
        ),
    ];
    let dict = PyDict::new(py);
    for (name, bytes) in columns {
        dict.set_item(name, PyBytes::new(py, &bytes))?;
    }
    Ok(dict)
}

/// Fits the profiled cost model to a GPU profile (CSV, as `llmsim calibrate`); returns the
/// preset as TOML text, its mean and largest relative error on the profile's rows.
#[pyfunction]
fn calibrate(py: Python<'_>, profile: &str) -> PyResult<(String, f64, f64)> {
    let path = std::path::Path::new(profile);
    let rows = read_profile(path).map_err(|e| PyValueError::new_err(format!("profile: {e}")))?;
    let fit = py
        .detach(|| fit_profiled(&rows))
        .map_err(|e| PyValueError::new_err(format!("profile: {e}")))?;
    let err = fit_error(&fit, &rows);
    let name = path
        .file_stem()
        .map_or("fitted".into(), |s| s.to_string_lossy().into_owned());
    let preset = Preset {
        name,
        source: format!("llmsim.calibrate({profile:?})"),
        profiled: fit,
    };
    Ok((preset.to_toml(), err.mape, err.max))
}

/// One row per run, stage and metric, `(run_id, stage, metric, measured, predicted,
/// pct_error)`, as `llmsim fidelity --out` writes them.
type FidelityRows = Vec<(String, i32, String, f64, f64, f64)>;

/// What [`fidelity`] returns: the rows, the runs skipped with the reason, and the
/// whole-run MAPE per metric (percent).
type FidelityScore = (FidelityRows, Vec<(String, String)>, Vec<(String, f64)>);

/// Scores the simulator on a real engine's runs file as `llmsim fidelity` does (the same
/// library function, `llmsim::serving::fidelity`; `cost` None for its default).
#[pyfunction]
#[pyo3(signature = (runs, cost=None, max_requests=None, seed=42))]
fn fidelity(
    py: Python<'_>,
    runs: &str,
    cost: Option<&str>,
    max_requests: Option<usize>,
    seed: u64,
) -> PyResult<FidelityScore> {
    use llmsim::serving::{self, METRICS, pairs, pct_error};
    let runs = read_serving_runs(std::path::Path::new(runs))
        .map_err(|e| PyValueError::new_err(format!("runs: {e}")))?;
    let spec = CostSpec::parse(cost.unwrap_or(serving::DEFAULT_COST));
    // Scoring has no cancellation point: Ctrl-C takes effect when it ends (seconds).
    let scored = interruptible(py, |_| {
        Some(serving::fidelity(&runs, &spec, max_requests, seed, &Disk))
    })?
    .map_err(|e| PyValueError::new_err(message(e)))?;
    let rows = pairs(&runs, &scored)
        .flat_map(|(run, stage, m, p)| {
            METRICS.iter().enumerate().map(move |(i, metric)| {
                let err = pct_error(p[i], m[i]);
                (run.id.clone(), stage, metric.to_string(), m[i], p[i], err)
            })
        })
        .collect();
    let skipped = scored
        .iter()
        .filter_map(|s| {
            s.predicted
                .as_ref()
                .err()
                .map(|e| (s.id.clone(), e.clone()))
        })
        .collect();
    let mape = METRICS
        .iter()
        .map(|m| m.to_string())
        .zip(serving::mape(&runs, &scored))
        .collect();
    Ok((rows, skipped, mape))
}

/// Names of the built-in cost presets.
#[pyfunction]
fn cost_presets() -> Vec<&'static str> {
    preset::built_in_names()
}

/// The built-in preset `name` as TOML text.
#[pyfunction]
fn cost_preset(name: &str) -> PyResult<String> {
    Preset::built_in(name).map(|p| p.to_toml()).ok_or_else(|| {
        PyValueError::new_err(format!(
            "cost: no built-in preset is called '{name}' (allowed: {})",
            preset::built_in_names().join(", ")
        ))
    })
}

/// A plan from JSON; a value that does not parse raises ValueError naming its keyword (a
/// top-level one, or one inside `slo` or `space`, which `llmsim.plan` takes flat).
fn parse_plan(plan: &str) -> Result<Plan, String> {
    use serde_json::{Map, Value};
    serde_json::from_str(plan).map_err(|e| {
        let fails = |v: Value| serde_json::from_value::<Plan>(v).is_err();
        let field = serde_json::from_str::<Map<String, Value>>(plan)
            .ok()
            .and_then(|fields| {
                fields.into_iter().find_map(|(k, v)| {
                    let inner = match &v {
                        Value::Object(o) if k != "base" => o.clone(),
                        _ => Map::new(),
                    };
                    let alone = Value::Object([(k.clone(), v)].into_iter().collect());
                    fails(alone).then(|| {
                        inner
                            .into_iter()
                            .find_map(|(kk, vv)| {
                                let one = Value::Object([(kk.clone(), vv)].into_iter().collect());
                                let nested =
                                    Value::Object([(k.clone(), one)].into_iter().collect());
                                fails(nested).then_some(kk)
                            })
                            .unwrap_or(k)
                    })
                })
            });
        format!("{}: {e}", field.as_deref().unwrap_or("plan"))
    })
}

/// A checked plan: the plan, its deployments, those skipped and the families.
type PlanParts = (Plan, Vec<Deployment>, Vec<Skipped>, Vec<Family>);

/// The checked plan (JSON), its deployments, those skipped and their families, or
/// ValueError naming the first bad setting.
fn plan_parts(plan: &str) -> PyResult<PlanParts> {
    let plan = parse_plan(plan).map_err(PyValueError::new_err)?;
    let (deployments, skipped) = plan
        .deployments(&Disk)
        .map_err(|e| PyValueError::new_err(message(e)))?;
    let families = Plan::families(&deployments);
    Ok((plan, deployments, skipped, families))
}

/// Checks a plan (JSON); returns the number of its families (the units of work) and the
/// notes of its first deployment's config.
#[pyfunction]
fn plan_families(plan: &str) -> PyResult<(usize, Vec<String>)> {
    let (_, deployments, _, families) = plan_parts(plan)?;
    let notes = deployments
        .first()
        .map(|d| d.built.notes.clone())
        .unwrap_or_default();
    Ok((families.len(), notes))
}

/// Searches family `index` of a plan (JSON); its points as JSON. A pure function of its
/// arguments: Ray workers call it, and any worker gives the same answer.
#[pyfunction]
fn plan_family(py: Python<'_>, plan: &str, index: usize) -> PyResult<String> {
    let (plan, deployments, _, families) = plan_parts(plan)?;
    let family = families.get(index).ok_or_else(|| {
        PyValueError::new_err(format!(
            "index: the plan has {} families (got {index})",
            families.len()
        ))
    })?;
    let points = py.detach(|| plan.run_family(&deployments, family));
    Ok(to_json(&points))
}

/// The answer (JSON) from every family's points (JSON lists, in any order).
#[pyfunction]
fn plan_assemble(plan: &str, families: Vec<String>) -> PyResult<String> {
    let (plan, deployments, skipped, _) = plan_parts(plan)?;
    let mut points: Vec<PointResult> = Vec::new();
    for (i, f) in families.iter().enumerate() {
        let part: Vec<PointResult> = serde_json::from_str(f)
            .map_err(|e| PyValueError::new_err(format!("families[{i}]: {e}")))?;
        points.extend(part);
    }
    Ok(to_json(&plan.assemble(
        plan.target(&deployments),
        points,
        skipped,
    )))
}

/// Runs a plan (JSON) here: families in parallel on a worker thread with the GIL released;
/// Ctrl-C stops it once the families under way are searched (no new one starts). The
/// answer as JSON, the same as `llmsim plan --json`.
#[pyfunction]
fn plan_run(py: Python<'_>, plan: &str) -> PyResult<String> {
    let (plan, deployments, skipped, families) = plan_parts(plan)?;
    let searched: Vec<Vec<PointResult>> = interruptible(py, |cancel| {
        families
            .par_iter()
            .map(|f| (!cancel.load(Ordering::Relaxed)).then(|| plan.run_family(&deployments, f)))
            .collect()
    })?;
    let points = searched.into_iter().flatten().collect();
    Ok(to_json(&plan.assemble(
        plan.target(&deployments),
        points,
        skipped,
    )))
}

#[pymodule]
fn _llmsim(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(default_config, m)?)?;
    m.add_function(wrap_pyfunction!(cost_spec, m)?)?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(sweep, m)?)?;
    m.add_function(wrap_pyfunction!(requests, m)?)?;
    m.add_function(wrap_pyfunction!(calibrate, m)?)?;
    m.add_function(wrap_pyfunction!(fidelity, m)?)?;
    m.add_function(wrap_pyfunction!(cost_presets, m)?)?;
    m.add_function(wrap_pyfunction!(cost_preset, m)?)?;
    m.add_function(wrap_pyfunction!(plan_families, m)?)?;
    m.add_function(wrap_pyfunction!(plan_family, m)?)?;
    m.add_function(wrap_pyfunction!(plan_assemble, m)?)?;
    m.add_function(wrap_pyfunction!(plan_run, m)?)?;
    Ok(())
}
