//! The progress bar of the commands that run for minutes (`reproduce`, `plan`,
//! `calibrate --serving`'s refits).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `len` steps named `what` (e.g. "replications"), with the elapsed time and an
/// estimate of what is left, on stderr: drawn only when stderr is a terminal, so logs and
/// pipes stay clean.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {what}, eta {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
