//! Round-robin routing: GPU 0, 1, ..., N-1, 0, ... regardless of load.

use super::{GpuLoad, Router};
use crate::scheduler::ReqId;
use crate::workload::Request;

/// Cycles through the GPUs in index order.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl Router for RoundRobin {
    fn route(&mut self, _id: ReqId, _req: &Request, loads: &[GpuLoad]) -> Option<usize> {
        let gpu = self.next;
        self.next = (self.next + 1) % loads.len();
        Some(gpu)
    }
}
