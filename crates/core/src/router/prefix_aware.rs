//! Prefix-aware routing with a load guard, after the cache-aware policy of SGLang's router
//! (SGLang Model Gateway, `--policy cache_aware`, docs/getting-started/load-balancing.md):
//!
//! 1. Load guard: when the cluster is imbalanced, that is the most and least outstanding
//!    requests differ by more than [`BALANCE_ABS`] *and* the most exceeds
//!    [`BALANCE_REL`] times the least, the request goes to the least loaded GPU (join the
//!    shortest queue), whatever its prefix; one hot prefix cannot pile onto one GPU.
//! 2. Otherwise it goes to the GPU whose index matches the longest prefix of its prompt
//!    (ties: fewer outstanding, then lower index), if the match covers at least
//!    [`CACHE_THRESHOLD`] of the prompt; else to the GPU whose index holds the fewest
//!    blocks (the most room to cache a new prefix).
//!
//! Like SGLang's router, it does not see the GPUs' caches: each GPU's index is an
//! approximate mirror, the prefixes it routed there, kept LRU up to [`MAX_TREE_TOKENS`]
//! tokens per GPU. The defaults are SGLang Model Gateway's (cache threshold 0.3, balance
//! thresholds 64 requests and 1.5); the tree size is sgl-router's `max_tree_size` (2^24).
//! A request without a prefix identity goes to the least loaded GPU.

use super::{GpuLoad, Router};
use crate::prefix::PrefixCache;
use crate::scheduler::ReqId;
use crate::workload::Request;

/// Least fraction of a prompt a GPU's index must match for the request to follow it.
pub const CACHE_THRESHOLD: f64 = 0.3;
/// Outstanding requests by which the busiest GPU must lead the idlest to be imbalanced.
pub const BALANCE_ABS: u32 = 64;
/// Ratio by which the busiest GPU's outstanding requests must exceed the idlest's to be
/// imbalanced.
pub const BALANCE_REL: f64 = 1.5;
/// Tokens of prefixes each GPU's index keeps (tokens).
pub const MAX_TREE_TOKENS: u64 = 1 << 24;

/// Routes to the GPU that most likely holds the prompt's prefix, unless load is imbalanced.
#[derive(Debug)]
pub struct PrefixAware {
    /// Per GPU, the prefixes routed there, by chunk.
    index: Vec<PrefixCache>,
    /// Scratch: node numbers of a routed prompt's chunks.
    nodes: Vec<u32>,
}

impl PrefixAware {
    /// A router for `gpus` GPUs with empty indexes.
    pub fn new(gpus: usize) -> Self {
        PrefixAware {
            index: (0..gpus).map(|_| PrefixCache::default()).collect(),
            nodes: Vec::new(),
        }
    }
}

impl Router for PrefixAware {
    fn route(&mut self, _id: ReqId, req: &Request, loads: &[GpuLoad]) -> Option<usize> {
        let by_load = |g: &usize| (loads[*g].outstanding, *g);
        let least = (0..loads.len())
            .min_by_key(by_load)
            .expect("at least one GPU");
        let most = loads.iter().map(|l| l.outstanding).max().unwrap_or(0);
        let low = loads[least].outstanding;
        let imbalanced = most - low > BALANCE_ABS && f64::from(most) > BALANCE_REL * f64::from(low);
        let Some(prefix) = req.prefix.as_ref() else {
            return Some(least);
        };
        let chunk = prefix.block_tokens;
        let keys = prefix.block_runs(chunk, 0..(req.prompt / chunk) as usize);
        let gpu = if imbalanced {
            least
        } else {
            let (best, matched) = (0..loads.len())
                .map(|g| (g, self.index[g].matched(keys.clone())))
                .max_by_key(|&(g, m)| (m, std::cmp::Reverse(by_load(&g))))
                .expect("at least one GPU");
            let covered = (matched as u64 * u64::from(chunk)) as f64 / f64::from(req.prompt);
            if covered >= CACHE_THRESHOLD {
                best
            } else {
                (0..loads.len())
                    .min_by_key(|&g| (self.index[g].len(), g))
                    .expect("at least one GPU")
            }
        };
        let index = &mut self.index[gpu];
        index.insert(keys, &mut self.nodes);
        index.release(&mut self.nodes);
        let cap = MAX_TREE_TOKENS / u64::from(chunk);
        index.evict(index.len().saturating_sub(cap));
        Some(gpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefix::Prefix;
    use std::sync::Arc;

    fn req(ids: &[u64]) -> Request {
        Request {
            arrival: 0.0,
            prompt: 16 * ids.len() as u32,
            decode: 1,
            prefix: Some(Arc::new(Prefix {
                block_tokens: 16,
                ids: ids.into(),
                session: None,
            })),
            next: None,
        }
    }

    fn loads(out: &[u32]) -> Vec<GpuLoad> {
        out.iter()
            .map(|&outstanding| GpuLoad {
                outstanding,
                work_tokens: 0,
            })
            .collect()
    }

    #[test]
    fn follows_the_prefix_until_load_is_imbalanced() {
        let mut r = PrefixAware::new(3);
        // Empty indexes: the smallest index, lowest GPU first.
        assert_eq!(r.route(0, &req(&[1, 2, 3]), &loads(&[5, 0, 0])), Some(0));
        assert_eq!(r.route(1, &req(&[7, 8]), &loads(&[6, 0, 0])), Some(1));
        // Sharing 2 of 4 chunks (50% >= 30%) with GPU 0's prefix: GPU 0 despite its load.
        assert_eq!(
            r.route(2, &req(&[1, 2, 9, 9]), &loads(&[60, 0, 0])),
            Some(0)
        );
        // Sharing 1 of 4 (25% < 30%): the smallest index, GPU 2.
        assert_eq!(r.route(3, &req(&[1, 5, 5, 5]), &loads(&[6, 1, 1])), Some(2));
        // Imbalanced (100 - 10 > 64 and 100 > 1.5 x 10): the least loaded, GPU 1.
        assert_eq!(
            r.route(4, &req(&[1, 2, 3]), &loads(&[100, 10, 20])),
            Some(1)
        );
        // 64 ahead is not more than 64: balanced, so the prefix wins.
        assert_eq!(r.route(5, &req(&[7, 8]), &loads(&[100, 36, 40])), Some(1));
        let mut none = req(&[]);
        none.prefix = None;
        assert_eq!(r.route(6, &none, &loads(&[3, 2, 2])), Some(1));
    }
}
