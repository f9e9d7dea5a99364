//! Static batching as in NVIDIA FasterTransformer: a batch is formed once and runs to
//! completion.
//!
//! When the GPU is free and no batch is running, up to `k` waiting requests (FCFS, not
//! waiting for more to arrive) form a batch; its prompts are prefilled together in one
//! iteration, then the batch decodes together until its last request finishes. No request
//! joins a running batch, so finished requests leave slots idle: the cause of its lower
//! capacity (Yu et al., OSDI'22, §2; Li, Dai and Peng, 2025). Finished requests stop being
//! computed (they are not padded). Each request reserves KV for its prompt plus decode
//! budget, as FasterTransformer allocates the cache for the whole sequence up front; a
//! batch stops growing at the first request whose reservation does not fit.

use super::{Batch, ReqId, Scheduler, View, Waiting};

/// FasterTransformer-style static batching of at most `k` requests.
#[derive(Debug)]
pub struct StaticBatch {
    k: usize,
    waiting: Waiting,
    /// The running batch's unfinished requests.
    running: Vec<ReqId>,
}

impl StaticBatch {
    /// Static batches of at most `k` requests.
    pub fn new(k: u32) -> Self {
        StaticBatch {
            k: k as usize,
            waiting: Waiting::default(),
            running: Vec::new(),
        }
    }
}

impl Scheduler for StaticBatch {
    fn admit(&mut self, id: ReqId, _view: &View) {
        self.waiting.push_back(id);
    }

    fn schedule(&mut self, view: &View, batch: &mut Batch) {
        if self.running.is_empty() {
            let mut reserved = 0;
            while let Some(id) = self.waiting.front(view, batch) {
                let need = view.full_reservation(id);
                if self.running.len() >= self.k || reserved + need > view.kv.capacity_blocks() {
                    break;
                }
                reserved += need;
                self.waiting.pop_front(view, batch);
                self.running.push(id);
                batch.push_prefill(id, view.prefill_left(id));
            }
        } else {
            for &id in &self.running {
                batch.push_decode(id, view.context(id));
            }
        }
    }

    fn on_batch_done(&mut self, _batch: &Batch, view: &View) {
        if view.finished > 0 {
            self.running.retain(|&id| !view.is_done(id));
        }
    }
}
