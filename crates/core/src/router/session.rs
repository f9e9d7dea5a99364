//! Session affinity: every turn of a conversation goes to the same GPU, so its earlier
//! turns' cached blocks are there, whatever the load. The GPU is the session's hash modulo
//! the GPU count: the consistent hashing of SGLang Model Gateway's `consistent_hashing`
//! policy, which for a cluster that never changes size is that modulo. It keeps no state,
//! so memory does not grow with the sessions. A request without a session (a trace that
//! does not record one) goes to the GPU with the fewest outstanding requests.

use super::{GpuLoad, Router};
use crate::prefix::mix;
use crate::scheduler::ReqId;
use crate::workload::Request;

/// Hashes each session to a GPU.
#[derive(Debug, Default)]
pub struct SessionAffinity;

impl Router for SessionAffinity {
    fn route(&mut self, _id: ReqId, req: &Request, loads: &[GpuLoad]) -> Option<usize> {
        Some(match req.prefix.as_ref().and_then(|p| p.session) {
            Some(s) => (mix(s) % loads.len() as u64) as usize,
            None => (0..loads.len())
                .min_by_key(|&g| (loads[g].outstanding, g))
                .expect("at least one GPU"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefix::Prefix;
    use std::sync::Arc;

    #[test]
    fn a_session_stays_on_one_gpu_and_sessions_spread() {
        let req = |session| Request {
            arrival: 0.0,
            prompt: 10,
            decode: 1,
            prefix: Some(Arc::new(Prefix {
                block_tokens: 16,
                ids: Box::new([1]),
                session,
            })),
            next: None,
        };
        let loads = vec![GpuLoad::default(); 4];
        let mut r = SessionAffinity;
        let mut counts = [0u32; 4];
        for s in 0..4000 {
            let g = r.route(0, &req(Some(s)), &loads).unwrap();
            assert_eq!(r.route(1, &req(Some(s)), &loads), Some(g));
            counts[g] += 1;
        }
        // 1,000 expected per GPU; a binomial sd is about 27.
        assert!(counts.iter().all(|&c| c.abs_diff(1000) < 150), "{counts:?}");
        let mut busy = vec![GpuLoad::default(); 4];
        busy[0].outstanding = 3;
        assert_eq!(r.route(2, &req(None), &busy), Some(1));
    }
}
