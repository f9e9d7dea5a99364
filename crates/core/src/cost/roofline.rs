//! A roofline cost model: iteration time from the model's shape and the GPU's peak
//! arithmetic and memory bandwidth, so a card that was never profiled can be estimated.
//!
//! `S = overhead + per_seq * sequences + per_layer * layers + max(FLOPs / (compute_eff * peak_flops), bytes / (memory_eff * bandwidth))`
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
pub use crate::gpu::GpuSpec;
pub use crate::model::ModelShape;
use crate::rng::SimRng;

impl ModelShape {
    /// Floating-point operations of one iteration over `shape`: 2 per active parameter per
    /// token (an MoE token runs only its experts), the logits of one token per sequence,
    /// and attention.
    pub fn flops(&self, shape: &BatchShape) -> f64 {
        let dense = 2.0 * self.active_body_params() * shape.tokens() as f64;
        let seqs = f64::from(shape.prefill_entries) + f64::from(shape.decode_entries);
        let logits = 2.0 * self.table() * seqs;
        let per_pair =
            2.0 * f64::from(self.layers) * f64::from(self.heads) * f64::from(self.head_dim);
        // Causal prefill: QK^T and AV over prefill_squares / 2 query-key pairs each (L^2 / 2
        // for a whole prompt of L), 2 FLOPs per multiply-add.
        let prefill_attention = per_pair * shape.prefill_squares_f64();
        let decode_attention = 2.0 * per_pair * shape.kv_tokens as f64;
        dense + logits + prefill_attention + decode_attention
    }

    /// Weight bytes one iteration of `tokens` tokens reads: every weight but the input
    /// embedding (gathered row by row), and of the routed experts only the expected
    /// number the tokens touch ([`ModelShape::experts_touched`]).
    pub fn weight_bytes_read(&self, tokens: f64) -> f64 {
        let untouched = self
            .moe
            .map_or(0.0, |m| f64::from(m.experts) - self.experts_touched(tokens));
        let tables = if self.tied_embeddings { 0.0 } else { 1.0 };
        (self.params()
            - tables * self.table()
            - f64::from(self.layers) * untouched * self.expert_params())
            * self.weight_bytes
    }

    /// Bytes moved to and from GPU memory by one iteration over `shape`: the weights read
    /// and the KV cache the decodes read and every token writes.
    pub fn bytes(&self, shape: &BatchShape) -> f64 {
        let kv = (shape.kv_tokens + shape.tokens()) as f64 * self.kv_bytes_per_token();
        self.weight_bytes_read(shape.tokens() as f64) + kv
    }
}

/// How far below its peaks a GPU runs, and the fixed cost of an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Efficiency {
    /// Fraction of peak FLOP/s reached (0 to 1].
    pub compute: f64,
    /// Fraction of peak bandwidth reached (0 to 1].
    pub memory: f64,
    /// Fixed cost of every iteration (seconds).
    pub overhead: f64,
    /// Cost of every iteration per sequence in it (seconds per sequence): the engine's CPU
    /// work that grows with the batch (input preparation, sampling, detokenising and
    /// streaming each sequence's token), which a real server pays between GPU kernels.
    /// 0 in profiles of the GPU step alone.
    #[serde(default)]
    pub per_seq: f64,
    /// Fraction of a memory-bound step's arithmetic time that its memory traffic does not
    /// hide, in [0, 1]: a step of arithmetic time `c` and memory time `m` takes
    /// `max(c, m + exposed_compute x c)`. A decode's small matrix products stream the
    /// weights but still leave part of their multiply-adds on the critical path (pipeline
    /// fill and drain, the epilogues), so a running sequence costs a card time in
    /// proportion to the model's FLOPs per token over the card's FLOP/s; a compute-bound
    /// step (a long prefill chunk) hides its loads under its arithmetic. 0 (the default)
    /// is the plain roofline, `max(c, m)`.
    #[serde(default)]
    pub exposed_compute: f64,
    /// Latency of one step of an all-reduce, or of one point-to-point send, over
    /// NVLink-class links (seconds): an all-reduce over `n` GPUs on NVLink takes `2 log2 n`
    /// such steps ([`AllReduce::HalvingDoubling`]). [`NVLINK_STEP_LATENCY`] (the
    /// default) is of the order of NCCL's small-message latency; fitted to a real engine's
    /// tensor-parallel runs it comes out larger (the built-in `vllm` preset). PCIe keeps
    /// [`PCIE_STEP_LATENCY`].
    #[serde(default = "nvlink_step_latency")]
    pub link_latency: f64,
    /// Fixed cost of every transformer layer a GPU runs in an iteration (seconds per
    /// layer): a layer launches a dozen kernels (norms, rotary embedding, cache writes,
    /// activations besides the matrix products and attention), and each small one takes a
    /// few microseconds however little it does, so a deep model pays more per step than
    /// its bytes and FLOPs say. 0 (the default) leaves it to `overhead`.
    #[serde(default)]
    pub per_layer: f64,
}

