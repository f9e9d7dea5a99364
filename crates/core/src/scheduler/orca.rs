//! Orca (Yu et al., OSDI'22, "Orca: A Distributed Serving System for Transformer-Based
//! Generative Models"): iteration-level scheduling with selective batching.
//!
//! Every iteration takes one decode step of every running request and then admits waiting
//! requests in FCFS order, each with its whole prompt (no chunking), while the batch holds
//! at most `max_seqs` requests and `max_tokens` tokens. Orca caps only the batch size; the
//! token cap is added so that every policy faces the same largest batch, the premise of
//! the comparison of Li, Dai and Peng (2025). Memory is not paged: as in Orca's scheduler
//! (§4.2), an admitted request reserves KV slots for its prompt plus its whole decode
//! budget, so it never needs preempting; it is admitted only when the reservation fits.

use super::{Batch, BatchLimits, ReqId, Scheduler, View, Waiting, release_finished};

/// Orca's iteration-level scheduler with whole prefills and max-length KV reservation.
#[derive(Debug)]
pub struct Orca {
    limits: BatchLimits,
    waiting: Waiting,
    running: Vec<ReqId>,
    /// KV blocks reserved by the running requests (blocks).
    reserved: u64,
}

impl Orca {
    /// An Orca scheduler with these limits (the watermark is unused: reservations are exact).
    pub fn new(limits: BatchLimits) -> Self {
        Orca {
            limits,
            waiting: Waiting::default(),
            running: Vec::new(),
            reserved: 0,
        }
    }

    /// Whether waiting request `id` can start in a batch of `tokens` tokens so far: a
    /// running slot, its whole prompt within the token budget and its whole reservation
    /// within the cache.
    fn admits(&self, view: &View, id: ReqId, tokens: u32) -> bool {
        self.running.len() < self.limits.max_seqs as usize
            && tokens + view.prefill_left(id) <= self.limits.max_tokens
            && self.reserved + view.full_reservation(id) <= view.kv.capacity_blocks()
    }
}

impl Scheduler for Orca {
    fn admit(&mut self, id: ReqId, _view: &View) {
        self.waiting.push_back(id);
    }

    fn schedule(&mut self, view: &View, batch: &mut Batch) {
        for &id in &self.running {
            batch.push_decode(id, view.context(id));
        }
        let mut tokens = batch.shape().decode_entries;
        while let Some(id) = self.waiting.front(view, batch) {
            if !self.admits(view, id, tokens) {
                break;
            }
            self.waiting.pop_front(view, batch);
            self.running.push(id);
            self.reserved += view.full_reservation(id);
            let prompt = view.prefill_left(id);
            batch.push_prefill(id, prompt);
            tokens += prompt;
        }
    }

    fn on_batch_done(&mut self, _batch: &Batch, view: &View) {
        self.reserved -= release_finished(&mut self.running, view);
    }

    /// The running requests decode alone while nothing waits, or while the head of the
    /// local line cannot start: the limits it fails stay as they are until one finishes,
    /// and no other GPU takes it (a shared line's head can change under this GPU).
    fn steady_decodes(&self, view: &View) -> &[ReqId] {
        let tokens = self.running.len() as u32;
        let blocked = self
            .waiting
            .local_front()
            .is_some_and(|id| !self.admits(view, id, tokens));
        let decoding = || self.running.iter().all(|&id| view.prefill_left(id) == 0);
        if (self.waiting.is_empty(view) || blocked) && decoding() {
            &self.running
        } else {
            &[]
        }
    }
}
