//! The seed study's sections: every figure and every number the prose quotes, computed from
//! the CSV files of one reproduce run.

use std::path::Path;

use super::data::{DataError, Table};
use super::figures::{categorical, cdf, chart, hline, points, stable};
use super::plot::{Chart, Point, Series, Style};
use super::template::Values;
use llmsim::cost::{CostDist, LinearCost};
use llmsim::dist::LengthDist;
use llmsim::theory;

/// Highest load at which the report compares Scheduler A's TTFT with Pollaczek-Khinchine.
const PK_LOAD: f64 = 0.9;

/// Three significant digits, the precision the prose quotes.
pub fn sig(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let digits = (2 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{x:.digits$}")
}

/// A count (K, GPUs) as a whole number.
fn int(x: f64) -> String {
    if x.is_finite() {
        format!("{}", x.round() as i64)
    } else {
        "n/a".into()
    }
}

/// Milliseconds with three significant digits.
fn ms(x: f64) -> String {
    sig(x * 1e3)
}

fn max_where(xs: &[f64], keep: &[bool]) -> f64 {
    xs.iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(x, _)| *x)
        .fold(f64::NAN, f64::max)
}

fn flags(t: &Table, column: &str) -> Result<Vec<bool>, DataError> {
    Ok(t.text(column)?.iter().map(|v| v == "true").collect())
}

/// What the seed study contributes to the report.
pub struct Study {
    /// Named values for the template.
    pub values: Values,
    /// Figures by file stem.
    pub figures: Vec<(String, Chart)>,
}

fn put(v: &mut Values, name: &str, value: impl Into<String>) {
    v.insert(name.into(), value.into());
}

