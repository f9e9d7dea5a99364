//! Single-GPU scheduling policies, one file each behind the [`Scheduler`] trait.
//!
//! A scheduler only decides what runs next. The engine owns the clock, the cost model and
//! every request's progress, and does all token accounting, so each policy is held to the
//! same definitions of TTFT, TBT and completion.

mod fcfs;
mod prefill_first;

pub use fcfs::Fcfs;
pub use prefill_first::PrefillFirst;

use std::fmt;
use std::str::FromStr;

use crate::cost::BatchShape;
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

    /// The entries, in the order the scheduler added them.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// What the cost model sees of this batch.
    pub fn shape(&self) -> &BatchShape {
        &self.shape
    }

    /// True when the scheduler chose nothing to run.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.shape = BatchShape::default();
    }
}

/// How far one request has got (tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Prompt tokens already processed.
    pub prefilled: u32,
    /// Decode iterations done (tokens generated after the first).
    pub decoded: u32,
    /// Time of the request's latest emitted token (seconds).
    pub last_token: f64,
}

/// Read-only view of every request's size and progress.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// The workload, indexed by [`ReqId`].
    pub requests: &'a [Request],
    /// Progress, indexed by [`ReqId`].
    pub progress: &'a [Progress],
}

impl View<'_> {
    /// Prompt tokens still to prefill.
    pub fn prefill_left(&self, id: ReqId) -> u32 {
        self.requests[id as usize].prompt - self.progress[id as usize].prefilled
    }

    /// Tokens in the request's KV cache: its prompt plus the tokens it has generated.
    pub fn context(&self, id: ReqId) -> u32 {
        let p = &self.progress[id as usize];
        p.prefilled + p.decoded
    }

    /// True once the request has emitted all `B + 1` tokens.
    pub fn is_done(&self, id: ReqId) -> bool {
        let (r, p) = (&self.requests[id as usize], &self.progress[id as usize]);
        p.prefilled == r.prompt && p.decoded == r.decode
    }
}

/// A single-GPU scheduling policy.
pub trait Scheduler: Send {
    /// Request `id` has arrived at this GPU.
    fn admit(&mut self, id: ReqId, view: &View);
    /// The GPU is free: add the next iteration's entries to the (empty) `batch`, or add
    /// nothing to stay idle until the next admission.
    fn schedule(&mut self, view: &View, batch: &mut Batch);
    /// `batch` has finished; `view` already includes its progress.
    fn on_batch_done(&mut self, batch: &Batch, view: &View);
    /// Whether the policy would start more work now if given it; pull-based routers hand
    /// queued requests to a GPU only while this holds.
    fn can_accept(&self) -> bool;
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
}

impl SchedulerSpec {
    /// A fresh instance for one GPU.
    pub fn build(&self) -> Box<dyn Scheduler> {
        match *self {
            SchedulerSpec::A => Box::new(Fcfs::default()),
            SchedulerSpec::B {
                k,
                max_decode_batch,
            } => Box::new(PrefillFirst::new(k, max_decode_batch)),
        }
    }

    /// Short name, as accepted by `--scheduler`.
    pub fn name(&self) -> &'static str {
        match self {
            SchedulerSpec::A => "a",
            SchedulerSpec::B { .. } => "b",
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
}

impl FromStr for SchedulerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "a" | "A" => Ok(SchedulerKind::A),
            "b" | "B" => Ok(SchedulerKind::B),
            _ => Err(format!("unknown scheduler '{s}' (allowed: a, b)")),
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedulerKind::A => "a",
            SchedulerKind::B => "b",
        })
    }
}
