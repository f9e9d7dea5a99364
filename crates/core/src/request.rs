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
}
