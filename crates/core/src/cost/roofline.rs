//! A roofline cost model: iteration time from the model's shape and the GPU's peak
//! arithmetic and memory bandwidth, so a card that was never profiled can be estimated.
//!
//! `S = overhead + max(FLOPs / (compute_eff * peak_flops), bytes / (memory_eff * bandwidth))`
//!
//! FLOPs count the dense layers (2 per parameter per token), the logits of one token per
//! sequence, and attention (quadratic in each prompt, so a chunk after a prefix costs its
//! share of the whole prompt's; linear in each decode's context). The KV cache a chunk's
//! prefix reads is left out of the bytes: it matters only for a short chunk after a long
//! prefix (2,048 tokens after 8,192 read 1 GiB of it, 0.2 ms beside 60 ms of arithmetic).
//! Bytes count the weights, read once per iteration, and the KV cache the decodes read and
//! every token writes. The efficiency factors and the fixed overhead (kernel launches,
//! sampling, CPU work between iterations) are fitted to a measured profile
//! ([`crate::calibrate::fit_roofline`]); what the roofline cannot see, such as an attention
//! kernel that a single long sequence leaves idle, shows as its error against the profile.

use serde::{Deserialize, Serialize};

use super::{BatchShape, CostModel};
use crate::rng::SimRng;

/// A decoder-only transformer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    /// All parameters, embeddings and output head included.
    pub params: f64,
    /// Transformer layers.
    pub layers: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: u32,
    /// Dimension of each head.
    pub head_dim: u32,
    /// Vocabulary size (rows of the embedding and of the output head).
    pub vocab: u32,
    /// Bytes per weight and per KV-cache element (2 for bf16).
    pub bytes_per_value: f64,
}

impl ModelShape {
    /// Llama-3.1-8B in bf16 (untied embeddings), as measured in the H200 profile.
    pub const LLAMA_3_1_8B: ModelShape = ModelShape {
        params: 8.03e9,
        layers: 32,
        hidden: 4096,
        heads: 32,
        kv_heads: 8,
        head_dim: 128,
        vocab: 128_256,
        bytes_per_value: 2.0,
    };

    fn table(&self) -> f64 {
        f64::from(self.vocab) * f64::from(self.hidden)
    }

    /// KV-cache bytes of one token, all layers.
    fn kv_bytes_per_token(&self) -> f64 {
        2.0 * f64::from(self.layers)
            * f64::from(self.kv_heads)
            * f64::from(self.head_dim)
            * self.bytes_per_value
    }

    /// Floating-point operations of one iteration over `shape`.
    pub fn flops(&self, shape: &BatchShape) -> f64 {
        let dense = 2.0 * (self.params - 2.0 * self.table()) * shape.tokens() as f64;
        let seqs = f64::from(shape.prefill_entries) + f64::from(shape.decode_entries);
        let logits = 2.0 * self.table() * seqs;
        let per_pair =
            2.0 * f64::from(self.layers) * f64::from(self.heads) * f64::from(self.head_dim);
        // Causal prefill: QK^T and AV over prefill_squares / 2 query-key pairs each (L^2 / 2
        // for a whole prompt of L), 2 FLOPs per multiply-add.
        let prefill_attention = per_pair * shape.prefill_squares as f64;
        let decode_attention = 2.0 * per_pair * shape.kv_tokens as f64;
        dense + logits + prefill_attention + decode_attention
    }

    /// Bytes moved to and from GPU memory by one iteration over `shape`.
    pub fn bytes(&self, shape: &BatchShape) -> f64 {
        // The input embedding is gathered row by row; every other weight is read once.
        let weights = (self.params - self.table()) * self.bytes_per_value;
        let kv = (shape.kv_tokens + shape.tokens()) as f64 * self.kv_bytes_per_token();
        weights + kv
    }
}

/// A GPU's peak dense bf16 arithmetic and memory bandwidth (datasheet figures).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GpuSpec {
    /// Peak dense bf16 tensor throughput (FLOP/s).
    pub peak_flops: f64,
    /// Peak memory bandwidth (bytes/s).
    pub bandwidth: f64,
}

