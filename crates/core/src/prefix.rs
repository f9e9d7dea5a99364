//! Automatic prefix caching, as vLLM does it (Kwon et al., SOSP'23; vLLM's block pool):
//! one GPU's KV blocks that hold whole prompts' prefixes stay cached after use, keyed by
//! the identity of everything up to their end, so a later request with the same prefix
//! reuses them instead of prefilling it again.
//!
//! - A block's key is a hash chain: the blocks whose last tokens lie in one prefix chunk
//!   form a page, whose key mixes the key of the page before with the chunk's identity,
//!   and a block is its page's key and its position in the page ([`BlockKey`]), so equal
//!   keys mean equal prefixes.
//! - A workload gives prefixes as [`Prefix`] ids, one per `block_tokens` tokens (Mooncake
//!   traces use 512); id `i` names the prompt's tokens up to the end of its chunk `i`. KV
//!   block `j` (tokens `[j·b, (j + 1)·b)` for KV block size `b`) takes the id of the chunk
//!   holding its last token, `(j·b + b - 1) / block_tokens`: its page, chained with the
//!   pages before ([`Prefix::block_keys`]).
//! - A prompt's full KV blocks are cached when its prefill ends. When a request finishes,
//!   its other full blocks (those holding generated tokens, and a prompt's without a
//!   prefix identity) stay cached too, as vLLM hashes every full block: under keys no
//!   lookup matches (a workload gives ids to prompts only), so they only take room until
//!   evicted ([`PrefixCache::retire`]). Cached blocks referenced by a running request are
//!   never evicted; unreferenced ones are evicted least recently released first when
//!   memory is needed (vLLM's free-block queue; a request's blocks are released last block
//!   first, so its generated tokens' blocks go before its prompt's, and a prefix's tail
//!   before its head).
//! - A request looks the cache up when its policy admits it to the running batch, as
//!   vLLM's scheduler calls `get_computed_blocks` for a waiting request each step it tries
//!   to schedule it ([`View::cache_hit`](crate::scheduler::View::cache_hit)): a waiting
//!   request holds no blocks, so requests that wait can never pin the memory the head of
//!   the queue needs.
//!
//! - Optionally, a CPU-side tier ([`CpuKv`]; vLLM's KV offloading, the `OffloadingConnector`
//!   with its CPU backend and LRU policy) keeps copies of full blocks in host memory: every
//!   full block a request computes is written to it (its prompt's when its prefill ends,
//!   the others, unmatched, when it finishes), whether or not the GPU keeps it, and it
//!   evicts least recently used blocks when full (a request's head most recent, as vLLM's
//!   manager touches a request's blocks). A request that arrives looks it up after the GPU
//!   cache (`GpuCache::cpu_lookup`): the blocks that extend its GPU hit, one by one, are
//!   loaded over the host link, and the request reaches its policy only once they are in
//!   the GPU's cache (`GpuCache::load`), where its admission finds them as a GPU hit.
//!
//! Every operation is O(1) per block ([`PrefixCache`]). The blocks whose last tokens lie
//! in one prefix chunk form a page ([`BlockKey`]): the cache finds a page by hash and its
//! blocks by position, so a 512-token chunk of 16-token blocks costs one hash lookup, not
//! 32 (a Mooncake replay spent most of its time in per-block lookups and evictions).

use std::collections::HashMap;
use std::ops::Range;

use foldhash::fast::FixedState;

use crate::scheduler::{ReqId, SwapLink};
use crate::workload::Request;

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

    /// The keys of the first `blocks` KV blocks of `block_size` tokens, computed as they
    /// are read (nothing is allocated per block); the ids must cover `blocks · block_size`
    /// tokens.
    pub fn block_keys(
        &self,
        block_size: u32,
        blocks: usize,
    ) -> impl Iterator<Item = BlockKey> + Clone + '_ {
        self.block_runs(block_size, 0..blocks)
            .flat_map(BlockRun::keys)
    }

    /// KV blocks `blocks` (indices of `block_size`-token blocks) as runs of consecutive
    /// blocks of one page each, in order, computed as they are read: one page key per
    /// page, nothing per block. The ids must cover `blocks.end · block_size` tokens.
    pub fn block_runs(
        &self,
        block_size: u32,
        blocks: Range<usize>,
    ) -> impl Iterator<Item = BlockRun> + Clone + '_ {
        let (b, t) = (u64::from(block_size), u64::from(self.block_tokens));
        let len = self.block_tokens.div_ceil(block_size);
        let (start, end) = (blocks.start as u64, blocks.end as u64);
        let (mut page, mut j) = (0u64, 0u64);
        std::iter::from_fn(move || {
            while j < end {
                // A new page, block `j` its first: chained on the one before, and named
                // by its chunk's id and where its first block ends in the chunk. Its
                // blocks are those whose last tokens lie in the chunk, up to
                // `(c + 1) · t / b` (exclusive).
                let last = j * b + b - 1;
                let c = last / t;
                page = mix(page ^ mix(self.ids[c as usize]).wrapping_add(last % t));
                let (first, to) = (j, ((c + 1) * t / b).min(end));
                j = to;
                let from = first.max(start);
                if from < to {
                    return Some(BlockRun {
                        key: BlockKey {
                            page,
                            offset: (from - first) as u32,
                            len,
                        },
                        count: (to - from) as u32,
                    });
                }
            }
            None
        })
    }
}