fn nvlink_step_latency() -> f64 {
    NVLINK_STEP_LATENCY
}

impl Efficiency {
    /// Fitted to the H200 profile (`shared/calibration/h200_llama-3.1-8b.csv`) by
    /// `llmsim calibrate --roofline h200`; a test checks that the fit still gives these.
    pub const H200_LLAMA_3_1_8B: Efficiency = Efficiency {
        compute: 0.55,
        memory: 0.996,
        overhead: 0.003_029_074_994_926_653,
        per_seq: 0.0,
        exposed_compute: 0.0,
        link_latency: NVLINK_STEP_LATENCY,
        per_layer: 0.0,
    };
}

/// How one replica's GPUs share the model: `tp`-way tensor parallel within each of `pp`
/// pipeline stages (`tp x pp` GPUs in all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parallel {
    /// Tensor-parallel degree: each layer's weights, FLOPs and KV heads split `tp` ways.
    pub tp: u32,
    /// Pipeline stages: the layers split into `pp` consecutive groups.
    pub pp: u32,
}

impl Parallel {
    /// One GPU per replica.
    pub const SINGLE: Parallel = Parallel { tp: 1, pp: 1 };

    /// GPUs in one replica.
    pub fn gpus(&self) -> u32 {
        self.tp * self.pp
    }
}

/// Fixed latency of one step of a ring all-reduce or of one point-to-point send over
/// NVLink-class links (seconds): of the order of NCCL's small-message latency within a node.
pub const NVLINK_STEP_LATENCY: f64 = 1e-6;
/// The same over PCIe (seconds).
pub const PCIE_STEP_LATENCY: f64 = 5e-6;
/// Bytes per activation element exchanged between GPUs (bf16).
const ACTIVATION_BYTES: f64 = 2.0;
/// GPUs per node, over which NVLink reaches; larger groups go through PCIe.
pub const NODE_GPUS: u32 = 8;

/// How an all-reduce crosses the links. Every form moves `2 (n-1)/n` of the bytes through
/// each GPU's link; they differ in how many latency-bound steps they take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllReduce {
    /// NCCL's ring, for links without a switch (PCIe): `2 (n-1)` steps, each moving
    /// `bytes / n` to the next GPU.
    Ring,
    /// Recursive halving then doubling through a switch (NVLink): `2 log2 n` steps. vLLM's
    /// all-reduces over NVLink (custom one- and two-shot kernels, symmetric memory) reach
    /// every GPU at once, so their latency grows far slower than a ring's: on H100s, 0.5 MB
    /// takes about 7 us over 2 GPUs, 10 over 4 and 13 over 6 (vllm-project/vllm pull
    /// requests 24111 and 24532), and 8 GPUs take 1.1-1.2 times what 4 take
    /// (sgl-project/sglang pull request 2904). Fitted to the real vLLM runs at 2 and 4
    /// GPUs this count fits them as well as a ring's (README, 'Against a real engine'),
    /// where a constant two steps does not; it prices 8 GPUs at 1.5 times the latency of
    /// 4, a ring at 2.3.
    HalvingDoubling,
}

