//! Single-GPU scheduling policies, one file each behind the [`Scheduler`] trait.
//!
//! A scheduler only decides what runs next. The engine owns the clock, the cost model and
//! every request's progress, and does all token accounting, so each policy is held to the
//! same definitions of TTFT, TBT and completion.

mod decode_first;
mod disagg;
mod fcfs;
mod orca;
mod paged;
mod prefill_first;
mod sarathi;
mod static_batch;
mod vllm;

pub use decode_first::DecodeFirst;
pub use disagg::{DisaggDecode, DisaggPrefill, DisaggSpec};
pub use fcfs::Fcfs;
pub use orca::Orca;
pub use prefill_first::PrefillFirst;
pub use sarathi::Sarathi;
pub use static_batch::StaticBatch;
pub use vllm::Vllm;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use crate::cost::BatchShape;
use crate::engine::InFlight;
use crate::kv::KvConfig;
use crate::prefix::{CacheHit, GpuCache};
use crate::workload::Request;

/// Index of a request in its workload.
pub type ReqId = u32;

/// What a batch entry does for its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Processes `tokens` prompt tokens.
    Prefill,
    /// Generates one token.
    Decode,
}

/// One request's part in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The request.
    pub id: ReqId,
    /// Tokens this entry processes (prompt tokens for a prefill, 1 for a decode).
    pub tokens: u32,
    /// Prefill or decode.
    pub phase: Phase,
}

/// The entries of one GPU iteration; all start and finish together.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    entries: Vec<Entry>,
    shape: BatchShape,
    preempted: Vec<ReqId>,
    fetched: Vec<ReqId>,
    swapped_out: Vec<ReqId>,
    swapped_in: Vec<ReqId>,
    pulled: Vec<ReqId>,
}

impl Batch {
    /// Adds a prefill of `tokens` prompt tokens of request `id`.
    pub fn push_prefill(&mut self, id: ReqId, tokens: u32) {
        self.entries.push(Entry {
            id,
            tokens,
            phase: Phase::Prefill,
        });
        self.shape.prefill_tokens += u64::from(tokens);
        self.shape.prefill_entries += 1;
    }

    /// Adds one decode step of request `id`, whose KV cache holds `context` tokens.
    pub fn push_decode(&mut self, id: ReqId, context: u32) {
        self.entries.push(Entry {
            id,
            tokens: 1,
            phase: Phase::Decode,
        });
        self.shape.decode_entries += 1;
        self.shape.kv_tokens += u64::from(context);
    }

    /// Preempts request `id` by recompute before this batch runs: the engine drops its KV
    /// cache, and its next prefill rebuilds the prompt and every token it generated (see
    /// [`Progress::recompute`]) and emits the next token; tokens already emitted are not
    /// emitted again. The request must not also be an entry of this batch; the scheduler
    /// re-queues it itself.
    pub fn preempt(&mut self, id: ReqId) {
        self.preempted.push(id);
    }

    /// Preempts request `id` by swapping before this batch runs: the engine moves its KV
    /// cache to host memory over the [`SwapLink`], freeing its blocks but keeping its
    /// progress, and adds the transfer time to this batch's duration. The request must not
    /// also be an entry of this batch; the scheduler keeps it until it calls [`Batch::swap_in`].
    pub fn swap_out(&mut self, id: ReqId) {
        self.swapped_out.push(id);
    }

    /// Brings swapped-out request `id`'s KV cache back before this batch runs: the engine
    /// re-occupies its blocks and adds the transfer time to this batch's duration. The
    /// request may decode in this same batch.
    pub fn swap_in(&mut self, id: ReqId) {
        self.swapped_in.push(id);
    }

    /// Requests swapped out when this batch was formed, in the order the scheduler chose them.
    pub fn swapped_out(&self) -> &[ReqId] {
        &self.swapped_out
    }

    /// Requests swapped back in when this batch was formed.
    pub fn swapped_in(&self) -> &[ReqId] {
        &self.swapped_in
    }