/// Consecutive KV blocks of one page: the blocks at positions `key.offset` to
/// `key.offset + count - 1` of page `key.page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRun {
    /// The run's first block.
    pub key: BlockKey,
    /// Blocks in the run (at least 1).
    pub count: u32,
}

impl BlockRun {
    /// The keys of the run's blocks, in order.
    pub fn keys(self) -> impl Iterator<Item = BlockKey> + Clone {
        (0..self.count).map(move |i| BlockKey {
            offset: self.key.offset + i,
            ..self.key
        })
    }
}

/// A KV block's identity: the chained key of its page (the blocks whose last tokens lie
/// in one prefix chunk), which names everything up to the page, and its position in the
/// page, the rest of the chunk being the same text. Equal keys mean equal prefixes up to
/// the block's end, as a chained key per block would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    /// The page's key.
    pub page: u64,
    /// The block's position in its page.
    pub offset: u32,
    /// Blocks a page can hold: `ceil(chunk tokens / block size)`.
    pub len: u32,
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
    /// Tokens found cached when requests preempted by recompute were admitted again, which
    /// their recompute did not prefill; kept apart from `hit_tokens`, as vLLM counts a
    /// preempted request's lookups apart (tokens).
    pub preempted_hit_tokens: u64,
    /// Prompt tokens loaded from the CPU tier into the GPU's cache before their requests
    /// reached the policy, which their prefills then skip (tokens; 0 without the tier).
    pub cpu_hit_tokens: u64,
    /// Requests that waited for a load from the CPU tier (requests).
    pub cpu_loads: u64,
    /// Blocks the CPU tier evicted to make room (blocks).
    pub cpu_evictions: u64,
}

/// No node: the end of the LRU list.
const NIL: u32 = u32::MAX;

/// One block of a page: whether it is cached, the requests referencing it, and its
/// neighbours in the LRU list while cached and unreferenced.
#[derive(Debug, Clone, Copy)]
struct Node {
    refs: u32,
    prev: u32,
    next: u32,
    /// Its page.
    page: u32,
    cached: bool,
}

/// A page: `len` nodes from `base`, `live` of them cached.
#[derive(Debug, Clone, Copy)]
struct Page {
    key: u64,
    base: u32,
    len: u32,
    live: u32,
    /// Whether the index finds it by `key`; a retired block's page is not indexed, so no
    /// lookup can match it ([`PrefixCache::retire`]).
    indexed: bool,
}

/// One GPU's cached blocks.
///
/// The blocks live in a slab of nodes, a page's nodes side by side; pages are found by
/// key through a hash map, and a page leaves it (its nodes free for reuse) when its last
/// cached block is evicted. Unreferenced cached blocks are threaded on an intrusive
/// doubly-linked list, least recently released at the head. Requests hold node numbers,
/// so releasing a block costs no lookup, and nothing is allocated per block once the slab
/// has grown (an LRU crate allocating one node per entry spent most of a Mooncake replay
/// in the allocator).
#[derive(Debug)]
pub struct PrefixCache {
    index: HashMap<u64, u32, FixedState>,
    pages: Vec<Page>,
    nodes: Vec<Node>,
    /// Pages left empty by evictions, for reuse, by length.
    vacant: Vec<Vec<u32>>,
    /// Least and most recently released unreferenced blocks.
    head: u32,
    tail: u32,
    cached: u64,
    evictable: u64,
    /// Counters.
    pub stats: CacheStats,
}

