//! Fitting [`ProfiledCost`] to measured iteration times, and measuring how well a cost
//! model predicts a profile.
//!
//! A profile is a CSV in the format of `h200_llama-3.1-8b.csv` (see [`ProfileRow`]). The
//! fit minimises the squared *relative* error over all rows (prefill, decode and mixed
//! alike), because the quality bar is relative (MAPE, worst-row error) and the rows span
//! 5 ms to 250 ms: an absolute fit would sacrifice the small batches to the large ones.
//! The two nonlinear parameters, `b0` and `r`, are chosen by a grid search around which
//! the linear coefficients are solved exactly ([`crate::lsq::fit_nonneg`]).

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::cost::{
    BatchShape, CostModel, Efficiency, GpuSpec, MAX_SECONDS, ModelShape, NVLINK_STEP_LATENCY,
    Parallel, ProfiledCost, RooflineCost,
};
use crate::csvio::{CsvError, FieldError, parse_rows};
use crate::lsq::fit_nonneg;

/// The columns a profile must have.
pub const PROFILE_COLUMNS: &[&str] = &[
    "model",
    "kind",
    "prefill_seqs",
    "prefill_len",
    "prefill_tokens",
    "decode_batch",
    "decode_context",
    "batch_tokens",
    "median_ms",
];

/// One measured iteration of a profile (a CSV row). Other columns (`p10_ms`, `p90_ms`,
/// `reps`) may be present and are not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRow {
    /// Architecture measured.
    pub model: String,
    /// `prefill`, `decode` or `mixed`.
    pub kind: String,
    /// Prompts in the batch.
    pub prefill_seqs: u32,
    /// Tokens of each prompt.
    pub prefill_len: u32,
    /// `prefill_seqs * prefill_len` (tokens).
    pub prefill_tokens: u64,
    /// Sequences each decoding one token.
    pub decode_batch: u32,
    /// KV-cache tokens of each decoding sequence (tokens).
    pub decode_context: u32,
    /// `prefill_tokens + decode_batch` (tokens).
    pub batch_tokens: u64,
    /// Median iteration time (milliseconds).
    pub median_ms: f64,
}

impl ProfileRow {
    /// The batch this row measured, as the simulator's cost models see it.
    pub fn shape(&self) -> BatchShape {
        BatchShape {
            prefill_tokens: self.prefill_tokens,
            prefill_entries: self.prefill_seqs,
            prefill_squares: u128::from(self.prefill_seqs) * u128::from(self.prefill_len).pow(2),
            decode_entries: self.decode_batch,
            kv_tokens: u64::from(self.decode_batch) * u64::from(self.decode_context),
        }
    }

    /// Measured iteration time (seconds).
    pub fn seconds(&self) -> f64 {
        self.median_ms * 1e-3
    }

    /// A short description such as `prefill 4x512` or `decode 32@8192`.
    pub fn label(&self) -> String {
        let prefill = format!("{}x{}", self.prefill_seqs, self.prefill_len);
        let decode = format!("{}@{}", self.decode_batch, self.decode_context);
        match (self.prefill_seqs > 0, self.decode_batch > 0) {
            (true, true) => format!("mixed {prefill} + {decode}"),
            (true, false) => format!("prefill {prefill}"),
            _ => format!("decode {decode}"),
        }
    }

    /// Internal consistency of the row's columns.
    fn check(self) -> Result<Self, FieldError> {
        if !matches!(self.kind.as_str(), "prefill" | "decode" | "mixed") {
            return Err((
                "kind",
                format!("'{}' is not prefill, decode or mixed", self.kind),
            ));
        }
        // u32 x u32 fits a u64, and so does adding a u32 to it.
        let prompt_tokens = u64::from(self.prefill_seqs) * u64::from(self.prefill_len);
        if self.prefill_tokens != prompt_tokens {
            return Err((
                "prefill_tokens",
                format!(
                    "{} is not prefill_seqs x prefill_len = {prompt_tokens}",
                    self.prefill_tokens,
                ),
            ));
        }
        if self.batch_tokens != prompt_tokens + u64::from(self.decode_batch) {
            return Err((
                "batch_tokens",
                format!(
                    "{} is not prefill_tokens + decode_batch = {}",
                    self.batch_tokens,
                    prompt_tokens + u64::from(self.decode_batch)
                ),
            ));
        }
        let (has_prefill, has_decode) = (self.prefill_tokens > 0, self.decode_batch > 0);
        let consistent = match self.kind.as_str() {
            "prefill" => has_prefill && !has_decode,
            "decode" => has_decode && !has_prefill,
            _ => has_prefill && has_decode,
        };
        if !consistent {
            return Err((
                "kind",
                format!(
                    "'{}' does not match {} prompt tokens and {} decode sequences",
                    self.kind, self.prefill_tokens, self.decode_batch
                ),
            ));
        }
        // From a nanosecond to an hour: the fit weighs each row by 1 / time^2, which must
        // stay finite, and the fitted times must pass ProfiledCost::check.
        if !(self.median_ms >= 1e-6 && self.median_ms <= MAX_SECONDS * 1e3) {
            return Err((
                "median_ms",
                format!(
                    "must be a number of milliseconds from 1e-6 to {} (got {:?})",
                    MAX_SECONDS * 1e3,
                    self.median_ms
                ),
            ));
        }
        Ok(self)
    }
}