    /// Starts moving request `id`'s KV cache to this GPU from the GPU that prefilled it
    /// (disaggregated serving). The engine allocates its blocks here at once, frees them
    /// there when the transfer ends, and then calls [`Scheduler::on_transfer_done`].
    pub fn fetch(&mut self, id: ReqId) {
        self.fetched.push(id);
    }

    /// Requests this GPU took from the router's shared queue ([`View::held`]) while forming
    /// this batch, oldest first: the engine assigns them to this GPU when the batch starts.
    pub fn pulled(&self) -> &[ReqId] {
        &self.pulled
    }

    /// Requests whose KV transfer to this GPU starts with this batch.
    pub fn fetched(&self) -> &[ReqId] {
        &self.fetched
    }

    /// Requests preempted when this batch was formed, in the order the scheduler chose them.
    pub fn preempted(&self) -> &[ReqId] {
        &self.preempted
    }

    /// The entries, in the order the scheduler added them.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// What the cost model sees of this batch, except
    /// [`prefill_squares`](BatchShape::prefill_squares), which needs each request's progress
    /// (see [`priced_shape`](Self::priced_shape)).
    pub fn shape(&self) -> &BatchShape {
        &self.shape
    }

    /// The whole shape the cost model prices, with each prefill entry's attention counted
    /// from `prefilled(id)`, the tokens of request `id` already prefilled, so a prompt's
    /// chunks cost what the prompt's attention costs whole.
    pub fn priced_shape(&mut self, prefilled: impl Fn(ReqId) -> u32) -> &BatchShape {
        self.shape.prefill_squares = self
            .entries
            .iter()
            .filter(|e| e.phase == Phase::Prefill)
            .map(|e| {
                let offset = prefilled(e.id);
                BatchShape::chunk_squares(u64::from(offset), u64::from(e.tokens))
            })
            .sum();
        &self.shape
    }

    /// True when the scheduler chose nothing to run.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.preempted.clear();
        self.fetched.clear();
        self.swapped_out.clear();
        self.swapped_in.clear();
        self.pulled.clear();
        self.shape = BatchShape::default();
    }
}

/// How far one request has got (tokens).
///
/// A request's prefill processes its prompt, plus, after a preemption by recompute, the
/// `recompute` tokens it had generated (all it had emitted) whose KV cache was dropped; its
/// cache then holds `prefilled + decoded - recompute` tokens. The recompute emits the next
/// token, so a preemption counts that decode step in `decoded` at once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Tokens of the current prefill already processed (prompt first, then recomputed ones).
    pub prefilled: u32,
    /// Decode steps done or, during a recompute, owed to it (tokens generated after the
    /// first).
    pub decoded: u32,
    /// Generated tokens the current prefill rebuilds: every token the request had emitted
    /// at its latest preemption past its first token, 0 for a request never so preempted.
    pub recompute: u32,
    /// Time of the request's latest emitted token (seconds).
    pub last_token: f64,
}

impl Progress {
    /// Tokens in the request's KV cache: prompt and generated tokens processed so far.
    pub fn context(&self) -> u32 {
        self.prefilled + self.decoded - self.recompute
    }
}

/// Read-only view of the size and progress of every request in flight, and of the GPU's KV
/// cache.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// The requests in flight, by [`ReqId`].
    pub(crate) live: &'a InFlight,
    /// This GPU's KV cache size.
    pub kv: KvConfig,
    /// Blocks of this GPU's KV cache in use by its unfinished requests.
    pub kv_used: u64,
    /// Requests held in the router's shared queue (`--router central`), oldest first, that
    /// this GPU may take; empty under every other router and for GPUs that take no arrivals.
    pub held: &'a VecDeque<ReqId>,
    /// Requests the batch being reported finished (0 outside `on_batch_done`): a policy
    /// looks for finished requests only when there are some, since most decode iterations
    /// finish none.
    pub(crate) finished: usize,
    /// This GPU's prefix cache, when on.
    pub(crate) cache: Option<&'a RefCell<GpuCache>>,
}