impl Default for PrefixCache {
    fn default() -> Self {
        PrefixCache {
            index: HashMap::with_hasher(FixedState::default()),
            pages: Vec::new(),
            nodes: Vec::new(),
            vacant: Vec::new(),
            head: NIL,
            tail: NIL,
            cached: 0,
            evictable: 0,
            stats: CacheStats::default(),
        }
    }
}

impl PrefixCache {
    /// Blocks cached and referenced (blocks).
    pub fn referenced(&self) -> u64 {
        self.cached - self.evictable
    }

    /// Blocks cached, referenced or not (blocks).
    pub fn len(&self) -> u64 {
        self.cached
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.cached == 0
    }

    /// The nodes of run `r`'s blocks, from its first, that its page has room for, if the
    /// page is indexed (its blocks may be cached or not).
    fn nodes_of(&self, r: &BlockRun) -> Option<Range<usize>> {
        let p = self.pages[*self.index.get(&r.key.page)? as usize];
        let from = p.base + r.key.offset;
        let count = r.count.min(p.len.saturating_sub(r.key.offset));
        Some(from as usize..(from + count) as usize)
    }

    /// How many leading blocks of `runs` are cached, referenced or not; changes nothing.
    pub fn matched(&self, runs: impl IntoIterator<Item = BlockRun>) -> usize {
        self.peek(runs).0
    }

    /// The longest cached prefix of `runs`, as [`acquire`](Self::acquire) would find it:
    /// its length (blocks) and how many of its blocks no request references (acquiring
    /// them takes them off the evictable list); changes nothing.
    pub fn peek(&self, runs: impl IntoIterator<Item = BlockRun>) -> (usize, u64) {
        let (mut hit, mut unreferenced) = (0, 0);
        for r in runs {
            let Some(range) = self.nodes_of(&r) else {
                break;
            };
            let nodes = &self.nodes[range];
            let cached = nodes.iter().take_while(|n| n.cached).count();
            hit += cached;
            unreferenced += nodes[..cached].iter().filter(|n| n.refs == 0).count() as u64;
            if cached < r.count as usize {
                break;
            }
        }
        (hit, unreferenced)
    }

    /// Blocks cached and unreferenced: evictable, so free for allocation (blocks).
    pub fn evictable(&self) -> u64 {
        self.evictable
    }

