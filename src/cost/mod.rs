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

pub use linear::{CostDist, LinearCost};
pub use noise::LogNormalNoise;
pub use preset::Preset;
pub use profiled::ProfiledCost;
pub use roofline::{Efficiency, GpuSpec, ModelShape, RooflineCost};

use crate::rng::SimRng;

/// What a cost model needs to know of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchShape {
    /// Prompt tokens processed by the batch's prefill entries (tokens).
    pub prefill_tokens: u64,
    /// Number of prefill entries (requests, or prompt chunks).
    pub prefill_entries: u32,
    /// Number of decode entries; each processes one token.
    pub decode_entries: u32,
    /// KV-cache tokens read by the decode entries: the sum of their contexts (tokens).
    pub kv_tokens: u64,
}

impl BatchShape {
    /// All tokens the batch processes, `b` in the seed's `S(b)` (tokens).
    pub fn tokens(&self) -> u64 {
        self.prefill_tokens + u64::from(self.decode_entries)
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
