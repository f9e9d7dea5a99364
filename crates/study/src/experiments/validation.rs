//! The simulator against queueing theory ([`llmsim::validation`]), as a table for the report.

use serde_json::json;

use super::Scale;
use super::grid::Ctx;
use super::table::{Cell, Table};
use llmsim::validation::{self, Effort, PASS_LEVEL};

/// The validation runs' size at a study scale: the full checks in a real study, a tenth of
/// the requests in a smoke run.
fn effort(scale: &Scale) -> Effort {
    if scale.requests >= super::Scale::FULL.requests {
        Effort::FULL
    } else {
        Effort {
            reps: Effort::FULL.reps,
            requests: Effort::FULL.requests / 10,
        }
    }
}

pub fn planned_runs(_scale: &Scale) -> u64 {
    0
}

pub fn run(ctx: &Ctx) -> Table {
    let effort = effort(&ctx.study.scale);
    let checks = validation::all(effort);
    let passed = checks.iter().filter(|c| c.pass).count();
    Table {
        name: "validation",
        header: vec![
            "model",
            "metric",
            "simulated",
            "simulated_ci",
            "theory",
            "tolerance",
            "pass",
        ],
        rows: checks
            .iter()
            .map(|c| {
                vec![
                    Cell::from(c.model.as_str()),
                    c.metric.as_str().into(),
                    c.simulated.mean.into(),
                    c.simulated.ci95.into(),
                    c.theory.into(),
                    c.tolerance.into(),
                    c.pass.into(),
                ]
            })
            .collect(),
        meta: json!({
            "study": {
                "seed": validation::SEED,
                "reps": effort.reps,
                "requests_per_rep": effort.requests,
                "warmup_requests": effort.requests / 10,
            },
            "pass_level": PASS_LEVEL,
        }),
        headline: format!(
            "{passed} of {} closed-form checks within their 99.9% interval",
            checks.len()
        ),
    }
}