    /// Makes the cached unreferenced blocks of `runs` the most recently released, the
    /// first of them last, so that a request's head outlives its tail; skips blocks not
    /// cached. `scratch` is working space.
    pub fn touch(&mut self, runs: impl IntoIterator<Item = BlockRun>, scratch: &mut Vec<u32>) {
        scratch.clear();
        for r in runs {
            if let Some(range) = self.nodes_of(&r) {
                scratch.extend(
                    range
                        .filter(|&n| self.nodes[n].cached && self.nodes[n].refs == 0)
                        .map(|n| n as u32),
                );
            }
        }
        for &n in scratch.iter().rev() {
            self.unlink(n);
            self.push_tail(n);
        }
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

    /// Finds the longest cached prefix of `runs`, references its blocks and appends their
    /// nodes to `held`. Returns how many of them were unreferenced before (they leave the
    /// evictable list).
    pub fn acquire(
        &mut self,
        runs: impl IntoIterator<Item = BlockRun>,
        held: &mut Vec<u32>,
    ) -> u64 {
        let mut revived = 0;
        for r in runs {
            let Some(range) = self.nodes_of(&r) else {
                break;
            };
            let whole = range.len() == r.count as usize;
            for n in range {
                if !self.nodes[n].cached {
                    return revived;
                }
                revived += u64::from(self.reference(n as u32));
                held.push(n as u32);
            }
            if !whole {
                break;
            }
        }
        revived
    }

    /// An empty page of `len` nodes, an evicted one reused if any, under `key`.
    fn new_page(&mut self, key: u64, len: u32, indexed: bool) -> u32 {
        let p = match self.vacant.get_mut(len as usize).and_then(Vec::pop) {
            Some(p) => p,
            None => {
                let p = self.pages.len() as u32;
                let base = self.nodes.len() as u32;
                let free = Node {
                    refs: 0,
                    prev: NIL,
                    next: NIL,
                    page: p,
                    cached: false,
                };
                self.nodes.resize(self.nodes.len() + len as usize, free);
                self.pages.push(Page {
                    key,
                    base,
                    len,
                    live: 0,
                    indexed,
                });
                p
            }
        };
        let page = &mut self.pages[p as usize];
        (page.key, page.indexed) = (key, indexed);
        p
    }

    /// The page of `k`, made (empty) if absent.
    fn page(&mut self, k: &BlockKey) -> u32 {
        if let Some(&p) = self.index.get(&k.page) {
            return p;
        }
        let p = self.new_page(k.page, k.len, true);
        self.index.insert(k.page, p);
        p
    }

    /// Caches `n` blocks that no lookup can match, unreferenced, the last first in the
    /// eviction order: a finished request's own full blocks, which vLLM hashes and leaves
    /// in its free-block queue (their generated tokens make their keys the request's own),
    /// so that they take cache space from prefixes until evicted. Each is a one-block page
    /// left out of the index.
    pub fn retire(&mut self, n: u64) {
        for _ in 0..n {
            let p = self.new_page(0, 1, false);
            let page = &mut self.pages[p as usize];
            page.live = 1;
            let at = page.base;
            let node = &mut self.nodes[at as usize];
            (node.cached, node.refs) = (true, 0);
            self.cached += 1;
            self.push_tail(at);
        }
    }

    /// Caches `runs`, the full blocks a request just computed, referenced by it, appending
    /// their nodes to `held`. A key already cached (computed meanwhile by another request)
    /// is referenced instead, and the request's own copy of that block is dropped.
    /// Returns the blocks so dropped that were referenced already (a revived unreferenced
    /// one takes the dropped copy's place in the memory in use).
    pub fn insert(&mut self, runs: impl IntoIterator<Item = BlockRun>, held: &mut Vec<u32>) -> u64 {
        let mut dropped = 0;
        for r in runs {
            let p = self.page(&r.key);
            let page = &mut self.pages[p as usize];
            debug_assert!(
                r.key.offset + r.count <= page.len,
                "one chunk size per workload"
            );
            let from = page.base + r.key.offset;
            for n in from..from + r.count {
                if self.nodes[n as usize].cached {
                    dropped += u64::from(!self.reference(n));
                } else {
                    self.pages[p as usize].live += 1;
                    let node = &mut self.nodes[n as usize];
                    node.cached = true;
                    node.refs = 1;
                    self.cached += 1;
                }
                held.push(n);
            }
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
            let node = &mut self.nodes[victim as usize];
            node.cached = false;
            let p = node.page;
            let page = &mut self.pages[p as usize];
            page.live -= 1;
            if page.live == 0 {
                if page.indexed {
                    self.index.remove(&page.key);
                }
                let len = page.len as usize;
                if self.vacant.len() <= len {
                    self.vacant.resize_with(len + 1, Vec::new);
                }
                self.vacant[len].push(p);
            }
            self.cached -= 1;
            self.stats.evictions += 1;
        }
    }
}

/// What a waiting request would find in its GPU's prefix cache if admitted now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheHit {
    /// Leading prompt tokens cached, in whole KV blocks, which its prefill skips (tokens).
    pub tokens: u32,
    /// Of those blocks, the ones no request references: admitting the request takes them
    /// from the evictable blocks, which are free memory until then (blocks).
    pub revived: u64,
}

/// The CPU-side tier of each GPU's prefix cache: vLLM's KV offloading
/// (`--kv-offloading-size`, the `OffloadingConnector` with its CPU backend).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuKv {
    /// Blocks of the GPU cache's block size that the host pool holds for each GPU (blocks;
    /// vLLM sizes it as the pool's bytes over one block's bytes on one GPU).
    pub blocks: u64,
    /// The link loads cross from host memory: its bandwidth and the KV bytes per token
    /// that one GPU of the replica holds (the GPUs of a replica load their shares side by
    /// side, each over its own link).
    pub link: SwapLink,
}

/// A CPU tier's blocks: copies of full KV blocks in host memory, unreferenced, evicted
/// least recently used first.
#[derive(Debug)]
struct CpuTier {
    blocks: PrefixCache,
    capacity: u64,
    scratch: Vec<u32>,
}

impl CpuTier {
    /// Writes `runs` (those not held already) and makes them the most recently used, the
    /// first last; evicts what no longer fits.
    fn store(&mut self, runs: impl IntoIterator<Item = BlockRun>) {
        self.blocks.insert(runs, &mut self.scratch);
        self.blocks.release(&mut self.scratch);
        self.fit();
    }

    /// Evicts least recently used blocks until the tier is within its capacity.
    fn fit(&mut self) {
        self.blocks
            .evict(self.blocks.len().saturating_sub(self.capacity));
    }
}

