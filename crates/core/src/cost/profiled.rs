//! A cost model fitted to measured GPU iteration times (see [`crate::calibrate`]).
//!
//! The form follows what the H200 / Llama-3.1-8B profile shows:
//!
//! `S = c + p [prefill > 0] + a max(0, T - b0) + q Q + d K max(1, r / n_d)`
//!
//! with `T` the batch's tokens, `Q` its prefill entries' squared lengths
//! ([`BatchShape::prefill_squares`]), `n_d` decode entries reading `K` KV-cache tokens in all.
//! Why each term:
//!
//! - `c + a max(0, T - b0)`: the seed's shape; below `b0` tokens the weights' memory reads,
//!   not the arithmetic, bound an iteration;
//! - `p`: a batch with prompts runs the causal-attention prefill path, measurably dearer at
//!   small sizes than a decode batch of as many tokens;
//! - `q Q`: prefill attention is quadratic in each prompt's length, so `Q` sums the squared
//!   lengths of prompts of any mix of lengths, and a chunk of `k` tokens after `o` already
//!   prefilled adds `(o + k)^2 - o^2`: the chunks of one prompt cost exactly its whole
//!   attention, however it is split (the profile's rows are whole prompts of equal length,
//!   where `Q = P^2 / n_p`);
//! - `d K max(1, r / n_d)`: decode attention reads the KV cache, but with fewer than `r`
//!   sequences the attention kernel cannot fill the GPU, so a small batch costs what `r`
//!   sequences of its mean context cost (at context 8192 a batch of 1 costs what 8 do).

use serde::{Deserialize, Serialize};

use super::{BatchShape, CostModel, MAX_COUNT, MAX_SECONDS, check_range};
use crate::limits::RangeError;
use crate::rng::SimRng;

/// Deterministic iteration time fitted to a profile; wrap it in
/// [`LogNormalNoise`](super::LogNormalNoise) for batch-to-batch variation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfiledCost {
    /// Fixed cost of every iteration, `c` (seconds).
    #[serde(rename = "setup_s")]
    pub setup: f64,
    /// Extra fixed cost when the batch holds prompt tokens, `p` (seconds).
    #[serde(rename = "prefill_setup_s")]
    pub prefill_setup: f64,
    /// Cost per token beyond the free ones, `a` (seconds per token).
    #[serde(rename = "per_token_s")]
    pub per_token: f64,
    /// Tokens an iteration processes at no per-token cost, `b0` (tokens).
    pub free_tokens: f64,
    /// Prefill attention cost, `q` (seconds per squared prompt token).
    #[serde(rename = "prefill_attention_s")]
    pub prefill_attention: f64,
    /// Decode cost per KV-cache token read, `d` (seconds per token).
    #[serde(rename = "per_kv_token_s")]
    pub per_kv_token: f64,
    /// Fewest sequences decode attention is billed for, `r` (sequences).
    pub min_attention_seqs: f64,
}

impl ProfiledCost {
    /// Number of terms in [`features`](Self::features).
    pub const TERMS: usize = 5;

    /// The model's terms for `shape` given the nonlinear parameters `b0` and `r`, in the
    /// order `c, p, a, q, d`: the iteration time is their dot product with the coefficients.
    pub fn features(shape: &BatchShape, b0: f64, r: f64) -> [f64; Self::TERMS] {
        let seqs = f64::from(shape.decode_entries);
        [
            1.0,
            if shape.prefill_tokens > 0 { 1.0 } else { 0.0 },
            (shape.tokens() as f64 - b0).max(0.0),
            shape.prefill_squares_f64(),
            if shape.decode_entries > 0 {
                shape.kv_tokens as f64 * (r / seqs).max(1.0)
            } else {
                0.0
            },
        ]
    }

    /// The model with nonlinear parameters `b0`, `r` and coefficients `theta` (in
    /// [`features`](Self::features) order, seconds).
    pub fn from_coefficients(b0: f64, r: f64, theta: [f64; Self::TERMS]) -> Self {
        let [
            setup,
            prefill_setup,
            per_token,
            prefill_attention,
            per_kv_token,
        ] = theta;
        ProfiledCost {
            setup,
            prefill_setup,
            per_token,
            free_tokens: b0,
            prefill_attention,
            per_kv_token,
            min_attention_seqs: r,
        }
    }

