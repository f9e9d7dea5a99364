//! Automatic prefix caching, as vLLM does it (Kwon et al., SOSP'23; vLLM's block pool):
//! one GPU's KV blocks that hold whole prompts' prefixes stay cached after use, keyed by
//! the identity of everything up to their end, so a later request with the same prefix
//! reuses them instead of prefilling it again.
//!
//! - A block's key is a hash chain: the key of block `j` mixes the key of block `j - 1`
//!   with the identity of the tokens of block `j`, so equal keys mean equal prefixes.
//! - A workload gives prefixes as [`Prefix`] ids, one per `block_tokens` tokens (Mooncake
//!   traces use 512); id `i` names the prompt's tokens up to the end of its chunk `i`. KV
//!   block `j` (tokens `[j·b, (j + 1)·b)` for KV block size `b`) takes the id of the chunk
//!   holding its last token, `(j·b + b - 1) / block_tokens`, and that token's offset in
//!   the chunk, chained with the key of block `j - 1` ([`Prefix::block_keys`]).
//! - Only a prompt's full KV blocks are cached. Cached blocks referenced by a running or
//!   waiting request are never evicted; unreferenced ones are evicted least recently
//!   released first when memory is needed (vLLM's free-block queue; a request's blocks
//!   are released last block first, so a prefix's tail goes before its head).
//!
//! Every operation is O(1) per block ([`PrefixCache`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use foldhash::fast::FixedState;

/// A prompt's prefix identity: one id per `block_tokens` tokens, in order; equal ids at a
/// position mean equal prompts up to the end of that chunk (the last chunk may be partial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    /// Tokens per id (at least 1).
    pub block_tokens: u32,
    /// One id per chunk of `block_tokens` tokens, covering the whole prompt.
    pub ids: Box<[u64]>,
    /// The conversation the prompt belongs to, where the workload knows it (for session
    /// affinity).
    pub session: Option<u64>,
}

/// splitmix64's finaliser: a bijective mix with full avalanche, so chained keys of
/// different prefixes collide only by 64-bit chance.
pub(crate) fn mix(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Prefix {
    /// Ids needed to cover `prompt` tokens.
    pub fn ids_for(&self, prompt: u32) -> usize {
        prompt.div_ceil(self.block_tokens) as usize
    }

    /// The chained keys of the first `blocks` KV blocks of `block_size` tokens; the ids
    /// must cover `blocks · block_size` tokens.
    pub fn block_keys(&self, block_size: u32, blocks: usize) -> Box<[u64]> {
        let (b, t) = (u64::from(block_size), u64::from(self.block_tokens));
        let mut key = 0u64;
        // Mixed once per chunk: consecutive blocks mostly share one.
        let mut chunk = (u64::MAX, 0);
        (0..blocks as u64)
            .map(|j| {
                let last = j * b + b - 1;
                let c = last / t;
                if c != chunk.0 {
                    chunk = (c, mix(self.ids[c as usize]));
                }
                key = mix(key ^ chunk.1.wrapping_add(last % t));
                key
            })
            .collect()
    }
}

/// Counters of one GPU's prefix cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Prompt tokens of the requests looked up (tokens).
    pub requested_tokens: u64,
    /// Of those, tokens found cached and not prefilled (tokens).
    pub hit_tokens: u64,
    /// Full prompt blocks looked up (blocks).
    pub requested_blocks: u64,
    /// Of those, blocks found cached (blocks).
    pub hit_blocks: u64,
    /// Cached blocks evicted to make room (blocks).
    pub evictions: u64,
}

/// No node: the end of the LRU list.
const NIL: u32 = u32::MAX;

/// One cached block: its key, the requests referencing it, and its neighbours in the LRU
/// list while unreferenced.
#[derive(Debug, Clone, Copy)]
struct Node {
    key: u64,
    refs: u32,
    prev: u32,
    next: u32,
}

