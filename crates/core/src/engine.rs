//! The discrete-event engine: one clock, `N` GPUs, a router in front.
//!
//! Events are arrivals (read in order from the workload) and batch completions (one per
//! busy GPU, in a min-heap ordered by time, then GPU index). The clock only jumps from event
//! to event. An arrival at the same instant as a completion is admitted first, so it can
//! join the batch formed at that instant. The engine does all token accounting; schedulers
//! only choose batches.
//!
//! Each GPU has a KV cache of [`KvConfig`] blocks. The engine counts the blocks its
//! unfinished requests hold (`ceil(context / block_size)` each), reserving a batch's growth
//! when it starts and freeing a request's blocks when it finishes or is preempted. A
//! scheduler preempts by recompute through [`Batch::preempt`]: before the batch runs, the
//! engine drops the request's cache and sets its progress so that its next prefill
//! rebuilds the prompt and the tokens it generated, without emitting them again, and emits
//! the next token in that same step, as vLLM's recompute does. A
//! scheduler that preempts by swapping ([`Batch::swap_out`], [`Batch::swap_in`]) moves a
//! request's cache to host memory and back instead: its blocks are freed and re-occupied,
//! its progress is kept, and each transfer's time over the policy's [`SwapLink`] is added
//! to the duration of the batch formed with it, after the cost model's iteration time.
//!
//! Under disaggregated serving ([`SchedulerSpec::Disagg`]) the router spreads arrivals over
//! the prefill GPUs only; a request whose prompt is done is handed to the decode GPU with
//! the fewest outstanding requests, which pulls its cache with [`Batch::fetch`]. A KV
//! transfer is a third kind of event: each prefill GPU's link sends one cache at a time
//! (bandwidth), and each transfer adds the link latency. The cache occupies both GPUs
//! while it moves.
//!
//! With a CPU tier of the prefix cache ([`EngineConfig::cpu_kv`]), a load from it is a
//! fourth kind of event: an arriving request whose GPU hit the tier extends waits, off
//! its policy's queue, while those blocks cross its GPU's host link (one load at a time
//! per GPU), then joins the queue with them cached on the GPU.
//!
//! A request may carry the next turn of its conversation ([`Request::next`]): when it
//! completes, the engine releases that turn to arrive its think time later, into a queue
//! of released turns that is merged with the workload's arrivals in time order (the
//! workload's first on ties, then released turns in release order). The turn is routed
//! like any arrival. Requests are numbered in order of arrival, so with released turns
//! the numbering (and the warm-up, and the records) follows the simulated arrivals, not
//! the workload's order.
//!
//! Memory does not grow with the length of a run: requests are read from an iterator as
//! they arrive, only those in flight are kept (from the oldest unfinished to the newest),
//! and latencies go to fixed-size [`StreamingDist`]s as requests finish. Per-request
//! records are kept only when asked for ([`simulate_records`], [`simulate_observed`]).

use std::borrow::Borrow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as Atomic};

use crate::cost::{BatchShape, CostModel};
use crate::kv::KvConfig;
use crate::prefix::{CacheStats, CpuKv, GpuCache};
use crate::request::NextTurn;
use crate::rng::{SimRng, Source, stream};
use crate::router::{GpuLoad, Router, RouterSpec};
use crate::scheduler::{
    Batch, DisaggSpec, Phase, Progress, ReqId, Scheduler, SchedulerSpec, SwapLink, View,
};
use crate::stats::StreamingDist;
use crate::workload::Request;

/// What to simulate: the policies and hardware, independent of the workload.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The policy each GPU runs.
    pub scheduler: SchedulerSpec,
    /// Iteration cost model, shared by all GPUs.
    pub cost: Arc<dyn CostModel>,
    /// Number of identical GPUs (at least 1).
    pub gpus: usize,
    /// How requests are spread over the GPUs.
    pub router: RouterSpec,
    /// Each GPU's KV cache.
    pub kv: KvConfig,
    /// Whether each GPU keeps the full KV blocks of finished prefills for later requests
    /// with the same prefix ([`crate::prefix`]); checked by [`crate::limits::prefix_cache`].
    pub prefix_cache: bool,
    /// A CPU-side tier of each GPU's prefix cache ([`crate::prefix`]), when on; needs the
    /// prefix cache ([`crate::limits::prefix_cache`]).
    pub cpu_kv: Option<CpuKv>,
}

/// Per-request timestamps (seconds); `NaN` where the event never happened.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord {
    /// When it arrived: the workload's time, or for a conversation's later turn, its
    /// predecessor's completion plus the think time.
    pub arrival: f64,
    /// Its prompt `L` (tokens).
    pub prompt: u32,
    /// Its decode budget `B` (tokens).
    pub decode: u32,
    /// First time the request was in a running batch.
    pub start: f64,
    /// When its first token was emitted (end of its prefill).
    pub first_token: f64,
    /// When its last token was emitted.
    pub completion: f64,
    /// The GPU that served it.
    pub gpu: u32,
}

/// The measurement window: from the arrival of the first measured request to the last
/// arrival, so neither the warm-up nor the drain after arrivals stop is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Requests with a smaller index are warm-up, simulated but not measured.
    pub first_measured: usize,
    /// Window start (seconds).
    pub start: f64,
    /// Window end (seconds).
    pub end: f64,
}

impl Window {
    /// Window length (seconds).
    pub fn len(&self) -> f64 {
        self.end - self.start
    }

    /// True when the window has no length.
    pub fn is_empty(&self) -> bool {
        self.len() <= 0.0
    }

    /// How much of `[from, to]` lies inside the window (seconds).
    pub fn overlap(&self, from: f64, to: f64) -> f64 {
        (to.min(self.end) - from.max(self.start)).max(0.0)
    }

    fn contains(&self, t: f64) -> bool {
        t >= self.start && t <= self.end
    }
}

/// One GPU's activity.
#[derive(Debug, Clone, Default)]
pub struct GpuStats {
    /// Total time spent running batches (seconds).
    pub busy: f64,
    /// Time spent running batches inside the measurement window (seconds).
    pub busy_in_window: f64,
    /// Requests routed to this GPU.
    pub requests: u64,
    /// Batches run.
    pub batches: u64,
    /// KV blocks in use integrated over the measurement window (block-seconds); KV use is
    /// counted only for a finite cache (0 here and below otherwise).
    pub kv_block_seconds: f64,
    /// Most KV blocks in use at once over the whole run (blocks).
    pub kv_peak_blocks: u64,
    /// Preemptions by recompute.
    pub preemptions: u64,
    /// Tokens whose KV cache preemptions dropped, each processed again unless found in the
    /// prefix cache when the request is admitted again (tokens;
    /// [`CacheStats::preempted_hit_tokens`]).
    pub recomputed_tokens: u64,
    /// Preemptions by swapping: KV caches moved to host memory.
    pub swaps_out: u64,
    /// KV caches moved back from host memory.
    pub swaps_in: u64,
    /// Bytes moved over the swap link, both directions (bytes).
    pub swap_bytes: f64,
    /// Time batches spent waiting on swaps, included in `busy` (seconds).
    pub swap_seconds: f64,
    /// Prefix-cache counters (all 0 with the cache off).
    pub prefix: CacheStats,
    /// Blocks held by the prefix cache, referenced or not, integrated over the measurement
    /// window (block-seconds); their share of `kv_block_seconds`' capacity is the cache's
    /// share of KV memory.
    pub cache_block_seconds: f64,
}

/// Totals over the batches of one kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct KindStats {
    /// Batches run.
    pub batches: u64,
    /// Tokens processed, summed over batches.
    pub tokens: u64,
    /// Entries (requests or chunks), summed over batches.
    pub entries: u64,
}

/// Which entries a batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Only prefill entries.
    Prefill = 0,
    /// Only decode entries.
    Decode = 1,
    /// Both.
    Mixed = 2,
}

/// The number in system at both ends of the measurement window, for the stability verdict
/// ([`metrics::growth_detected`](crate::metrics::growth_detected)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Growth {
    /// Requests arriving inside the window (all but the warm-up).
    pub arrivals: u64,
    /// Requests arrived and not complete at the window's start.
    pub at_start: u64,
    /// Requests arrived and not complete at the window's end.
    pub at_end: u64,
}

impl Growth {
    /// Whether the number in system grew over the window by more than a stable queue
    /// plausibly could: by over 2% of the window's arrivals and over 4 standard deviations
    /// of a critically loaded random walk (`4 sqrt(n)`). A stable queue's length is
    /// stationary, so its growth stays O(1) however long the run; an overloaded one grows
    /// linearly.
    pub fn detected(&self) -> bool {
        let arrivals = self.arrivals as f64;
        let growth = self.at_end as f64 - self.at_start as f64;
        growth > (0.02 * arrivals).max(4.0 * arrivals.sqrt())
    }
}