/// One GPU's prefix cache and what its requests hold of it.
///
/// A policy sees a waiting request's hit ([`GpuCache::hit`]) when it decides whether to
/// admit it, and the request references the blocks only once admitted
/// ([`GpuCache::reuse`]), in the same scheduling step, so a later request of that step
/// sees them referenced: the blocks the policy counts are exactly those the batch takes.
#[derive(Debug, Default)]
pub(crate) struct GpuCache {
    pub cache: PrefixCache,
    /// The CPU tier, when on.
    cpu: Option<CpuTier>,
    /// Admitted requests with a prefix identity: the nodes of the leading blocks of their
    /// prompts they reference.
    held: HashMap<ReqId, Vec<u32>, FixedState>,
    /// Requests admitted while the batch being formed was chosen, with the tokens they
    /// found cached; the engine applies them when the batch starts.
    pub admitted: Vec<(ReqId, u32)>,
    /// Unreferenced cached blocks those admissions referenced (blocks).
    pub revived: u64,
    /// Cached blocks that requests preempted while the batch was chosen referenced and
    /// others still do, which stay in use though the victims' blocks are freed (blocks).
    pub kept: u64,
}

impl GpuCache {
    /// An empty cache, with an empty CPU tier of `cpu_blocks` blocks if given.
    pub fn new(cpu_blocks: Option<u64>) -> Self {
        GpuCache {
            cpu: cpu_blocks.map(|capacity| CpuTier {
                blocks: PrefixCache::default(),
                capacity,
                scratch: Vec::new(),
            }),
            ..GpuCache::default()
        }
    }

