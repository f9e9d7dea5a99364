//! Batch cost models: how long one GPU iteration takes for a given batch.
//!
//! Every scheduler goes through the same model, so comparisons between policies are about
//! scheduling alone. The seed's [`LinearCost`] prices a batch by its total token count;
//! [`ProfiledCost`] is fitted to measured GPU iterations and also charges for the KV cache
//! the decodes read; [`RooflineCost`] estimates it from the model's shape and the GPU's
//! peaks; [`LogNormalNoise`] adds per-iteration jitter to any of them. [`preset`] saves and
//! loads fitted models.

mod linear;
mod noise;
pub mod preset;
mod profiled;
mod roofline;
pub mod serving;

pub use linear::{CostDist, LinearCost};
pub use noise::LogNormalNoise;
pub use preset::Preset;
pub use profiled::ProfiledCost;
pub use roofline::{
    AllReduce, Efficiency, GpuSpec, ModelShape, NODE_GPUS, NVLINK_STEP_LATENCY, Parallel,
    RooflineCost,
};
pub use serving::ServingPreset;

use crate::limits::RangeError;
use crate::rng::SimRng;

/// Largest coefficient of variation of a cost model's randomness (`gamma:CV` costs,
/// lognormal noise). Either law with CV `v` puts its mean in rare large draws: at CV 10
/// about one draw in 100 is of the mean's size, at CV 1e10 one in 1e20 (and gamma draws
/// underflow to 0), so a run's iterations would average far below the model's mean.
pub const MAX_CV: f64 = 10.0;
/// Largest value of a cost model's time parameters (seconds, or seconds per token or per
/// squared token): an hour, where real iterations take milliseconds. It keeps every batch's
/// time, and the clock of any run, finite.
pub const MAX_SECONDS: f64 = 3600.0;
/// Largest value of a cost model's token or sequence count parameters: `2^32`, above any
/// batch the schedulers form.
pub const MAX_COUNT: f64 = 4_294_967_296.0;

/// Checks that `value` of `field`, described as `what`, is in `[lo, hi]`, or in `(lo, hi]`
/// when `open_low`.
pub(crate) fn check_range(
    field: &'static str,
    value: f64,
    (lo, hi): (f64, f64),
    open_low: bool,
    what: &str,
) -> Result<(), RangeError> {
    let above_lo = if open_low { value > lo } else { value >= lo };
    if above_lo && value <= hi {
        return Ok(());
    }
    let low = if open_low { "greater than" } else { "at least" };
    Err(RangeError {
        field,
        why: format!(
            "must be {what} {low} {lo} and at most {hi} (got {})",
            crate::limits::num(value)
        ),
    })
}

/// Checks a coefficient of variation of a cost model's randomness: in `(0, MAX_CV]`.
pub fn check_cv(field: &'static str, cv: f64) -> Result<(), RangeError> {
    check_range(field, cv, (0.0, MAX_CV), true, "a coefficient of variation")
}

/// What a cost model needs to know of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchShape {
    /// Prompt tokens processed by the batch's prefill entries (tokens).
    pub prefill_tokens: u64,
    /// Number of prefill entries (requests, or prompt chunks).
    pub prefill_entries: u32,
    /// The prefill entries' causal attention: the sum over entries of
    /// `(offset + chunk)^2 - offset^2` for a chunk of `chunk` tokens after `offset` already
    /// prefilled (tokens squared), i.e. twice the query-key pairs `chunk * (offset + chunk / 2)`
    /// it computes. A prompt's chunks add up to its squared length however it is split, and
    /// whole prompts give the sum of their squared lengths. Wide enough that no batch of
    /// `u32` token counts overflows it.
    pub prefill_squares: u128,
    /// Number of decode entries; each processes one token.
    pub decode_entries: u32,
    /// KV-cache tokens read by the decode entries: the sum of their contexts (tokens).
    pub kv_tokens: u64,
}