/// Everything one simulation produced.
#[derive(Debug, Clone)]
pub struct SimOutput {
    /// Per-request timestamps, indexed like the workload; empty unless asked for
    /// ([`simulate_records`], [`simulate_observed`]).
    pub records: Vec<RequestRecord>,
    /// The measurement window.
    pub window: Window,
    /// Time to first token of the measured requests that got one (seconds).
    pub ttft: StreamingDist,
    /// Mean time between tokens of the measured requests that completed with `B >= 1`
    /// (seconds).
    pub tbt: StreamingDist,
    /// End-to-end latency of the measured requests that completed (seconds).
    pub e2e: StreamingDist,
    /// Every inter-token gap of the measured requests (seconds).
    pub itl: StreamingDist,
    /// Completions (warm-up included) inside the window.
    pub completions_in_window: u64,
    /// Requests in the system integrated over the window (request-seconds).
    pub in_system_seconds: f64,
    /// Requests waiting for their first batch integrated over the window (request-seconds).
    pub in_queue_seconds: f64,
    /// The number in system at both ends of the window.
    pub growth: Growth,
    /// Most requests in flight at once: the engine's per-request memory (requests).
    pub peak_in_flight: usize,
    /// Per-GPU activity.
    pub gpus: Vec<GpuStats>,
    /// Batch totals by [`BatchKind`].
    pub kinds: [KindStats; 3],
    /// Tokens emitted inside the window.
    pub tokens_in_window: u64,
    /// Time of the last event (seconds).
    pub end_time: f64,
    /// Each GPU's KV cache.
    pub kv: KvConfig,
    /// Whether the GPUs kept a prefix cache ([`EngineConfig::prefix_cache`]).
    pub prefix_cache: bool,
    /// Their CPU tier, if any ([`EngineConfig::cpu_kv`]).
    pub cpu_kv: Option<CpuKv>,
    /// The run gave up when it broke a limit of its [`StopRule`]: its statistics cover
    /// only the run so far.
    pub stopped: bool,
}

/// An event due at `time` (seconds): a GPU's batch completion (`Due<usize>`, the GPU) or a
/// KV transfer (`Due<Transfer>`). Ordered so that std's max-heap pops the earliest first,
/// ties going to the smaller `what` (lowest GPU, lowest request).
#[derive(PartialEq)]
struct Due<T> {
    time: f64,
    what: T,
}

impl<T: Eq> Eq for Due<T> {}

impl<T: Ord> Ord for Due<T> {
    // Reversed: std's heap is a max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .total_cmp(&self.time)
            .then(other.what.cmp(&self.what))
    }
}

impl<T: Ord> PartialOrd for Due<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A conversation's turn released by its predecessor's completion, waiting to arrive;
/// ordered by release (`Due` orders by time first).
struct Released {
    seq: u64,
    request: Request,
}

impl PartialEq for Released {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}

impl Eq for Released {}

impl Ord for Released {
    fn cmp(&self, other: &Self) -> Ordering {
        self.seq.cmp(&other.seq)
    }
}

impl PartialOrd for Released {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A load of request `id`'s blocks `first..first + count` of its prompt from GPU `gpu`'s
/// CPU tier; ordered by request first (a request loads at most once).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct HostLoad {
    id: ReqId,
    gpu: usize,
    first: usize,
    count: usize,
}

/// A KV cache transfer between GPUs; ordered by request first (one transfer per request
/// is ever in flight).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Transfer {
    id: ReqId,
    from: usize,
    to: usize,
}

struct Gpu {
    sched: Box<dyn Scheduler>,
    rng: SimRng,
    /// The GPU's batch, lent out while an event handler forms or finishes it. Boxed so that
    /// lending it moves a pointer, not the whole struct with its five lists.
    batch: Option<Box<Batch>>,
    busy: bool,
    /// When the running batch started and ends (seconds); its time inside the window is
    /// counted when it ends, once the window's end is known.
    running: (f64, f64),
    stats: GpuStats,
    /// KV blocks held by this GPU's unfinished requests: their own, and the cached blocks
    /// they reference, each counted once. Cached blocks no request references are free
    /// for allocation and counted by the prefix cache.
    kv_used: u64,
    /// Time of the last change of `kv_used` (seconds).
    kv_since: f64,
    /// The prefix cache, when on; in a `RefCell` because the policy's [`View`] admits
    /// requests into it while it forms a batch ([`View::reuse_cached`]), and boxed so
    /// that lending it to the view copies a pointer, with no check on the no-cache path.
    prefix: Option<Box<RefCell<GpuCache>>>,
    /// Inter-token gaps of this GPU's requests (seconds). Kept per GPU, so that the order
    /// in which GPUs' batches are accounted never changes the floating-point sum: a GPU
    /// may run its steady decodes ahead of others' events ([`Engine::decode_steady`]).
    itl: StreamingDist,
}

impl Gpu {
    /// Evicts the least recently used unreferenced cached blocks that a batch's new blocks
    /// need, in-use plus cached blocks kept within `capacity` (blocks); returns the
    /// unreferenced blocks left cached (0 without a prefix cache).
    fn make_room(&mut self, capacity: u64) -> u64 {
        match self.prefix.as_deref_mut().map(RefCell::get_mut) {
            Some(px) => {
                let occupied = self.kv_used + px.cache.evictable();
                px.cache.evict(occupied.saturating_sub(capacity));
                px.cache.evictable()
            }
            None => 0,
        }
    }

    /// Accounts this GPU's KV use (and its prefix cache's) inside `window` up to `now`,
    /// before it changes.
    fn kv_to(&mut self, window: &Window, now: f64) {
        let inside = window.overlap(self.kv_since, now);
        self.stats.kv_block_seconds += self.kv_used as f64 * inside;
        if let Some(px) = self.prefix.as_deref_mut().map(RefCell::get_mut) {
            let cached = px.cache.referenced() + px.cache.evictable();
            self.stats.cache_block_seconds += cached as f64 * inside;
        }
        self.kv_since = now;
    }
}

/// One batch as it was scheduled, for observers (tests, traces).
#[derive(Debug)]
pub struct BatchEvent<'a> {
    /// The GPU that ran it.
    pub gpu: usize,
    /// Start time (seconds).
    pub start: f64,
    /// Completion time (seconds).
    pub end: f64,
    /// Its entries, shape and preemptions.
    pub batch: &'a Batch,
    /// KV blocks in use on the GPU while the batch runs, its growth included (blocks; 0
    /// for an unlimited cache, which is not counted).
    pub kv_used: u64,
    /// Cached blocks no request references, which also occupy the KV cache until evicted
    /// (blocks; 0 without a prefix cache).
    pub kv_evictable: u64,
}

/// One request in flight: its size, progress and timestamps (seconds, `NaN` until they
/// happen).
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub request: Request,
    pub progress: Progress,
    start: f64,
    first_token: f64,
    gpu: u32,
    done: bool,
}

/// The requests in flight, by id: a ring buffer from the oldest unfinished request to the
/// newest arrival, so that memory follows the number in flight, not the length of the run.
/// Its length is a power of two and request `id` lives at `id mod length`, so a lookup is
/// one mask.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// The oldest request not yet retired.
    first: ReqId,
    /// The id the next arrival gets.
    end: ReqId,
    slots: Vec<Slot>,
}

impl InFlight {
    /// Request `id`, which must be in flight.
    #[inline]
    pub fn get(&self, id: ReqId) -> &Slot {
        debug_assert!(
            self.first <= id && id < self.end,
            "request {id} is not in flight"
        );
        &self.slots[id as usize & (self.slots.len() - 1)]
    }

    fn get_mut(&mut self, id: ReqId) -> &mut Slot {
        debug_assert!(
            self.first <= id && id < self.end,
            "request {id} is not in flight"
        );
        let mask = self.slots.len() - 1;
        &mut self.slots[id as usize & mask]
    }

    /// Requests held.
    fn len(&self) -> usize {
        (self.end - self.first) as usize
    }

    /// Adds the next arrival; returns its id.
    fn push(&mut self, request: Request) -> ReqId {
        let slot = Slot {
            request,
            progress: Progress::default(),
            start: f64::NAN,
            first_token: f64::NAN,
            gpu: u32::MAX,
            done: false,
        };
        if self.len() == self.slots.len() {
            // Full: double, moving each request to its place in the longer ring.
            let mut slots = vec![slot.clone(); (2 * self.slots.len()).max(64)];
            let mask = slots.len() - 1;
            for id in self.first..self.end {
                slots[id as usize & mask] = self.get(id).clone();
            }
            self.slots = slots;
        }
        let id = self.end;
        self.end += 1;
        *self.get_mut(id) = slot;
        id
    }