    /// Why the parameters cannot be a cost model, if they cannot: the setup cost must be
    /// positive (every batch takes time) and every other time non-negative, all at most
    /// [`MAX_SECONDS`]; the token and sequence counts from 0 to [`MAX_COUNT`].
    pub fn check(&self) -> Result<(), RangeError> {
        let seconds = (0.0, MAX_SECONDS);
        check_range("setup_s", self.setup, seconds, true, "a number of seconds")?;
        for (name, v, what) in [
            ("prefill_setup_s", self.prefill_setup, "a number of seconds"),
            (
                "per_token_s",
                self.per_token,
                "a number of seconds per token",
            ),
            (
                "prefill_attention_s",
                self.prefill_attention,
                "a number of seconds per squared token",
            ),
            (
                "per_kv_token_s",
                self.per_kv_token,
                "a number of seconds per token",
            ),
        ] {
            check_range(name, v, seconds, false, what)?;
        }
        check_range(
            "free_tokens",
            self.free_tokens,
            (0.0, MAX_COUNT),
            false,
            "a number of tokens",
        )?;
        check_range(
            "min_attention_seqs",
            self.min_attention_seqs,
            (0.0, MAX_COUNT),
            false,
            "a number of sequences",
        )
    }
}

impl CostModel for ProfiledCost {
    fn sample(&self, shape: &BatchShape, _rng: &mut SimRng) -> f64 {
        self.mean(shape)
    }

    fn mean(&self, shape: &BatchShape) -> f64 {
        let f = Self::features(shape, self.free_tokens, self.min_attention_seqs);
        let theta = [
            self.setup,
            self.prefill_setup,
            self.per_token,
            self.prefill_attention,
            self.per_kv_token,
        ];
        f.iter().zip(theta).map(|(x, t)| x * t).sum()
    }

    fn variance(&self, _shape: &BatchShape) -> f64 {
        0.0
    }

    fn depends_on_context(&self) -> bool {
        self.per_kv_token > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_by_hand() {
        let m = ProfiledCost {
            setup: 5e-3,
            prefill_setup: 1e-3,
            per_token: 2e-5,
            free_tokens: 100.0,
            prefill_attention: 1e-9,
            per_kv_token: 3e-8,
            min_attention_seqs: 8.0,
        };
        // Prompts of 100 and 200 tokens: 5 + 1 + 0.02 * 200 + 1e-6 * (100^2 + 200^2) ms.
        let prefill = BatchShape {
            prefill_tokens: 300,
            prefill_entries: 2,
            prefill_squares: 100 * 100 + 200 * 200,
            ..Default::default()
        };
        assert!((m.mean(&prefill) - (5e-3 + 1e-3 + 4e-3 + 5e-5)).abs() < 1e-15);
        // 2 decodes at context 1000: billed as 8 sequences' KV reads.
        let decode = BatchShape::decode(2, 2000);
        assert!((m.mean(&decode) - (5e-3 + 3e-8 * 8000.0)).abs() < 1e-15);
        assert!(m.depends_on_context() && m.check().is_ok());
        for (bad, field) in [
            (ProfiledCost { setup: 1e308, ..m }, "setup_s"),
            (ProfiledCost { setup: 0.0, ..m }, "setup_s"),
            (
                ProfiledCost {
                    per_token: 3601.0,
                    ..m
                },
                "per_token_s",
            ),
            (
                ProfiledCost {
                    prefill_attention: -1e-9,
                    ..m
                },
                "prefill_attention_s",
            ),
            (
                ProfiledCost {
                    free_tokens: f64::INFINITY,
                    ..m
                },
                "free_tokens",
            ),
            (
                ProfiledCost {
                    min_attention_seqs: 1e300,
                    ..m
                },
                "min_attention_seqs",
            ),
        ] {
            assert_eq!(bad.check().unwrap_err().field, field);
        }
    }
}
