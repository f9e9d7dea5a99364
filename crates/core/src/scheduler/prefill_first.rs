//! Scheduler B, the seed's prefill-prioritizing batching: when the GPU is free, a
//! prefill-only batch of up to `K` waiting prompts (in arrival order) if any wait, else one
//! decode iteration over the decoding requests. Prefill and decode never share a batch.

use super::{Batch, Phase, ReqId, Scheduler, View, Waiting};

/// Prefill-prioritizing batching with at most `k` prefills per batch.
#[derive(Debug)]
pub struct PrefillFirst {
    k: usize,
    max_decode: usize,
    waiting: Waiting,
    /// Requests in their decode phase, in the order their prefills finished; a capped
    /// decode batch serves the oldest first.
    decoding: Vec<ReqId>,
}

impl PrefillFirst {
    /// `k` prefills per batch at most; `max_decode` decode entries per batch (`None`: no cap).
    pub fn new(k: u32, max_decode: Option<u32>) -> Self {
        PrefillFirst {
            k: k as usize,
            max_decode: max_decode.map_or(usize::MAX, |m| m as usize),
            waiting: Waiting::default(),
            decoding: Vec::new(),
        }
    }
}

impl Scheduler for PrefillFirst {
    fn admit(&mut self, id: ReqId, _view: &View) {
        self.waiting.push_back(id);
    }

    fn schedule(&mut self, view: &View, batch: &mut Batch) {
        let waiting = self.waiting.len(view, batch);
        if waiting > 0 {
            for _ in 0..self.k.min(waiting) {
                let id = self.waiting.pop_front(view, batch).expect("counted");
                batch.push_prefill(id, view.prefill_left(id));
            }
        } else {
            for &id in self.decoding.iter().take(self.max_decode) {
                batch.push_decode(id, view.context(id));
            }
        }
    }

    fn on_batch_done(&mut self, batch: &Batch, view: &View) {
        match batch.entries().first().map(|e| e.phase) {
            Some(Phase::Prefill) => self.decoding.extend(
                batch
                    .entries()
                    .iter()
                    .map(|e| e.id)
                    .filter(|&id| !view.is_done(id)),
            ),
            Some(Phase::Decode) if view.finished > 0 => {
                self.decoding.retain(|&id| !view.is_done(id));
            }
            Some(Phase::Decode) | None => {}
        }
    }

    /// With no prompt waiting, the same (oldest) decoding requests run until one finishes
    /// or a prompt arrives.
    fn steady_decodes(&self, view: &View) -> &[ReqId] {
        if self.waiting.is_empty(view) {
            &self.decoding[..self.decoding.len().min(self.max_decode)]
        } else {
            &[]
        }
    }
}