    /// Forgets the finished requests at the front: no scheduler refers to them any more.
    fn retire(&mut self) {
        while self.first < self.end && self.get(self.first).done {
            self.first += 1;
        }
    }

    /// The unfinished requests with their ids, oldest first.
    fn unfinished(&self) -> impl Iterator<Item = (ReqId, &Slot)> {
        (self.first..self.end)
            .map(|id| (id, self.get(id)))
            .filter(|(_, s)| !s.done)
    }
}

/// Running sums behind the summary's time averages and stability verdict.
#[derive(Debug, Default)]
struct Counts {
    /// Requests arrived and not complete.
    in_system: u64,
    /// Requests arrived and not yet in a batch.
    in_queue: u64,
    /// Time of the last change of either (seconds).
    since: f64,
    /// `in_system` and `in_queue` integrated over the window so far (request-seconds).
    system_seconds: f64,
    queue_seconds: f64,
    /// Requests arrived so far.
    arrived: u64,
    /// Arrivals and completions up to the window's start (inclusive), and completions up to
    /// its end: the window's bounds are infinite until known, and every event before a
    /// bound is known lies before it.
    arrived_by_start: u64,
    completed_by_start: u64,
    completed_by_end: u64,
    completions_in_window: u64,
}

struct Engine<'a> {
    /// Requests not yet read, in arrival order.
    source: &'a mut dyn Iterator<Item = Request>,
    /// The next arrival, read ahead.
    next: Option<Request>,
    /// Conversations' turns released by completions, not yet arrived.
    released: BinaryHeap<Due<Released>>,
    /// Turns released so far (their release order).
    releases: u64,
    /// Requests in flight that carry a next turn: until they complete, the last arrival
    /// is not known.
    carrying: u64,
    /// Called with every batch as it starts; `None` when nobody watches, which lets steady
    /// decodes run in a tight loop ([`Engine::decode_steady`]).
    observer: Option<&'a mut dyn FnMut(&BatchEvent)>,
    cost: &'a dyn CostModel,
    kv: KvConfig,
    /// Whether KV blocks are counted: only for a finite cache or a prefix cache, since an
    /// unlimited one constrains nothing and counting costs time on every batch entry.
    kv_tracked: bool,
    /// Whether steady decodes may run in a tight loop ([`Engine::decode_steady`]): nobody
    /// watches the batches.
    steady: bool,
    live: InFlight,
    peak_in_flight: usize,
    /// Per-request records, when asked for.
    records: Option<Vec<RequestRecord>>,
    gpus: Vec<Gpu>,
    loads: Vec<GpuLoad>,
    router: Box<dyn Router>,
    /// Whether the router holds requests in a shared queue ([`Router::held`]).
    router_holds: bool,
    /// GPUs `0..held_gpus` may take held requests: those that receive arrivals, when the
    /// router holds requests; none otherwise.
    held_gpus: usize,
    idle: BTreeSet<usize>,
    heap: BinaryHeap<Due<usize>>,
    /// GPUs `0..route_gpus` receive arrivals (the prefill pool under disaggregation).
    route_gpus: usize,
    disagg: Option<DisaggSpec>,
    /// The host link of a policy that preempts by swapping.
    swap: Option<SwapLink>,
    transfers: BinaryHeap<Due<Transfer>>,
    /// When each GPU's outgoing KV link is next free (seconds).
    link_free: Vec<f64>,
    /// The host link of the GPUs' CPU tier, when on.
    cpu_link: Option<SwapLink>,
    /// Loads from the CPU tier under way.
    host_loads: BinaryHeap<Due<HostLoad>>,
    /// When each GPU's host link is next free for a load (seconds).
    host_free: Vec<f64>,
    /// The measurement window; its bounds are infinite until the requests that set them
    /// are read.
    window: Window,
    counts: Counts,
    ttft: StreamingDist,
    tbt: StreamingDist,
    e2e: StreamingDist,
    kinds: [KindStats; 3],
    tokens_in_window: u64,
    /// Completions of the batch being finished, handled once its entries are accounted.
    finished: Vec<ReqId>,
    /// Requests of the batch being finished that go on to a decode GPU (disaggregation).
    handed: Vec<ReqId>,
    /// The requests [`Engine::decode_steady`] runs, copied from the policy so that the GPU
    /// can be borrowed beside them.
    steady_ids: Vec<ReqId>,
    /// [`Engine::decode_steady`]'s requests counted by context modulo the block size.
    residues: Vec<u32>,
    /// The limits the run stops at, with their counts.
    watch: Option<Watch<'a>>,
    /// A limit was broken, or the growth probe found growth: the run ends before its
    /// next event.
    stopped: bool,
    /// The growth probe's request count, until it is judged ([`Mode::probe`]).
    probe: Option<u64>,
    /// The last arrival of the probe's requests (seconds; infinite until it comes).
    probe_end: f64,
    /// Whether inter-token gaps are recorded ([`Mode::skip_itl`]).
    itl: bool,
}

/// What a run keeps and when it stops.
#[derive(Clone, Copy, Default)]
pub struct Mode<'a> {
    /// Keep every request's [`RequestRecord`] (memory grows with the run).
    pub records: bool,
    /// Stop at the last arrival instead of serving every request (see
    /// [`simulate_to_last_arrival`]).
    pub stop_at_last_arrival: bool,
    /// Give up soon after this flag is set (see [`simulate_with`]).
    pub cancel: Option<&'a AtomicBool>,
    /// Stop as soon as the measured latencies break one of these limits
    /// ([`SimOutput::stopped`]).
    pub stop: Option<&'a StopRule>,
    /// A growth probe on the first `n` requests: once every event up to the last of their
    /// arrivals is processed, judge the growth of the number in system as
    /// [`simulate_to_last_arrival`] of those requests alone, with the same warm-up, would
    /// ([`Growth::detected`]), and stop there ([`SimOutput::stopped`]) when it grew. Events
    /// up to that arrival do not depend on later requests, so the verdict is the separate
    /// run's, without simulating its part twice. Open-loop workloads only (a closed-loop
    /// conversation's later turns are not among the first requests read).
    pub probe: Option<usize>,
    /// Record no inter-token gaps: [`SimOutput::itl`] stays empty, everything else is the
    /// same. For callers that read no ITL statistic, since the gaps are a histogram update
    /// per decode step, a fifth of a lone request's decode loop.
    pub skip_itl: bool,
}

/// Latency limits a run gives up at, as soon as more of its measured values lie past a
/// limit than the limit allows: a percentile bound or an attainment goal known to fail
/// whatever the rest of the run does. Limits apply to measured requests only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StopRule {
    /// Limits on times to first token.
    pub ttft: Vec<Limit>,
    /// Limits on requests' mean times between tokens (TPOT).
    pub tbt: Vec<Limit>,
    /// Limits on end-to-end latencies.
    pub e2e: Vec<Limit>,
    /// Limit on the requests that miss a per-request bound.
    pub misses: Option<MissLimit>,
}

/// At most `allowed` values may lie past `above_s`: those above it that a distribution's
/// quantile would also report above it ([`StreamingDist::reports_above`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// The bound (seconds).
    pub above_s: f64,
    /// Values past the bound the run may record before it stops.
    pub allowed: u64,
}

/// At most `allowed` requests may miss one of their bounds: a TTFT above `ttft_s`, a mean
/// time between tokens above `tbt_s` (requests with `B >= 1`), an end-to-end latency above
/// `e2e_s` (seconds; infinite where none is bounded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MissLimit {
    /// TTFT bound (seconds).
    pub ttft_s: f64,
    /// Mean time between tokens bound (seconds).
    pub tbt_s: f64,
    /// End-to-end bound (seconds).
    pub e2e_s: f64,
    /// Requests that may miss before the run stops.
    pub allowed: u64,
}

/// A [`StopRule`] with its counts so far.
struct Watch<'a> {
    rule: &'a StopRule,
    ttft: Vec<u64>,
    tbt: Vec<u64>,
    e2e: Vec<u64>,
    misses: u64,
}

/// The earlier of two event times, if either is due (seconds).
fn earliest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Counts `x` against each of `limits` (recorded in `dist`); true when one is broken.
fn past(limits: &[Limit], counts: &mut [u64], dist: &StreamingDist, x: f64) -> bool {
    let mut broken = false;
    for (l, c) in limits.iter().zip(counts) {
        if dist.reports_above(x, l.above_s) {
            *c += 1;
            broken |= *c > l.allowed;
        }
    }
    broken
}

impl<'a> Watch<'a> {
    fn new(rule: &'a StopRule) -> Self {
        Watch {
            rule,
            ttft: vec![0; rule.ttft.len()],
            tbt: vec![0; rule.tbt.len()],
            e2e: vec![0; rule.e2e.len()],
            misses: 0,
        }
    }