impl GpuSpec {
    /// NVIDIA H100 SXM5 80 GB: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3.
    pub const H100: GpuSpec = GpuSpec {
        peak_flops: 989e12,
        bandwidth: 3.35e12,
    };
    /// NVIDIA H200 141 GB: 989 TFLOP/s dense bf16, 4.8 TB/s HBM3e.
    pub const H200: GpuSpec = GpuSpec {
        peak_flops: 989e12,
        bandwidth: 4.8e12,
    };

    /// The GPU called `name` (`h100` or `h200`).
    pub fn named(name: &str) -> Option<GpuSpec> {
        match name {
            "h100" => Some(GpuSpec::H100),
            "h200" => Some(GpuSpec::H200),
            _ => None,
        }
    }
}

/// How far below its peaks a GPU runs, and the fixed cost of an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Efficiency {
    /// Fraction of peak FLOP/s reached (0 to 1].
    pub compute: f64,
    /// Fraction of peak bandwidth reached (0 to 1].
    pub memory: f64,
    /// Fixed cost of every iteration (seconds).
    pub overhead: f64,
}

impl Efficiency {
    /// Fitted to the H200 profile (`shared/calibration/h200_llama-3.1-8b.csv`) by
    /// `llmsim calibrate --roofline h200`; a test checks that the fit still gives these.
    pub const H200_LLAMA_3_1_8B: Efficiency = Efficiency {
        compute: 0.55,
        memory: 0.996,
        overhead: 0.003_029_210_183_896_501_4,
    };
}

/// Roofline iteration time (deterministic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RooflineCost {
    /// The model served.
    pub model: ModelShape,
    /// The GPU serving it.
    pub gpu: GpuSpec,
    /// Efficiency factors and overhead.
    pub eff: Efficiency,
}

impl RooflineCost {
    /// Llama-3.1-8B on `gpu` with the efficiencies fitted on the H200 profile: the same
    /// software stack is assumed to reach the same fractions of another card's peaks.
    pub fn llama_3_1_8b(gpu: GpuSpec) -> Self {
        RooflineCost {
            model: ModelShape::LLAMA_3_1_8B,
            gpu,
            eff: Efficiency::H200_LLAMA_3_1_8B,
        }
    }

    /// Time of the arithmetic and of the memory traffic at the peaks, before efficiency
    /// (seconds each).
    pub fn ideal_times(&self, shape: &BatchShape) -> (f64, f64) {
        (
            self.model.flops(shape) / self.gpu.peak_flops,
            self.model.bytes(shape) / self.gpu.bandwidth,
        )
    }
}

impl CostModel for RooflineCost {
    fn sample(&self, shape: &BatchShape, _rng: &mut SimRng) -> f64 {
        self.mean(shape)
    }

    fn mean(&self, shape: &BatchShape) -> f64 {
        let (compute, memory) = self.ideal_times(shape);
        self.eff.overhead + (compute / self.eff.compute).max(memory / self.eff.memory)
    }

    fn variance(&self, _shape: &BatchShape) -> f64 {
        0.0
    }

    fn depends_on_context(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_8b_counts_by_hand() {
        let m = ModelShape::LLAMA_3_1_8B;
        // One decode at context 0: the weights less the input embedding, plus one token's KV.
        let one = BatchShape::decode(1, 0);
        let table = 128_256.0 * 4096.0;
        assert!((m.bytes(&one) - ((8.03e9 - table) * 2.0 + 131_072.0)).abs() < 1.0);
        // 1024 KV tokens add 1024 * 2 * 32 * 8 * 128 * 2 bytes = 128 MiB.
        let ctx = BatchShape {
            kv_tokens: 1024,
            ..one
        };
        assert!((m.bytes(&ctx) - m.bytes(&one) - 134_217_728.0).abs() < 1e-3);
        // A 1000-token prompt: dense + logits + causal attention.
        let p = BatchShape::prefill(1000);
        let want =
            2.0 * (8.03e9 - 2.0 * table) * 1000.0 + 2.0 * table + 2.0 * 32.0 * 32.0 * 128.0 * 1e6;
        assert!((m.flops(&p) / want - 1.0).abs() < 1e-12);
    }
}