/// Builds the seed study's figures and values from the files in `dir`.
pub fn build(dir: &Path) -> Result<Study, DataError> {
    let read = |name: &str| Table::read(dir, name);
    let mut v = Values::new();
    let mut figs: Vec<(String, Chart)> = Vec::new();

    // The seed's model and its closed forms, as the experiments configured it.
    let (c, a, l, b) = (0.01, 0.001, 128u32, 64u32);
    let cost = LinearCost::new(c, a, 0.0, CostDist::Exponential);
    let (prompt, decode) = (LengthDist::Fixed(l), LengthDist::Fixed(b));
    let s_l = theory::mean_prefill(&prompt, &cost);
    let s_1 = theory::mean_decode_step(&cost);
    put(&mut v, "s_l_ms", ms(s_l));
    put(&mut v, "s_1_ms", ms(s_1));
    let job = theory::scheduler_a_job(&prompt, &decode, &cost);
    put(&mut v, "a_job_s", sig(job.mean));

    // Throughput sweeps (A and B) and capacities.
    let asw = read("data_scheduler_a_throughput_sweep.csv")?;
    let bsw = read("data_scheduler_b_throughput_sweep.csv")?;
    let a_cap = asw.numbers("capacity")?[0];
    let b_cap = bsw.numbers("capacity")?[0];
    put(&mut v, "a_capacity", sig(a_cap));
    put(&mut v, "b_capacity", sig(b_cap));
    let a_rates = asw.numbers("arrival_rate")?;
    let a_ok: Vec<bool> = flags(&asw, "unstable")?.iter().map(|u| !u).collect();
    put(&mut v, "a_stable_max", sig(max_where(&a_rates, &a_ok)));
    let a_thr = asw.numbers("throughput")?;
    put(
        &mut v,
        "a_peak_throughput",
        sig(a_thr.iter().copied().fold(f64::NAN, f64::max)),
    );
    let b_rates = bsw.numbers("arrival_rate")?;
    let b_ok: Vec<bool> = flags(&bsw, "unstable")?.iter().map(|u| !u).collect();
    put(&mut v, "b_stable_max", sig(max_where(&b_rates, &b_ok)));
    let b_thr = bsw.numbers("throughput")?;
    put(
        &mut v,
        "b_peak_throughput",
        sig(b_thr.iter().copied().fold(f64::NAN, f64::max)),
    );
    put(
        &mut v,
        "b_throughput_at_max_rate",
        sig(*b_thr.last().unwrap_or(&f64::NAN)),
    );
    put(
        &mut v,
        "b_max_rate",
        sig(*b_rates.last().unwrap_or(&f64::NAN)),
    );
    let hi = b_rates.iter().copied().fold(0.0, f64::max);
    let mut thr = chart(
        "Throughput against offered load",
        "arrival rate λ (requests/s)",
        "throughput (requests/s)",
        vec![
            Series::new(
                "Scheduler A (simulated)",
                Style::Simulated,
                points(&asw, "arrival_rate", "throughput", Some("throughput_ci"))?,
            ),
            Series::new(
                "Scheduler B, K = 4 (simulated)",
                Style::Simulated,
                points(&bsw, "arrival_rate", "throughput", Some("throughput_ci"))?,
            ),
            hline(
                format!("A capacity 1/E[T] = {}", sig(a_cap)),
                a_cap,
                0.0,
                hi,
            ),
            hline(
                format!("B capacity K/(c + aK(L+B)) = {}", sig(b_cap)),
                b_cap,
                0.0,
                hi,
            ),
            Series::new(
                "throughput = λ",
                Style::Theory,
                vec![Point::new(0.0, 0.0, 0.0), Point::new(b_cap, b_cap, 0.0)],
            ),
        ],
    );
    thr.y_max = Some(b_cap * 1.15);
    figs.push(("throughput_vs_lambda".into(), thr));

    // Scheduler A's baseline at lambda = 2 (overloaded): TTFT grows with arrival time.
    let base = read("data_scheduler_a_baseline.csv")?;
    let rep0 = base.filter("rep", "0")?;
    let (arr, ttft) = (rep0.numbers("arrival_times")?, rep0.numbers("ttft")?);
    let stride = (arr.len() / 400).max(1);
    let base_pts: Vec<Point> = arr
        .iter()
        .zip(&ttft)
        .step_by(stride)
        .map(|(&x, &y)| Point::new(x, y, 0.0))
        .collect();
    let last_arrival = arr.last().copied().unwrap_or(0.0);
    let growth = 2.0 - a_cap;
    figs.push((
        "baseline_ttft".into(),
        chart(
            "Scheduler A at λ = 2 (overloaded): TTFT of each request, replication 0",
            "arrival time (s)",
            "TTFT (s)",
            vec![
                Series::new("simulated request", Style::Markers, base_pts),
                Series::new(
                    "fluid limit: backlog grows at λ − capacity",
                    Style::Theory,
                    vec![
                        Point::new(arr[0], arr[0] * growth / a_cap, 0.0),
                        Point::new(last_arrival, last_arrival * growth / a_cap, 0.0),
                    ],
                ),
            ],
        ),
    ));
    let all_ttft = base.numbers("ttft")?;
    put(&mut v, "baseline_load", sig(2.0 / a_cap));
    put(
        &mut v,
        "baseline_mean_ttft",
        sig(llmsim::stats::mean(&all_ttft)),
    );
    put(&mut v, "baseline_rows", base.len().to_string());

    // Light traffic: isolated requests against one batch's cost.
    let lt = read("data_validation_light_traffic.csv")?;
    let iso = lt.filter("isolated", "true")?;
    let iso_ttft = iso.numbers("ttft")?;
    let iso_tbt = iso.numbers("tbt")?;
    put(&mut v, "lt_isolated", iso.len().to_string());
    put(&mut v, "lt_rows", lt.len().to_string());
    put(&mut v, "lt_iso_ttft_ms", ms(llmsim::stats::mean(&iso_ttft)));
    put(&mut v, "lt_iso_tbt_ms", ms(llmsim::stats::mean(&iso_tbt)));
    put(
        &mut v,
        "lt_all_ttft_ms",
        ms(llmsim::stats::mean(&lt.numbers("ttft")?)),
    );
    put(
        &mut v,
        "lt_all_tbt_ms",
        ms(llmsim::stats::mean(&lt.numbers("tbt")?)),
    );
    let mut sorted = iso_ttft.clone();
    sorted.sort_unstable_by(f64::total_cmp);
    let n = sorted.len().max(1) as f64;
    let ecdf: Vec<Point> = sorted
        .iter()
        .enumerate()
        .step_by((sorted.len() / 300).max(1))
        .map(|(i, &x)| Point::new(x, (i + 1) as f64 / n, 0.0))
        .collect();
    // S(L) = C + A L with C ~ Exp(mean c), A L ~ Exp(mean aL): a hypoexponential law.
    let (r1, r2) = (1.0 / c, 1.0 / (a * f64::from(l)));
    let top = sorted.last().copied().unwrap_or(1.0);
    let theory_cdf: Vec<Point> = (0..=100)
        .map(|i| {
            let t = top * i as f64 / 100.0;
            Point::new(
                t,
                1.0 - (r2 * (-r1 * t).exp() - r1 * (-r2 * t).exp()) / (r2 - r1),
                0.0,
            )
        })
        .collect();
    figs.push((
        "light_traffic_ttft".into(),
        chart(
            "Light traffic (Scheduler B, λ = 0.1): TTFT of isolated requests",
            "TTFT (s)",
            "fraction of requests ≤ x",
            vec![
                Series::new("simulated (isolated requests)", Style::Simulated, ecdf),
                Series::new(
                    "theory: one prefill batch, C + A·L (hypoexponential)",
                    Style::Theory,
                    theory_cdf,
                ),
            ],
        ),
    ));

    // Capacity against K.
    let cap = read("data_capacity_vs_k.csv")?;
    let ratio = cap.numbers("empirical_over_closed_form")?;
    put(
        &mut v,
        "cap_ratio_min",
        sig(ratio.iter().copied().fold(f64::MAX, f64::min)),
    );
    put(
        &mut v,
        "cap_ratio_max",
        sig(ratio.iter().copied().fold(f64::MIN, f64::max)),
    );
    let sat = cap.numbers("sim_mean")?;
    let cf = cap.numbers("closed_form_capacity")?;
    let frac: Vec<f64> = sat.iter().zip(&cf).map(|(s, c)| s / c).collect();
    put(
        &mut v,
        "cap_sat_min",
        sig(100.0 * frac.iter().copied().fold(f64::MAX, f64::min)),
    );
    put(
        &mut v,
        "cap_sat_max",
        sig(100.0 * frac.iter().copied().fold(f64::MIN, f64::max)),
    );
    let ks = cap.numbers("K_values")?;
    let emp = cap.numbers("empirical_capacity")?;
    let pre = cap.numbers("prefill_only_capacity")?;
    let mut rows = String::from(
        "| K | closed form (req/s) | largest stable rate found (req/s) | ratio | throughput at 1.2x capacity (req/s) |\n|---|---|---|---|---|\n",
    );
    for i in 0..cap.len() {
        rows.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            ks[i],
            sig(cf[i]),
            sig(emp[i]),
            sig(ratio[i]),
            sig(sat[i])
        ));
    }
    put(&mut v, "capacity_table", rows);
    let mut capc = chart(
        "Scheduler B's capacity against K",
        "K (most prefills per batch)",
        "requests/s",
        vec![
            Series::new(
                "closed form K/(c + aK(L+B))",
                Style::Theory,
                points(&cap, "K_values", "closed_form_capacity", None)?,
            ),
            Series::new(
                "largest stable rate (simulated, bisection)",
                Style::Simulated,
                points(&cap, "K_values", "empirical_capacity", None)?,
            ),
            Series::new(
                "throughput when pushed to 1.2x capacity",
                Style::Markers,
                points(&cap, "K_values", "sim_mean", Some("sim_ci"))?,
            ),
            Series::new(
                "prefill-only bound K/(c + aKL)",
                Style::Theory,
                ks.iter()
                    .zip(&pre)
                    .map(|(&k, &p)| Point::new(k, p, 0.0))
                    .collect(),
            ),
        ],
    );
    capc.y_max = Some(pre.iter().copied().fold(0.0, f64::max) * 1.1);
    figs.push(("capacity_vs_k".into(), capc));

    // Batching scale.
    let bs = read("data_batching_scale.csv")?;
    let mut bsc = chart(
        "Scheduler B at λ = 1.5: latency against K",
        "K (most prefills per batch)",
        "seconds",
        vec![
            Series::new(
                "mean TTFT",
                Style::Simulated,
                points(&bs, "K", "mean_TTFT_mean", Some("mean_TTFT_ci"))?,
            ),
            Series::new(
                "p95 TTFT",
                Style::Simulated,
                points(&bs, "K", "p95_TTFT_mean", Some("p95_TTFT_ci"))?,
            ),
            Series::new(
                "mean TBT",
                Style::Simulated,
                points(&bs, "K", "mean_TBT_mean", Some("mean_TBT_ci"))?,
            ),
            Series::new(
                "p95 TBT",
                Style::Simulated,
                points(&bs, "K", "p95_TBT_mean", Some("p95_TBT_ci"))?,
            ),
        ],
    );
    bsc.log_y = true;
    figs.push(("batching_scale".into(), bsc));
    let bk = bs.numbers("K")?;
    let bt = bs.numbers("mean_TTFT_mean")?;
    let bp = bs.numbers("p95_TTFT_mean")?;
    put(&mut v, "bs_k_min", int(bk[0]));
    put(&mut v, "bs_k_max", int(*bk.last().unwrap_or(&f64::NAN)));
    put(&mut v, "bs_ttft_first", ms(bt[0]));
    put(&mut v, "bs_ttft_last", ms(*bt.last().unwrap_or(&f64::NAN)));
    put(&mut v, "bs_p95_first", ms(bp[0]));
    put(&mut v, "bs_p95_last", ms(*bp.last().unwrap_or(&f64::NAN)));

    // Sensitivity to c and a, and to the request regime.
    for (file, fig, title, extra) in [
        (
            "data_sensitivity_ca.csv",
            "sensitivity_ca",
            "Sensitivity to the cost parameters (Scheduler B, λ = 1.5)",
            "mean_TBT",
        ),
        (
            "data_sensitivity_regime.csv",
            "sensitivity_regime",
            "Short against long requests (Scheduler B, λ = 1.5)",
            "mean_TBT",
        ),
    ] {
        let t = read(file)?;
        let labels = t.text("label")?;
        let mut ch = chart(
            title,
            "configuration",
            "seconds",
            vec![
                categorical(&t, "mean_TTFT", "mean_TTFT_ci", "mean TTFT", -0.12)?,
                categorical(&t, "p95_TTFT", "p95_TTFT_ci", "p95 TTFT", 0.0)?,
                categorical(&t, extra, &format!("{extra}_ci"), "mean TBT", 0.12)?,
            ],
        );
        ch.categories = labels.clone();
        ch.log_y = true;
        figs.push((fig.into(), ch));
        let (ttft, tbt, thr) = (
            t.numbers("mean_TTFT")?,
            t.numbers("mean_TBT")?,
            t.numbers("throughput")?,
        );
        for (i, label) in labels.iter().enumerate() {
            put(&mut v, &format!("{fig}_{label}_ttft_ms"), ms(ttft[i]));
            put(&mut v, &format!("{fig}_{label}_tbt_ms"), ms(tbt[i]));
            put(&mut v, &format!("{fig}_{label}_throughput"), sig(thr[i]));
        }
    }

    // Scheduler comparison: TTFT and TBT against lambda, with P-K for A.
    let cmp = read("data_scheduler_comparison.csv")?;
    let a_st = cmp.filter("A_unstable", "false")?;
    let lam = cmp.numbers("lambda")?;
    let lo = lam[0];
    let mut ttf = chart(
        "TTFT against offered load (stable points)",
        "arrival rate λ (requests/s)",
        "TTFT (s)",
        vec![
            Series::new(
                "A mean (simulated)",
                Style::Simulated,
                points(&a_st, "lambda", "A_ttft_mean", Some("A_ttft_ci"))?,
            ),
            Series::new(
                "A p95 (simulated)",
                Style::Simulated,
                points(&a_st, "lambda", "A_ttft_p95", Some("A_ttft_p95_ci"))?,
            ),
            Series::new(
                "B mean (simulated)",
                Style::Simulated,
                points(&cmp, "lambda", "B_ttft_mean", Some("B_ttft_ci"))?,
            ),
            Series::new(
                "B p95 (simulated)",
                Style::Simulated,
                points(&cmp, "lambda", "B_ttft_p95", Some("B_ttft_p95_ci"))?,
            ),
            Series::new(
                "A mean, Pollaczek-Khinchine",
                Style::Theory,
                pk_curve(lo, a_cap, &prompt, &decode, &cost),
            ),
        ],
    );
    ttf.log_y = true;
    figs.push(("ttft_vs_lambda".into(), ttf));
    let mut tbf = chart(
        "TBT against offered load",
        "arrival rate λ (requests/s)",
        "TBT (s)",
        vec![
            Series::new(
                "A mean (simulated)",
                Style::Simulated,
                points(&cmp, "lambda", "A_tbt_mean", Some("A_tbt_ci"))?,
            ),
            Series::new(
                "A p95 (simulated)",
                Style::Simulated,
                points(&cmp, "lambda", "A_tbt_p95", Some("A_tbt_p95_ci"))?,
            ),
            Series::new(
                "B mean (simulated)",
                Style::Simulated,
                points(&cmp, "lambda", "B_tbt_mean", Some("B_tbt_ci"))?,
            ),
            Series::new(
                "B p95 (simulated)",
                Style::Simulated,
                points(&cmp, "lambda", "B_tbt_p95", Some("B_tbt_p95_ci"))?,
            ),
            hline(
                format!("E[S(1)] = {} ms", ms(s_1)),
                s_1,
                lo,
                *lam.last().unwrap_or(&lo),
            ),
        ],
    );
    tbf.log_y = true;
    figs.push(("tbt_vs_lambda".into(), tbf));
    let (at, ap) = (a_st.numbers("A_ttft_mean")?, a_st.numbers("A_ttft_pk")?);
    // Near capacity a finite run from an empty system converges slowly; P-K is compared
    // where the load is at most PK_LOAD.
    let worst = at
        .iter()
        .zip(&ap)
        .zip(&a_st.numbers("lambda")?)
        .filter(|(_, l)| **l / a_cap <= PK_LOAD)
        .map(|((s, t), _)| ((s - t) / t).abs())
        .fold(0.0, f64::max);
    put(&mut v, "pk_worst_pct", sig(100.0 * worst));
    put(&mut v, "pk_load", sig(PK_LOAD));
    let al = a_st.numbers("lambda")?;
    let idx = al.len().saturating_sub(1);
    put(&mut v, "cmp_lambda", sig(al[idx]));
    put(&mut v, "cmp_a_ttft", sig(at[idx]));
    put(&mut v, "cmp_b_ttft", sig(a_st.numbers("B_ttft_mean")?[idx]));
    put(&mut v, "cmp_a_tbt_ms", ms(a_st.numbers("A_tbt_mean")?[idx]));
    put(&mut v, "cmp_b_tbt_ms", ms(a_st.numbers("B_tbt_mean")?[idx]));

    // Multi-GPU scaling.
    let mg = read("data_multigpu_scaling.csv")?;
    let router = mg.text("router")?.first().cloned().unwrap_or_default();
    put(&mut v, "mg_router", router.clone());
    let mut thr_series = Vec::new();
    let mut ttft_series = Vec::new();
    for (s, name) in [("a", "Scheduler A"), ("b", "Scheduler B")] {
        let t = mg.filter("scheduler", s)?;
        thr_series.push(Series::new(
            format!("{name} (simulated)"),
            Style::Simulated,
            points(&t, "num_gpus", "throughput_mean", Some("throughput_ci"))?,
        ));
        let st = stable(&t)?;
        ttft_series.push(Series::new(
            format!("{name} mean TTFT"),
            Style::Simulated,
            points(&st, "num_gpus", "mean_TTFT_mean", Some("mean_TTFT_ci"))?,
        ));
        ttft_series.push(Series::new(
            format!("{name} p95 TTFT"),
            Style::Simulated,
            points(&st, "num_gpus", "p95_TTFT_mean", Some("p95_TTFT_ci"))?,
        ));
        let g = t.numbers("num_gpus")?;
        let ok: Vec<bool> = flags(&t, "unstable")?.iter().map(|u| !u).collect();
        let min_g = g
            .iter()
            .zip(&ok)
            .filter(|(_, k)| **k)
            .map(|(g, _)| *g)
            .fold(f64::NAN, f64::min);
        put(&mut v, &format!("mg_{s}_min_gpus"), int(min_g));
    }
    let lam_mg = mg.numbers("arrival_rate")?[0];
    put(&mut v, "mg_lambda", sig(lam_mg));
    thr_series.push(hline(
        format!("offered load λ = {}", sig(lam_mg)),
        lam_mg,
        1.0,
        8.0,
    ));
    figs.push((
        "multigpu_throughput".into(),
        chart(
            &format!(
                "Cluster throughput at λ = {} ({router} router)",
                sig(lam_mg)
            ),
            "GPUs",
            "throughput (requests/s)",
            thr_series,
        ),
    ));
    let mut mgt = chart(
        &format!("TTFT on the GPUs that make λ = {} stable", sig(lam_mg)),
        "GPUs",
        "TTFT (s)",
        ttft_series,
    );
    mgt.log_y = true;
    figs.push(("multigpu_ttft".into(), mgt));

    // Latency distributions at one load.
    let cd = read("data_latency_cdf.csv")?;
    let (ca, cb) = (cd.filter("scheduler", "A")?, cd.filter("scheduler", "B")?);
    put(&mut v, "cdf_lambda", sig(cd.numbers("arrival_rate")?[0]));
    for (t, s) in [(&ca, "a"), (&cb, "b")] {
        let q = t.numbers("quantile")?;
        let (tt, tb) = (t.numbers("ttft")?, t.numbers("tbt")?);
        let at_q = |xs: &[f64], level: f64| {
            q.iter()
                .position(|&x| (x - level).abs() < 1e-9)
                .map_or(f64::NAN, |i| xs[i])
        };
        put(&mut v, &format!("cdf_{s}_ttft_p50_ms"), ms(at_q(&tt, 0.5)));
        put(&mut v, &format!("cdf_{s}_ttft_p99_ms"), ms(at_q(&tt, 0.99)));
        put(&mut v, &format!("cdf_{s}_tbt_p50_ms"), ms(at_q(&tb, 0.5)));
        put(&mut v, &format!("cdf_{s}_tbt_p99_ms"), ms(at_q(&tb, 0.99)));
    }
    let mut cdf_t = chart(
        "TTFT distribution at λ = 1 (same requests)",
        "TTFT (s)",
        "fraction of requests ≤ x",
        vec![
            cdf(&ca, "ttft", "Scheduler A", Style::Simulated)?,
            cdf(&cb, "ttft", "Scheduler B", Style::Simulated)?,
        ],
    );
    cdf_t.y_max = Some(1.0);
    figs.push(("cdf_ttft".into(), cdf_t));
    let mut cdf_b = chart(
        "TBT distribution at λ = 1 (same requests)",
        "per-request mean TBT (s)",
        "fraction of requests ≤ x",
        vec![
            cdf(&ca, "tbt", "Scheduler A", Style::Simulated)?,
            cdf(&cb, "tbt", "Scheduler B", Style::Simulated)?,
        ],
    );
    cdf_b.y_max = Some(1.0);
    figs.push(("cdf_tbt".into(), cdf_b));

    // Validation against closed forms.
    let val = read("data_validation.csv")?;
    let (sim, th, ci, tol) = (
        val.numbers("simulated")?,
        val.numbers("theory")?,
        val.numbers("simulated_ci")?,
        val.numbers("tolerance")?,
    );
    let (models, metrics, pass) = (
        val.text("model")?,
        val.text("metric")?,
        flags(&val, "pass")?,
    );
    put(&mut v, "val_total", val.len().to_string());
    put(
        &mut v,
        "val_passed",
        pass.iter().filter(|p| **p).count().to_string(),
    );
    let mut table = String::from(
        "| model | metric | simulated ± 95% CI | theory | pass (99.9%) |\n|---|---|---|---|---|\n",
    );
    let mut ratio_pts = Vec::new();
    let mut labels = Vec::new();
    for i in 0..val.len() {
        table.push_str(&format!(
            "| {} | {} | {} ± {} | {} | {} |\n",
            models[i],
            metrics[i],
            sig(sim[i]),
            sig(ci[i]),
            sig(th[i]),
            if pass[i] { "yes" } else { "**no**" }
        ));
        if th[i] != 0.0 {
            ratio_pts.push(Point::new(
                labels.len() as f64,
                sim[i] / th[i],
                ci[i] / th[i].abs(),
            ));
            labels.push(format!("{}", labels.len() + 1));
        }
    }
    put(&mut v, "validation_table", table);
    let _ = tol;
    let n_ratio = labels.len() as f64;
    let mut valc = chart(
        "Simulated over theoretical value, with 95% intervals",
        "check (numbered as in the table, checks with a zero theory value left out)",
        "simulated / theory",
        vec![
            Series::new("simulated / theory", Style::Markers, ratio_pts),
            hline("exact agreement", 1.0, -0.5, n_ratio - 0.5),
        ],
    );
    valc.categories = labels;
    figs.push(("validation".into(), valc));

    Ok(Study {
        values: v,
        figures: figs,
    })
}

/// Scheduler A's mean TTFT from Pollaczek-Khinchine, from `lo` to just below capacity.
fn pk_curve(
    lo: f64,
    cap: f64,
    prompt: &LengthDist,
    decode: &LengthDist,
    cost: &LinearCost,
) -> Vec<Point> {
    let job = theory::scheduler_a_job(prompt, decode, cost);
    let prefill = theory::mean_prefill(prompt, cost);
    (0..=60)
        .map(|i| {
            let lam = lo + (0.995 * cap - lo) * i as f64 / 60.0;
            Point::new(lam, theory::pk_mean_wait(lam, job) + prefill, 0.0)
        })
        .collect()
}