/// Parses and checks the bytes of a profile CSV; `source` names it in errors.
pub fn parse_profile(bytes: &[u8], source: &Path) -> Result<Vec<ProfileRow>, CsvError> {
    parse_rows(bytes, source, PROFILE_COLUMNS, ProfileRow::check)
}

/// How far a model's predictions are from a profile's measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FitError {
    /// Mean absolute percentage error over the rows (a fraction: 0.03 is 3%).
    pub mape: f64,
    /// Largest absolute relative error of any row (a fraction).
    pub max: f64,
    /// Index of that row.
    pub worst_row: usize,
}

/// Signed relative error `(predicted - measured) / measured` of each row.
pub fn relative_errors(model: &dyn CostModel, rows: &[ProfileRow]) -> Vec<f64> {
    rows.iter()
        .map(|r| (model.mean(&r.shape()) - r.seconds()) / r.seconds())
        .collect()
}

/// MAPE and worst-row error of `model` on `rows` (at least one row).
pub fn fit_error(model: &dyn CostModel, rows: &[ProfileRow]) -> FitError {
    let errs = relative_errors(model, rows);
    let (worst_row, max) = errs
        .iter()
        .map(|e| e.abs())
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0));
    FitError {
        mape: errs.iter().map(|e| e.abs()).sum::<f64>() / errs.len().max(1) as f64,
        max,
        worst_row,
    }
}

/// Why a profile could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitFailure {
    /// Too few rows to fit anything.
    #[error("a profile needs at least 3 rows to fit (got {0}); measure more batch shapes")]
    TooFewRows(usize),
    /// The fitted model is not a usable cost model.
    #[error("the fit is not a usable cost model: {0}")]
    Unusable(String),
}

/// Least-squares fit of the coefficients for fixed `b0` and `r`: the model and its sum of
/// squared relative residuals.
fn fit_at(rows: &[ProfileRow], b0: f64, r: f64) -> (ProfiledCost, f64) {
    let x: Vec<Vec<f64>> = rows
        .iter()
        .map(|row| ProfiledCost::features(&row.shape(), b0, r).to_vec())
        .collect();
    let y: Vec<f64> = rows.iter().map(ProfileRow::seconds).collect();
    // Weight 1/y^2 turns squared residuals into squared relative residuals.
    let w: Vec<f64> = y.iter().map(|y| 1.0 / (y * y)).collect();
    let theta = fit_nonneg(&x, &y, &w);
    let model =
        ProfiledCost::from_coefficients(b0, r, theta.try_into().expect("TERMS coefficients"));
    let sse = relative_errors(&model, rows).iter().map(|e| e * e).sum();
    (model, sse)
}

/// Fits [`ProfiledCost`] to `rows`.
///
/// `b0` is searched over whole tokens from 0 to the largest measured batch (at most 2048),
/// first every 8 tokens, then every token around the best; `r` over whole sequences from 1
/// to the largest measured decode batch (at most 64). Grid search rather than a local
/// optimiser because the objective is piecewise smooth in both (kinks where a measured batch
/// crosses `b0` or `r`), with several local minima.
pub fn fit_profiled(rows: &[ProfileRow]) -> Result<ProfiledCost, FitFailure> {
    if rows.len() < 3 {
        return Err(FitFailure::TooFewRows(rows.len()));
    }
    let max_tokens = rows
        .iter()
        .map(|r| r.batch_tokens)
        .max()
        .unwrap_or(0)
        .min(2048);
    let max_seqs = rows
        .iter()
        .map(|r| r.decode_batch)
        .max()
        .unwrap_or(0)
        .clamp(1, 64);
    let mut best: Option<(ProfiledCost, f64)> = None;
    let consider = |best: &mut Option<(ProfiledCost, f64)>, b0: u64, r: u32| {
        let (m, sse) = fit_at(rows, b0 as f64, f64::from(r));
        if best.as_ref().is_none_or(|(_, s)| sse < *s) {
            *best = Some((m, sse));
        }
    };
    for r in 1..=max_seqs {
        for b0 in (0..=max_tokens).step_by(8) {
            consider(&mut best, b0, r);
        }
    }
    let coarse = best.as_ref().expect("at least one grid point").0;
    let (b0, r) = (coarse.free_tokens as u64, coarse.min_attention_seqs as u32);
    for b0 in b0.saturating_sub(8)..=(b0 + 8).min(max_tokens) {
        consider(&mut best, b0, r);
    }
    let model = best.expect("at least one grid point").0;
    model
        .check()
        .map_err(|e| FitFailure::Unusable(e.to_string()))?;
    Ok(model)
}

