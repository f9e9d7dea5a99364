//! One central FCFS queue: requests wait at the router, and whenever a GPU forms a batch
//! its scheduler reads the queue as the tail of its own waiting line and takes, oldest
//! first, exactly what it would admit from a local queue at that instant (a vLLM GPU forms
//! the same prefill batch it would if those requests had been routed to it). With
//! Scheduler A this is the M/M/c (or M/G/c) discipline: a job goes to whichever GPU frees
//! first, never queueing behind a busy one.

use std::collections::VecDeque;

use super::{GpuLoad, Router};
use crate::scheduler::ReqId;
use crate::workload::Request;

/// A shared queue the GPUs pull from.
#[derive(Debug, Default)]
pub struct Central {
    queue: VecDeque<ReqId>,
}

impl Router for Central {
    fn route(&mut self, id: ReqId, _req: &Request, _loads: &[GpuLoad]) -> Option<usize> {
        self.queue.push_back(id);
        None
    }

    fn held(&self) -> Option<&VecDeque<ReqId>> {
        Some(&self.queue)
    }

    fn pull(&mut self, _gpu: usize) -> Option<ReqId> {
        self.queue.pop_front()
    }
}