    /// Counts one more request missing its bounds; true when too many have.
    fn miss(&mut self, m: &MissLimit) -> bool {
        self.misses += 1;
        self.misses > m.allowed
    }

    /// A measured request's first token, `ttft` seconds after its arrival; true when a
    /// limit is broken.
    fn first_token(&mut self, dist: &StreamingDist, ttft: f64) -> bool {
        let mut broken = past(&self.rule.ttft, &mut self.ttft, dist, ttft);
        if let Some(m) = self.rule.misses.filter(|m| ttft > m.ttft_s) {
            broken |= self.miss(&m);
        }
        broken
    }

    /// A measured request's completion: its TTFT, mean time between tokens (when it
    /// decoded) and end-to-end latency (seconds); true when a limit is broken.
    fn completed(
        &mut self,
        (tbt_dist, e2e_dist): (&StreamingDist, &StreamingDist),
        ttft: f64,
        tbt: Option<f64>,
        e2e: f64,
    ) -> bool {
        let mut broken = past(&self.rule.e2e, &mut self.e2e, e2e_dist, e2e);
        if let Some(t) = tbt {
            broken |= past(&self.rule.tbt, &mut self.tbt, tbt_dist, t);
        }
        // A request whose first token was late is already counted.
        if let Some(m) = self
            .rule
            .misses
            .filter(|m| ttft <= m.ttft_s && (e2e > m.e2e_s || tbt.is_some_and(|t| t > m.tbt_s)))
        {
            broken |= self.miss(&m);
        }
        broken
    }
}

/// A run to its end with streamed statistics only.
const STREAM: Mode = Mode {
    records: false,
    stop_at_last_arrival: false,
    cancel: None,
    stop: None,
    probe: None,
    skip_itl: false,
};

/// A run to its end that keeps per-request records.
const RECORDS: Mode = Mode {
    records: true,
    ..STREAM
};

/// Largest block size (tokens) for which [`Engine::decode_steady`] counts a KV cache's
/// growth by residue class; real engines use 16 to 128.
const STEADY_MAX_BLOCK: usize = 4096;

/// Events between two looks at a cancellation flag: often enough that a run stops within
/// about a millisecond, rarely enough that the atomic load costs nothing measurable.
const CANCEL_CHECK_EVENTS: u32 = 4096;

/// Simulates replication `rep` of `requests` (in arrival order) under `config`, measuring
/// all but the first `warmup` requests. Keeps no per-request records: memory is fixed by
/// the number of requests in flight, not by the length of the run.
pub fn simulate<R: Borrow<Request>>(
    requests: impl IntoIterator<Item = R>,
    config: &EngineConfig,
    seed: u64,
    rep: u32,
    warmup: usize,
) -> SimOutput {
    run_engine(requests, config, (seed, rep), warmup, STREAM, None)
}

/// [`simulate`], also keeping every request's [`RequestRecord`] (memory grows with the run).
pub fn simulate_records<R: Borrow<Request>>(
    requests: impl IntoIterator<Item = R>,
    config: &EngineConfig,
    seed: u64,
    rep: u32,
    warmup: usize,
) -> SimOutput {
    run_engine(requests, config, (seed, rep), warmup, RECORDS, None)
}

/// [`simulate_records`], calling `observer` with every batch as it starts.
pub fn simulate_observed<R: Borrow<Request>>(
    requests: impl IntoIterator<Item = R>,
    config: &EngineConfig,
    seed: u64,
    rep: u32,
    warmup: usize,
    observer: &mut dyn FnMut(&BatchEvent),
) -> SimOutput {
    run_engine(
        requests,
        config,
        (seed, rep),
        warmup,
        RECORDS,
        Some(observer),
    )
}

/// [`simulate`], but stopping at the last arrival instead of serving every request to its
/// end: for overloaded runs, whose backlog at that point would take long to drain and tells
/// nothing more (throughput, utilisation and the growth verdict are measured inside the
/// window, which ends there). Requests unfinished at the stop have no latencies.
pub fn simulate_to_last_arrival<R: Borrow<Request>>(
    requests: impl IntoIterator<Item = R>,
    config: &EngineConfig,
    seed: u64,
    rep: u32,
    warmup: usize,
) -> SimOutput {
    let mode = Mode {
        stop_at_last_arrival: true,
        ..STREAM
    };
    run_engine(requests, config, (seed, rep), warmup, mode, None)
}

/// Simulates replication `rep` as `mode` says; `None` when `mode.cancel` was set, which
/// front ends use to let a user interrupt a long run (Ctrl-C in Python). The flag is read
/// every few thousand events, so setting it from another thread stops the run within about
/// a millisecond of simulation work.
pub fn simulate_with<R: Borrow<Request>>(
    requests: impl IntoIterator<Item = R>,
    config: &EngineConfig,
    (seed, rep): (u64, u32),
    warmup: usize,
    mode: Mode,
) -> Option<SimOutput> {
    let out = run_engine(requests, config, (seed, rep), warmup, mode, None);
    let cancelled = mode.cancel.is_some_and(|c| c.load(Atomic::Relaxed));
    (!cancelled).then_some(out)
}

fn run_engine<R: Borrow<Request>>(
    requests: impl IntoIterator<Item = R>,
    config: &EngineConfig,
    (seed, rep): (u64, u32),
    warmup: usize,
    mode: Mode,
    observer: Option<&mut dyn FnMut(&BatchEvent)>,
) -> SimOutput {
    let disagg = match config.scheduler {
        SchedulerSpec::Disagg(d) => Some(d),
        _ => None,
    };
    let route_gpus = disagg.map_or(config.gpus, |d| d.prefill_gpus as usize);
    let gpus = (0..config.gpus)
        .map(|g| Gpu {
            sched: config.scheduler.build_for(g),
            rng: stream(seed, rep, Source::Service(g as u32)),
            batch: Some(Box::default()),
            busy: false,
            running: (0.0, 0.0),
            stats: GpuStats::default(),
            kv_used: 0,
            kv_since: 0.0,
            prefix: config
                .prefix_cache
                .then(|| Box::new(RefCell::new(GpuCache::new(config.cpu_kv.map(|c| c.blocks))))),
            itl: StreamingDist::default(),
        })
        .collect();
    let router = config
        .router
        .build(route_gpus, stream(seed, rep, Source::Router));
    let mut source = requests.into_iter().map(|r| r.borrow().clone());
    let steady = observer.is_none();
    let mut engine = Engine {
        source: &mut source,
        next: None,
        released: BinaryHeap::new(),
        releases: 0,
        carrying: 0,
        // Shortened to the engine's lifetime, as a plain reference would be.
        observer: observer.map(|o| -> &mut dyn FnMut(&BatchEvent) { o }),
        cost: config.cost.as_ref(),
        kv: config.kv,
        // The prefix cache's accounting needs the counts even in an unlimited cache.
        kv_tracked: config.kv.blocks.is_some() || config.prefix_cache,
        steady,
        live: InFlight::default(),
        peak_in_flight: 0,
        records: mode.records.then(Vec::new),
        gpus,
        loads: vec![GpuLoad::default(); config.gpus],
        router_holds: router.held().is_some(),
        held_gpus: if router.held().is_some() {
            route_gpus
        } else {
            0
        },
        router,
        idle: (0..config.gpus).collect(),
        heap: BinaryHeap::with_capacity(config.gpus),
        route_gpus,
        disagg,
        swap: config.scheduler.swap_link(),
        transfers: BinaryHeap::new(),
        link_free: vec![0.0; config.gpus],
        cpu_link: config.cpu_kv.map(|c| c.link),
        host_loads: BinaryHeap::new(),
        host_free: vec![0.0; config.gpus],
        window: Window {
            first_measured: warmup,
            start: f64::INFINITY,
            end: f64::INFINITY,
        },
        counts: Counts::default(),
        ttft: StreamingDist::default(),
        tbt: StreamingDist::default(),
        e2e: StreamingDist::default(),
        kinds: [KindStats::default(); 3],
        tokens_in_window: 0,
        finished: Vec::new(),
        handed: Vec::new(),
        steady_ids: Vec::new(),
        residues: Vec::new(),
        watch: mode.stop.map(Watch::new),
        stopped: false,
        probe: mode.probe.map(|n| n as u64),
        itl: !mode.skip_itl,
        probe_end: f64::INFINITY,
    };
    let end_time = engine.run(mode.stop_at_last_arrival, mode.cancel);
    engine.close(end_time);
    let c = &engine.counts;
    let growth = Growth {
        arrivals: c.arrived.saturating_sub(warmup as u64),
        at_start: c.arrived_by_start - c.completed_by_start,
        at_end: c.arrived - c.completed_by_end,
    };
    SimOutput {
        records: engine.records.unwrap_or_default(),
        window: engine.window,
        ttft: engine.ttft,
        tbt: engine.tbt,
        e2e: engine.e2e,
        itl: engine
            .gpus
            .iter()
            .fold(StreamingDist::default(), |mut all, g| {
                all.merge(&g.itl);
                all
            }),
        completions_in_window: c.completions_in_window,
        in_system_seconds: c.system_seconds,
        in_queue_seconds: c.queue_seconds,
        growth,
        peak_in_flight: engine.peak_in_flight,
        gpus: engine
            .gpus
            .into_iter()
            .map(|g| GpuStats {
                prefix: g
                    .prefix
                    .map_or_else(CacheStats::default, |px| px.into_inner().stats()),
                ..g.stats
            })
            .collect(),
        kinds: engine.kinds,
        tokens_in_window: engine.tokens_in_window,
        end_time,
        kv: config.kv,
        prefix_cache: config.prefix_cache,
        cpu_kv: config.cpu_kv,
        stopped: engine.stopped,
    }
}