impl AllReduce {
    /// Seconds of an all-reduce of `bytes` over `n` GPUs of link bandwidth `bandwidth`
    /// (bytes/s per direction) and per-step latency `alpha`:
    /// `2 (n-1)/n x bytes / bandwidth` plus the steps' latency; 0 for one GPU.
    pub fn time(self, bytes: f64, n: u32, bandwidth: f64, alpha: f64) -> f64 {
        if n <= 1 {
            return 0.0;
        }
        let moved = 2.0 * f64::from(n - 1) / f64::from(n) * bytes / bandwidth;
        let steps = match self {
            AllReduce::Ring => 2.0 * f64::from(n - 1),
            AllReduce::HalvingDoubling => 2.0 * f64::from(n).log2(),
        };
        moved + steps * alpha
    }
}

/// Roofline iteration time of one replica (deterministic).
///
/// Tensor parallelism divides every layer's FLOPs, weights and KV heads (a KV head is
/// replicated when `tp` exceeds the KV heads) across `tp` GPUs and adds, per layer, two
/// all-reduces of the batch's activations (after attention and after the MLP).
/// Pipeline parallelism splits the batch into `m` micro-batches of equal shares, `m` from 1
/// to `min(pp, sequences)`, chosen to minimise the time: the iteration takes
/// `m + pp - 1` stage steps (the bubble is `pp - 1` of them), each one micro-batch through
/// one stage, which reads the stage's weights (`1 / pp` of them) and its share of FLOPs
/// and KV, then sends its activations to the next stage. The replica runs one batch at a
/// time, so pipeline parallelism buys memory, and latency only through micro-batching;
/// the several batches in flight a real pipeline keeps are not modelled. Links run at
/// their peaks; the efficiencies apply to arithmetic and memory only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RooflineCost {
    /// The model served.
    pub model: ModelShape,
    /// The GPU serving it.
    pub gpu: GpuSpec,
    /// Efficiency factors and overhead.
    pub eff: Efficiency,
    /// The replica's parallel layout.
    pub parallel: Parallel,
}

impl RooflineCost {
    /// `model` on one `gpu` with the efficiencies fitted on the H200 profile: the same
    /// software stack is assumed to reach the same fractions of another card's peaks.
    pub fn new(model: ModelShape, gpu: GpuSpec) -> Self {
        RooflineCost {
            model,
            gpu,
            eff: Efficiency::H200_LLAMA_3_1_8B,
            parallel: Parallel::SINGLE,
        }
    }

    /// Llama-3.1-8B on one `gpu` ([`RooflineCost::new`]).
    pub fn llama_3_1_8b(gpu: GpuSpec) -> Self {
        RooflineCost::new(ModelShape::LLAMA_3_1_8B, gpu)
    }

    /// Time of the arithmetic and of the memory traffic of one GPU at the peaks, before
    /// efficiency (seconds each).
    pub fn ideal_times(&self, shape: &BatchShape) -> (f64, f64) {
        (
            self.model.flops(shape) / self.gpu.flops_for(self.model.weight_bytes),
            self.model.bytes(shape) / self.gpu.bandwidth,
        )
    }

    /// Bandwidth (bytes/s), step latency (s) and all-reduce of the links among `n` GPUs:
    /// NVLink when the card has it and they share a node, else PCIe.
    fn link(&self, n: u32) -> (f64, f64, AllReduce) {
        match self.gpu.nvlink {
            Some(bw) if n <= NODE_GPUS => (bw, self.eff.link_latency, AllReduce::HalvingDoubling),
            _ => (self.gpu.pcie, PCIE_STEP_LATENCY, AllReduce::Ring),
        }
    }

