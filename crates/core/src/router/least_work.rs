//! Least work left: each request goes to the GPU with the fewest outstanding tokens of work
//! (remaining prefill plus decode tokens of its requests), lowest index on ties. Unlike
//! [`Jsq`](super::Jsq) it tells a GPU holding one long request from one holding a short one.

use super::ranked::Ranked;
use super::{GpuLoad, Router};
use crate::scheduler::ReqId;
use crate::workload::Request;

/// Fewest outstanding work tokens first; O(log N) per request.
#[derive(Debug)]
pub struct LeastWork {
    ranked: Ranked,
}

impl LeastWork {
    /// A router for `gpus` GPUs, all initially empty.
    pub fn new(gpus: usize) -> Self {
        LeastWork {
            ranked: Ranked::new(gpus, |l| l.work_tokens),
        }
    }
}

impl Router for LeastWork {
    fn route(&mut self, _id: ReqId, _req: &Request, _loads: &[GpuLoad]) -> Option<usize> {
        Some(self.ranked.least())
    }

    fn update(&mut self, gpu: usize, load: &GpuLoad) {
        self.ranked.update(gpu, load);
    }
}