/// A batch's inter-token gaps (seconds) not yet recorded: equal ones, consecutive in the
/// batch, go into the histogram in one update.
#[derive(Default)]
struct GapRun {
    gap: f64,
    count: u64,
}

impl GapRun {
    fn push(&mut self, gap: f64, itl: &mut StreamingDist) {
        if gap != self.gap {
            self.flush(itl);
            self.gap = gap;
        }
        self.count += 1;
    }

    fn flush(&mut self, itl: &mut StreamingDist) {
        itl.record_n(self.gap, self.count);
        self.count = 0;
    }
}

/// The shared queue of a GPU that cannot take held requests.
static NOTHING_HELD: VecDeque<ReqId> = VecDeque::new();

/// GPU `g`'s scheduler and its view of the engine, which borrows only the fields it reads
/// so that the scheduler can be borrowed mutably beside it.
macro_rules! view {
    ($engine:ident, $g:expr) => {{
        let gpu = &mut $engine.gpus[$g];
        let view = View {
            live: &$engine.live,
            kv: $engine.kv,
            kv_used: gpu.kv_used,
            held: if $g < $engine.held_gpus {
                $engine.router.held().expect("the router holds requests")
            } else {
                &NOTHING_HELD
            },
            finished: 0,
            cache: gpu.prefix.as_deref(),
        };
        (&mut gpu.sched, view)
    }};
}