    /// Seconds of arithmetic, of memory traffic (both after efficiency) and of
    /// communication of one stage step over a micro-batch of `1 / m` of `shape`.
    pub fn step_times(&self, shape: &BatchShape, m: u32) -> (f64, f64, f64) {
        let Parallel { tp, pp } = self.parallel;
        let (m, tpf, ppf) = (f64::from(m), f64::from(tp), f64::from(pp));
        let tokens = shape.tokens() as f64 / m;
        let flops = self.model.flops(shape) / (tpf * ppf * m);
        let kv_share = self.model.kv_share(tp);
        let kv_bytes = (shape.kv_tokens + shape.tokens()) as f64 * self.model.kv_bytes_per_token();
        let bytes =
            self.model.weight_bytes_read(tokens) / (tpf * ppf) + kv_bytes * kv_share / (ppf * m);
        let compute = flops / self.gpu.flops_for(self.model.weight_bytes) / self.eff.compute;
        let memory = bytes / self.gpu.bandwidth / self.eff.memory;
        let activations = tokens * f64::from(self.model.hidden) * ACTIVATION_BYTES;
        let (bw, alpha, all_reduce) = self.link(tp);
        let layers = f64::from(self.model.layers) / ppf;
        let mut comm = 2.0 * layers * all_reduce.time(activations, tp, bw, alpha);
        if pp > 1 {
            let (bw, alpha, _) = self.link(tp * pp);
            comm += activations / bw + alpha;
        }
        (compute, memory, comm)
    }

