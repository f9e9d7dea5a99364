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

use hdrhistogram::Histogram;
use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;

use crate::cost::CostModel;
use crate::kv::KvConfig;
use crate::rng::{SimRng, Source, stream};
use crate::router::{GpuLoad, Router, RouterSpec};
use crate::scheduler::{
    Batch, DisaggSpec, Phase, Progress, ReqId, Scheduler, SchedulerSpec, SwapLink, View,
};
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
}

/// Per-request timestamps (seconds); `NaN` where the event never happened.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord {
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
    /// The window for `requests` with the first `warmup` unmeasured.
    pub fn new(requests: &[Request], warmup: usize) -> Self {
        Window {
            first_measured: warmup,
            start: requests.get(warmup).map_or(0.0, |r| r.arrival),
            end: requests.last().map_or(0.0, |r| r.arrival),
        }
    }

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
    /// Tokens whose KV cache preemptions dropped, each processed again (tokens).
    pub recomputed_tokens: u64,
    /// Preemptions by swapping: KV caches moved to host memory.
    pub swaps_out: u64,
    /// KV caches moved back from host memory.
    pub swaps_in: u64,
    /// Bytes moved over the swap link, both directions (bytes).
    pub swap_bytes: f64,
    /// Time batches spent waiting on swaps, included in `busy` (seconds).
    pub swap_seconds: f64,
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

/// Inter-token gaps of measured requests: exact count, sum and maximum; quantiles from a
/// histogram with 3 significant digits (0.1% relative error), so memory stays fixed however
/// many tokens a run emits.
#[derive(Debug, Clone)]
pub struct ItlStats {
    /// Gaps in nanoseconds.
    pub hist: Histogram<u64>,
    /// Number of gaps.
    pub count: u64,
    /// Sum of gaps (seconds).
    pub sum: f64,
    /// Largest gap (seconds).
    pub max: f64,
}

impl ItlStats {
    fn new() -> Self {
        ItlStats {
            hist: Histogram::new(3).expect("3 significant digits is a valid precision"),
            count: 0,
            sum: 0.0,
            max: 0.0,
        }
    }

    /// Records `n` gaps of `gap` seconds at once: the decodes of one batch that also shared
    /// the previous batch have equal gaps, and one histogram update for all is much cheaper.
    fn record_n(&mut self, gap: f64, n: u64) {
        if n == 0 {
            return;
        }
        self.count += n;
        self.sum += gap * n as f64;
        self.max = self.max.max(gap);
        // Rounded to the nearest nanosecond (gaps are never negative); the auto-resizing
        // histogram cannot fail to record.
        let _ = self.hist.record_n(((gap * 1e9 + 0.5) as u64).max(1), n);
    }

    /// The `q`-quantile of the gaps (seconds), 0 when there are none.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.hist.value_at_quantile(q) as f64 * 1e-9
        }
    }
}

/// Everything one simulation produced.
#[derive(Debug, Clone)]
pub struct SimOutput {
    /// Per-request timestamps, indexed like the workload.
    pub records: Vec<RequestRecord>,
    /// The measurement window.
    pub window: Window,
    /// Inter-token gaps of measured requests.
    pub itl: ItlStats,
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
    stats: GpuStats,
    /// KV blocks held by this GPU's unfinished requests.
    kv_used: u64,
    /// Time of the last change of `kv_used` (seconds).
    kv_since: f64,
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
}

struct Engine<'a> {
    requests: &'a [Request],
    observer: &'a mut dyn FnMut(&BatchEvent),
    cost: &'a dyn CostModel,
    kv: KvConfig,
    /// Whether KV blocks are counted: only for a finite cache, since an unlimited one
    /// constrains nothing and counting costs time on every batch entry.
    kv_tracked: bool,
    progress: Vec<Progress>,
    records: Vec<RequestRecord>,
    gpus: Vec<Gpu>,
    loads: Vec<GpuLoad>,
    router: Box<dyn Router>,
    /// Whether the router holds requests in a shared queue ([`Router::held`]).
    router_holds: bool,
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
    window: Window,
    itl: ItlStats,
    kinds: [KindStats; 3],
    tokens_in_window: u64,
}

