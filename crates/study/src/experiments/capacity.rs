//! Scheduler B's capacity against K: the closed form, the largest rate a simulation finds
//! stable (bisection on lambda), and the completion rate when pushed past saturation.
//!
//! The seed measured capacity as the throughput of an overloaded run. Under prefill
//! priority that underestimates it: an overloaded GPU keeps choosing prefills, so decodes
//! (and completions) starve, and the completion rate falls below capacity. The largest
//! stable rate is the better measurement; the overloaded throughput is kept (`sim_mean`) to
//! show the effect.

use rayon::prelude::*;
use serde_json::json;

use super::Scale;
use super::grid::{Ctx, Metric, Setup};
use super::table::{Cell, Table, mean_ci};
use llmsim::dist::LengthDist;
use llmsim::metrics::growth_detected;
use llmsim::scheduler::SchedulerSpec;
use llmsim::search::bisect;
use llmsim::sim::RunConfig;
use llmsim::stats::std_dev;
use llmsim::theory;

/// The batch sizes studied.
const KS: [u32; 5] = [1, 2, 4, 8, 16];
/// The overloaded run's rate as a multiple of the closed-form capacity.
const OVERLOAD: f64 = 1.2;
/// The bisection's starting bracket, as multiples of the closed-form capacity.
const BRACKET: (f64, f64) = (0.75, 1.25);
/// Bisection steps: the final bracket is `0.5 / 2^5 = 1.6%` of the closed form wide, about
/// the resolution of the growth test itself at 10,000 requests.
const STEPS: u32 = 5;

/// Replications per bisection step: half the study's, at least 3, so a majority exists.
fn bisection_reps(scale: &Scale) -> u32 {
    (scale.reps / 2).max(3)
}

pub fn planned_runs(scale: &Scale) -> u64 {
    KS.len() as u64 * u64::from((STEPS + 1) * bisection_reps(scale) + scale.reps)
}

fn setup(k: u32, rate: f64) -> Setup {
    Setup {
        scheduler: SchedulerSpec::B {
            k,
            max_decode_batch: None,
        },
        ..Setup::seed_defaults(rate)
    }
}

/// For each K, the bracket `(stable, unstable)` in requests/s after bisecting on lambda
/// ([`bisect`], the planner's; its first run at the top of the bracket ends the search if
/// stable there). A rate is unstable when most replications show the number in system
/// growing ([`growth_detected`]); the closed form plays no part in the verdict.
fn brackets(ctx: &Ctx, closed: &[f64]) -> Vec<(f64, f64)> {
    let reps = bisection_reps(&ctx.study.scale);
    KS.par_iter()
        .zip(closed)
        .map(|(&k, c)| {
            let grew = |rate: f64| {
                let config = RunConfig {
                    reps,
                    ..setup(k, rate).config(&ctx.study)
                };
                ctx.run_reps(std::slice::from_ref(&config), |cfg, rep| {
                    growth_detected(&cfg.simulate_to_last_arrival(rep))
                })
                .concat()
            };
            let majority_stable = |g: &Vec<bool>| 2 * g.iter().filter(|&&g| g).count() <= g.len();
            let found = bisect(grew, majority_stable, (BRACKET.0 * c, BRACKET.1 * c), STEPS);
            (found.rate, found.fail)
        })
        .collect()
}

pub fn run(ctx: &Ctx) -> Table {
    let base = Setup::seed_defaults(1.0);
    let cost = base.cost();
    let prompt = LengthDist::Fixed(base.prompt);
    let closed: Vec<f64> = KS.iter().map(|&k| setup(k, 1.0).capacity()).collect();
    let brackets = brackets(ctx, &closed);
    let over = ctx.measure(
        KS.iter()
            .zip(&closed)
            .map(|(&k, c)| setup(k, OVERLOAD * c))
            .collect(),
    );
    let header = vec![
        "K_values",
        "sim_mean",
        "sim_std",
        "closed_form_capacity",
        "empirical_capacity",
        "sim_ci",
        "saturation_rate",
        "empirical_unstable_rate",
        "empirical_over_closed_form",
        "seed_formula_capacity",
        "prefill_only_capacity",
        "unstable",
    ];
    let mut rows = Vec::new();
    for (i, &k) in KS.iter().enumerate() {
        let m = &over[i];
        let throughput: Vec<f64> = m.runs.iter().map(|s| Metric::Throughput.of(s)).collect();
        let [mean, ci] = mean_ci(m.stat(Metric::Throughput));
        let kf = f64::from(k);
        let (l, b) = (f64::from(base.prompt), f64::from(base.decode));
        let row: Vec<Cell> = vec![
            k.into(),
            mean,
            std_dev(&throughput).into(),
            closed[i].into(),
            brackets[i].0.into(),
            ci,
            m.setup.rate.into(),
            brackets[i].1.into(),
            (brackets[i].0 / closed[i]).into(),
            // The seed's formula, written out to show it agrees with the derivation.
            (kf / (base.c + base.a * kf * (l + b))).into(),
            theory::scheduler_b_prefill_capacity(k, &prompt, &cost).into(),
            m.unstable().into(),
        ];
        rows.push(row);
    }
    let ratios: Vec<f64> = brackets.iter().zip(&closed).map(|(b, c)| b.0 / c).collect();
    let starved: Vec<f64> = over
        .iter()
        .map(|m| m.stat(Metric::Throughput).mean / m.capacity)
        .collect();
    let range = |xs: &[f64]| {
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.3}..{hi:.3}")
    };
    let headline = format!(
        "largest stable rate / closed form = {} over K = 1..16; at {OVERLOAD}x capacity throughput is only {} of capacity (decodes starve)",
        range(&ratios),
        range(&starved)
    );
    Table {
        name: "capacity_vs_k",
        header,
        rows,
        meta: json!({
            "study": ctx.describe(),
            "closed_form": "K / (E[S(K prompts)] + K E[B] a) = K / (c + a K (L + B)) for b0 = 0 and no decode cap (theory::scheduler_b_capacity)",
            "bisection": {
                "bracket_over_closed_form": [BRACKET.0, BRACKET.1],
                "steps": STEPS,
                "reps_per_step": bisection_reps(&ctx.study.scale),
                "requests_per_rep": ctx.study.scale.requests,
                "verdict": "unstable when most replications show the number in system growing (metrics::growth_detected)",
                // True if some K's rates were all judged stable (or all unstable), so its
                // capacity lies outside the bracket and the bracket should be widened.
                "hit_bracket_edge": brackets.iter().zip(&closed).any(|(b, c)| b.0 == BRACKET.0 * c || b.1 == BRACKET.1 * c),
            },
            "overload_factor": OVERLOAD,
            "points": over.iter().map(|m| m.setup.describe()).collect::<Vec<_>>(),
        }),
        headline,
    }
}