impl View<'_> {
    /// Request `id`'s size and arrival; it must be in flight (arrived, and either unfinished
    /// or finished by the batch being reported).
    pub fn request(&self, id: ReqId) -> &Request {
        &self.live.get(id).request
    }

    /// Request `id`'s progress; it must be in flight (see [`View::request`]).
    pub fn progress(&self, id: ReqId) -> &Progress {
        &self.live.get(id).progress
    }

    /// KV blocks of the request's whole prompt plus decode budget: what a policy that
    /// reserves memory up front at admission (Orca's `max_tokens`, a disaggregated decode
    /// GPU) sets aside.
    pub fn full_reservation(&self, id: ReqId) -> u64 {
        let r = self.request(id);
        self.kv
            .blocks_for(u64::from(r.prompt) + u64::from(r.decode))
    }

    /// Tokens the request's prefill processes in all: `L`, plus the recomputed tokens after a
    /// preemption.
    pub fn prefill_target(&self, id: ReqId) -> u32 {
        let slot = self.live.get(id);
        slot.request.prompt + slot.progress.recompute
    }

    /// Tokens still to prefill.
    pub fn prefill_left(&self, id: ReqId) -> u32 {
        let slot = self.live.get(id);
        slot.request.prompt + slot.progress.recompute - slot.progress.prefilled
    }

    /// Tokens in the request's KV cache: its prompt plus the tokens it has generated, as far
    /// as they have been processed.
    pub fn context(&self, id: ReqId) -> u32 {
        self.progress(id).context()
    }

    /// True once the request has emitted all `B + 1` tokens.
    #[inline]
    pub fn is_done(&self, id: ReqId) -> bool {
        let (r, p) = (&self.live.get(id).request, &self.live.get(id).progress);
        p.prefilled == r.prompt + p.recompute && p.decoded == r.decode
    }

    /// Free blocks of this GPU's KV cache; `u64::MAX` when unlimited.
    pub fn kv_free(&self) -> u64 {
        self.kv.capacity_blocks().saturating_sub(self.kv_used)
    }

    /// What waiting request `id` would find in this GPU's prefix cache if admitted now:
    /// nothing without a cache or a prefix identity. A policy deciding whether to admit it
    /// counts the hit's tokens as not to prefill and its unreferenced blocks as taken.
    pub fn cache_hit(&self, id: ReqId) -> CacheHit {
        match self.cache {
            Some(c) => c.borrow().hit(self.request(id), self.kv.block_size),
            None => CacheHit::default(),
        }
    }

    /// Waiting request `id` is admitted with `hit`, found by [`View::cache_hit`] just
    /// before: it references those cached blocks now, so a request admitted after it in
    /// this step sees them referenced, and its prefill starts after them when the batch
    /// starts. A policy calls it once per admission, and never after preempting in the
    /// same step (the victims' blocks are released only when the batch starts).
    pub fn reuse_cached(&self, id: ReqId, hit: CacheHit) {
        if let Some(c) = self.cache {
            c.borrow_mut()
                .reuse(id, self.request(id), self.kv.block_size, hit);
        }
    }

    /// Running request `id` is being preempted (by recompute or by swapping): it drops its
    /// references to cached blocks now, so that the memory a policy counts as freed is what
    /// the batch frees, however many of this step's victims shared a block. Returns how
    /// many of its cached blocks other requests still reference: they stay in use (0
    /// without a cache).
    pub fn release_cached(&self, id: ReqId) -> u64 {
        match self.cache {
            Some(c) => c.borrow_mut().drop_refs(id),
            None => 0,
        }
    }

    /// Blocks the request needs beyond those it holds to process `tokens` more tokens.
    pub fn kv_growth(&self, id: ReqId, tokens: u32) -> u64 {
        let ctx = u64::from(self.context(id));
        self.kv.blocks_for(ctx + u64::from(tokens)) - self.kv.blocks_for(ctx)
    }
}