    /// The counters, the CPU tier's evictions included.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            cpu_evictions: self.cpu.as_ref().map_or(0, |c| c.blocks.stats.evictions),
            ..self.cache.stats
        }
    }

    /// The blocks (indices of `block_size`-token blocks) of arriving request `req`'s prompt
    /// that the CPU tier holds right after its GPU hit, one by one up to the hit's cap
    /// (the prompt less one token), as vLLM's offloading connector extends the GPU hit;
    /// `None` when there are none (or no tier, or no prefix identity). Touches the
    /// prompt's blocks in the tier, as the connector does on every lookup.
    pub fn cpu_lookup(&mut self, req: &Request, block_size: u32) -> Option<Range<usize>> {
        let prefix = req.prefix.as_ref()?;
        let gpu = (self.hit(req, block_size).tokens / block_size) as usize;
        let cpu = self.cpu.as_mut()?;
        let full = (req.prompt / block_size) as usize;
        cpu.blocks
            .touch(prefix.block_runs(block_size, 0..full), &mut cpu.scratch);
        let cap = ((req.prompt - 1) / block_size) as usize;
        let found = cpu
            .blocks
            .matched(prefix.block_runs(block_size, gpu..cap.max(gpu)));
        (found > 0).then(|| gpu..gpu + found)
    }

    /// Blocks `blocks` of `req`'s prompt, found by [`GpuCache::cpu_lookup`], have been
    /// loaded from the CPU tier: they are cached, unreferenced and the most recently
    /// used (the engine then evicts what no longer fits, least recently used first).
    pub fn load(&mut self, req: &Request, block_size: u32, blocks: Range<usize>) {
        let prefix = req.prefix.as_ref().expect("a lookup found its blocks");
        let mut held = Vec::new();
        self.cache
            .insert(prefix.block_runs(block_size, blocks), &mut held);
        self.cache.release(&mut held);
    }

    /// What request `req` would find cached if admitted now: the longest cached prefix of
    /// its prompt's full `block_size`-token blocks, short of its last token (the prefill
    /// must compute at least one token to emit the next, as vLLM caps a hit at the
    /// prompt less one token).
    pub fn hit(&self, req: &Request, block_size: u32) -> CacheHit {
        let Some(prefix) = &req.prefix else {
            return CacheHit::default();
        };
        let runs = prefix.block_runs(block_size, 0..((req.prompt - 1) / block_size) as usize);
        let (blocks, revived) = self.cache.peek(runs);
        CacheHit {
            tokens: blocks as u32 * block_size,
            revived,
        }
    }

    /// Request `id`, `req`, is admitted with `hit`, found by [`GpuCache::hit`] in this same
    /// scheduling step: it references those blocks.
    pub fn reuse(&mut self, id: ReqId, req: &Request, block_size: u32, hit: CacheHit) {
        let Some(prefix) = &req.prefix else {
            return;
        };
        let nodes = self.held.entry(id).or_default();
        let blocks = (hit.tokens / block_size) as usize;
        let revived = self
            .cache
            .acquire(prefix.block_runs(block_size, 0..blocks), nodes);
        debug_assert_eq!((nodes.len(), revived), (blocks, hit.revived));
        self.admitted.push((id, hit.tokens));
        self.revived += revived;
    }

    /// Caches the full `block_size`-token blocks of request `id`'s prompt, `req`, whose
    /// prefill has just ended, referenced by it; a block another request cached meanwhile
    /// is shared, and the request's own copy freed. The CPU tier, if any, takes copies of
    /// them all. Returns the blocks so freed that were
    /// referenced already (see [`PrefixCache::insert`]).
    pub fn cache_prompt(&mut self, id: ReqId, req: &Request, block_size: u32) -> u64 {
        let (Some(prefix), Some(nodes)) = (&req.prefix, self.held.get_mut(&id)) else {
            return 0;
        };
        let full = (req.prompt / block_size) as usize;
        let dropped = self
            .cache
            .insert(prefix.block_runs(block_size, nodes.len()..full), nodes);
        if let Some(cpu) = &mut self.cpu {
            cpu.store(prefix.block_runs(block_size, 0..full));
        }
        dropped
    }

    /// Drops request `id`'s references (it finished or was preempted); returns how many
    /// cached blocks it referenced and how many of them became unreferenced.
    pub fn release(&mut self, id: ReqId) -> (u64, u64) {
        match self.held.get_mut(&id) {
            Some(nodes) => (nodes.len() as u64, self.cache.release(nodes)),
            None => (0, 0),
        }
    }

    /// Drops preempted request `id`'s references now, while its policy forms the batch
    /// (its own blocks are freed when the batch starts); returns how many of the blocks
    /// other requests still reference, which stay in use.
    pub fn drop_refs(&mut self, id: ReqId) -> u64 {
        let (cached, unreferenced) = self.release(id);
        self.kept += cached - unreferenced;
        cached - unreferenced
    }

    /// Request `id`, `req`, has completed with `full` full `block_size`-token KV blocks, if
    /// they are to be kept: the ones past those it references in the cache (its generated
    /// tokens', and its prompt's when it has no prefix identity) stay cached, unmatched
    /// and evicted before its prompt's, as vLLM frees a finished request's blocks last
    /// first into its free-block queue ([`PrefixCache::retire`]); the CPU tier, if any,
    /// takes copies of them too. Returns what [`GpuCache::release`] returns; the engine
    /// frees the request's blocks as usual, the retired ones becoming evictable.
    pub fn finish(
        &mut self,
        id: ReqId,
        req: &Request,
        block_size: u32,
        full: Option<u64>,
    ) -> (u64, u64) {
        if let Some(full) = full {
            let referenced = self.held.get(&id).map_or(0, |n| n.len() as u64);
            self.cache.retire(full - referenced);
            if let Some(cpu) = &mut self.cpu {
                // Its other blocks were written as they were computed, its prompt's head
                // touched last.
                cpu.blocks.retire(full - referenced);
                if let Some(prefix) = &req.prefix {
                    let prompt = (req.prompt / block_size) as usize;
                    cpu.blocks
                        .touch(prefix.block_runs(block_size, 0..prompt), &mut cpu.scratch);
                }
                cpu.fit();
            }
        }
        let released = self.release(id);
        self.held.remove(&id);
        released
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
        let a = prefix(&[1, 2, 3], 512)
            .block_keys(16, 96)
            .collect::<Vec<_>>();
        let b = prefix(&[1, 2, 9], 512)
            .block_keys(16, 96)
            .collect::<Vec<_>>();
        assert_eq!(a[..64], b[..64]);
        assert!(a[64..].iter().zip(&b[64..]).all(|(x, y)| x != y));
        // A KV block straddling two chunks takes the later chunk's id.
        let c = prefix(&[1, 2], 24).block_keys(16, 3).collect::<Vec<_>>();
        let d = prefix(&[1, 5], 24).block_keys(16, 3).collect::<Vec<_>>();
        assert_eq!(c[0], d[0]);
        assert_ne!(c[1], d[1]);
        // Every key distinct along one prompt (positions differ).
        let mut all = a.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 96);
        // A page per 512-token chunk, 32 blocks each; 24-token chunks over 16-token blocks
        // give pages of one or two blocks.
        assert!(a.iter().enumerate().all(|(j, k)| k.offset == j as u32 % 32
            && k.len == 32
            && k.page == a[j / 32 * 32].page));
        assert_eq!(
            c.iter().map(|k| (k.offset, k.len)).collect::<Vec<_>>(),
            [(0, 2), (0, 2), (1, 2)]
        );
    }

    /// Runs of one-block pages, as a router keys whole chunks.
    fn keys(pages: &[u64]) -> impl Iterator<Item = BlockRun> + '_ {
        pages.iter().map(|&page| BlockRun {
            key: BlockKey {
                page,
                offset: 0,
                len: 1,
            },
            count: 1,
        })
    }

    /// Each block's key computed on its own, as the format defines it: the chain of the
    /// pages before, and the block's position in its page.
    fn key_of(p: &Prefix, b: u64, j: u64) -> BlockKey {
        let t = u64::from(p.block_tokens);
        let (mut page, mut chunk, mut first) = (0, u64::MAX, 0);
        for i in 0..=j {
            let last = i * b + b - 1;
            if last / t != chunk {
                chunk = last / t;
                page = mix(page ^ mix(p.ids[chunk as usize]).wrapping_add(last % t));
                first = i;
            }
        }
        BlockKey {
            page,
            offset: (j - first) as u32,
            len: p.block_tokens.div_ceil(b as u32),
        }
    }

    #[test]
    fn runs_cover_a_range_of_blocks_page_by_page() {
        for (t, b) in [(512, 16), (24, 16), (7, 16), (16, 16), (50, 3)] {
            let ids: Vec<u64> = (0..200).map(|i| i * 7 + 3).collect();
            let p = prefix(&ids, t);
            let n = (200 * t / b) as usize;
            for (from, to) in [(0, n), (0, 1), (1, n), (5, 9), (n - 1, n), (3, 3), (31, 80)] {
                let runs: Vec<BlockRun> = p.block_runs(b, from..to).collect();
                let keys: Vec<BlockKey> = runs.iter().copied().flat_map(BlockRun::keys).collect();
                let want: Vec<BlockKey> =
                    (from..to).map(|j| key_of(&p, b.into(), j as u64)).collect();
                assert_eq!(keys, want, "t {t}, b {b}, {from}..{to}");
                // One run per page: consecutive runs are different pages.
                assert!(runs.windows(2).all(|w| w[0].key.page != w[1].key.page));
                assert!(
                    runs.iter()
                        .all(|r| r.count > 0 && r.key.offset + r.count <= r.key.len)
                );
            }
        }
    }

    #[test]
    fn a_page_leaves_when_its_last_block_is_evicted() {
        let mut c = PrefixCache::default();
        let k = prefix(&[1, 2], 64).block_runs(16, 0..8).collect::<Vec<_>>();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.insert(k.iter().copied(), &mut a);
        assert_eq!((c.len(), c.index.len(), c.nodes.len()), (8, 2, 8));
        c.release(&mut a);
        // Released last first: blocks 7, 6, 5, 4 (the second page) go first.
        c.evict(3);
        assert_eq!(c.matched(k.iter().copied()), 5);
        assert_eq!(c.index.len(), 2);
        c.evict(1);
        assert_eq!((c.matched(k.iter().copied()), c.index.len()), (4, 1));
        // A new page takes the emptied one's nodes.
        let other = prefix(&[1, 3], 64).block_runs(16, 0..8).collect::<Vec<_>>();
        c.insert(other.iter().copied(), &mut b);
        assert_eq!(
            (
                c.matched(other.iter().copied()),
                c.index.len(),
                c.nodes.len()
            ),
            (8, 2, 8)
        );
        assert_eq!(c.referenced(), 8);
    }

    #[test]
    fn referenced_blocks_survive_and_free_ones_go_lru() {
        let mut c = PrefixCache::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(c.insert(keys(&[1, 2, 3]), &mut a), 0);
        assert_eq!(c.acquire(keys(&[1, 2, 7]), &mut b), 0);
        assert_eq!(b.len(), 2);
        // Released by the first owner: block 3 becomes free; 1 and 2 still referenced.
        assert_eq!(c.release(&mut a), 1);
        assert_eq!((c.referenced(), c.evictable()), (2, 1));
        assert_eq!(c.release(&mut b), 2);
        // Released last first: 3 (oldest), then 2, then 1.
        c.evict(2);
        assert_eq!(c.stats.evictions, 2);
        assert_eq!(c.acquire(keys(&[1, 2]), &mut a), 1);
        assert_eq!(a.len(), 1);
        // Only what is unreferenced can go.
        c.evict(5);
        assert_eq!(
            (c.referenced(), c.evictable(), c.stats.evictions),
            (1, 0, 2)
        );
        assert_eq!(c.acquire(keys(&[]), &mut b), 0);
        assert!(b.is_empty());
        // An evicted slot is reused by the next new block.
        c.insert(keys(&[8]), &mut b);
        assert_eq!(c.nodes.len(), 3);
    }

    #[test]
    fn retired_blocks_take_room_match_nothing_and_go_first() {
        let mut c = PrefixCache::default();
        let mut a = Vec::new();
        c.insert(keys(&[1, 2]), &mut a);
        c.retire(3);
        assert_eq!((c.len(), c.referenced(), c.evictable()), (5, 2, 3));
        assert_eq!(c.index.len(), 2);
        c.release(&mut a);
        // Retired before the prompt was released: they go first, the index untouched.
        c.evict(3);
        assert_eq!((c.len(), c.index.len()), (2, 2));
        assert_eq!(c.matched(keys(&[1, 2])), 2);
        // Their one-block pages are reused, and the next eviction is the prompt's tail.
        c.retire(2);
        assert_eq!(c.nodes.len(), 5);
        c.evict(1);
        assert_eq!((c.matched(keys(&[1, 2])), c.index.len()), (1, 1));
        c.evict(1);
        assert_eq!((c.len(), c.evictable(), c.index.len()), (2, 2, 0));
        // An indexed page reuses an evicted retired block's page.
        c.insert(keys(&[7]), &mut a);
        assert_eq!((c.nodes.len(), c.matched(keys(&[7]))), (5, 1));
    }

    /// The CPU tier writes through and evicts least recently used first, a stored or
    /// touched request's head most recent; keys already held are refreshed, not copied.
    #[test]
    fn the_cpu_tier_evicts_least_recently_used_first() {
        let mut t = CpuTier {
            blocks: PrefixCache::default(),
            capacity: 4,
            scratch: Vec::new(),
        };
        let held = |t: &CpuTier, k: u64| t.blocks.matched(keys(&[k])) == 1;
        let contents = |t: &CpuTier| (1..=9).filter(|&k| held(t, k)).collect::<Vec<_>>();
        // Stored [3 2 1], then 4: [3 2 1 4]; 5 evicts 3, the request's tail.
        t.store(keys(&[1, 2, 3]));
        t.store(keys(&[4]));
        t.store(keys(&[5]));
        assert_eq!(contents(&t), [1, 2, 4, 5]);
        assert_eq!(t.blocks.stats.evictions, 1);
        // Touching 1 and 2 ([4 5 2 1]) keeps them past 6 and 7, which evict 4 and 5:
        // [2 1 6 7].
        t.blocks.touch(keys(&[1, 2, 8]), &mut t.scratch);
        t.store(keys(&[6]));
        t.store(keys(&[7]));
        assert_eq!(contents(&t), [1, 2, 6, 7]);
        // Storing a held key refreshes it: [2 1 6 7] -> store 6 -> [2 1 7 6]; 9 evicts 2.
        t.store(keys(&[6]));
        assert_eq!(t.blocks.len(), 4);
        t.store(keys(&[9]));
        assert_eq!(contents(&t), [1, 6, 7, 9]);
        // Unmatched blocks take room like any other: 1, 7 and 6 go.
        t.blocks.retire(3);
        t.fit();
        assert_eq!((contents(&t), t.blocks.stats.evictions), (vec![9], 7));
    }

    #[test]
    fn inserting_a_cached_key_references_it_once_more() {
        let mut c = PrefixCache::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.insert(keys(&[4, 5]), &mut a);
        let mut five = vec![a.pop().unwrap()];
        c.release(&mut five);
        // 4 is referenced (copy dropped), 5 was free (revived in the copy's place).
        assert_eq!(c.insert(keys(&[4, 5]), &mut b), 1);
        assert_eq!((c.referenced(), c.evictable()), (2, 0));
        assert_eq!(c.release(&mut b), 1);
        assert_eq!(c.release(&mut a), 1);
        assert_eq!((c.referenced(), c.evictable()), (0, 2));
    }
}
