//! A user request: what workloads generate and traces replay.

/// One user request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Arrival time (seconds from the start of the run).
    pub arrival: f64,
    /// Prompt length `L` (tokens), processed by the prefill.
    pub prompt: u32,
    /// Decode budget `B`: decode iterations after the prefill (tokens). The request emits
    /// `B + 1` tokens in all.
    pub decode: u32,
}