/// A policy's waiting line: the requests routed to this GPU and not yet admitted (preempted
/// ones go back to its front), followed by the shared queue of a central router
/// ([`View::held`]). A policy reads it front to back and takes only what it admits, so a GPU
/// behind `--router central` takes exactly the requests it would admit if they had been
/// routed to it: the shared queue acts as every GPU's local queue at once.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    local: VecDeque<ReqId>,
}

impl Waiting {
    /// Queues a request routed to this GPU.
    pub fn push_back(&mut self, id: ReqId) {
        self.local.push_back(id);
    }

    /// Puts a preempted request back at the head of the line.
    pub fn push_front(&mut self, id: ReqId) {
        self.local.push_front(id);
    }

    /// The request at the head of the line, if any.
    pub fn front(&self, view: &View, batch: &Batch) -> Option<ReqId> {
        match self.local.front() {
            Some(&id) => Some(id),
            None => view.held.get(batch.pulled.len()).copied(),
        }
    }

    /// Takes the request at the head of the line; one from the shared queue is recorded in
    /// `batch` as pulled ([`Batch::pulled`]).
    pub fn pop_front(&mut self, view: &View, batch: &mut Batch) -> Option<ReqId> {
        if let Some(id) = self.local.pop_front() {
            return Some(id);
        }
        let id = *view.held.get(batch.pulled.len())?;
        batch.pulled.push(id);
        Some(id)
    }

    /// Requests in the line.
    pub fn len(&self, view: &View, batch: &Batch) -> usize {
        self.local.len() + view.held.len() - batch.pulled.len()
    }

    /// The request at the head of this GPU's own queue, if any (before the shared one).
    pub fn local_front(&self) -> Option<ReqId> {
        self.local.front().copied()
    }

    /// True when no request waits, before a batch pulls any.
    pub fn is_empty(&self, view: &View) -> bool {
        self.local.is_empty() && view.held.is_empty()
    }
}

/// Removes the finished requests from `running` and returns the KV blocks their up-front
/// reservations ([`View::full_reservation`]) held, for policies that reserve at admission.
pub(crate) fn release_finished(running: &mut Vec<ReqId>, view: &View) -> u64 {
    let mut freed = 0;
    if view.finished == 0 {
        return freed;
    }
    running.retain(|&id| {
        let done = view.is_done(id);
        if done {
            freed += view.full_reservation(id);
        }
        !done
    });
    freed
}

/// A single-GPU scheduling policy.
pub trait Scheduler: Send {
    /// Request `id` has arrived at this GPU.
    fn admit(&mut self, id: ReqId, view: &View);
    /// The GPU is free: add the next iteration's entries to the (empty) `batch`, or add
    /// nothing to stay idle until the next admission. New requests are taken through a
    /// `Waiting` line, so that a central router's shared queue serves as the local one.
    fn schedule(&mut self, view: &View, batch: &mut Batch);
    /// `batch` has finished; `view` already includes its progress.
    fn on_batch_done(&mut self, batch: &Batch, view: &View);
    /// The KV cache of request `id`, fetched with [`Batch::fetch`], has arrived.
    fn on_transfer_done(&mut self, _id: ReqId, _view: &View) {}
    /// The requests this GPU's next batches decode, one token each per batch, until one of
    /// them has one token left or another event (an arrival) happens; empty when the next
    /// batch may hold anything else. The engine may run those batches in a tight loop
    /// without calling [`schedule`](Self::schedule) or
    /// [`on_batch_done`](Self::on_batch_done) for them, so a policy names them only when
    /// `schedule` would choose exactly them, in this order, and neither call would change
    /// its state.
    fn steady_decodes(&self, _view: &View) -> &[ReqId] {
        &[]
    }
}

/// Limits shared by the memory-aware continuous-batching policies (vLLM's names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchLimits {
    /// Most requests running at once, prefilling or decoding (`max_num_seqs`).
    pub max_seqs: u32,
    /// Most tokens one iteration processes (`max_num_batched_tokens`; Sarathi's token budget).
    pub max_tokens: u32,
    /// Fraction of KV blocks a new admission must leave free (vLLM's watermark, 0.01).
    pub watermark: f64,
    /// How a running request that must make room is preempted (vllm and decode-first
    /// honour [`Preemption::Swap`]; the other policies always recompute).
    pub preemption: Preemption,
}

