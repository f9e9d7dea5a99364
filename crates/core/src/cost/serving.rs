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
//! roofline_gpu = "h100-sxm"
//!
//! [roofline]
//! compute = 0.6
//! memory = 0.85
//! overhead = 0.002
//! per_seq = 3e-5
//! exposed_compute = 0.5
//!
//! [gpu.a100-80gb]
//! compute = 0.5
//! memory = 0.7
//! ```
//!
//! `[roofline]` prices each iteration ([`Efficiency`]: fractions of the GPU's peaks, the
//! fixed per-step cost of scheduling and launching, the per-sequence cost of
//! sampling, detokenising and streaming, and the share of a memory-bound step's
//! arithmetic that its memory traffic does not hide, which no fit varies); `request_overhead_s` and `schedule_lag_steps`
//! are what a client measures beyond the engine's own request latency: the API server's
//! HTTP handling and tokenisation before the request reaches the scheduler, the streaming
//! of its first and last chunks, and the steps a request waits before the scheduler
//! sees it. They are added to every request's TTFT and E2E by `llmsim fidelity`, which
//! compares with client-side measurements; `llmsim run` reports engine-side latencies and
//! uses only the roofline part.
//!
//! The fractions of its datasheet peaks a card achieves differ by card (kernels tuned for
//! one generation, clocks under load), so a `[gpu.NAME]` table, keyed by the GPU
//! catalogue's canonical name, overrides `compute` and `memory` on that card. Every other
//! card is priced from a fitted card that runs the same kernels
//! ([`crate::gpu::Kernels`]; [`ServingPreset::reference`]), else from the card
//! `[roofline]` was fitted on (`roofline_gpu`): that card's compute efficiency, and its
//! memory efficiency scaled by how the two cards' memories stream: the ratio of the
//! fractions of their datasheet bandwidths that a published STREAM copy reaches
//! ([`crate::gpu::GpuEntry::copy_bandwidth`]), where both cards have one (otherwise as it
//! is). Measured against the real runs, that ratio is about two fifths of the A100's
//! shortfall against the H100 (`llmsim fidelity` in the README): the rest is the A100's
//! kernels', which the L40S shares. The overheads are the server's, the same on every
//! card.

use std::collections::BTreeMap;

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

/// Bounds of the NVLink step latency ([`Efficiency::link_latency`]; seconds), which a fit
/// varies only on runs that span several GPUs: up to 50 us, far above any fabric's.
pub const LINK_BOUNDS: (&str, f64, f64) = ("roofline.link_latency", 0.0, 5e-5);

/// Bounds of the fixed cost per layer ([`Efficiency::per_layer`]; seconds per layer per
/// step), which a fit varies only on runs of models of different depths: up to 100 us,
/// ten times the dozen small kernels of a layer at their launch floor.
pub const LAYER_BOUNDS: (&str, f64, f64) = ("roofline.per_layer", 0.0, 1e-4);

/// Which of the parameters that only some runs tell a fit varies besides [`BOUNDS`] and
/// the cards' efficiencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Optional {
    /// The NVLink step latency ([`LINK_BOUNDS`]).
    pub link: bool,
    /// The fixed cost per layer ([`LAYER_BOUNDS`]).
    pub per_layer: bool,
}

impl Optional {
    /// Every optional parameter.
    pub const ALL: Optional = Optional {
        link: true,
        per_layer: true,
    };

    /// The bounds of the optional parameters varied, in their order in a fit's vector.
    fn bounds(self) -> impl Iterator<Item = (&'static str, f64, f64)> {
        [(self.link, LINK_BOUNDS), (self.per_layer, LAYER_BOUNDS)]
            .into_iter()
            .filter_map(|(on, b)| on.then_some(b))
    }
}

/// A card's own efficiencies in a serving preset (fractions of its peaks, in (0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEfficiency {
    /// Achieved fraction of the card's peak FLOP/s.
    pub compute: f64,
    /// Achieved fraction of the card's memory bandwidth.
    pub memory: f64,
}

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
    /// The card (the GPU catalogue's canonical name) whose runs `roofline`'s efficiencies
    /// were fitted on, from which a card without a table of its own scales its memory
    /// efficiency; `None`: not known, no scaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roofline_gpu: Option<String>,
    /// The roofline's efficiencies and per-iteration overheads.
    pub roofline: Efficiency,
    /// Efficiencies of particular cards, by the GPU catalogue's canonical name, in place
    /// of `roofline`'s `compute` and `memory` on those cards.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpu: BTreeMap<String, GpuEfficiency>,
}

