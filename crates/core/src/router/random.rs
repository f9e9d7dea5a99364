//! Uniform random routing: each request goes to a GPU drawn uniformly and independently of
//! load. With Poisson arrivals each GPU then sees a Poisson stream at `lambda / N`
//! (thinning), so the cluster is N independent single-GPU queues.

use rand::RngExt;

use super::{GpuLoad, Router};
use crate::rng::SimRng;
use crate::scheduler::ReqId;
use crate::workload::Request;

/// Sends each request to a uniformly drawn GPU.
#[derive(Debug)]
pub struct Random {
    rng: SimRng,
}

impl Random {
    /// Draws from `rng`, the run's router stream.
    pub fn new(rng: SimRng) -> Self {
        Random { rng }
    }
}

impl Router for Random {
    fn route(&mut self, _id: ReqId, _req: &Request, loads: &[GpuLoad]) -> Option<usize> {
        Some(self.rng.random_range(0..loads.len()))
    }
}
