//! The KV-cache model: how many tokens' keys and values a GPU can hold, in fixed-size blocks.
//!
//! Memory is paged as in vLLM (Kwon et al., SOSP'23, "Efficient Memory Management for Large
//! Language Model Serving with PagedAttention"): the cache is `blocks` blocks of
//! `block_size` tokens, and a request whose cache holds `n` tokens occupies
//! `ceil(n / block_size)` blocks. The engine keeps the authoritative count of blocks in use
//! per GPU (it owns every request's progress); schedulers read the free count from their
//! [`View`](crate::scheduler::View) and must not schedule a batch that would overflow it.

use std::fmt;
use std::str::FromStr;

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

    /// The cache left on a GPU of `gpu_mem_gb` GB (1e9 bytes) once `model`'s weights are
    /// loaded, using `mem_fraction` of the GPU's memory (vLLM's `gpu_memory_utilization`).
    /// `None` when the weights do not fit.
    pub fn from_memory(
        gpu_mem_gb: f64,
        mem_fraction: f64,
        model: &ModelShape,
        block_size: u32,
    ) -> Option<Self> {
        let free = gpu_mem_gb * mem_fraction * 1e9 - model.weight_bytes();
        (free > 0.0)
            .then(|| KvConfig::with_tokens((free / model.kv_bytes_per_token()) as u64, block_size))
    }

    /// Blocks that hold `tokens` tokens: `ceil(tokens / block_size)`.
    pub fn blocks_for(&self, tokens: u64) -> u64 {
        tokens.div_ceil(u64::from(self.block_size))
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

/// A transformer's shape, as far as memory is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelShape {
    /// Transformer layers.
    pub layers: u32,
    /// Key/value heads per layer (fewer than query heads under grouped-query attention).
    pub kv_heads: u32,
    /// Dimension of one head.
    pub head_dim: u32,
    /// Bytes per stored element (2 for fp16/bf16).
    pub dtype_bytes: u32,
    /// Parameters (for the weights' memory).
    pub params: f64,
}

impl ModelShape {
    /// Llama 3.1 8B: 32 layers, 8 KV heads of dimension 128, bf16, 8.03e9 parameters.
    pub const LLAMA_3_1_8B: ModelShape = ModelShape {
        layers: 32,
        kv_heads: 8,
        head_dim: 128,
        dtype_bytes: 2,
        params: 8.03e9,
    };

    /// Bytes of KV cache per token: layers x KV heads x head dim x 2 (K and V) x dtype bytes.
    pub fn kv_bytes_per_token(&self) -> f64 {
        f64::from(self.layers)
            * f64::from(self.kv_heads)
            * f64::from(self.head_dim)
            * 2.0
            * f64::from(self.dtype_bytes)
    }

    /// Bytes of weights, stored in the KV dtype.
    pub fn weight_bytes(&self) -> f64 {
        self.params * f64::from(self.dtype_bytes)
    }
}

/// A model preset name, as given to `--model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelPreset {
    /// [`ModelShape::LLAMA_3_1_8B`].
    Llama31_8b,
}

impl ModelPreset {
    /// The preset's shape.
    pub fn shape(&self) -> ModelShape {
        match self {
            ModelPreset::Llama31_8b => ModelShape::LLAMA_3_1_8B,
        }
    }
}

impl FromStr for ModelPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "llama-3.1-8b" => Ok(ModelPreset::Llama31_8b),
            _ => Err(format!("unknown model '{s}' (allowed: llama-3.1-8b)")),
        }
    }
}

impl fmt::Display for ModelPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelPreset::Llama31_8b => "llama-3.1-8b",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_8b_needs_128_kib_per_token() {
        assert_eq!(ModelShape::LLAMA_3_1_8B.kv_bytes_per_token(), 131_072.0);
        // 80 GB at 90%: 72e9 - 16.06e9 bytes over 131072 bytes/token.
        let kv = KvConfig::from_memory(80.0, 0.9, &ModelShape::LLAMA_3_1_8B, 16).unwrap();
        let tokens = ((72e9 - 16.06e9) / 131_072.0) as u64;
        assert_eq!(kv.blocks, Some(tokens / 16));
        assert!(KvConfig::from_memory(16.0, 0.9, &ModelShape::LLAMA_3_1_8B, 16).is_none());
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
}