/// Name of [`ServingPreset::first_guess`], as `calibrate --serving --start` takes it.
pub const FIRST_GUESS: &str = "first-guess";

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

    /// `self` with the parameters `p` in [`BOUNDS`]' order (the exposed compute, which no
    /// fit varies, and the link latency kept).
    pub fn with_params(&self, p: [f64; 6]) -> ServingPreset {
        ServingPreset {
            request_overhead_s: p[4],
            schedule_lag_steps: p[5],
            roofline: Efficiency {
                compute: p[0],
                memory: p[1],
                overhead: p[2],
                per_seq: p[3],
                ..self.roofline
            },
            ..self.clone()
        }
    }

    /// The roofline's efficiencies and overheads on the catalogue card `gpu` (its
    /// canonical name; `None` for a card from a file, which gets `roofline`'s).
    /// A card without a table of its own is priced from its [`ServingPreset::reference`]:
    /// that card's compute efficiency, and its memory efficiency scaled by
    /// [`ServingPreset::memory_scale`] (at most 1).
    pub fn efficiency(&self, gpu: Option<&str>) -> Efficiency {
        let own = |g: &str| {
            self.gpu.get(g).map(|e| Efficiency {
                compute: e.compute,
                memory: e.memory,
                ..self.roofline
            })
        };
        if let Some(e) = gpu.and_then(own) {
            return e;
        }
        let reference = self.reference(gpu);
        // `roofline_gpu` is `[roofline]`'s card, whatever table it may also have.
        let base = reference
            .filter(|&r| Some(r) != self.roofline_gpu.as_deref())
            .and_then(own)
            .unwrap_or(self.roofline);
        Efficiency {
            memory: (base.memory * Self::memory_scale(gpu, reference)).min(1.0),
            ..base
        }
    }

    /// The fitted card (canonical name) a card without a table of its own is priced
    /// from: `roofline_gpu` if it runs the same kernels ([`crate::gpu::Kernels`]: the
    /// efficiencies a card reaches are its kernels' as much as its memory's), else the
    /// first card by name with a table and the same kernels, else `roofline_gpu`.
    pub fn reference(&self, gpu: Option<&str>) -> Option<&str> {
        let kernels = |g: &str| crate::gpu::find(g).map(|e| e.kernels);
        let family = gpu.and_then(kernels);
        let roofline = self.roofline_gpu.as_deref();
        let same = |g: &&str| family.is_some() && kernels(g) == family;
        roofline
            .filter(same)
            .or_else(|| self.gpu.keys().map(String::as_str).find(same))
            .or(roofline)
    }

    /// How much better (above 1) or worse the catalogue card `gpu` streams its memory than
    /// the card `reference`: the ratio of the fractions of their datasheet bandwidths that
    /// a published copy benchmark reaches; 1 where either card or its measurement is
    /// unknown.
    pub fn memory_scale(gpu: Option<&str>, reference: Option<&str>) -> f64 {
        let fraction = |g: Option<&str>| g.and_then(crate::gpu::find)?.copy_fraction();
        match (fraction(gpu), fraction(reference)) {
            (Some(card), Some(reference)) => card / reference,
            _ => 1.0,
        }
    }

    /// Names and bounds of the parameters a fit varies: [`BOUNDS`], then the compute and
    /// memory efficiencies of each card in `gpus` (canonical names), then the `optional`
    /// ones ([`LINK_BOUNDS`], then [`LAYER_BOUNDS`]).
    pub fn fit_bounds(gpus: &[&str], optional: Optional) -> Vec<(String, f64, f64)> {
        let cards = gpus.iter().flat_map(|g| {
            [BOUNDS[0], BOUNDS[1]].map(|(n, lo, hi)| {
                (
                    format!("gpu.{g}.{}", n.trim_start_matches("roofline.")),
                    lo,
                    hi,
                )
            })
        });
        BOUNDS
            .iter()
            .copied()
            .map(|(n, lo, hi)| (n.to_string(), lo, hi))
            .chain(cards)
            .chain(optional.bounds().map(|(n, lo, hi)| (n.to_string(), lo, hi)))
            .collect()
    }

    /// The parameters of [`ServingPreset::fit_bounds`]`(gpus, optional)`; a card without
    /// its own entry has its [`ServingPreset::efficiency`].
    pub fn fit_params(&self, gpus: &[&str], optional: Optional) -> Vec<f64> {
        let mut p = self.params().to_vec();
        for g in gpus {
            let e = self.efficiency(Some(g));
            p.extend([e.compute, e.memory]);
        }
        if optional.link {
            p.push(self.roofline.link_latency);
        }
        if optional.per_layer {
            p.push(self.roofline.per_layer);
        }
        p
    }

    /// `self` with the parameters `p` of [`ServingPreset::fit_bounds`]`(gpus, optional)`.
    pub fn with_fit_params(&self, gpus: &[&str], optional: Optional, p: &[f64]) -> ServingPreset {
        let mut out = self.with_params(std::array::from_fn(|i| p[i]));
        let (cards, rest) = p[BOUNDS.len()..].split_at(2 * gpus.len());
        let mut rest = rest.iter().copied();
        if optional.link {
            out.roofline.link_latency = rest.next().expect("a link latency in p");
        }
        if optional.per_layer {
            out.roofline.per_layer = rest.next().expect("a per-layer cost in p");
        }
        for (g, e) in gpus.iter().zip(cards.chunks(2)) {
            out.gpu.insert(
                g.to_string(),
                GpuEfficiency {
                    compute: e[0],
                    memory: e[1],
                },
            );
        }
        out
    }

    /// Checks every parameter against [`BOUNDS`], [`LINK_BOUNDS`] and [`LAYER_BOUNDS`]
    /// (efficiencies above 0) and every card's name against the GPU catalogue, naming the
    /// first one wrong.
    pub fn check(&self) -> Result<(), String> {
        if let Some(g) = &self.roofline_gpu
            && crate::gpu::find(g).map(|e| e.name) != Some(g.as_str())
        {
            return Err(format!(
                "roofline_gpu: '{g}' is not a built-in GPU's canonical name ({})",
                crate::gpu::names().join(", ")
            ));
        }
        for g in self.gpu.keys() {
            if crate::gpu::find(g).map(|e| e.name) != Some(g.as_str()) {
                return Err(format!(
                    "[gpu.{g}]: '{g}' is not a built-in GPU's canonical name ({})",
                    crate::gpu::names().join(", ")
                ));
            }
        }
        let cards: Vec<&str> = self.gpu.keys().map(String::as_str).collect();
        let bounds = ServingPreset::fit_bounds(&cards, Optional::ALL);
        for ((name, lo, hi), v) in bounds.iter().zip(self.fit_params(&cards, Optional::ALL)) {
            let eff = name.ends_with(".compute") || name.ends_with(".memory");
            let above = if eff { v > *lo } else { v >= *lo };
            if !(above && v <= *hi) {
                let low = if eff { "above" } else { "at least" };
                return Err(format!(
                    "{name} must be {low} {lo} and at most {hi} (got {})",
                    crate::limits::num(v)
                ));
            }
        }
        let x = self.roofline.exposed_compute;
        if !(0.0..=1.0).contains(&x) {
            return Err(format!(
                "roofline.exposed_compute must be at least 0 and at most 1 (got {})",
                crate::limits::num(x)
            ));
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

    /// The neutral first guess a serving fit starts from (`calibrate --serving`'s default
    /// `--start`), fitted on nothing: round fractions of the peaks an inference engine
    /// typically reaches on large matrix products and weight streaming, and overheads of
    /// the order a Python server pays (a few ms per step and request, tens of us per
    /// sequence, a step of scheduling lag), 10 us per layer (a dozen small kernels at
    /// about a microsecond each; a parameter started at its bound would stay there), and
    /// half of a memory-bound step's arithmetic exposed ([`Efficiency::exposed_compute`];
    /// the 24 H100 runs in `shared/fidelity` fit best there, README "Against a real
    /// engine").
    pub fn first_guess() -> ServingPreset {
        ServingPreset {
            name: FIRST_GUESS.into(),
            source: "llmsim's neutral first guess, fitted on nothing".into(),
            request_overhead_s: 0.01,
            schedule_lag_steps: 1.0,
            roofline_gpu: None,
            roofline: Efficiency {
                compute: 0.55,
                memory: 0.8,
                overhead: 0.002,
                per_seq: 3e-5,
                exposed_compute: 0.5,
                link_latency: super::roofline::NVLINK_STEP_LATENCY,
                per_layer: 1e-5,
            },
            gpu: BTreeMap::new(),
        }
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
             # `llmsim fidelity --cost FILE`. Units: seconds (per_seq per sequence per step,\n\
             # per_layer per layer per step); compute and memory are fractions of the GPU's\n\
             # peaks, exposed_compute of a memory-bound step's arithmetic time; link_latency\n\
             # is seconds per step of an all-reduce over NVLink. See src/cost/serving.rs.\n{body}"
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
        let mut q = p.clone();
        q.roofline.per_layer = 2e-4;
        let e = q.check().unwrap_err();
        assert!(
            e.contains("roofline.per_layer") && e.contains("0.0002"),
            "{e}"
        );
        let mut q = p.clone();
        q.roofline.exposed_compute = 1.5;
        let e = q.check().unwrap_err();
        assert!(
            e.contains("roofline.exposed_compute") && e.contains("1.5"),
            "{e}"
        );
        let text = p.to_toml().replace("per_seq", "per_sec");
        let e = ServingPreset::parse(&text, "x.toml").unwrap_err();
        assert!(e.contains("x.toml") && e.contains("per_sec"), "{e}");
    }

    fn with_a100() -> ServingPreset {
        let mut p = ServingPreset::first_guess();
        p.gpu.insert(
            "a100-80gb".into(),
            GpuEfficiency {
                compute: 0.4,
                memory: 0.6,
            },
        );
        p
    }

    /// A card's entry replaces the two efficiencies on that card alone; the overheads are
    /// the server's everywhere.
    #[test]
    fn a_cards_entry_prices_that_card_only() {
        let p = with_a100();
        let a = p.efficiency(Some("a100-80gb"));
        assert_eq!((a.compute, a.memory), (0.4, 0.6));
        assert_eq!((a.overhead, a.per_seq), (0.002, 3e-5));
        assert_eq!(p.efficiency(Some("h100-sxm")), p.roofline);
        assert_eq!(p.efficiency(None), p.roofline);
        let text = p.to_toml();
        assert!(text.contains("[gpu.a100-80gb]"), "{text}");
        assert_eq!(ServingPreset::parse(&text, "rt").unwrap(), p);
    }

    /// A card without a table streams its memory at `[roofline]`'s efficiency times the
    /// ratio of the published copy fractions, (1.61 / 2.039) / (2.90 / 3.35) = 0.9121 for
    /// the A100 against the H100 by hand, capped at 1; its compute efficiency and the
    /// overheads stay `[roofline]`'s; the L40S (0.77 / 0.864) streams better than the H100.
    /// Unknown on either side (the L4 has no published copy here; no `roofline_gpu`): no
    /// scaling. A card's own table wins.
    #[test]
    fn a_card_without_a_table_scales_memory_by_the_published_copy_fractions() {
        let mut p = ServingPreset::first_guess();
        p.roofline_gpu = Some("h100-sxm".into());
        let a = p.efficiency(Some("a100-80gb"));
        let want = 0.8 * (1.61 / 2.039) / (2.90 / 3.35);
        assert!((a.memory - want).abs() < 1e-12, "{}", a.memory);
        assert!((want - 0.8 * 0.912_13).abs() < 1e-4);
        assert_eq!((a.compute, a.overhead, a.per_seq), (0.55, 0.002, 3e-5));
        assert_eq!(p.efficiency(Some("h100-sxm")), p.roofline);
        let l40s = 0.8 * (0.77 / 0.864) / (2.90 / 3.35);
        assert!((p.efficiency(Some("l40s")).memory - l40s).abs() < 1e-12);
        assert!(l40s > 0.8 * 1.029 && l40s < 0.8 * 1.03);
        assert_eq!(p.efficiency(Some("l4")), p.roofline);
        assert_eq!(p.efficiency(None), p.roofline);
        // Fitted on the A100, the H100 streams better; the cap keeps it physical.
        p.roofline_gpu = Some("a100-80gb".into());
        p.roofline.memory = 0.95;
        assert_eq!(p.efficiency(Some("h100-sxm")).memory, 1.0);
        p.roofline_gpu = None;
        assert_eq!(p.efficiency(Some("a100-80gb")), p.roofline);
        let mut own = with_a100();
        own.roofline_gpu = Some("h100-sxm".into());
        assert_eq!(own.efficiency(Some("a100-80gb")).memory, 0.6);
        let text = own.to_toml();
        assert!(text.contains("roofline_gpu = \"h100-sxm\""), "{text}");
        assert_eq!(ServingPreset::parse(&text, "rt").unwrap(), own);
        let e =
            ServingPreset::parse(&text.replace("\"h100-sxm\"", "\"H100\""), "x.toml").unwrap_err();
        assert!(
            e.contains("x.toml") && e.contains("roofline_gpu") && e.contains("h100-sxm"),
            "{e}"
        );
    }

    /// A card without a table is priced from a fitted card of its kernel family where
    /// there is one: with an A100 table (0.4, 0.6) beside an H100 `[roofline]`, the L40S
    /// (Ada, the A100's kernels) gets the A100's compute efficiency and its memory
    /// efficiency times (0.77 / 0.864) / (1.61 / 2.039) = 1.1287 by hand; the A100-40GB and
    /// the RTX 4090 (no published copy) the A100's as they are; the H200 `[roofline]`'s
    /// scaled against the H100; the B200, whose kernels no card here runs, `[roofline]`'s
    /// (no copy figure). `roofline_gpu` of the family wins over a table.
    #[test]
    fn a_card_without_a_table_is_priced_from_its_kernel_family() {
        let mut p = with_a100();
        p.roofline_gpu = Some("h100-sxm".into());
        assert_eq!(p.reference(Some("l40s")), Some("a100-80gb"));
        let l40s = p.efficiency(Some("l40s"));
        let scale: f64 = (0.77 / 0.864) / (1.61 / 2.039);
        assert!((scale - 1.128_7).abs() < 1e-4);
        assert!((l40s.memory - 0.6 * scale).abs() < 1e-12, "{l40s:?}");
        assert_eq!((l40s.compute, l40s.overhead), (0.4, 0.002));
        for same in ["a100-40gb", "rtx-4090"] {
            let e = p.efficiency(Some(same));
            assert_eq!((e.compute, e.memory), (0.4, 0.6), "{same}");
        }
        let h200 = p.efficiency(Some("h200"));
        assert_eq!(p.reference(Some("h200")), Some("h100-sxm"));
        let want = 0.8 * (4.01 / 4.8) / (2.90 / 3.35);
        assert!((h200.memory - want).abs() < 1e-12 && h200.compute == 0.55);
        assert_eq!(p.reference(Some("b200")), Some("h100-sxm"));
        assert_eq!(p.efficiency(Some("b200")), p.roofline);
        assert_eq!(p.reference(None), Some("h100-sxm"));
        // The family's roofline_gpu comes first, priced by [roofline] (whatever table it
        // has too): fitted on the A100, [roofline] prices the L40S, not the A100-40GB's
        // table.
        p.roofline_gpu = Some("a100-80gb".into());
        p.gpu.insert(
            "a100-40gb".into(),
            GpuEfficiency {
                compute: 0.1,
                memory: 0.1,
            },
        );
        assert_eq!(p.reference(Some("l40s")), Some("a100-80gb"));
        let e = p.efficiency(Some("l40s"));
        assert!(
            (e.memory - 0.8 * scale).abs() < 1e-12 && e.compute == 0.55,
            "{e:?}"
        );
    }

    /// A fit's parameters: the globals, each card's efficiencies, then the optional ones
    /// varied (the NVLink step latency, then the per-layer cost); one not varied is kept
    /// as it is.
    #[test]
    fn fit_parameters_list_each_cards_efficiencies_after_the_globals() {
        let p = with_a100();
        let cards = ["a100-80gb", "l40s"];
        let names: Vec<String> = ServingPreset::fit_bounds(&cards, Optional::ALL)
            .into_iter()
            .map(|b| b.0)
            .collect();
        assert_eq!(names.len(), 12);
        assert_eq!(
            names[6..],
            [
                "gpu.a100-80gb.compute",
                "gpu.a100-80gb.memory",
                "gpu.l40s.compute",
                "gpu.l40s.memory",
                "roofline.link_latency",
                "roofline.per_layer"
            ]
        );
        let none = Optional::default();
        assert_eq!(ServingPreset::fit_bounds(&cards, none).len(), 10);
        // l40s has no entry: it starts from the A100's (its kernels'), its memory
        // efficiency scaled by their copy fractions.
        let x = p.fit_params(&cards, Optional::ALL);
        assert_eq!(x[6..9], [0.4, 0.6, 0.4]);
        assert!((x[9] - 0.6 * (0.77 / 0.864) / (1.61 / 2.039)).abs() < 1e-12);
        assert_eq!(x[10..], [1e-6, 1e-5]);
        let want = [
            0.5, 0.7, 0.001, 1e-5, 0.0, 0.0, 0.3, 0.35, 0.45, 0.65, 4e-6, 2e-5,
        ];
        let q = p.with_fit_params(&cards, Optional::ALL, &want);
        assert_eq!(q.roofline.compute, 0.5);
        assert_eq!(q.efficiency(Some("l40s")).memory, 0.65);
        assert_eq!(q.efficiency(Some("a100-80gb")).compute, 0.3);
        assert_eq!(
            (q.roofline.link_latency, q.roofline.per_layer),
            (4e-6, 2e-5)
        );
        assert_eq!(q.fit_params(&cards, Optional::ALL), want);
        let kept = q.with_fit_params(&cards, none, &want[..10]);
        assert_eq!(
            (kept.roofline.link_latency, kept.roofline.per_layer),
            (4e-6, 2e-5)
        );
        assert_eq!(kept.fit_params(&cards, none), want[..10]);
        // The per-layer cost alone follows the cards.
        let layers = Optional {
            per_layer: true,
            ..none
        };
        let mut only = want[..10].to_vec();
        only.push(3e-5);
        let r = q.with_fit_params(&cards, layers, &only);
        assert_eq!(
            (r.roofline.link_latency, r.roofline.per_layer),
            (4e-6, 3e-5)
        );
    }

    #[test]
    fn a_cards_entry_needs_a_canonical_name_and_physical_values() {
        let text = with_a100().to_toml();
        let e =
            ServingPreset::parse(&text.replace("a100-80gb", "A100-80GB"), "x.toml").unwrap_err();
        assert!(
            e.contains("x.toml") && e.contains("[gpu.A100-80GB]") && e.contains("a100-80gb"),
            "{e}"
        );
        let e = ServingPreset::parse(&text.replace("0.6", "1.2"), "x.toml").unwrap_err();
        assert!(
            e.contains("gpu.a100-80gb.memory") && e.contains("1.2"),
            "{e}"
        );
        let e = ServingPreset::parse(&text.replace("0.4", "0.0"), "x.toml").unwrap_err();
        assert!(e.contains("gpu.a100-80gb.compute must be above 0"), "{e}");
        // The link latency may be 0, not above 50 us; a preset without it gets 1 us.
        let line = text
            .lines()
            .find(|l| l.starts_with("link_latency"))
            .unwrap();
        let with = |v: &str| text.replace(line, &format!("link_latency = {v}"));
        let e = ServingPreset::parse(&with("6e-5"), "x.toml").unwrap_err();
        assert!(
            e.contains("roofline.link_latency must be at least 0 and at most 0.00005"),
            "{e}"
        );
        let zero = ServingPreset::parse(&with("0.0"), "x").unwrap();
        assert_eq!(zero.roofline.link_latency, 0.0);
        let none = text.replace(&format!("{line}\n"), "");
        assert!(!none.lines().any(|l| l.starts_with("link_latency")));
        assert_eq!(
            ServingPreset::parse(&none, "x")
                .unwrap()
                .roofline
                .link_latency,
            1e-6
        );
    }
}
