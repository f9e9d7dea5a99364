//! Routers: which GPU of a cluster serves each request, one file per policy behind the
//! [`Router`] trait.

mod round_robin;

pub use round_robin::RoundRobin;

use std::fmt;
use std::str::FromStr;

use crate::rng::SimRng;
use crate::scheduler::ReqId;
use crate::workload::Request;

/// What a router may know of one GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuLoad {
    /// Requests routed to the GPU and not yet complete.
    pub outstanding: u32,
    /// Tokens of work those requests still need: remaining prefill plus decode tokens.
    pub work_tokens: u64,
}

/// A routing policy.
pub trait Router: Send {
    /// Picks the GPU for request `id`, or `None` to hold it in a shared queue from which
    /// GPUs [`pull`](Router::pull).
    fn route(&mut self, id: ReqId, req: &Request, loads: &[GpuLoad]) -> Option<usize>;
    /// Whether this router ever holds requests for GPUs to [`pull`](Router::pull); the
    /// engine skips asking routers that never do.
    fn holds_requests(&self) -> bool {
        false
    }
    /// GPU `gpu` can take more work: hand it a held request, if any.
    fn pull(&mut self, _gpu: usize) -> Option<ReqId> {
        None
    }
    /// GPU `gpu`'s load changed to `load` (after an admission or a finished batch).
    fn update(&mut self, _gpu: usize, _load: &GpuLoad) {}
}

/// A routing policy with its parameters, as given to `--router`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterSpec {
    /// Cycle through the GPUs in index order.
    RoundRobin,
}

impl RouterSpec {
    /// A fresh router for `gpus` GPUs, drawing any randomness from `rng`.
    pub fn build(&self, _gpus: usize, _rng: SimRng) -> Box<dyn Router> {
        match self {
            RouterSpec::RoundRobin => Box::new(RoundRobin::default()),
        }
    }
}

impl FromStr for RouterSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "round-robin" => Ok(RouterSpec::RoundRobin),
            _ => Err(format!("unknown router '{s}' (allowed: round-robin)")),
        }
    }
}

impl fmt::Display for RouterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterSpec::RoundRobin => f.write_str("round-robin"),
        }
    }
}