    /// The iteration's time without the per-step and per-sequence overheads, at the best
    /// micro-batch count; with `fixed` false, its arithmetic and memory time alone, without
    /// communication or the layers' fixed cost (seconds).
    fn pipelined(&self, shape: &BatchShape, fixed: bool) -> f64 {
        let seqs = (shape.prefill_entries + shape.decode_entries).max(1);
        let stage_layers = f64::from(self.model.layers) / f64::from(self.parallel.pp);
        (1..=self.parallel.pp.min(seqs))
            .map(|m| {
                let (c, mem, link) = self.step_times(shape, m);
                let beside = if fixed {
                    link + self.eff.per_layer * stage_layers
                } else {
                    0.0
                };
                f64::from(m + self.parallel.pp - 1)
                    * (c.max(mem + self.eff.exposed_compute * c) + beside)
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Seconds of arithmetic and memory traffic of one iteration, communication and
    /// overheads left out: what more GPUs per replica divide.
    pub fn compute_memory_time(&self, shape: &BatchShape) -> f64 {
        self.pipelined(shape, false)
    }
}

impl CostModel for RooflineCost {
    fn sample(&self, shape: &BatchShape, _rng: &mut SimRng) -> f64 {
        self.mean(shape)
    }

    fn mean(&self, shape: &BatchShape) -> f64 {
        let seqs = f64::from(shape.prefill_entries) + f64::from(shape.decode_entries);
        self.eff.overhead + self.eff.per_seq * seqs + self.pipelined(shape, true)
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
    use crate::model::catalogue;
    use proptest::prelude::*;

    #[test]
    fn llama_8b_counts_by_hand() {
        let m = ModelShape::LLAMA_3_1_8B;
        let params = 8_030_261_248.0;
        // One decode at context 0: the weights less the input embedding, plus one token's KV.
        let one = BatchShape::decode(1, 0);
        let table = 128_256.0 * 4096.0;
        assert_eq!(m.bytes(&one), (params - table) * 2.0 + 131_072.0);
        // 1024 KV tokens add 1024 * 2 * 32 * 8 * 128 * 2 bytes = 128 MiB.
        let ctx = BatchShape {
            kv_tokens: 1024,
            ..one
        };
        assert_eq!(m.bytes(&ctx) - m.bytes(&one), 134_217_728.0);
        // A 1000-token prompt: dense + logits + causal attention.
        let p = BatchShape::prefill(1000);
        let want =
            2.0 * (params - 2.0 * table) * 1000.0 + 2.0 * table + 2.0 * 32.0 * 32.0 * 128.0 * 1e6;
        assert!((m.flops(&p) / want - 1.0).abs() < 1e-12);
    }

    /// Mixtral 8x7B: FLOPs of the 2 experts each token uses, bytes of the experts a batch
    /// touches (per layer 8 (1 - (3/4)^n) of 8 for n tokens).
    #[test]
    fn mixtral_counts_by_hand() {
        let m = catalogue::find("mixtral-8x7b").unwrap().shape;
        let expert = 3.0 * 4096.0 * 14336.0; // 176,160,768
        let always = 41_943_040.0 + 32_768.0 + 8_192.0; // attention, router, norms
        let table = 32_000.0 * 4096.0;
        // One decode at context 0: 2 experts per layer computed and read.
        let one = BatchShape::decode(1, 0);
        let body = 32.0 * (always + 2.0 * expert) + 4096.0;
        assert_eq!(m.flops(&one), 2.0 * body + 2.0 * table);
        let kv = 2.0 * 32.0 * 8.0 * 128.0 * 2.0;
        assert_eq!(m.bytes(&one), (body + table) * 2.0 + kv);
        // Four decodes: 8 (1 - 0.75^4) = 5.46875 experts per layer read.
        let four = BatchShape::decode(4, 0);
        let read = 32.0 * (always + 5.468_75 * expert) + 4096.0 + table;
        assert!((m.bytes(&four) - (read * 2.0 + 4.0 * kv)).abs() < 1e-3);
        assert_eq!(m.flops(&four), 4.0 * m.flops(&one));
        // A large batch reads every expert: all weights but the input embedding.
        let big = BatchShape::prefill(4096);
        let all = (m.params() - table) * 2.0;
        assert!((m.bytes(&big) - 4096.0 * kv - all).abs() < 1e-3);
    }

    #[test]
    fn all_reduces_by_hand() {
        for a in [AllReduce::Ring, AllReduce::HalvingDoubling] {
            assert_eq!(a.time(1e6, 1, 1e9, 1e-6), 0.0);
        }
        // 4 GPUs move 2 x 3/4 of the bytes: a ring in 6 steps, halving-doubling in 4.
        let t = AllReduce::Ring.time(8e6, 4, 100e9, 2e-6);
        assert!((t - (1.5 * 8e6 / 100e9 + 6.0 * 2e-6)).abs() < 1e-15);
        let t = AllReduce::HalvingDoubling.time(8e6, 4, 100e9, 2e-6);
        assert!((t - (1.5 * 8e6 / 100e9 + 4.0 * 2e-6)).abs() < 1e-15);
        // Over 8 GPUs halving-doubling takes 6 steps, a ring 14.
        let t = AllReduce::HalvingDoubling.time(8e6, 8, 100e9, 2e-6);
        assert!((t - (1.75 * 8e6 / 100e9 + 6.0 * 2e-6)).abs() < 1e-15);
        let t = AllReduce::Ring.time(8e6, 8, 100e9, 2e-6);
        assert!((t - (1.75 * 8e6 / 100e9 + 14.0 * 2e-6)).abs() < 1e-15);
        // Llama-3.1-8B, TP 2 on H100s, one decode: per layer two all-reduces of one
        // token's 4096 bf16 activations over NVLink (450 GB/s, 1 us a step).
        let roof = RooflineCost {
            parallel: Parallel { tp: 2, pp: 1 },
            ..RooflineCost::llama_3_1_8b(GpuSpec::H100)
        };
        let (_, _, comm) = roof.step_times(&BatchShape::decode(1, 100), 1);
        let per = 8192.0 / 450e9 + 2.0 * 1e-6;
        assert!((comm - 64.0 * per).abs() < 1e-15, "{comm}");
        // A card without NVLink goes through PCIe at 5 us a step.
        let l40s = RooflineCost {
            gpu: crate::gpu::find("l40s").unwrap().spec,
            ..roof
        };
        let (_, _, comm) = l40s.step_times(&BatchShape::decode(1, 100), 1);
        assert!((comm - 64.0 * (8192.0 / 32e9 + 2.0 * 5e-6)).abs() < 1e-15);
        // Over 8 GPUs NVLink's all-reduce takes 6 steps, PCIe's ring 14.
        let eight = |r: RooflineCost| RooflineCost {
            parallel: Parallel { tp: 8, pp: 1 },
            ..r
        };
        let (_, _, comm) = eight(roof).step_times(&BatchShape::decode(1, 100), 1);
        assert!((comm - 64.0 * (1.75 * 8192.0 / 450e9 + 6.0 * 1e-6)).abs() < 1e-15);
        let (_, _, comm) = eight(l40s).step_times(&BatchShape::decode(1, 100), 1);
        assert!((comm - 64.0 * (1.75 * 8192.0 / 32e9 + 14.0 * 5e-6)).abs() < 1e-15);
        // The efficiencies' link latency prices NVLink's steps, not PCIe's.
        let slow = |r: RooflineCost| RooflineCost {
            eff: Efficiency {
                link_latency: 3e-6,
                ..r.eff
            },
            ..r
        };
        let (_, _, comm) = slow(roof).step_times(&BatchShape::decode(1, 100), 1);
        assert!((comm - 64.0 * (8192.0 / 450e9 + 2.0 * 3e-6)).abs() < 1e-15);
        assert_eq!(
            slow(l40s).step_times(&BatchShape::decode(1, 100), 1),
            l40s.step_times(&BatchShape::decode(1, 100), 1)
        );
    }

    /// A pipeline of 4 stages run on the whole batch (m = 1) takes 4 steps of a quarter of
    /// the work, what one GPU takes; the best micro-batch count is never slower.
    #[test]
    fn pipeline_never_costs_more_arithmetic_than_one_gpu() {
        let m = catalogue::find("llama-3.1-70b").unwrap().shape;
        let one = RooflineCost::new(m, GpuSpec::H200);
        let pp4 = RooflineCost {
            parallel: Parallel { tp: 1, pp: 4 },
            ..one
        };
        for shape in [BatchShape::decode(8, 8000), BatchShape::prefill(4096)] {
            let whole = one.compute_memory_time(&shape);
            let (c, mem, _) = pp4.step_times(&shape, 1);
            assert!((4.0 * c.max(mem) / whole - 1.0).abs() < 1e-12);
            assert!(pp4.compute_memory_time(&shape) <= whole * (1.0 + 1e-12));
        }
        // One prompt cannot be split into micro-batches: it takes m = 1.
        let p = BatchShape::prefill(4096);
        assert!((pp4.compute_memory_time(&p) / one.compute_memory_time(&p) - 1.0).abs() < 1e-12);
    }

    /// The per-layer cost adds `per_layer x layers` to an iteration on one GPU, and to a
    /// pipeline's each stage step its stage's layers: a 4,096-token prompt through 4
    /// stages (one micro-batch, 4 stage steps of 20 layers) pays for 80 layers too. It is
    /// no part of the arithmetic and memory time that more GPUs divide.
    #[test]
    fn the_per_layer_cost_is_paid_once_per_layer_and_stage_step() {
        let m = catalogue::find("llama-3.1-70b").unwrap().shape;
        let one = RooflineCost::new(m, GpuSpec::H200);
        let costly = |r: RooflineCost| RooflineCost {
            eff: Efficiency {
                per_layer: 1e-5,
                ..r.eff
            },
            ..r
        };
        let decode = BatchShape::decode(8, 8000);
        assert!((costly(one).mean(&decode) - one.mean(&decode) - 80e-5).abs() < 1e-12);
        assert_eq!(
            costly(one).compute_memory_time(&decode),
            one.compute_memory_time(&decode)
        );
        let pp4 = RooflineCost {
            parallel: Parallel { tp: 1, pp: 4 },
            ..one
        };
        let prompt = BatchShape::prefill(4096);
        assert!((costly(pp4).mean(&prompt) - pp4.mean(&prompt) - 80e-5).abs() < 1e-12);
    }

    /// Exposed compute lengthens a memory-bound step by that fraction of its arithmetic
    /// and leaves a compute-bound one alone: a decode of 64 sequences at context 1,000 on
    /// an H100 (arithmetic well under the weights read) takes `m + c / 2` at 0.5, a
    /// 4,096-token prefill (arithmetic about 7 times the weights read) still `c`.
    #[test]
    fn exposed_compute_lengthens_memory_bound_steps_only() {
        let plain = RooflineCost::llama_3_1_8b(GpuSpec::H100);
        let half = RooflineCost {
            eff: Efficiency {
                exposed_compute: 0.5,
                ..plain.eff
            },
            ..plain
        };
        let decode = BatchShape::decode(64, 64_000);
        let (c, m, _) = plain.step_times(&decode, 1);
        assert!(c < 0.5 * m, "{c} {m}");
        let want = plain.eff.overhead + m + 0.5 * c;
        assert!((half.mean(&decode) / want - 1.0).abs() < 1e-12);
        assert!(half.mean(&decode) > plain.mean(&decode));
        let prefill = BatchShape::prefill(4096);
        let (c, m, _) = plain.step_times(&prefill, 1);
        assert!(c > 5.0 * m, "{c} {m}");
        assert_eq!(half.mean(&prefill), plain.mean(&prefill));
    }

    fn shapes() -> impl Strategy<Value = BatchShape> {
        (0u32..64, 1u64..4096, 0u32..512, 0u64..4096).prop_map(|(pe, pl, d, ctx)| {
            let mut s = BatchShape::decode(d, u64::from(d) * ctx);
            if pe > 0 || d == 0 {
                let pe = pe.max(1);
                s.prefill_entries = pe;
                s.prefill_tokens = u64::from(pe) * pl;
                s.prefill_squares = u128::from(pe) * u128::from(pl).pow(2);
            }
            s
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// TP 1 and PP 1 is the single-GPU roofline exactly.
        #[test]
        fn one_gpu_is_the_plain_roofline(shape in shapes(), which in 0usize..3) {
            let name = ["llama-3.1-8b", "mixtral-8x7b", "qwen3-30b-a3b"][which];
            let roof = RooflineCost::new(catalogue::find(name).unwrap().shape, GpuSpec::H200);
            let (c, m) = roof.ideal_times(&shape);
            let plain = roof.eff.overhead + (c / roof.eff.compute).max(m / roof.eff.memory);
            prop_assert_eq!(roof.mean(&shape), plain);
        }

        /// With exposed compute, a step lies between the larger of its arithmetic and
        /// memory times and their sum (both reached at 0 and 1), and more exposure never
        /// shortens it.
        #[test]
        fn exposed_compute_lies_between_the_larger_and_the_sum(
            shape in shapes(),
            x in 0.0f64..1.0,
            more in 0.0f64..1.0,
        ) {
            let roof = RooflineCost::llama_3_1_8b(GpuSpec::H100);
            let at = |exposed_compute| RooflineCost {
                eff: Efficiency { exposed_compute, ..roof.eff },
                ..roof
            }
            .mean(&shape) - roof.eff.overhead;
            let (c, m, _) = roof.step_times(&shape, 1);
            let tol = 1e-12 * (c + m);
            prop_assert!(at(x) >= c.max(m) - tol && at(x) <= c + m + tol);
            prop_assert!(at(x + (1.0 - x) * more) >= at(x) - tol);
            prop_assert!((at(0.0) - c.max(m)).abs() <= tol && (at(1.0) - (c + m)).abs() <= tol);
        }

        /// More GPUs per replica never lengthen an iteration's arithmetic and memory time;
        /// more memory or link bandwidth never slows it.
        #[test]
        fn more_gpus_or_bandwidth_never_slower(
            shape in shapes(),
            which in 0usize..3,
            tp in 0u32..4,
            pp in 1u32..6,
            faster in 1.0f64..4.0,
        ) {
            let name = ["llama-3.1-8b", "mixtral-8x7b", "qwen3-30b-a3b"][which];
            let model = catalogue::find(name).unwrap().shape;
            let tp = 1 << tp;
            let base = RooflineCost {
                parallel: Parallel { tp, pp },
                ..RooflineCost::new(model, GpuSpec::H100)
            };
            let t = base.compute_memory_time(&shape);
            for more in [Parallel { tp: tp * 2, pp }, Parallel { tp, pp: pp + 1 }] {
                let r = RooflineCost { parallel: more, ..base };
                prop_assert!(r.compute_memory_time(&shape) <= t * (1.0 + 1e-12), "{more:?}");
            }
            let gpu = GpuSpec {
                bandwidth: base.gpu.bandwidth * faster,
                nvlink: base.gpu.nvlink.map(|b| b * faster),
                pcie: base.gpu.pcie * faster,
                ..base.gpu
            };
            let fast = RooflineCost { gpu, ..base };
            prop_assert!(fast.mean(&shape) <= base.mean(&shape));
        }
    }
}
