//! Decode-prioritizing batching: the opposite extreme to vLLM's prefill priority, as in the
//! decode-prioritizing policies of Li, Dai and Peng (2025).
//!
//! Whenever a running request can decode, the iteration is one decode step of all running
//! requests; prefills (whole prompts, FCFS, up to `max_seqs` running requests and
//! `max_tokens` tokens, with vLLM's paged memory, watermark and preemption by recompute)
//! run only when nothing decodes. On one GPU every admitted request decodes until it
//! finishes, so new prompts start only once the whole running set has drained: the policy
//! behaves like static batching whose batch size is set by what waited at the last drain.
//! With [`Preemption::Swap`](super::Preemption::Swap) victims are swapped out and back in as under vLLM's swap mode
//! (see [`Vllm`](super::Vllm)): swapped requests rejoin a decode iteration without
//! preemption, and no prompt is admitted while any is swapped out.

use super::paged::{KvBudget, Queues};
use super::{Batch, BatchLimits, ReqId, Scheduler, View};

/// Decodes first; prefill-only iterations when no request decodes.
#[derive(Debug)]
pub struct DecodeFirst {
    limits: BatchLimits,
    queues: Queues,
}

impl DecodeFirst {
    /// A decode-first scheduler with these limits.
    pub fn new(limits: BatchLimits) -> Self {
        DecodeFirst {
            limits,
            queues: Queues::new(&limits),
        }
    }
}

impl Scheduler for DecodeFirst {
    fn admit(&mut self, id: ReqId, _view: &View) {
        self.queues.waiting.push_back(id);
    }

    fn schedule(&mut self, view: &View, batch: &mut Batch) {
        let mut kv = KvBudget::new(view, &self.queues.prefilling, self.limits.watermark);
        let preempted = self.queues.decode_running(view, &mut kv, batch);
        if !preempted {
            self.queues.swap_in(view, &mut kv, &self.limits, batch);
        }
        // After a preemption the victims head the queue, their caches dropped only when the
        // batch starts; the oldest could not be admitted anyway (its decode did not fit in
        // all the memory the others freed), so admission waits for the next iteration.
        if batch.is_empty() && !preempted && self.queues.swapped.is_empty() {
            self.queues
                .admit_waiting(view, &mut kv, &self.limits, batch, 0, false);
        }
    }

    fn on_batch_done(&mut self, _batch: &Batch, view: &View) {
        self.queues.retire(view);
    }

    /// Waiting prompts start only when nothing decodes, so they never break a run of
    /// decodes: an overloaded GPU drains its backlog's decodes in the engine's tight loop.
    fn steady_decodes(&self, view: &View) -> &[ReqId] {
        self.queues.all_decoding(view)
    }
}