/// Simulates replication `rep` of `requests` (in arrival order) under `config`, measuring
/// all but the first `warmup` requests.
pub fn simulate(
    requests: &[Request],
    config: &EngineConfig,
    seed: u64,
    rep: u32,
    warmup: usize,
) -> SimOutput {
    simulate_observed(requests, config, seed, rep, warmup, &mut |_| {})
}

/// [`simulate`], calling `observer` with every batch as it starts.
pub fn simulate_observed(
    requests: &[Request],
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
        observer,
        f64::INFINITY,
    )
}

/// [`simulate`], but stopping at the last arrival instead of serving every request to its
/// end: for overloaded runs, whose backlog at that point would take long to drain and tells
/// nothing more (throughput, utilisation and the growth verdict are measured inside the
/// window, which ends there). Requests unfinished at the stop keep `NaN` timestamps.
pub fn simulate_to_last_arrival(
    requests: &[Request],
    config: &EngineConfig,
    seed: u64,
    rep: u32,
    warmup: usize,
) -> SimOutput {
    let horizon = requests.last().map_or(0.0, |r| r.arrival);
    run_engine(requests, config, (seed, rep), warmup, &mut |_| {}, horizon)
}

fn run_engine(
    requests: &[Request],
    config: &EngineConfig,
    (seed, rep): (u64, u32),
    warmup: usize,
    observer: &mut dyn FnMut(&BatchEvent),
    horizon: f64,
) -> SimOutput {
    let unset = RequestRecord {
        start: f64::NAN,
        first_token: f64::NAN,
        completion: f64::NAN,
        gpu: u32::MAX,
    };
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
            stats: GpuStats::default(),
            kv_used: 0,
            kv_since: 0.0,
        })
        .collect();
    let router = config
        .router
        .build(route_gpus, stream(seed, rep, Source::Router));
    let mut engine = Engine {
        requests,
        observer,
        cost: config.cost.as_ref(),
        kv: config.kv,
        kv_tracked: config.kv.blocks.is_some(),
        progress: vec![Progress::default(); requests.len()],
        records: vec![unset; requests.len()],
        gpus,
        loads: vec![GpuLoad::default(); config.gpus],
        router_holds: router.held().is_some(),
        router,
        idle: (0..config.gpus).collect(),
        heap: BinaryHeap::with_capacity(config.gpus),
        route_gpus,
        disagg,
        swap: config.scheduler.swap_link(),
        transfers: BinaryHeap::new(),
        link_free: vec![0.0; config.gpus],
        window: Window::new(requests, warmup),
        itl: ItlStats::new(),
        kinds: [KindStats::default(); 3],
        tokens_in_window: 0,
    };
    let end_time = engine.run(horizon);
    for g in 0..engine.gpus.len() {
        engine.kv_change(g, end_time);
    }
    SimOutput {
        records: engine.records,
        window: engine.window,
        itl: engine.itl,
        gpus: engine.gpus.into_iter().map(|g| g.stats).collect(),
        kinds: engine.kinds,
        tokens_in_window: engine.tokens_in_window,
        end_time,
        kv: config.kv,
    }
}

/// The shared queue of a GPU that cannot take held requests.
static NOTHING_HELD: VecDeque<ReqId> = VecDeque::new();

/// GPU `g`'s view of the engine, borrowing only the fields it reads so that the GPU's
/// scheduler can be borrowed mutably beside it.
macro_rules! view {
    ($engine:ident, $g:expr) => {
        View {
            requests: $engine.requests,
            progress: &$engine.progress,
            kv: $engine.kv,
            kv_used: $engine.gpus[$g].kv_used,
            held: match $engine.router.held() {
                Some(held) if $g < $engine.route_gpus => held,
                _ => &NOTHING_HELD,
            },
        }
    };
}

