//! Routers: which GPU of a cluster serves each request, one file per policy behind the
//! [`Router`] trait.

mod central;
mod jsq;
mod least_work;
mod power_of_d;
mod prefix_aware;
mod random;
mod ranked;
mod round_robin;
mod session;

pub use central::Central;
pub use jsq::Jsq;
pub use least_work::LeastWork;
pub use power_of_d::PowerOfD;
pub use prefix_aware::{BALANCE_ABS, BALANCE_REL, PrefixAware};
pub use random::Random;
pub use round_robin::RoundRobin;
pub use session::SessionAffinity;

use std::collections::VecDeque;
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
    /// The shared queue of held requests, oldest first, for a router that holds them
    /// (`None` for one that never does). A GPU's scheduler reads it as the tail of its own
    /// waiting line and takes what it admits.
    fn held(&self) -> Option<&VecDeque<ReqId>> {
        None
    }
    /// GPU `gpu` takes the oldest held request.
    fn pull(&mut self, _gpu: usize) -> Option<ReqId> {
        None
    }
    /// GPU `gpu`'s load changed to `load`: after an admission, a preemption (which adds the
    /// dropped context back to its work) or a finished batch. Only the latest load counts:
    /// the engine may skip the updates of batches that end between two routing decisions.
    fn update(&mut self, _gpu: usize, _load: &GpuLoad) {}
}

/// The forms `--router` accepts, for error messages.
pub const ALLOWED: &str = "random, round-robin, jsq, least-work, power-of-d:D (1 <= D <= --gpus), central, prefix-aware, session";

/// A routing policy with its parameters, as given to `--router`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterSpec {
    /// A uniformly random GPU per request.
    Random,
    /// Cycle through the GPUs in index order.
    RoundRobin,
    /// Fewest outstanding requests.
    Jsq,
    /// Fewest outstanding work tokens.
    LeastWork,
    /// Fewest outstanding requests among `d` GPUs sampled per request.
    PowerOfD(u32),
    /// One shared FCFS queue the GPUs pull from.
    Central,
    /// The GPU most likely to hold the prompt's prefix, with a load guard ([`PrefixAware`]).
    PrefixAware,
    /// Every turn of a conversation on one GPU ([`SessionAffinity`]).
    Session,
}

impl RouterSpec {
    /// Checks the policy against a cluster of `gpus` GPUs: `power-of-d:D` needs `D <= gpus`.
    pub fn check(&self, gpus: usize) -> Result<(), String> {
        match *self {
            RouterSpec::PowerOfD(d) if d as usize > gpus => Err(format!(
                "power-of-d:{d} samples {d} distinct GPUs but --gpus is {gpus} (allowed: {ALLOWED})"
            )),
            _ => Ok(()),
        }
    }

    /// A fresh router for `gpus` GPUs, drawing any randomness from `rng` (the run's router
    /// stream, so routing never shifts the workload's or the GPUs' draws).
    ///
    /// Panics if [`check`](RouterSpec::check) fails.
    pub fn build(&self, gpus: usize, rng: SimRng) -> Box<dyn Router> {
        if let Err(e) = self.check(gpus) {
            panic!("{e}");
        }
        match *self {
            RouterSpec::Random => Box::new(Random::new(rng)),
            RouterSpec::RoundRobin => Box::new(RoundRobin::default()),
            RouterSpec::Jsq => Box::new(Jsq::new(gpus)),
            RouterSpec::LeastWork => Box::new(LeastWork::new(gpus)),
            RouterSpec::PowerOfD(d) => Box::new(PowerOfD::new(d as usize, rng)),
            RouterSpec::Central => Box::new(Central::default()),
            RouterSpec::PrefixAware => Box::new(PrefixAware::new(gpus)),
            RouterSpec::Session => Box::new(SessionAffinity),
        }
    }
}

impl FromStr for RouterSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(RouterSpec::Random),
            "round-robin" => Ok(RouterSpec::RoundRobin),
            "jsq" => Ok(RouterSpec::Jsq),
            "least-work" => Ok(RouterSpec::LeastWork),
            "central" => Ok(RouterSpec::Central),
            "prefix-aware" => Ok(RouterSpec::PrefixAware),
            "session" => Ok(RouterSpec::Session),
            _ => match s.strip_prefix("power-of-d:").map(str::parse::<u32>) {
                Some(Ok(d)) if d >= 1 => Ok(RouterSpec::PowerOfD(d)),
                Some(_) => Err(format!(
                    "'{s}': D must be a whole number >= 1 (allowed: {ALLOWED})"
                )),
                None => Err(format!("unknown router '{s}' (allowed: {ALLOWED})")),
            },
        }
    }
}

impl fmt::Display for RouterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterSpec::Random => f.write_str("random"),
            RouterSpec::RoundRobin => f.write_str("round-robin"),
            RouterSpec::Jsq => f.write_str("jsq"),
            RouterSpec::LeastWork => f.write_str("least-work"),
            RouterSpec::PowerOfD(d) => write!(f, "power-of-d:{d}"),
            RouterSpec::Central => f.write_str("central"),
            RouterSpec::PrefixAware => f.write_str("prefix-aware"),
            RouterSpec::Session => f.write_str("session"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_and_bad_ones_name_the_allowed_forms() {
        for s in [
            "random",
            "round-robin",
            "jsq",
            "least-work",
            "power-of-d:2",
            "central",
            "prefix-aware",
            "session",
        ] {
            assert_eq!(s.parse::<RouterSpec>().unwrap().to_string(), s);
        }
        for bad in ["fastest", "power-of-d:0", "power-of-d:x", "power-of-d:"] {
            let e = bad.parse::<RouterSpec>().unwrap_err();
            assert!(e.contains("allowed: random, round-robin"), "{bad}: {e}");
        }
        assert!(RouterSpec::PowerOfD(3).check(3).is_ok());
        assert!(RouterSpec::PowerOfD(4).check(3).is_err());
    }
}