impl BatchShape {
    /// One prefill entry of `tokens` tokens after `offset` tokens of the same sequence were
    /// prefilled by earlier batches (tokens each).
    pub fn prefill_chunk(offset: u64, tokens: u64) -> BatchShape {
        BatchShape {
            prefill_tokens: tokens,
            prefill_entries: 1,
            prefill_squares: BatchShape::chunk_squares(offset, tokens),
            ..BatchShape::default()
        }
    }

    /// One whole prompt of `tokens` tokens.
    pub fn prefill(tokens: u64) -> BatchShape {
        BatchShape::prefill_chunk(0, tokens)
    }

    /// `entries` decodes reading `kv_tokens` KV-cache tokens in all.
    pub fn decode(entries: u32, kv_tokens: u64) -> BatchShape {
        BatchShape {
            decode_entries: entries,
            kv_tokens,
            ..BatchShape::default()
        }
    }

    /// All tokens the batch processes, `b` in the seed's `S(b)` (tokens).
    pub fn tokens(&self) -> u64 {
        self.prefill_tokens + u64::from(self.decode_entries)
    }

    /// [`prefill_squares`](Self::prefill_squares) as a float, rounded as `as f64` rounds
    /// it, through `u64` when it fits: the same value, without the library call a `u128`
    /// conversion makes (4% of a trace replay's time, on every batch).
    pub fn prefill_squares_f64(&self) -> f64 {
        // Out of line, or the compiler makes the call on every batch and selects.
        #[cold]
        #[inline(never)]
        fn wide(x: u128) -> f64 {
            x as f64
        }
        match u64::try_from(self.prefill_squares) {
            Ok(x) => x as f64,
            Err(_) => wide(self.prefill_squares),
        }
    }

    /// A chunk's share of [`prefill_squares`](Self::prefill_squares):
    /// `(offset + tokens)^2 - offset^2` (tokens squared; exact, as `offset + tokens` < 2^64).
    pub fn chunk_squares(offset: u64, tokens: u64) -> u128 {
        u128::from(tokens) * (2 * u128::from(offset) + u128::from(tokens))
    }
}