/// One GPU's cached blocks.
///
/// The blocks live in a slab indexed by node number, found by key through a hash map;
/// unreferenced ones are threaded on an intrusive doubly-linked list, least recently
/// released at the head. Requests hold node numbers, so releasing a block costs no hash
/// lookup, and nothing is allocated per block once the slab has grown (an LRU crate
/// allocating one node per entry spent most of a Mooncake replay in the allocator).
#[derive(Debug)]
pub struct PrefixCache {
    index: HashMap<u64, u32, FixedState>,
    nodes: Vec<Node>,
    /// Slab slots of evicted blocks, for reuse.
    vacant: Vec<u32>,
    /// Least and most recently released unreferenced blocks.
    head: u32,
    tail: u32,
    evictable: u64,
    /// Counters.
    pub stats: CacheStats,
}

impl Default for PrefixCache {
    fn default() -> Self {
        PrefixCache {
            index: HashMap::with_hasher(FixedState::default()),
            nodes: Vec::new(),
            vacant: Vec::new(),
            head: NIL,
            tail: NIL,
            evictable: 0,
            stats: CacheStats::default(),
        }
    }
}

impl PrefixCache {
    /// Blocks cached and referenced (blocks).
    pub fn referenced(&self) -> u64 {
        self.index.len() as u64 - self.evictable
    }

