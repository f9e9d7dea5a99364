//! Power of d choices: sample `d` distinct GPUs uniformly and send the request to the one
//! with the fewest outstanding requests (lowest index on ties). Most of JSQ's gain for
//! `d = 2`, at O(d) per request and without a global view of the cluster.
//!
//! Ties go to the lowest index, as for [`Jsq`](super::Jsq): tied GPUs hold equally many
//! requests, so the policy's own criterion cannot tell them apart. At light load, where
//! most ties are between idle GPUs, low-index GPUs therefore take more of the work; per-GPU
//! utilisation and the load-imbalance figure show it.

use rand::RngExt;

use super::{GpuLoad, Router};
use crate::rng::SimRng;
use crate::scheduler::ReqId;
use crate::workload::Request;

/// Least outstanding of `d` GPUs sampled without replacement.
#[derive(Debug)]
pub struct PowerOfD {
    d: usize,
    rng: SimRng,
    /// The current sample, reused across requests to avoid allocating.
    picks: Vec<usize>,
}

impl PowerOfD {
    /// Samples `d >= 1` GPUs per request from `rng`, the run's router stream.
    pub fn new(d: usize, rng: SimRng) -> Self {
        assert!(d >= 1, "power-of-d needs d >= 1");
        PowerOfD {
            d,
            rng,
            picks: Vec::with_capacity(d),
        }
    }
}

impl Router for PowerOfD {
    fn route(&mut self, _id: ReqId, _req: &Request, loads: &[GpuLoad]) -> Option<usize> {
        let n = loads.len();
        debug_assert!(self.d <= n, "RouterSpec::build checks d <= N");
        // Floyd's algorithm: d distinct indices in d draws, however large n is.
        self.picks.clear();
        for j in n - self.d..n {
            let t = self.rng.random_range(0..=j);
            let pick = if self.picks.contains(&t) { j } else { t };
            self.picks.push(pick);
        }
        self.picks
            .iter()
            .copied()
            .min_by_key(|&g| (loads[g].outstanding, g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Source, stream};

    fn req() -> Request {
        Request {
            arrival: 0.0,
            prompt: 1,
            decode: 0,
            prefix: None,
            next: None,
        }
    }

    #[test]
    fn d_equal_to_n_is_jsq() {
        let mut loads = vec![GpuLoad::default(); 5];
        for (g, n) in [3, 1, 4, 1, 5].into_iter().enumerate() {
            loads[g].outstanding = n;
        }
        let mut r = PowerOfD::new(5, stream(1, 0, Source::Router));
        for id in 0..50 {
            assert_eq!(r.route(id, &req(), &loads), Some(1));
        }
    }

    #[test]
    fn samples_are_distinct_and_cover_every_gpu() {
        let loads = vec![GpuLoad::default(); 6];
        let mut r = PowerOfD::new(3, stream(2, 0, Source::Router));
        let mut hits = [0u32; 6];
        for id in 0..6_000 {
            r.route(id, &req(), &loads);
            let mut p = r.picks.clone();
            p.sort_unstable();
            p.dedup();
            assert_eq!(p.len(), 3);
            for g in p {
                hits[g] += 1;
            }
        }
        // Each GPU is in a sample with probability 1/2: 3,000 expected, sd about 39.
        assert!(
            hits.iter().all(|&h| (h as i64 - 3_000).abs() < 250),
            "{hits:?}"
        );
    }
}
