//! Join the shortest queue: each request goes to the GPU with the fewest outstanding
//! (routed, not yet complete) requests, lowest index on ties (so at light load low-index
//! GPUs do most of the work, which per-GPU utilisation shows).

use super::ranked::Ranked;
use super::{GpuLoad, Router};
use crate::scheduler::ReqId;
use crate::workload::Request;

/// Fewest outstanding requests first; O(log N) per request.
#[derive(Debug)]
pub struct Jsq {
    ranked: Ranked,
}

impl Jsq {
    /// A router for `gpus` GPUs, all initially empty.
    pub fn new(gpus: usize) -> Self {
        Jsq {
            ranked: Ranked::new(gpus, |l| u64::from(l.outstanding)),
        }
    }
}

impl Router for Jsq {
    fn route(&mut self, _id: ReqId, _req: &Request, _loads: &[GpuLoad]) -> Option<usize> {
        Some(self.ranked.least())
    }

    fn update(&mut self, gpu: usize, load: &GpuLoad) {
        self.ranked.update(gpu, load);
    }
}