/// Fits the roofline's efficiency factors and overhead for `model` on `gpu` to `rows`
/// (relative least squares, like [`fit_profiled`]), with no exposed compute
/// ([`Efficiency::exposed_compute`] 0): a profile of the GPU step alone cannot tell it
/// apart (on the H200 profile, fixing it anywhere in [0, 0.5] and refitting the rest moves
/// the MAPE by less than 0.3 points).
///
/// Both efficiencies are searched on a grid (every 0.01 in (0, 1], then every 0.001 around
/// the best); for each pair the best overhead has a closed form, the weighted mean of the
/// residuals, floored at 0.
pub fn fit_roofline(rows: &[ProfileRow], model: ModelShape, gpu: GpuSpec) -> RooflineCost {
    let ideal = RooflineCost {
        model,
        gpu,
        eff: Efficiency {
            compute: 1.0,
            memory: 1.0,
            overhead: 0.0,
            per_seq: 0.0,
            exposed_compute: 0.0,
            link_latency: NVLINK_STEP_LATENCY,
            per_layer: 0.0,
        },
        parallel: Parallel::SINGLE,
    };
    let times: Vec<(f64, f64, f64)> = rows
        .iter()
        .map(|r| {
            let (c, m) = ideal.ideal_times(&r.shape());
            (c, m, r.seconds())
        })
        .collect();
    let evaluate = |compute: f64, memory: f64| {
        let roof = |&(c, m, _): &(f64, f64, f64)| (c / compute).max(m / memory);
        let (num, den) = times.iter().fold((0.0, 0.0), |(n, d), t| {
            (n + (t.2 - roof(t)) / (t.2 * t.2), d + 1.0 / (t.2 * t.2))
        });
        let overhead = (num / den).max(0.0);
        let sse: f64 = times
            .iter()
            .map(|t| ((overhead + roof(t) - t.2) / t.2).powi(2))
            .sum();
        (
            Efficiency {
                compute,
                memory,
                overhead,
                per_seq: 0.0,
                exposed_compute: 0.0,
                link_latency: NVLINK_STEP_LATENCY,
                per_layer: 0.0,
            },
            sse,
        )
    };
    let mut best = evaluate(1.0, 1.0);
    let mut search = |centre: (f64, f64), step: f64, half: i32| {
        let (c0, m0) = centre;
        for i in -half..=half {
            for j in -half..=half {
                let (c, m) = (c0 + f64::from(i) * step, m0 + f64::from(j) * step);
                if c > 0.0 && c <= 1.0 && m > 0.0 && m <= 1.0 {
                    let cand = evaluate(c, m);
                    if cand.1 < best.1 {
                        best = cand;
                    }
                }
            }
        }
        (best.0.compute, best.0.memory)
    };
    let coarse = search((0.5, 0.5), 0.01, 50);
    search(coarse, 0.001, 10);
    RooflineCost {
        eff: best.0,
        ..ideal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(prefill: (u32, u32), decode: (u32, u32), ms: f64) -> ProfileRow {
        let kind = match (prefill.0 > 0, decode.0 > 0) {
            (true, true) => "mixed",
            (true, false) => "prefill",
            _ => "decode",
        };
        ProfileRow {
            model: "m".into(),
            kind: kind.into(),
            prefill_seqs: prefill.0,
            prefill_len: prefill.1,
            prefill_tokens: u64::from(prefill.0) * u64::from(prefill.1),
            decode_batch: decode.0,
            decode_context: decode.1,
            batch_tokens: u64::from(prefill.0) * u64::from(prefill.1) + u64::from(decode.0),
            median_ms: ms,
        }
    }

    /// Rows generated by a known model are fitted back to it exactly.
    #[test]
    fn fit_recovers_a_known_model() {
        let truth = ProfiledCost {
            setup: 5e-3,
            prefill_setup: 0.5e-3,
            per_token: 25e-6,
            free_tokens: 96.0,
            prefill_attention: 8e-10,
            per_kv_token: 3e-8,
            min_attention_seqs: 10.0,
        };
        let mut rows = Vec::new();
        for (seqs, len) in [
            (1, 16),
            (1, 64),
            (1, 128),
            (1, 512),
            (1, 2048),
            (4, 512),
            (2, 4096),
        ] {
            rows.push(row((seqs, len), (0, 0), 0.0));
        }
        for n in [1, 4, 16, 64, 256] {
            for ctx in [128, 2048] {
                rows.push(row((0, 0), (n, ctx), 0.0));
            }
        }
        rows.push(row((1, 256), (32, 1024), 0.0));
        for r in &mut rows {
            r.median_ms = truth.mean(&r.shape()) * 1e3;
        }
        let fit = fit_profiled(&rows).unwrap();
        let err = fit_error(&fit, &rows);
        assert!(err.max < 1e-9, "{fit:?}: {err:?}");
        assert_eq!((fit.free_tokens, fit.min_attention_seqs), (96.0, 10.0));
    }

    #[test]
    fn too_few_rows_is_an_error() {
        let rows = vec![row((1, 16), (0, 0), 6.0)];
        assert_eq!(fit_profiled(&rows), Err(FitFailure::TooFewRows(1)));
    }
}