impl Engine<'_> {
    /// Processes events until none is left, or until the next one falls after `horizon`
    /// (seconds) once every request has arrived; returns the time of the last event.
    fn run(&mut self, horizon: f64) -> f64 {
        let mut next = 0;
        let mut now = 0.0;
        loop {
            let arrival = self.requests.get(next).map(|r| r.arrival);
            let completion = self.heap.peek().map(|c| c.time);
            let transfer = self.transfers.peek().map(|t| t.time);
            let batch_or_transfer = match (completion, transfer) {
                (Some(c), Some(t)) => Some(c.min(t)),
                (c, t) => c.or(t),
            };
            if arrival.is_none() && batch_or_transfer.is_some_and(|t| t > horizon) {
                return now;
            }
            match (arrival, completion) {
                (Some(a), _) if batch_or_transfer.is_none_or(|c| a <= c) => {
                    now = a;
                    self.arrive(next as ReqId, now);
                    next += 1;
                }
                _ if transfer.is_some_and(|t| completion.is_none_or(|c| t <= c)) => {
                    let t = self.transfers.pop().expect("peeked");
                    now = t.time;
                    self.transfer_done(t.what, now);
                }
                (_, Some(_)) => {
                    let Due { time, what: gpu } = self.heap.pop().expect("peeked");
                    now = time;
                    self.finish_batch(gpu, now);
                    self.start_batch(gpu, now);
                }
                (None, None) => return now,
                (Some(_), None) => unreachable!("guard holds when there is no completion"),
            }
        }
    }

    fn arrive(&mut self, id: ReqId, now: f64) {
        let req = &self.requests[id as usize];
        match self.router.route(id, req, &self.loads[..self.route_gpus]) {
            Some(g) => {
                self.admit(g, id);
                if self.idle.remove(&g) {
                    self.start_batch(g, now);
                }
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
                    self.start_batch(g, now);
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
        if !self.kv_tracked {
            return;
        }
        let gpu = &mut self.gpus[g];
        gpu.stats.kv_block_seconds += gpu.kv_used as f64 * self.window.overlap(gpu.kv_since, now);
        gpu.kv_since = now;
    }

    /// Drops request `id`'s KV cache on GPU `g`. Its next prefill recomputes the prompt and
    /// every token it has emitted, re-emitting none of them. As in vLLM, whose recompute
    /// prefills all of a sequence's tokens and samples from the last, that prefill emits the
    /// request's next token, standing in for the decode step it would have taken next; one
    /// preempted before its first token simply starts its prefill again.
    fn preempt(&mut self, g: usize, id: ReqId) {
        let i = id as usize;
        let dropped = self.progress[i].context();
        self.gpus[g].kv_used -= self.blocks(u64::from(dropped));
        let stats = &mut self.gpus[g].stats;
        stats.preemptions += 1;
        stats.recomputed_tokens += u64::from(dropped);
        self.loads[g].work_tokens += u64::from(dropped);
        let prompt = self.requests[i].prompt;
        let p = &mut self.progress[i];
        if p.prefilled == prompt + p.recompute {
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
        let ctx = self.progress[id as usize].context();
        let blocks = self.blocks(u64::from(ctx));
        let gpu = &mut self.gpus[g];
        if back {
            gpu.kv_used += blocks;
            gpu.stats.swaps_in += 1;
        } else {
            gpu.kv_used -= blocks;
            gpu.stats.swaps_out += 1;
        }
        let time = link.time(ctx);
        gpu.stats.swap_bytes += link.bytes(ctx);
        gpu.stats.swap_seconds += time;
        time
    }

    /// Routes request `id` to GPU `g`'s scheduler.
    fn admit(&mut self, g: usize, id: ReqId) {
        self.assign(g, id);
        let view = view!(self, g);
        self.gpus[g].sched.admit(id, &view);
    }

    /// Counts request `id` as GPU `g`'s, on arrival or when the GPU takes it from the
    /// router's shared queue.
    fn assign(&mut self, g: usize, id: ReqId) {
        let req = &self.requests[id as usize];
        self.loads[g].outstanding += 1;
        self.loads[g].work_tokens += u64::from(req.prompt) + u64::from(req.decode);
        self.records[id as usize].gpu = g as u32;
        self.gpus[g].stats.requests += 1;
        self.router.update(g, &self.loads[g]);
    }

    /// Request `t.id`'s cache has reached GPU `t.to`: it leaves GPU `t.from`, and both GPUs
    /// may now have work.
    fn transfer_done(&mut self, t: Transfer, now: f64) {
        self.kv_change(t.from, now);
        let ctx = u64::from(self.progress[t.id as usize].context());
        self.gpus[t.from].kv_used -= self.blocks(ctx);
        let view = view!(self, t.to);
        self.gpus[t.to].sched.on_transfer_done(t.id, &view);
        for g in [t.to, t.from] {
            if self.idle.remove(&g) {
                self.start_batch(g, now);
            }
        }
    }

    /// Hands request `id`, just prefilled on GPU `g`, to the decode GPU with the fewest
    /// outstanding requests (lowest index on ties).
    fn hand_off(&mut self, g: usize, id: ReqId, now: f64) {
        let d = (self.route_gpus..self.gpus.len())
            .min_by_key(|&d| (self.loads[d].outstanding, d))
            .expect("a decode GPU");
        let left =
            u64::from(self.requests[id as usize].decode - self.progress[id as usize].decoded);
        self.loads[g].outstanding -= 1;
        self.loads[g].work_tokens -= left;
        self.loads[d].outstanding += 1;
        self.loads[d].work_tokens += left;
        self.gpus[d].stats.requests += 1;
        let view = view!(self, d);
        self.gpus[d].sched.admit(id, &view);
        if self.idle.remove(&d) {
            self.start_batch(d, now);
        }
    }

    fn start_batch(&mut self, g: usize, now: f64) {
        let mut batch = self.gpus[g]
            .batch
            .take()
            .expect("the batch is home between events");
        batch.clear();
        let view = view!(self, g);
        self.gpus[g].sched.schedule(&view, &mut batch);
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
        for &id in batch.fetched() {
            let d = self.disagg.expect("only disaggregated decode GPUs fetch");
            let from = self.records[id as usize].gpu as usize;
            let ctx = self.progress[id as usize].context();
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
                let ctx = u64::from(self.progress[e.id as usize].context());
                self.gpus[g].kv_used +=
                    self.kv.blocks_for(ctx + u64::from(e.tokens)) - self.kv.blocks_for(ctx);
            }
        }
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
        for e in batch.entries().iter().filter(|e| e.phase == Phase::Prefill) {
            let rec = &mut self.records[e.id as usize];
            if rec.start.is_nan() {
                rec.start = now;
            }
        }
        let shape = batch.shape();
        let gpu = &mut self.gpus[g];
        gpu.stats.kv_peak_blocks = gpu.stats.kv_peak_blocks.max(gpu.kv_used);
        // vLLM swaps between iterations and the GPU waits: the transfers lengthen the batch.
        let dur = self.cost.sample(shape, &mut gpu.rng) + swap_time;
        gpu.stats.busy += dur;
        gpu.stats.busy_in_window += self.window.overlap(now, now + dur);
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
        (self.observer)(&BatchEvent {
            gpu: g,
            start: now,
            end: now + dur,
            batch: &batch,
            kv_used: gpu.kv_used,
        });
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
        self.kv_change(g, now);
        let mut handed = Vec::new();
        // Run of equal gaps not yet recorded: (gap, count).
        let mut run = (0.0, 0);
        for e in batch.entries() {
            let id = e.id as usize;
            let req = &self.requests[id];
            let p = &mut self.progress[id];
            let emitted = match e.phase {
                // A complete prefill emits a token: the first, or after a preemption the
                // one its recompute stands in for (see `preempt`), which `decoded` counts.
                Phase::Prefill => {
                    p.prefilled += e.tokens;
                    p.prefilled == req.prompt + p.recompute
                }
                Phase::Decode => {
                    p.decoded += 1;
                    true
                }
            };
            if emitted && p.recompute == 0 && e.phase == Phase::Prefill {
                self.records[id].first_token = now;
                if self.disagg.is_some() && p.decoded < req.decode {
                    handed.push(e.id);
                }
            } else if emitted && id >= self.window.first_measured {
                let gap = now - p.last_token;
                if gap != run.0 {
                    self.itl.record_n(run.0, run.1);
                    run = (gap, 0);
                }
                run.1 += 1;
            }
            if emitted {
                p.last_token = now;
                self.tokens_in_window += u64::from(in_window);
                if p.prefilled == req.prompt + p.recompute && p.decoded == req.decode {
                    self.records[id].completion = now;
                    self.loads[g].outstanding -= 1;
                    if self.kv_tracked {
                        self.gpus[g].kv_used -= self.kv.blocks_for(u64::from(p.context()));
                    }
                }
            }
        }
        self.itl.record_n(run.0, run.1);
        self.loads[g].work_tokens -= batch.shape().tokens();
        let view = view!(self, g);
        self.gpus[g].sched.on_batch_done(&batch, &view);
        self.gpus[g].batch = Some(batch);
        for id in handed {
            self.hand_off(g, id, now);
        }
        if g < self.route_gpus {
            self.router.update(g, &self.loads[g]);
        }
    }
}