/// How a paged-memory policy preempts a running request when the batch cannot grow.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Preemption {
    /// Drop its KV cache; its next prefill rebuilds it ([`Batch::preempt`]).
    #[default]
    Recompute,
    /// Move its KV cache to host memory and back ([`Batch::swap_out`], [`Batch::swap_in`]).
    Swap(SwapLink),
}

/// The GPU-host link that swapped KV caches cross (vLLM's swap space, over PCIe).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwapLink {
    /// Bandwidth (GB/s, 1e9 bytes per second), the same in both directions.
    pub gbytes_per_s: f64,
    /// Bytes of KV cache per token.
    pub kv_bytes_per_token: f64,
}

impl SwapLink {
    /// Bytes of the KV cache of `tokens` tokens.
    pub fn bytes(&self, tokens: u32) -> f64 {
        f64::from(tokens) * self.kv_bytes_per_token
    }

    /// Seconds to move the KV cache of `tokens` tokens one way: bytes over bandwidth.
    pub fn time(&self, tokens: u32) -> f64 {
        self.bytes(tokens) / (self.gbytes_per_s * 1e9)
    }
}

impl Default for BatchLimits {
    /// vLLM's defaults for `max_num_seqs` (256) and the watermark (1%); 2048 batched tokens.
    fn default() -> Self {
        BatchLimits {
            max_seqs: 256,
            max_tokens: 2048,
            watermark: 0.01,
            preemption: Preemption::Recompute,
        }
    }
}

/// A scheduler choice with its parameters, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerSpec {
    /// The seed's baseline: FCFS, one request at a time, run to completion.
    A,
    /// The seed's prefill-prioritizing batching.
    B {
        /// Most prefills in one batch.
        k: u32,
        /// Most decode entries in one batch (`None`: all decoding requests).
        max_decode_batch: Option<u32>,
    },
    /// FasterTransformer-style static batching of up to `k` requests.
    Static {
        /// Most requests in one static batch.
        k: u32,
    },
    /// Orca's iteration-level scheduling with whole prefills.
    Orca(BatchLimits),
    /// vLLM's prefill-prioritizing continuous batching with preemption by recompute or swap.
    Vllm(BatchLimits),
    /// Sarathi-Serve's chunked prefills under a token budget (`max_tokens`).
    Sarathi(BatchLimits),
    /// Decodes always first; prefills only when nothing decodes.
    DecodeFirst(BatchLimits),
    /// Disaggregated prefill and decode GPU pools (DistServe, Splitwise).
    Disagg(DisaggSpec),
}

impl SchedulerSpec {
    /// A fresh instance for one GPU.
    pub fn build(&self) -> Box<dyn Scheduler> {
        self.build_for(0)
    }

    /// A fresh instance for GPU `gpu` of the cluster (only disaggregated serving gives GPUs
    /// different roles).
    pub fn build_for(&self, gpu: usize) -> Box<dyn Scheduler> {
        match *self {
            SchedulerSpec::A => Box::new(Fcfs::default()),
            SchedulerSpec::B {
                k,
                max_decode_batch,
            } => Box::new(PrefillFirst::new(k, max_decode_batch)),
            SchedulerSpec::Static { k } => Box::new(StaticBatch::new(k)),
            SchedulerSpec::Orca(l) => Box::new(Orca::new(l)),
            SchedulerSpec::Vllm(l) => Box::new(Vllm::new(l)),
            SchedulerSpec::Sarathi(l) => Box::new(Sarathi::new(l)),
            SchedulerSpec::DecodeFirst(l) => Box::new(DecodeFirst::new(l)),
            SchedulerSpec::Disagg(d) if gpu < d.prefill_gpus as usize => {
                Box::new(DisaggPrefill::new(d.limits))
            }
            SchedulerSpec::Disagg(d) => Box::new(DisaggDecode::new(d.limits)),
        }
    }

