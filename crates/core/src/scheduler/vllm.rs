//! vLLM's default scheduler (Kwon et al., SOSP'23, "Efficient Memory Management for Large
//! Language Model Serving with PagedAttention"; vLLM v0 without chunked prefill).
//!
//! Continuous batching that prioritizes prefills: when requests wait and memory allows, the
//! iteration is prefill-only, admitting whole prompts in FCFS order up to `max_seqs`
//! running requests, `max_tokens` prompt tokens and a watermark of free KV blocks;
//! otherwise it is one decode step of every running request. When the paged KV cache
//! cannot hold a running request's next token, the most recently admitted request is
//! preempted by recompute and returns to the head of the queue. Prefill and decode never
//! share an iteration, which is why it is not throughput-optimal (Li, Dai and Peng, 2025).
//!
//! With [`Preemption::Swap`](super::Preemption::Swap) (vLLM's `preemption_mode="swap"`) the victim is swapped out
//! instead: it keeps its progress (nothing is recomputed), its blocks are freed, and its
//! `context x kv_bytes_per_token` bytes cross the host link in `bytes / bandwidth` seconds,
//! added to the iteration in which the swap happens (vLLM swaps between iterations, and
//! the GPU waits). While any request is swapped out no new prompt is admitted; a decode
//! iteration without preemption first swaps requests back in, oldest arrival first, while
//! blocks are free for their context, one more token and the watermark, paying the same
//! transfer time, and they decode in that iteration where they left off. A swapped
//! request's time between tokens includes the time it spent in host memory.

use super::paged::{KvBudget, Queues};
use super::{Batch, BatchLimits, ReqId, Scheduler, View};

/// vLLM-style prefill-prioritizing continuous batching with paged memory.
#[derive(Debug)]
pub struct Vllm {
    limits: BatchLimits,
    queues: Queues,
}

impl Vllm {
    /// A vLLM scheduler with these limits.
    pub fn new(limits: BatchLimits) -> Self {
        Vllm {
            limits,
            queues: Queues::new(&limits),
        }
    }
}

impl Scheduler for Vllm {
    fn admit(&mut self, id: ReqId, _view: &View) {
        self.queues.waiting.push_back(id);
    }

    fn schedule(&mut self, view: &View, batch: &mut Batch) {
        let mut kv = KvBudget::new(view, &self.queues.prefilling, self.limits.watermark);
        if self.queues.swapped.is_empty() {
            self.queues
                .admit_waiting(view, &mut kv, &self.limits, batch, 0, false);
        }
        if batch.is_empty() && !self.queues.decode_running(view, &mut kv, batch) {
            self.queues.swap_in(view, &mut kv, &self.limits, batch);
        }
    }

    fn on_batch_done(&mut self, _batch: &Batch, view: &View) {
        self.queues.retire(view);
    }

    fn steady_decodes(&self, view: &View) -> &[ReqId] {
        self.queues.steady(view)
    }
}