    /// Blocks cached, referenced or not (blocks).
    pub fn len(&self) -> u64 {
        self.index.len() as u64
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// How many leading `keys` are cached, referenced or not; changes nothing.
    pub fn matched(&self, keys: &[u64]) -> usize {
        keys.iter()
            .take_while(|k| self.index.contains_key(k))
            .count()
    }

    /// Blocks cached and unreferenced: evictable, so free for allocation (blocks).
    pub fn evictable(&self) -> u64 {
        self.evictable
    }

    fn unlink(&mut self, n: u32) {
        let Node { prev, next, .. } = self.nodes[n as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            q => self.nodes[q as usize].prev = prev,
        }
        self.evictable -= 1;
    }

    fn push_tail(&mut self, n: u32) {
        self.nodes[n as usize].prev = self.tail;
        self.nodes[n as usize].next = NIL;
        match self.tail {
            NIL => self.head = n,
            t => self.nodes[t as usize].next = n,
        }
        self.tail = n;
        self.evictable += 1;
    }

    /// References node `n` once more; returns whether it was unreferenced.
    fn reference(&mut self, n: u32) -> bool {
        let revived = self.nodes[n as usize].refs == 0;
        if revived {
            self.unlink(n);
        }
        self.nodes[n as usize].refs += 1;
        revived
    }

    /// Finds the longest cached prefix of `keys`, at most `limit` blocks, references its
    /// blocks and appends their nodes to `held`. Returns how many of them were
    /// unreferenced before (they leave the evictable list).
    pub fn acquire(&mut self, keys: &[u64], limit: usize, held: &mut Vec<u32>) -> u64 {
        let mut revived = 0;
        for k in &keys[..limit.min(keys.len())] {
            let Some(&n) = self.index.get(k) else {
                break;
            };
            revived += u64::from(self.reference(n));
            held.push(n);
        }
        revived
    }

    /// Caches `keys`, the full blocks a request just computed, referenced by it, appending
    /// their nodes to `held`. A key already cached (computed meanwhile by another request)
    /// is referenced instead, and the request's own copy of that block is dropped.
    /// Returns the blocks so dropped that were referenced already (a revived unreferenced
    /// one takes the dropped copy's place in the memory in use).
    pub fn insert(&mut self, keys: &[u64], held: &mut Vec<u32>) -> u64 {
        let mut dropped = 0;
        for &key in keys {
            let n = match self.index.entry(key) {
                Entry::Occupied(e) => {
                    let n = *e.get();
                    dropped += u64::from(!self.reference(n));
                    n
                }
                Entry::Vacant(e) => {
                    let node = Node {
                        key,
                        refs: 1,
                        prev: NIL,
                        next: NIL,
                    };
                    let n = match self.vacant.pop() {
                        Some(n) => {
                            self.nodes[n as usize] = node;
                            n
                        }
                        None => {
                            self.nodes.push(node);
                            (self.nodes.len() - 1) as u32
                        }
                    };
                    e.insert(n);
                    n
                }
            };
            held.push(n);
        }
        dropped
    }

    /// Drops one reference to each of the nodes in `held`, last first, and empties it;
    /// returns how many blocks became unreferenced (they stay cached, evictable).
    pub fn release(&mut self, held: &mut Vec<u32>) -> u64 {
        let mut freed = 0;
        for &n in held.iter().rev() {
            let refs = &mut self.nodes[n as usize].refs;
            *refs -= 1;
            if *refs == 0 {
                self.push_tail(n);
                freed += 1;
            }
        }
        held.clear();
        freed
    }

    /// Evicts up to `n` unreferenced blocks, least recently released first.
    pub fn evict(&mut self, n: u64) {
        for _ in 0..n {
            let victim = self.head;
            if victim == NIL {
                break;
            }
            self.unlink(victim);
            self.index.remove(&self.nodes[victim as usize].key);
            self.vacant.push(victim);
            self.stats.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(ids: &[u64], block_tokens: u32) -> Prefix {
        Prefix {
            block_tokens,
            ids: ids.into(),
            session: None,
        }
    }

    #[test]
    fn keys_are_equal_exactly_as_long_as_the_prefixes_are() {
        // 512-token ids over 16-token blocks: 32 KV blocks per id.
        let a = prefix(&[1, 2, 3], 512).block_keys(16, 96);
        let b = prefix(&[1, 2, 9], 512).block_keys(16, 96);
        assert_eq!(a[..64], b[..64]);
        assert!(a[64..].iter().zip(&b[64..]).all(|(x, y)| x != y));
        // A KV block straddling two chunks takes the later chunk's id.
        let c = prefix(&[1, 2], 24).block_keys(16, 3);
        let d = prefix(&[1, 5], 24).block_keys(16, 3);
        assert_eq!(c[0], d[0]);
        assert_ne!(c[1], d[1]);
        // Every key distinct along one prompt (positions differ).
        let mut all = a.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 96);
    }

    #[test]
    fn referenced_blocks_survive_and_free_ones_go_lru() {
        let mut c = PrefixCache::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(c.insert(&[1, 2, 3], &mut a), 0);
        assert_eq!(c.acquire(&[1, 2, 7], 3, &mut b), 0);
        assert_eq!(b.len(), 2);
        // Released by the first owner: block 3 becomes free; 1 and 2 still referenced.
        assert_eq!(c.release(&mut a), 1);
        assert_eq!((c.referenced(), c.evictable()), (2, 1));
        assert_eq!(c.release(&mut b), 2);
        // Released last first: 3 (oldest), then 2, then 1.
        c.evict(2);
        assert_eq!(c.stats.evictions, 2);
        assert_eq!(c.acquire(&[1, 2], 2, &mut a), 1);
        assert_eq!(a.len(), 1);
        // Only what is unreferenced can go.
        c.evict(5);
        assert_eq!(
            (c.referenced(), c.evictable(), c.stats.evictions),
            (1, 0, 2)
        );
        assert_eq!(c.acquire(&[1], 0, &mut b), 0);
        assert!(b.is_empty());
        // An evicted slot is reused by the next new block.
        c.insert(&[8], &mut b);
        assert_eq!(c.nodes.len(), 3);
    }

    #[test]
    fn inserting_a_cached_key_references_it_once_more() {
        let mut c = PrefixCache::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.insert(&[4, 5], &mut a);
        let mut five = vec![a.pop().unwrap()];
        c.release(&mut five);
        // 4 is referenced (copy dropped), 5 was free (revived in the copy's place).
        assert_eq!(c.insert(&[4, 5], &mut b), 1);
        assert_eq!((c.referenced(), c.evictable()), (2, 0));
        assert_eq!(c.release(&mut b), 1);
        assert_eq!(c.release(&mut a), 1);
        assert_eq!((c.referenced(), c.evictable()), (0, 2));
    }
}