/// A model of one iteration's duration.
pub trait CostModel: Send + Sync + std::fmt::Debug {
    /// Draws the duration of one batch (seconds), using `rng` for any noise.
    fn sample(&self, shape: &BatchShape, rng: &mut SimRng) -> f64;
    /// The expected duration of one batch (seconds).
    fn mean(&self, shape: &BatchShape) -> f64;
    /// The variance of one batch's duration (seconds squared).
    fn variance(&self, shape: &BatchShape) -> f64;
    /// Whether a batch's cost depends on its decodes' context lengths (`kv_tokens`). The
    /// closed forms in [`crate::theory`] assume it does not.
    fn depends_on_context(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// The float of the squares is `as f64`'s, bit for bit, on both sides of `u64::MAX` and
    /// where rounding to 53 bits is needed.
    #[test]
    fn prefill_squares_convert_as_u128_does() {
        let big = u128::from(u64::MAX);
        for x in [
            0,
            1,
            (1 << 53) + 1,
            (1 << 63) + 1025,
            big - 1,
            big,
            big + 1,
            u128::MAX,
        ] {
            let shape = BatchShape {
                prefill_squares: x,
                ..BatchShape::default()
            };
            assert_eq!(
                shape.prefill_squares_f64().to_bits(),
                (x as f64).to_bits(),
                "{x}"
            );
        }
    }

    /// Every cost model whose price depends on prefill attention: the built-in presets and
    /// the roofline on both GPUs.
    fn attention_models() -> Vec<Arc<dyn CostModel>> {
        let mut models: Vec<Arc<dyn CostModel>> = preset::built_in_names()
            .into_iter()
            .map(|n| Preset::built_in(n).unwrap().model())
            .collect();
        for gpu in [GpuSpec::H100, GpuSpec::H200] {
            models.push(Arc::new(RooflineCost::llama_3_1_8b(gpu)));
        }
        models
    }

    /// Chunk sizes (each >= 1) that add up to `prompt`, cut at `cuts` (fractions of it).
    fn chunks(prompt: u64, cuts: &[f64]) -> Vec<u64> {
        let mut at: Vec<u64> = cuts
            .iter()
            .map(|f| (f * prompt as f64) as u64)
            .filter(|&c| c > 0 && c < prompt)
            .collect();
        at.push(0);
        at.push(prompt);
        at.sort_unstable();
        at.dedup();
        at.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[test]
    fn mixed_prompts_are_priced_by_their_sum_of_squares() {
        let mut shape = BatchShape::default();
        for l in [100u64, 300, 4000] {
            let one = BatchShape::prefill(l);
            shape.prefill_tokens += one.prefill_tokens;
            shape.prefill_entries += one.prefill_entries;
            shape.prefill_squares += one.prefill_squares;
        }
        assert_eq!(shape.prefill_squares, 100 * 100 + 300 * 300 + 4000 * 4000);
        // The old price, P^2 / n = 4400^2 / 3, is less than half of it.
        assert!(shape.prefill_squares as f64 > 2.0 * 4400f64.powi(2) / 3.0);
    }

    /// The example: one 8,192-token prompt cost 250 ms whole but 221 ms as four
    /// 2,048-token chunks, whose attention was charged 4 x 2048^2 instead of 8192^2.
    #[test]
    fn four_chunks_cost_more_than_the_whole_prompt() {
        let m = Preset::built_in("h200-llama3.1-8b").unwrap().profiled;
        let whole = m.mean(&BatchShape::prefill(8192));
        let split: f64 = (0..4)
            .map(|k| m.mean(&BatchShape::prefill_chunk(2048 * k, 2048)))
            .sum();
        assert!((whole - 0.2504).abs() < 5e-4, "whole {whole}");
        // Three more iterations' fixed costs, less the three more chunks' free tokens.
        let extra = 3.0 * (m.setup + m.prefill_setup - m.per_token * m.free_tokens);
        assert!((split - whole - extra).abs() < 1e-12, "{split} vs {whole}");
        assert!(split > whole);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// However a prompt is split, its chunks' attention adds up to the whole prompt's
        /// exactly, and no model prices the chunks below the whole prompt: each chunk pays
        /// the setup again (the presets' `c + p` exceed the `a b0` a chunk saves), and the
        /// roofline's maximum of compute and memory time is subadditive.
        #[test]
        fn splitting_a_prompt_never_lowers_its_cost(
            prompt in 1u64..200_000,
            cuts in prop::collection::vec(0.0..1.0f64, 0..12),
        ) {
            let parts = chunks(prompt, &cuts);
            let mut offset = 0;
            let shapes: Vec<BatchShape> = parts
                .iter()
                .map(|&k| {
                    offset += k;
                    BatchShape::prefill_chunk(offset - k, k)
                })
                .collect();
            let whole = BatchShape::prefill(prompt);
            let squares: u128 = shapes.iter().map(|s| s.prefill_squares).sum();
            prop_assert_eq!(squares, whole.prefill_squares);
            let roofline = ModelShape::LLAMA_3_1_8B;
            let attention = |s: &BatchShape| {
                roofline.flops(s) - roofline.flops(&BatchShape { prefill_squares: 0, ..*s })
            };
            let split_attention: f64 = shapes.iter().map(attention).sum();
            prop_assert!((split_attention / attention(&whole) - 1.0).abs() < 1e-12);
            for m in attention_models() {
                let split: f64 = shapes.iter().map(|s| m.mean(s)).sum();
                prop_assert!(split >= m.mean(&whole) * (1.0 - 1e-12), "{m:?}: {split}");
            }
        }
    }
}
