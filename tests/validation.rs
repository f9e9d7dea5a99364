//! The simulator against queueing theory (the checks `llmsim validate` prints).

use llmsim::validation::{self, Effort};

#[test]
fn every_closed_form_check_passes() {
    let checks = validation::all(Effort::FULL);
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| {
            format!(
                "{} / {}: simulated {} ± {} vs theory {}",
                c.model, c.metric, c.simulated.mean, c.tolerance, c.theory
            )
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(checks.len() >= 13);
}

/// The check itself can fail: a theory value off by more than the 99.9% half-width (t = 8.61, se = 0.035 here) is rejected.
#[test]
fn a_wrong_theory_value_fails() {
    let xs = [1.0, 1.1, 0.9, 1.05, 0.95];
    assert!(validation::Check::new("m", "x", &xs, 1.0).pass);
    assert!(!validation::Check::new("m", "x", &xs, 1.5).pass);
}
