//! One central FCFS queue: requests wait at the router, and a GPU takes the oldest whenever
//! its scheduler can start more work. With Scheduler A this is the M/M/c (or M/G/c)
//! discipline: a job goes to whichever GPU frees first, never queueing behind a busy one.

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

    fn holds_requests(&self) -> bool {
        true
    }

    fn pull(&mut self, _gpu: usize) -> Option<ReqId> {
        self.queue.pop_front()
    }
}