    /// Short name, as accepted by `--scheduler`.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The bare policy name.
    pub fn kind(&self) -> SchedulerKind {
        match self {
            SchedulerSpec::A => SchedulerKind::A,
            SchedulerSpec::B { .. } => SchedulerKind::B,
            SchedulerSpec::Static { .. } => SchedulerKind::Static,
            SchedulerSpec::Orca(_) => SchedulerKind::Orca,
            SchedulerSpec::Vllm(_) => SchedulerKind::Vllm,
            SchedulerSpec::Sarathi(_) => SchedulerKind::Sarathi,
            SchedulerSpec::DecodeFirst(_) => SchedulerKind::DecodeFirst,
            SchedulerSpec::Disagg(_) => SchedulerKind::Disagg,
        }
    }

    /// Whether the policy can preempt by swapping ([`Preemption::Swap`]).
    pub fn supports_swap(&self) -> bool {
        matches!(self, SchedulerSpec::Vllm(_) | SchedulerSpec::DecodeFirst(_))
    }

    /// The swap link when the policy preempts by swapping.
    pub fn swap_link(&self) -> Option<SwapLink> {
        match self.limits()?.preemption {
            Preemption::Swap(link) if self.supports_swap() => Some(link),
            _ => None,
        }
    }

    /// The iteration limits of a continuous-batching policy.
    pub fn limits(&self) -> Option<BatchLimits> {
        match *self {
            SchedulerSpec::Orca(l)
            | SchedulerSpec::Vllm(l)
            | SchedulerSpec::Sarathi(l)
            | SchedulerSpec::DecodeFirst(l) => Some(l),
            SchedulerSpec::Disagg(d) => Some(d.limits),
            _ => None,
        }
    }
}

/// The bare policy name of `--scheduler`, before its parameters are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// See [`SchedulerSpec::A`].
    A,
    /// See [`SchedulerSpec::B`].
    B,
    /// See [`SchedulerSpec::Static`].
    Static,
    /// See [`SchedulerSpec::Orca`].
    Orca,
    /// See [`SchedulerSpec::Vllm`].
    Vllm,
    /// See [`SchedulerSpec::Sarathi`].
    Sarathi,
    /// See [`SchedulerSpec::DecodeFirst`].
    DecodeFirst,
    /// See [`SchedulerSpec::Disagg`].
    Disagg,
}

impl SchedulerKind {
    /// Every policy, in the order `--help` lists them.
    pub const ALL: [SchedulerKind; 8] = [
        SchedulerKind::A,
        SchedulerKind::B,
        SchedulerKind::Static,
        SchedulerKind::Orca,
        SchedulerKind::Vllm,
        SchedulerKind::Sarathi,
        SchedulerKind::DecodeFirst,
        SchedulerKind::Disagg,
    ];

    /// The name `--scheduler` accepts.
    pub fn name(&self) -> &'static str {
        match self {
            SchedulerKind::A => "a",
            SchedulerKind::B => "b",
            SchedulerKind::Static => "static",
            SchedulerKind::Orca => "orca",
            SchedulerKind::Vllm => "vllm",
            SchedulerKind::Sarathi => "sarathi",
            SchedulerKind::DecodeFirst => "decode-first",
            SchedulerKind::Disagg => "disagg",
        }
    }

    /// Whether the policy keeps within a finite KV cache (the seed's A and B assume an
    /// unlimited one).
    pub fn memory_aware(&self) -> bool {
        !matches!(self, SchedulerKind::A | SchedulerKind::B)
    }
}

impl FromStr for SchedulerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        SchedulerKind::ALL
            .into_iter()
            .find(|k| k.name() == lower)
            .ok_or_else(|| {
                let names: Vec<&str> = SchedulerKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown scheduler '{s}' (allowed: {})", names.join(", "))
            })
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
