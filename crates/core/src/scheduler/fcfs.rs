//! Scheduler A, the seed's baseline: first come, first served, one request at a time, run to
//! completion (its prefill batch, then its `B` single-token decode iterations).

use super::{Batch, ReqId, Scheduler, View, Waiting};

/// FCFS run-to-completion; every batch holds exactly one request.
#[derive(Debug, Default)]
pub struct Fcfs {
    queue: Waiting,
    current: Option<ReqId>,
}

impl Scheduler for Fcfs {
    fn admit(&mut self, id: ReqId, _view: &View) {
        self.queue.push_back(id);
    }

    fn schedule(&mut self, view: &View, batch: &mut Batch) {
        if self.current.is_none() {
            self.current = self.queue.pop_front(view, batch);
        }
        if let Some(id) = self.current {
            match view.prefill_left(id) {
                0 => batch.push_decode(id, view.context(id)),
                left => batch.push_prefill(id, left),
            }
        }
    }

    fn on_batch_done(&mut self, _batch: &Batch, view: &View) {
        if view.finished > 0 {
            self.current = None;
        }
    }

    /// Its request decodes alone to its end, whatever arrives meanwhile.
    fn steady_decodes(&self, view: &View) -> &[ReqId] {
        match &self.current {
            Some(id) if view.prefill_left(*id) == 0 => std::slice::from_ref(id),
            _ => &[],
        }
    }
}
