//! Serving presets: the roofline's efficiencies and the overheads a real server pays
//! outside the GPU step, fitted to a real engine's client-side latencies
//! (`llmsim calibrate --serving`), for any model, GPU and tensor-parallel layout.
//!
//! A serving preset file looks like
//!
//! ```toml
//! name = "vllm"
//! source = "where the numbers come from"
//! request_overhead_s = 0.012
//! schedule_lag_steps = 1.0
//!
//! [roofline]
//! compute = 0.6
//! memory = 0.85
//! overhead = 0.002
//! per_seq = 3e-5
//! ```
//!
//! `[roofline]` prices each iteration ([`Efficiency`]: fractions of the GPU's peaks, the
//! fixed per-step cost of scheduling and launching, and the per-sequence cost of
//! sampling, detokenising and streaming); `request_overhead_s` and `schedule_lag_steps`
//! are what a client measures beyond the engine's own request latency: the API server's
//! HTTP handling and tokenisation before the request reaches the scheduler, the streaming
//! of its first and last chunks, and the steps a request waits before the scheduler
//! sees it. They are added to every request's TTFT and E2E by `llmsim fidelity`, which
//! compares with client-side measurements; `llmsim run` reports engine-side latencies and
//! uses only the roofline part.

use serde::{Deserialize, Serialize};

use super::roofline::Efficiency;

/// Physical bounds of a serving preset's parameters, `(name, low, high)`: efficiencies in
/// (0, 1]; the per-step overhead up to 50 ms, the per-sequence one up to 1 ms, the
/// per-request one up to 1 s and the scheduling lag up to 3 steps (each at least 0), far
/// above what any engine pays.
pub const BOUNDS: [(&str, f64, f64); 6] = [
    ("roofline.compute", 0.0, 1.0),
    ("roofline.memory", 0.0, 1.0),
    ("roofline.overhead", 0.0, 0.05),
    ("roofline.per_seq", 0.0, 0.001),
    ("request_overhead_s", 0.0, 1.0),
    ("schedule_lag_steps", 0.0, 3.0),
];

/// A named, sourced serving calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingPreset {
    /// Short name, e.g. `vllm`.
    pub name: String,
    /// Where the parameters come from.
    pub source: String,
    /// Client-side latency every request pays outside the engine (seconds).
    pub request_overhead_s: f64,
    /// Steps a new request waits beyond the next one before it joins a batch (steps):
    /// an engine that schedules step `n + 1` while step `n` runs (asynchronous
    /// scheduling) and hands inputs and outputs between processes takes a request that
    /// arrives during step `n` no earlier than step `n + 2`. Charged to each request as
    /// this many of its own mean inter-token times, on its TTFT and E2E alike.
    #[serde(default)]
    pub schedule_lag_steps: f64,
    /// The roofline's efficiencies and per-iteration overheads.
    pub roofline: Efficiency,
}

/// Built-in serving presets: `(name, TOML text)`.
const BUILT_IN: &[(&str, &str)] = &[("vllm", include_str!("presets/vllm.toml"))];

/// Names of the built-in serving presets.
pub fn built_in_names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(n, _)| *n).collect()
}

impl ServingPreset {
    /// The parameters in [`BOUNDS`]' order.
    pub fn params(&self) -> [f64; 6] {
        let e = &self.roofline;
        [
            e.compute,
            e.memory,
            e.overhead,
            e.per_seq,
            self.request_overhead_s,
            self.schedule_lag_steps,
        ]
    }

    /// `self` with the parameters `p` in [`BOUNDS`]' order.
    pub fn with_params(&self, p: [f64; 6]) -> ServingPreset {
        ServingPreset {
            request_overhead_s: p[4],
            schedule_lag_steps: p[5],
            roofline: Efficiency {
                compute: p[0],
                memory: p[1],
                overhead: p[2],
                per_seq: p[3],
            },
            ..self.clone()
        }
    }

    /// Checks every parameter against [`BOUNDS`] (efficiencies above 0), naming the first
    /// one out of range.
    pub fn check(&self) -> Result<(), String> {
        for (i, ((name, lo, hi), v)) in BOUNDS.iter().zip(self.params()).enumerate() {
            let above = if i < 2 { v > *lo } else { v >= *lo };
            if !(above && v <= *hi) {
                let low = if i < 2 { "above" } else { "at least" };
                return Err(format!(
                    "{name} must be {low} {lo} and at most {hi} (got {})",
                    crate::limits::num(v)
                ));
            }
        }
        Ok(())
    }

    /// Parses and checks the TOML text of a serving preset read from `origin`.
    pub fn parse(text: &str, origin: &str) -> Result<ServingPreset, String> {
        let preset: ServingPreset = toml::from_str(text)
            .map_err(|e| format!("{origin} is not a valid serving preset: {e}"))?;
        preset
            .check()
            .map_err(|e| format!("{origin} is not a valid serving preset: {e}"))?;
        Ok(preset)
    }

    /// Whether TOML `text` is meant as a serving preset (it has a `[roofline]` table),
    /// so that its errors are reported as such rather than as a profiled preset's.
    pub fn looks_like(text: &str) -> bool {
        text.lines().any(|l| l.trim() == "[roofline]")
    }

    /// The built-in serving preset called `name`, if there is one.
    pub fn built_in(name: &str) -> Option<ServingPreset> {
        BUILT_IN.iter().find(|(n, _)| *n == name).map(|(n, text)| {
            ServingPreset::parse(text, n).expect("built-in serving presets are valid (tested)")
        })
    }

    /// The preset as TOML text, preceded by a comment saying what the file is.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("serving presets serialise");
        format!(
            "# llmsim serving preset: use with `llmsim run --cost FILE --gpu G --model M` or\n\
             # `llmsim fidelity --cost FILE`. Units: seconds (per_seq per sequence per step);\n\
             # compute and memory are fractions of the GPU's peaks. See src/cost/serving.rs.\n{body}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_presets_parse_and_round_trip() {
        for name in built_in_names() {
            let p = ServingPreset::built_in(name).unwrap();
            assert_eq!(p.name, name);
            assert!(ServingPreset::looks_like(&p.to_toml()));
            assert_eq!(ServingPreset::parse(&p.to_toml(), "rt").unwrap(), p);
            assert_eq!(p.with_params(p.params()), p);
        }
    }

    #[test]
    fn out_of_range_and_unknown_fields_are_named() {
        let p = ServingPreset::built_in("vllm").unwrap();
        let e = p
            .with_params([0.0, 0.5, 0.0, 0.0, 0.0, 0.0])
            .check()
            .unwrap_err();
        assert!(e.contains("roofline.compute"), "{e}");
        let e = p
            .with_params([0.5, 0.5, 0.0, 0.002, 0.0, 0.0])
            .check()
            .unwrap_err();
        assert!(e.contains("roofline.per_seq") && e.contains("0.002"), "{e}");
        let text = p.to_toml().replace("per_seq", "per_sec");
        let e = ServingPreset::parse(&text, "x.toml").unwrap_err();
        assert!(e.contains("x.toml") && e.contains("per_sec"), "{e}");
    }
}
