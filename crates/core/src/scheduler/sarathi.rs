//! Sarathi-Serve (Agrawal et al., OSDI'24, "Taming Throughput-Latency Tradeoff in LLM
//! Inference with Sarathi-Serve"): chunked prefills and stall-free batching.
//!
//! Every iteration has a token budget (`max_tokens`). It first takes one decode step of
//! every running request past its prefill, so decodes never stall behind a prompt; then it
//! continues the running partial prefills, oldest first, and finally admits waiting
//! requests in FCFS order, each contributing a chunk of its prompt that fills what is left
//! of the budget. Memory is paged as in vLLM, on which Sarathi-Serve is built: a prompt's
//! blocks are set aside when it is admitted, and a decode that cannot grow preempts the
//! newest running request by recompute. Batches are full whenever work waits, which makes
//! the policy work-conserving in the sense of Li, Dai and Peng (2025).
//!
//! vLLM's V1 scheduler (the default since vLLM 0.8, used by `llmsim fidelity` for the
//! real vLLM runs) is this policy in what it decides: one token budget per step
//! (`--max-num-batched-tokens`) shared by decodes and prefill chunks, chunked prefill,
//! at most `--max-num-seqs` running, FCFS admission, preemption of the newest running
//! request by recompute. It differs in bookkeeping: V1 walks the running requests in
//! their order, a partial prefill before later decodes (here every decode goes first,
//! which is the same batch whenever the budget holds them all, as it does with at most
//! `max_num_seqs <= max_tokens` decodes); V1 allocates KV blocks chunk by chunk where this
//! sets a prompt's blocks aside at admission; and V1 with asynchronous scheduling
//! prepares step `n + 1` while step `n` runs, which `llmsim fidelity` charges as the
//! serving preset's scheduling lag outside the engine.

use super::paged::{KvBudget, Queues};
use super::{Batch, BatchLimits, ReqId, Scheduler, View};

/// Chunked-prefill, decode-first-within-budget continuous batching.
#[derive(Debug)]
pub struct Sarathi {
    limits: BatchLimits,
    queues: Queues,
}

impl Sarathi {
    /// A Sarathi-Serve scheduler; `limits.max_tokens` is the token budget per iteration.
    pub fn new(limits: BatchLimits) -> Self {
        Sarathi {
            limits,
            queues: Queues::default(),
        }
    }
}

impl Scheduler for Sarathi {
    fn admit(&mut self, id: ReqId, _view: &View) {
        self.queues.waiting.push_back(id);
    }

    fn schedule(&mut self, view: &View, batch: &mut Batch) {
        let mut kv = KvBudget::new(view, &self.queues.prefilling, self.limits.watermark);
        let preempted = self.queues.decode_running(view, &mut kv, batch);
        // Decodes fit the budget: there are at most max_seqs <= max_tokens of them.
        let mut tokens = batch.shape().decode_entries;
        // The running requests with prompt left, oldest first.
        for &id in &self.queues.prefilling {
            let chunk = view.prefill_left(id).min(self.limits.max_tokens - tokens);
            if chunk > 0 {
                // Its blocks were set aside at admission.
                batch.push_prefill(id, chunk);
                tokens += chunk;
            }
        }
        // After a preemption memory is short: admitting now would only evict again.
        if !preempted {
            self.queues
                .admit_waiting(view, &mut kv, &self.limits, batch, tokens, true);
        }
    }

    fn on_batch_done(&mut self, _batch: &Batch, view: &View) {
        self.queues.retire(view);
    }

    fn steady_decodes(&self, view: &View) -> &[ReqId] {
        self.queues.steady(view)
    }
}
