//! A user request: what workloads generate and traces replay.

use std::sync::Arc;

use crate::prefix::Prefix;

/// One user request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Arrival time (seconds from the start of the run).
    pub arrival: f64,
    /// Prompt length `L` (tokens), processed by the prefill.
    pub prompt: u32,
    /// Decode budget `B`: decode iterations after the prefill (tokens). The request emits
    /// `B + 1` tokens in all.
    pub decode: u32,
    /// The prompt's prefix identity, for prefix caching; `None` for a prompt that shares
    /// nothing. Shared, so that a request stays small and cheap to copy around.
    pub prefix: Option<Arc<Prefix>>,
    /// The next turn of a closed-loop conversation, which the engine releases when this
    /// request completes; `None` for an open-loop request.
    pub next: Option<Box<NextTurn>>,
}

/// A conversation's next turn: it arrives `think_s` after the turn before it completes,
/// so its arrival depends on how fast that turn was served (a closed loop).
#[derive(Debug, Clone, PartialEq)]
pub struct NextTurn {
    /// The user's think time from the completion of the turn before (seconds).
    pub think_s: f64,
    /// The turn; the engine sets its `arrival` when it releases it.
    pub request: Request,
}