impl Engine<'_> {
    /// Processes events until none is left, or, when `stop_at_last_arrival`, until the next
    /// one falls after the last arrival, or soon after `cancel` is set; returns the time of
    /// the last event.
    fn run(&mut self, stop_at_last_arrival: bool, cancel: Option<&AtomicBool>) -> f64 {
        self.read_next();
        self.end_arrivals(0.0);
        let mut now = 0.0;
        let mut until_check = CANCEL_CHECK_EVENTS;
        loop {
            if self.stopped {
                return now;
            }
            if let Some(flag) = cancel {
                until_check -= 1;
                if until_check == 0 {
                    if flag.load(Atomic::Relaxed) {
                        return now;
                    }
                    until_check = CANCEL_CHECK_EVENTS;
                }
            }
            let read = self.next.as_ref().map(|r| r.arrival);
            // Only closed-loop conversations release turns: an open-loop run skips the merge.
            let arrival = match self.released.peek() {
                None => read,
                Some(r) => Some(read.map_or(r.time, |a| a.min(r.time))),
            };
            let completion = self.heap.peek().map(|c| c.time);
            let kv_transfer = self.transfers.peek().map(|t| t.time);
            let host_load = self.host_loads.peek().map(|l| l.time);
            let transfer = earliest(kv_transfer, host_load);
            let batch_or_transfer = earliest(completion, transfer);
            if self.probe.is_some() {
                let next = match (arrival, batch_or_transfer) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b).unwrap_or(f64::INFINITY),
                };
                if next > self.probe_end {
                    self.judge_probe();
                    continue;
                }
            }
            if stop_at_last_arrival
                && arrival.is_none()
                && batch_or_transfer.is_some_and(|t| t > self.window.end)
            {
                return now;
            }
            match (arrival, completion) {
                (Some(a), _) if batch_or_transfer.is_none_or(|c| a <= c) => {
                    now = a;
                    if read == Some(a) {
                        let req = self.next.take().expect("peeked");
                        self.arrive(req, now);
                        self.read_next();
                    } else {
                        let Due { what, .. } = self.released.pop().expect("peeked");
                        self.arrive(what.request, now);
                    }
                    self.end_arrivals(now);
                }
                _ if transfer.is_some_and(|t| completion.is_none_or(|c| t <= c)) => {
                    if host_load.is_some_and(|h| kv_transfer.is_none_or(|k| h <= k)) {
                        let l = self.host_loads.pop().expect("peeked");
                        now = l.time;
                        self.host_load_done(l.what, now);
                    } else {
                        let t = self.transfers.pop().expect("peeked");
                        now = t.time;
                        self.transfer_done(t.what, now);
                    }
                }
                (_, Some(_)) => {
                    let Due { time, what: gpu } = self.heap.pop().expect("peeked");
                    self.finish_batch(gpu, time);
                    let (mut at, mut drawn) = (time, None);
                    // A run that has broken a limit ends here, as before the next event.
                    if self.steady && !self.stopped {
                        // Its batches may run on until anything else happens to it; with a
                        // stop at the last arrival, not past it, nor past a growth probe's
                        // end before it is judged. Finishing the batch may have released a
                        // turn or started another GPU, so look again. Other GPUs' batches
                        // touch nothing of this one's until an arrival, unless they can
                        // release turns or hand requests over: then they bound it too.
                        let arrival = self.next.as_ref().map(|r| r.arrival);
                        let released = self.released.peek().map(|r| r.time);
                        let coupled = self.carrying > 0 || self.disagg.is_some();
                        let other = self.heap.peek().map(|c| c.time).filter(|_| coupled);
                        let transfer = self.transfers.peek().map(|t| t.time);
                        let load = self.host_loads.peek().map(|l| l.time);
                        let horizon = [arrival, released, other, transfer, load]
                            .into_iter()
                            .flatten()
                            .fold(f64::INFINITY, f64::min);
                        let mut last = if stop_at_last_arrival && arrival.or(released).is_none() {
                            self.window.end
                        } else {
                            f64::INFINITY
                        };
                        if self.probe.is_some() {
                            last = last.min(self.probe_end);
                        }
                        (at, drawn) = self.decode_steady(gpu, time, horizon, last);
                    }
                    self.start_batch(gpu, at, drawn);
                    // GPUs that ran ahead make events come out of time order: the run
                    // ends at the latest.
                    now = now.max(at);
                }
                (None, None) => return now,
                (Some(_), None) => unreachable!("guard holds when there is no completion"),
            }
        }
    }

    /// Judges the growth probe, every event up to its last arrival processed: over the
    /// window from the first measured arrival to that one, the counts a run of the probe's
    /// requests alone would have at its end.
    #[inline(never)]
    fn judge_probe(&mut self) {
        let n = self.probe.take().expect("a probe under way");
        let c = &self.counts;
        let completed = c.arrived - c.in_system;
        let growth = Growth {
            arrivals: n.saturating_sub(self.window.first_measured as u64),
            at_start: c.arrived_by_start - c.completed_by_start,
            at_end: n - completed,
        };
        self.stopped |= growth.detected();
    }

    /// Reads the workload's next request.
    fn read_next(&mut self) {
        self.next = self.source.next();
    }

    /// Ends the window at `now`, the latest arrival, if no other can come: the workload is
    /// read to its end and no conversation has a turn to come.
    fn end_arrivals(&mut self, now: f64) {
        if self.next.is_none() && self.released.is_empty() && self.carrying == 0 {
            self.window.end = now;
            // Nothing was measured: an empty window.
            self.window.start = self.window.start.min(now);
        }
    }

    /// Integrates the number in system and in queue up to `now`, before either changes.
    fn count_to(&mut self, now: f64) {
        let c = &mut self.counts;
        let inside = self.window.overlap(c.since, now);
        c.system_seconds += c.in_system as f64 * inside;
        c.queue_seconds += c.in_queue as f64 * inside;
        c.since = now;
    }

    /// Accounts the end of the run at `end_time`: KV use, requests still in the system,
    /// batches cut short, and the records of unfinished requests.
    fn close(&mut self, end_time: f64) {
        for g in 0..self.gpus.len() {
            self.kv_change(g, end_time);
            let gpu = &mut self.gpus[g];
            if gpu.busy {
                let (from, to) = gpu.running;
                gpu.stats.busy_in_window += self.window.overlap(from, to);
            }
        }
        self.count_to(end_time);
        if let Some(records) = &mut self.records {
            for (id, s) in self.live.unfinished() {
                records[id as usize] = RequestRecord {
                    arrival: s.request.arrival,
                    prompt: s.request.prompt,
                    decode: s.request.decode,
                    start: s.start,
                    first_token: s.first_token,
                    completion: f64::NAN,
                    gpu: s.gpu,
                };
            }
        }
    }

    /// Request `req` arrives at `now`. The window starts at the first measured arrival.
    fn arrive(&mut self, mut req: Request, now: f64) {
        req.arrival = now;
        self.carrying += u64::from(req.next.is_some());
        if self.counts.arrived == self.window.first_measured as u64 {
            self.window.start = now;
        }
        let id = self.live.push(req);
        self.peak_in_flight = self.peak_in_flight.max(self.live.len());
        self.count_to(now);
        let c = &mut self.counts;
        c.arrived += 1;
        c.in_system += 1;
        c.in_queue += 1;
        if self.probe == Some(c.arrived) {
            self.probe_end = now;
        }
        if now <= self.window.start {
            c.arrived_by_start += 1;
        }
        if let Some(records) = &mut self.records {
            let r = &self.live.get(id).request;
            records.push(RequestRecord {
                arrival: now,
                prompt: r.prompt,
                decode: r.decode,
                start: f64::NAN,
                first_token: f64::NAN,
                completion: f64::NAN,
                gpu: u32::MAX,
            });
        }
        let req = &self.live.get(id).request;
        match self.router.route(id, req, &self.loads[..self.route_gpus]) {
            Some(g) if self.cpu_link.is_some() && self.load_from_cpu(g, id, now) => {
                self.assign(g, id);
            }
            Some(g) => {
                self.assign(g, id);
                self.offer(g, id, now);
            }
            // Idle GPUs in index order offer to take it; one whose policy cannot admit it
            // (its memory is held by caches still moving, under disaggregation) passes.
            None => {
                let mut from = 0;
                while let Some(&g) = self.idle.range(from..self.route_gpus).next() {
                    if self.router.held().is_none_or(VecDeque::is_empty) {
                        break;
                    }
                    self.idle.remove(&g);
                    self.start_batch(g, now, None);
                    from = g + 1;
                }
            }
        }
    }

    /// Blocks that hold `tokens` tokens; 0 when the cache is not tracked.
    fn blocks(&self, tokens: u64) -> u64 {
        if self.kv_tracked {
            self.kv.blocks_for(tokens)
        } else {
            0
        }
    }

    /// Accounts GPU `g`'s KV use up to `now`, before it changes.
    fn kv_change(&mut self, g: usize, now: f64) {
        if self.kv_tracked {
            self.gpus[g].kv_to(&self.window, now);
        }
    }

    /// Drops request `id`'s KV cache on GPU `g`. Its next prefill recomputes the prompt and
    /// every token it has emitted, re-emitting none of them. As in vLLM, whose recompute
    /// prefills all of a sequence's tokens and samples from the last, that prefill emits the
    /// request's next token, standing in for the decode step it would have taken next; one
    /// preempted before its first token simply starts its prefill again.
    fn preempt(&mut self, g: usize, id: ReqId) {
        let dropped = self.live.get(id).progress.context();
        self.free_blocks(g, id, false);
        let stats = &mut self.gpus[g].stats;
        stats.preemptions += 1;
        stats.recomputed_tokens += u64::from(dropped);
        self.loads[g].work_tokens += u64::from(dropped);
        let slot = self.live.get_mut(id);
        let p = &mut slot.progress;
        if p.prefilled == slot.request.prompt + p.recompute {
            p.decoded += 1;
            p.recompute = p.decoded;
        }
        p.prefilled = 0;
    }

    /// Moves request `id`'s KV cache between GPU `g` and host memory (out, or back in when
    /// `back`), keeping its progress; returns the transfer time (seconds).
    fn swap(&mut self, g: usize, id: ReqId, back: bool) -> f64 {
        let link = self
            .swap
            .expect("only a policy that preempts by swapping swaps");
        let ctx = self.live.get(id).progress.context();
        if back {
            // It comes back into blocks of its own.
            self.gpus[g].kv_used += self.blocks(u64::from(ctx));
            self.gpus[g].stats.swaps_in += 1;
        } else {
            self.free_blocks(g, id, false);
            self.gpus[g].stats.swaps_out += 1;
        }
        let gpu = &mut self.gpus[g];
        let time = link.time(ctx);
        gpu.stats.swap_bytes += link.bytes(ctx);
        gpu.stats.swap_seconds += time;
        time
    }

    /// Frees request `id`'s KV blocks on GPU `g`: its own, and its references to cached
    /// blocks, which stay cached (evictable once no request references them); a victim of
    /// preemption dropped those while the batch was formed ([`View::release_cached`]).
    /// A request that has completed (`done`) leaves its own full blocks cached and
    /// evictable ([`GpuCache::finish`]), unless the KV cache is unlimited, where blocks no
    /// lookup can match would never be evicted and change nothing.
    fn free_blocks(&mut self, g: usize, id: ReqId, done: bool) {
        let slot = self.live.get(id);
        let ctx = u64::from(slot.progress.context());
        let own = self.blocks(ctx);
        let kv = self.kv;
        let gpu = &mut self.gpus[g];
        let (cached, unreferenced) = match gpu.prefix.as_deref_mut().map(RefCell::get_mut) {
            Some(px) if done => px.finish(
                id,
                &slot.request,
                kv.block_size,
                kv.blocks.map(|_| ctx / u64::from(kv.block_size)),
            ),
            Some(px) => px.release(id),
            None => (0, 0),
        };
        gpu.kv_used -= own - cached + unreferenced;
    }

    /// Applies what GPU `g`'s policy has just done to the prefix cache while forming a
    /// batch, before its victims' own blocks are freed: the cached blocks its victims
    /// shared with other requests stay in use ([`View::release_cached`]), and each request
    /// it admitted ([`View::reuse_cached`]) starts its prefill after the cached prefix it
    /// references, the unreferenced blocks it took counting as in use. Its attention still
    /// reads the cached tokens: the prefill is priced as a chunk starting there
    /// ([`Batch::priced_shape`]). Hit rates count a request's first admission; a request
    /// preempted by recompute looks the cache up again when admitted again (as vLLM does),
    /// counted apart ([`CacheStats::preempted_hit_tokens`]).
    fn settle_cache(&mut self, g: usize) {
        let bs = self.kv.block_size;
        let gpu = &mut self.gpus[g];
        let Some(px) = gpu.prefix.as_deref_mut().map(RefCell::get_mut) else {
            return;
        };
        gpu.kv_used += px.revived + px.kept;
        (px.revived, px.kept) = (0, 0);
        for (id, tokens) in px.admitted.drain(..) {
            let slot = self.live.get_mut(id);
            slot.progress.prefilled = tokens;
            let s = &mut px.cache.stats;
            if slot.start.is_nan() {
                let prompt = slot.request.prompt;
                s.requested_tokens += u64::from(prompt);
                s.hit_tokens += u64::from(tokens);
                s.requested_blocks += u64::from(prompt / bs);
                s.hit_blocks += u64::from(tokens / bs);
            } else {
                s.preempted_hit_tokens += u64::from(tokens);
            }
            self.loads[g].work_tokens -= u64::from(tokens);
        }
    }

    /// Looks request `id`, just arrived at GPU `g` at `now`, up in the GPU's CPU tier after
    /// its cache; when the tier extends its hit, starts loading those blocks over the
    /// GPU's host link (one load at a time, in arrival order) and returns true: the
    /// request reaches the policy when the load ends ([`Engine::host_load_done`]), as
    /// vLLM's scheduler holds a request whose blocks are being loaded
    /// (`WAITING_FOR_REMOTE_KVS`) while the GPU runs other work.
    fn load_from_cpu(&mut self, g: usize, id: ReqId, now: f64) -> bool {
        let (Some(link), Some(px)) = (self.cpu_link, self.gpus[g].prefix.as_deref_mut()) else {
            return false;
        };
        let px = px.get_mut();
        let bs = self.kv.block_size;
        let Some(blocks) = px.cpu_lookup(&self.live.get(id).request, bs) else {
            return false;
        };
        let tokens = blocks.len() as u32 * bs;
        px.cache.stats.cpu_hit_tokens += u64::from(tokens);
        px.cache.stats.cpu_loads += 1;
        let done = now.max(self.host_free[g]) + link.time(tokens);
        self.host_free[g] = done;
        self.host_loads.push(Due {
            time: done,
            what: HostLoad {
                id,
                gpu: g,
                first: blocks.start,
                count: blocks.len(),
            },
        });
        true
    }

    /// Load `l` has ended at `now`: its blocks join the GPU's cache, unreferenced, the
    /// least recently used cached blocks making room for them if needed, and the request
    /// reaches the GPU's policy, whose admission finds them cached.
    fn host_load_done(&mut self, l: HostLoad, now: f64) {
        self.kv_change(l.gpu, now);
        let bs = self.kv.block_size;
        let capacity = self.kv.capacity_blocks();
        let req = &self.live.get(l.id).request;
        let gpu = &mut self.gpus[l.gpu];
        gpu.prefix
            .as_deref_mut()
            .expect("a CPU tier extends a prefix cache")
            .get_mut()
            .load(req, bs, l.first..l.first + l.count);
        gpu.make_room(capacity);
        self.offer(l.gpu, l.id, now);
    }

    /// Gives request `id`, already counted as GPU `g`'s, to its scheduler at `now`, and
    /// starts a batch there if the GPU was idle.
    fn offer(&mut self, g: usize, id: ReqId, now: f64) {
        let (sched, view) = view!(self, g);
        sched.admit(id, &view);
        self.wake(g, now);
    }

    /// Starts GPU `g`'s next batch at `now` if it was idle.
    fn wake(&mut self, g: usize, now: f64) {
        if self.idle.remove(&g) {
            self.start_batch(g, now, None);
        }
    }

    /// Counts request `id` as GPU `g`'s, on arrival or when the GPU takes it from the
    /// router's shared queue.
    fn assign(&mut self, g: usize, id: ReqId) {
        let slot = self.live.get_mut(id);
        slot.gpu = g as u32;
        let work = u64::from(slot.request.prompt) + u64::from(slot.request.decode);
        self.loads[g].outstanding += 1;
        self.loads[g].work_tokens += work;
        self.gpus[g].stats.requests += 1;
        self.router.update(g, &self.loads[g]);
    }

    /// Request `t.id`'s cache has reached GPU `t.to`: it leaves GPU `t.from`, and both GPUs
    /// may now have work.
    fn transfer_done(&mut self, t: Transfer, now: f64) {
        self.kv_change(t.from, now);
        let ctx = u64::from(self.live.get(t.id).progress.context());
        self.gpus[t.from].kv_used -= self.blocks(ctx);
        let (sched, view) = view!(self, t.to);
        sched.on_transfer_done(t.id, &view);
        for g in [t.to, t.from] {
            self.wake(g, now);
        }
    }

    /// Hands request `id`, just prefilled on GPU `g`, to the decode GPU with the fewest
    /// outstanding requests (lowest index on ties).
    fn hand_off(&mut self, g: usize, id: ReqId, now: f64) {
        let d = (self.route_gpus..self.gpus.len())
            .min_by_key(|&d| (self.loads[d].outstanding, d))
            .expect("a decode GPU");
        let slot = self.live.get(id);
        let left = u64::from(slot.request.decode - slot.progress.decoded);
        self.loads[g].outstanding -= 1;
        self.loads[g].work_tokens -= left;
        self.loads[d].outstanding += 1;
        self.loads[d].work_tokens += left;
        self.gpus[d].stats.requests += 1;
        self.offer(d, id, now);
    }

    /// Starts GPU `g`'s next batch at `now`, or leaves it idle; `drawn` is the batch's
    /// duration (seconds) when [`Engine::decode_steady`] has already drawn it.
    fn start_batch(&mut self, g: usize, now: f64, drawn: Option<f64>) {
        let mut batch = self.gpus[g]
            .batch
            .take()
            .expect("the batch is home between events");
        batch.clear();
        let (sched, view) = view!(self, g);
        sched.schedule(&view, &mut batch);
        if self.router_holds {
            for &id in batch.pulled() {
                let pulled = self.router.pull(g);
                debug_assert_eq!(pulled, Some(id), "a GPU takes held requests oldest first");
                self.assign(g, id);
            }
        }
        let swaps = !batch.swapped_out().is_empty() || !batch.swapped_in().is_empty();
        if swaps
            || !batch.preempted().is_empty()
            || !batch.fetched().is_empty()
            || !batch.is_empty()
        {
            self.kv_change(g, now);
        }
        if self.gpus[g].prefix.is_some() {
            self.settle_cache(g);
        }
        for &id in batch.fetched() {
            let d = self.disagg.expect("only disaggregated decode GPUs fetch");
            let slot = self.live.get(id);
            let (from, ctx) = (slot.gpu as usize, slot.progress.context());
            let start = now.max(self.link_free[from]);
            self.link_free[from] = start + d.send_time(ctx);
            self.transfers.push(Due {
                time: self.link_free[from] + d.link_latency,
                what: Transfer { id, from, to: g },
            });
            self.gpus[g].kv_used += self.blocks(u64::from(ctx));
        }
        for &id in batch.preempted() {
            debug_assert!(
                batch.entries().iter().all(|e| e.id != id),
                "request {id} preempted and scheduled in the same batch"
            );
            self.preempt(g, id);
        }
        // The dropped context is work again: a load-aware router must know before the next
        // arrival, not when this batch ends.
        if !batch.preempted().is_empty() && g < self.route_gpus {
            self.router.update(g, &self.loads[g]);
        }
        let mut swap_time = 0.0;
        if swaps {
            for &id in batch.swapped_out() {
                debug_assert!(
                    batch.entries().iter().all(|e| e.id != id),
                    "request {id} swapped out and scheduled in the same batch"
                );
                swap_time += self.swap(g, id, false);
            }
            for &id in batch.swapped_in() {
                swap_time += self.swap(g, id, true);
            }
        }
        if self.kv_tracked {
            for e in batch.entries() {
                let ctx = u64::from(self.live.get(e.id).progress.context());
                self.gpus[g].kv_used +=
                    self.kv.blocks_for(ctx + u64::from(e.tokens)) - self.kv.blocks_for(ctx);
            }
        }
        // Nothing below touches the cache, so the batch's event reports what is left here.
        let evictable = self.gpus[g].make_room(self.kv.capacity_blocks());
        debug_assert!(
            !batch.is_empty() || !swaps,
            "a batch that swaps must run something"
        );
        if batch.is_empty() {
            self.gpus[g].busy = false;
            self.gpus[g].batch = Some(batch);
            self.idle.insert(g);
            return;
        }
        // A request first runs in a prefill, so decode entries never start one (and skipping
        // them saves a random access per decode).
        let mut started = 0;
        for e in batch.entries().iter().filter(|e| e.phase == Phase::Prefill) {
            let slot = self.live.get_mut(e.id);
            if slot.start.is_nan() {
                slot.start = now;
                started += 1;
            }
        }
        if started > 0 {
            self.count_to(now);
            self.counts.in_queue -= started;
        }
        let live = &self.live;
        let shape = *batch.priced_shape(|id| live.get(id).progress.prefilled);
        let gpu = &mut self.gpus[g];
        gpu.stats.kv_peak_blocks = gpu.stats.kv_peak_blocks.max(gpu.kv_used);
        // vLLM swaps between iterations and the GPU waits: the transfers lengthen the batch.
        let dur = drawn.unwrap_or_else(|| self.cost.sample(&shape, &mut gpu.rng)) + swap_time;
        gpu.stats.busy += dur;
        gpu.running = (now, now + dur);
        gpu.stats.batches += 1;
        let kind = match (shape.prefill_entries, shape.decode_entries) {
            (_, 0) => BatchKind::Prefill,
            (0, _) => BatchKind::Decode,
            _ => BatchKind::Mixed,
        };
        let k = &mut self.kinds[kind as usize];
        k.batches += 1;
        k.tokens += shape.tokens();
        k.entries += batch.entries().len() as u64;
        gpu.busy = true;
        if let Some(observer) = self.observer.as_mut() {
            observer(&BatchEvent {
                gpu: g,
                start: now,
                end: now + dur,
                batch: &batch,
                kv_used: gpu.kv_used,
                kv_evictable: evictable,
            });
        }
        gpu.batch = Some(batch);
        self.heap.push(Due {
            time: now + dur,
            what: g,
        });
    }

    fn finish_batch(&mut self, g: usize, now: f64) {
        let batch = self.gpus[g]
            .batch
            .take()
            .expect("the batch is home between events");
        let in_window = self.window.contains(now);
        let gpu = &mut self.gpus[g];
        gpu.stats.busy_in_window += self.window.overlap(gpu.running.0, now);
        self.kv_change(g, now);
        let mut gaps = GapRun::default();
        let first_measured = self.window.first_measured as u64;
        for e in batch.entries() {
            let slot = self.live.get_mut(e.id);
            let (req, p) = (&slot.request, &mut slot.progress);
            let emitted = match e.phase {
                // A complete prefill emits a token: the first, or after a preemption the
                // one its recompute stands in for (see `preempt`), which `decoded` counts.
                Phase::Prefill => {
                    p.prefilled += e.tokens;
                    let done = p.prefilled == req.prompt + p.recompute;
                    if done {
                        let gpu = &mut self.gpus[g];
                        if let Some(px) = gpu.prefix.as_mut() {
                            gpu.kv_used -= px.get_mut().cache_prompt(e.id, req, self.kv.block_size);
                        }
                    }
                    done
                }
                Phase::Decode => {
                    p.decoded += 1;
                    true
                }
            };
            if !emitted {
                continue;
            }
            let measured = u64::from(e.id) >= first_measured;
            if p.recompute == 0 && e.phase == Phase::Prefill {
                slot.first_token = now;
                if measured {
                    let ttft = now - req.arrival;
                    self.ttft.record(ttft);
                    if let Some(w) = &mut self.watch {
                        self.stopped |= w.first_token(&self.ttft, ttft);
                    }
                }
                if self.disagg.is_some() && p.decoded < req.decode {
                    self.handed.push(e.id);
                }
            } else if measured && self.itl {
                gaps.push(now - p.last_token, &mut self.gpus[g].itl);
            }
            p.last_token = now;
            self.tokens_in_window += u64::from(in_window);
            if p.prefilled == req.prompt + p.recompute && p.decoded == req.decode {
                slot.done = true;
                self.finished.push(e.id);
            }
        }
        gaps.flush(&mut self.gpus[g].itl);
        let finished = self.finished.len();
        for i in 0..finished {
            self.complete(g, self.finished[i], now);
        }
        self.finished.clear();
        self.loads[g].work_tokens -= batch.shape().tokens();
        let (sched, view) = view!(self, g);
        sched.on_batch_done(&batch, &View { finished, ..view });
        self.gpus[g].batch = Some(batch);
        for i in 0..self.handed.len() {
            self.hand_off(g, self.handed[i], now);
        }
        self.handed.clear();
        if finished > 0 {
            self.live.retire();
        }
        if g < self.route_gpus {
            self.router.update(g, &self.loads[g]);
        }
    }

    /// Runs the batches GPU `g`, just free at `now`, decodes steadily
    /// ([`Scheduler::steady_decodes`]) as long as each ends before `horizon`, the next other
    /// event, and by `last` (seconds): the same draws and the same accounting as batches
    /// started and finished one event at a time, without the event loop, the scheduler or
    /// the batch, and after the first with O(1) work per batch, as every request then
    /// emitted its last token when the previous batch ended. Returns when it stopped and,
    /// when it stopped because the batch it drew ends too late, that batch's duration
    /// (seconds) for [`Engine::start_batch`] to start it with. A request's last decode is
    /// left to the general path, which completes it.
    fn decode_steady(
        &mut self,
        g: usize,
        mut now: f64,
        horizon: f64,
        last: f64,
    ) -> (f64, Option<f64>) {
        let (sched, view) = view!(self, g);
        self.steady_ids.clear();
        self.steady_ids
            .extend_from_slice(sched.steady_decodes(&view));
        let ids = &self.steady_ids;
        let gpu = &mut self.gpus[g];
        let Some(runs) = ids
            .iter()
            .map(|&id| {
                let slot = self.live.get(id);
                slot.request.decode - slot.progress.decoded - 1
            })
            .min()
        else {
            return (now, None);
        };
        let n = ids.len() as u64;
        let first_measured = self.window.first_measured as u64;
        let measured = ids
            .iter()
            .filter(|&&id| u64::from(id) >= first_measured)
            .count() as u64;
        let mut shape = BatchShape {
            decode_entries: n as u32,
            kv_tokens: ids
                .iter()
                .map(|&id| u64::from(self.live.get(id).progress.context()))
                .sum(),
            ..BatchShape::default()
        };
        // A counted KV cache grows by one block for each request whose context fills its
        // last block: with the requests counted by context modulo the block size, the
        // class whose next token opens a block gives the growth in O(1).
        let block = self.kv.block_size as usize;
        if self.kv_tracked {
            if block > STEADY_MAX_BLOCK {
                return (now, None);
            }
            self.residues.clear();
            self.residues.resize(block, 0);
            for &id in ids {
                self.residues[self.live.get(id).progress.context() as usize % block] += 1;
            }
        }
        let mut opening = 0;
        let (mut ran, mut drawn) = (0, None);
        // Every batch the loop can run ends before `horizon` and at or before `last`: when
        // the window holds all of that, each batch lies wholly inside it.
        let inside = self.window.start <= now && horizon.min(last) <= self.window.end;
        while ran < runs {
            let growth = if self.kv_tracked {
                u64::from(self.residues[opening])
            } else {
                0
            };
            // Without the blocks the policy would preempt: the general path does that.
            if growth > self.kv.capacity_blocks() - gpu.kv_used {
                break;
            }
            let dur = self.cost.sample(&shape, &mut gpu.rng);
            let end = now + dur;
            if !(end < horizon && end <= last) {
                drawn = Some(dur);
                break;
            }
            gpu.stats.busy += dur;
            gpu.stats.batches += 1;
            gpu.stats.busy_in_window += if inside {
                end - now
            } else {
                self.window.overlap(now, end)
            };
            if self.kv_tracked {
                gpu.kv_used += growth;
                gpu.make_room(self.kv.capacity_blocks());
                gpu.stats.kv_peak_blocks = gpu.stats.kv_peak_blocks.max(gpu.kv_used);
                gpu.kv_to(&self.window, end);
                opening = (opening + block - 1) % block;
            }
            if self.itl {
                if ran == 0 {
                    let mut gaps = GapRun::default();
                    for &id in ids.iter().filter(|&&id| u64::from(id) >= first_measured) {
                        gaps.push(end - self.live.get(id).progress.last_token, &mut gpu.itl);
                    }
                    gaps.flush(&mut gpu.itl);
                } else {
                    gpu.itl.record_n(end - now, measured);
                }
            }
            self.tokens_in_window += n * u64::from(inside || self.window.contains(end));
            shape.kv_tokens += n;
            now = end;
            ran += 1;
        }
        if ran > 0 {
            for &id in ids {
                let p = &mut self.live.get_mut(id).progress;
                p.decoded += ran;
                p.last_token = now;
            }
            let k = &mut self.kinds[BatchKind::Decode as usize];
            let ran = u64::from(ran);
            k.batches += ran;
            k.tokens += ran * n;
            k.entries += ran * n;
            self.loads[g].work_tokens -= ran * n;
            if g < self.route_gpus {
                self.router.update(g, &self.loads[g]);
            }
        }
        (now, drawn)
    }

    /// Releases a conversation's `next` turn, whose predecessor completed at `now`, to
    /// arrive after its think time. Kept out of line: most requests have no next turn, and
    /// the completion path is the engine's hottest.
    #[inline(never)]
    fn release(&mut self, next: NextTurn, now: f64) {
        self.carrying -= 1;
        self.released.push(Due {
            time: now + next.think_s,
            what: Released {
                seq: self.releases,
                request: next.request,
            },
        });
        self.releases += 1;
    }

    /// Request `id` has emitted its last token on GPU `g` at `now`; its conversation's
    /// next turn, if any, is released to arrive after its think time.
    fn complete(&mut self, g: usize, id: ReqId, now: f64) {
        if let Some(next) = self.live.get_mut(id).request.next.take() {
            self.release(*next, now);
        }
        let slot = self.live.get(id);
        let r = &slot.request;
        let (arrival, prompt, decode) = (r.arrival, r.prompt, r.decode);
        let (start, first_token, gpu) = (slot.start, slot.first_token, slot.gpu);
        self.loads[g].outstanding -= 1;
        self.free_blocks(g, id, true);
        if u64::from(id) >= self.window.first_measured as u64 {
            self.e2e.record(now - arrival);
            let tbt = (decode > 0).then(|| (now - first_token) / f64::from(decode));
            if let Some(t) = tbt {
                self.tbt.record(t);
            }
            if let Some(w) = &mut self.watch {
                self.stopped |= w.completed(
                    (&self.tbt, &self.e2e),
                    first_token - arrival,
                    tbt,
                    now - arrival,
                );
            }
        }
        self.count_to(now);
        let c = &mut self.counts;
        c.in_system -= 1;
        c.completions_in_window += u64::from(self.window.contains(now));
        c.completed_by_start += u64::from(now <= self.window.start);
        c.completed_by_end += u64::from(now <= self.window.end);
        if let Some(records) = &mut self.records {
            records[id as usize] = RequestRecord {
                arrival,
                prompt,
                decode,
                start,
                first_token,
                completion: now,
                gpu,
            };
        }
    }
}
