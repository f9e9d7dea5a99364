//! The KV-cache model: how many tokens' keys and values a GPU can hold, in fixed-size blocks.
//!
//! Memory is paged as in vLLM (Kwon et al., SOSP'23, "Efficient Memory Management for Large
//! Language Model Serving with PagedAttention"): the cache is `blocks` blocks of
//! `block_size` tokens, and a request whose cache holds `n` tokens occupies
//! `ceil(n / block_size)` blocks. The engine keeps the authoritative count of blocks in use
//! per GPU (it owns every request's progress); schedulers read the free count from their
//! [`View`](crate::scheduler::View) and must not schedule a batch that would overflow it.

use crate::cost::Parallel;
pub use crate::model::ModelShape;

/// Default tokens per KV block (vLLM's default `block_size`).
pub const DEFAULT_BLOCK_SIZE: u32 = 16;

/// Size of one GPU's KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvConfig {
    /// Tokens per block (at least 1).
    pub block_size: u32,
    /// Blocks available for KV on each GPU; `None` for an unlimited cache (the seed model).
    pub blocks: Option<u64>,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig::unlimited()
    }
}

impl KvConfig {
    /// No memory limit: every batch fits.
    pub fn unlimited() -> Self {
        KvConfig {
            block_size: DEFAULT_BLOCK_SIZE,
            blocks: None,
        }
    }

    /// A cache of `tokens` tokens, rounded down to whole blocks of `block_size` tokens.
    pub fn with_tokens(tokens: u64, block_size: u32) -> Self {
        KvConfig {
            block_size,
            blocks: Some(tokens / u64::from(block_size)),
        }
    }

    /// The cache of one replica of `parallel.gpus()` GPUs of `gpu_mem_gb` GB (1e9 bytes)
    /// each, once `model`'s weights are loaded split evenly across them, using
    /// `mem_fraction` of each GPU's memory (vLLM's `gpu_memory_utilization`). Each GPU holds
    /// its stage's layers and its share of the KV heads ([`ModelShape::kv_share`]) of every
    /// token. `None` when the weights do not fit.
    pub fn from_memory(
        gpu_mem_gb: f64,
        mem_fraction: f64,
        model: &ModelShape,
        parallel: Parallel,
        block_size: u32,
    ) -> Option<Self> {
        let gpus = f64::from(parallel.gpus());
        let free = gpu_mem_gb * mem_fraction * 1e9 - model.weights_bytes() / gpus;
        let per_token = bytes_per_token_per_gpu(model, parallel);
        (free > 0.0).then(|| KvConfig::with_tokens((free / per_token) as u64, block_size))
    }

    /// Blocks that hold `tokens` tokens: `ceil(tokens / block_size)`.
    #[inline]
    pub fn blocks_for(&self, tokens: u64) -> u64 {
        let size = u64::from(self.block_size);
        // Paged policies ask this several times per running request per batch; with the
        // usual power-of-two sizes a shift and a mask replace a 64-bit division.
        if size.is_power_of_two() {
            (tokens >> size.trailing_zeros()) + u64::from(tokens & (size - 1) != 0)
        } else {
            tokens.div_ceil(size)
        }
    }

    /// Capacity in blocks; `u64::MAX` when unlimited.
    pub fn capacity_blocks(&self) -> u64 {
        self.blocks.unwrap_or(u64::MAX)
    }

    /// Capacity in tokens, `None` when unlimited.
    pub fn capacity_tokens(&self) -> Option<u64> {
        self.blocks.map(|b| b * u64::from(self.block_size))
    }

    /// Whether one request of `tokens` tokens (prompt plus decode budget) fits alone in an
    /// empty cache; a request that does not could never finish.
    pub fn fits_alone(&self, tokens: u64) -> bool {
        self.blocks_for(tokens) <= self.capacity_blocks()
    }
}

/// KV bytes per token that one GPU of a replica laid out as `parallel` holds: its share of
/// the KV heads ([`ModelShape::kv_share`]) of its stage's layers (bytes).
pub fn bytes_per_token_per_gpu(model: &ModelShape, parallel: Parallel) -> f64 {
    model.kv_bytes_per_token() * model.kv_share(parallel.tp) / f64::from(parallel.pp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_8b_needs_128_kib_per_token() {
        let m = ModelShape::LLAMA_3_1_8B;
        assert_eq!(m.kv_bytes_per_token(), 131_072.0);
        // 80 GB at 90%: 72e9 - 2 x 8,030,261,248 bytes over 131072 bytes/token.
        let kv = KvConfig::from_memory(80.0, 0.9, &m, Parallel::SINGLE, 16).unwrap();
        let tokens = ((72e9 - 16_060_522_496.0) / 131_072.0) as u64;
        assert_eq!(kv.blocks, Some(tokens / 16));
        assert!(KvConfig::from_memory(16.0, 0.9, &m, Parallel::SINGLE, 16).is_none());
        // TP 2: each GPU holds half the weights and half the KV heads of every token, so
        // the replica holds (72e9 - 8.03e9) / 65536 tokens.
        let tp2 = Parallel { tp: 2, pp: 1 };
        let kv = KvConfig::from_memory(80.0, 0.9, &m, tp2, 16).unwrap();
        let tokens = ((72e9 - 8_030_261_248.0) / 65_536.0) as u64;
        assert_eq!(kv.blocks, Some(tokens / 16));
    }

    /// Llama-3.1-70B (141 GB of bf16 weights) does not fit one H200 at 90% but fits two;
    /// at TP 16 each GPU keeps one whole KV head of the 8 (replicated, not split).
    #[test]
    fn seventy_b_needs_two_h200s() {
        let m = crate::model::catalogue::find("llama-3.1-70b")
            .unwrap()
            .shape;
        assert!(KvConfig::from_memory(141.0, 0.9, &m, Parallel::SINGLE, 16).is_none());
        let two = KvConfig::from_memory(141.0, 0.9, &m, Parallel { tp: 2, pp: 1 }, 16).unwrap();
        let per_gpu_token = 327_680.0 / 2.0;
        let tokens = ((141.0 * 0.9 * 1e9 - m.weights_bytes() / 2.0) / per_gpu_token) as u64;
        assert_eq!(two.blocks, Some(tokens / 16));
        assert_eq!(m.kv_share(16), 1.0 / 8.0);
    }

    #[test]
    fn blocks_round_up() {
        let kv = KvConfig::with_tokens(100, 16);
        assert_eq!(kv.blocks, Some(6));
        assert_eq!(kv.blocks_for(0), 0);
        assert_eq!(kv.blocks_for(16), 1);
        assert_eq!(kv.blocks_for(17), 2);
        assert!(kv.fits_alone(96) && !kv.fits_alone(97));
    }

    /// The shift for power-of-two block sizes is the division it replaces.
    #[test]
    fn blocks_for_is_the_ceiling_of_the_division_for_every_block_size() {
        for size in [1u32, 2, 3, 7, 16, 17, 32, 100, 128, 1 << 20, u32::MAX] {
            let kv = KvConfig::with_tokens(1 << 40, size);
            let edges = [
                0u64,
                1,
                15,
                16,
                17,
                4095,
                4096,
                4097,
                1 << 33,
                u64::MAX - 1,
                u64::MAX,
            ];
            for t in edges.into_iter().chain((0..2_000).map(|i| i * 37 + 5)) {
                assert_eq!(
                    kv.blocks_for(t),
                    t.div_ceil(u64::from(size)),
                    "{t} tokens, block {size}"
                );
            }
        }
    }
}
