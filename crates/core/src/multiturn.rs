//! Synthetic multi-turn conversations, whose prompts share prefixes.
//!
//! Sessions start as a Poisson process. Each has `turns` turns; a turn's prompt is the
//! whole conversation so far (an optional system prompt shared by the sessions that drew
//! it, then every earlier user message and reply) plus a new user message, and its reply
//! is its output. The next turn arrives a think time (exponential) after the turn before
//! it arrived: the generator is open-loop, as the engine reads requests ahead of serving
//! them, so the think time covers the reply's serving time as well as the user's pause.
//!
//! Prompts carry their prefix identity ([`Prefix`]) in chunks of [`CHUNK_TOKENS`] tokens:
//! a chunk wholly inside a system prompt is named by that system prompt and its position,
//! any other chunk by its session and position, so two prompts share exactly the chunks
//! whose tokens are the same text.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rand::RngExt;
use rand_distr::{Distribution, Exp1};

use crate::dist::LengthDist;
use crate::limits::{self, RangeError, require};
use crate::prefix::Prefix;
use crate::rng::{SimRng, Source, stream};
use crate::workload::Request;

/// Tokens per prefix id of a generated prompt (vLLM's default KV block size, so that a
/// hit loses nothing to rounding).
pub const CHUNK_TOKENS: u32 = 16;

/// A multi-turn conversation workload.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiTurn {
    /// Sessions started per second (Poisson).
    pub session_rate: f64,
    /// Turns per session (at least 1).
    pub turns: u32,
    /// Mean time from one turn's arrival to the next's (seconds, exponential).
    pub think_s: f64,
    /// Tokens of each new user message.
    pub user: LengthDist,
    /// Each turn's decode budget `B` (tokens): its reply is `B + 1` tokens.
    pub decode: LengthDist,
    /// Tokens of the system prompt that starts every session (0 for none).
    pub system_tokens: u32,
    /// Distinct system prompts, each session drawing one uniformly (at least 1).
    pub system_prompts: u32,
    /// Requests (turns) in all; sessions start until this many turns have arrived.
    pub requests: usize,
}

impl MultiTurn {
    /// Mean arrival rate of turns (requests per second).
    pub fn rate(&self) -> f64 {
        self.session_rate * f64::from(self.turns)
    }

    /// The longest prompt and decode budget a turn can have (tokens).
    pub fn longest(&self) -> (u64, u64) {
        let reply = u64::from(self.decode.max()) + 1;
        let turn = u64::from(self.user.max()) + reply;
        let prompt = u64::from(self.system_tokens) + u64::from(self.turns) * turn - reply;
        (prompt, u64::from(self.decode.max()))
    }

    /// Checks the settings, naming the flag at fault.
    pub fn validate(&self) -> Result<(), RangeError> {
        limits::rate(self.session_rate)?;
        require(self.turns >= 1, "turns", "must be at least 1")?;
        require(
            self.think_s.is_finite() && self.think_s >= 0.0,
            "think",
            "must be a number of seconds >= 0",
        )?;
        require(
            self.system_prompts >= 1,
            "system-prompts",
            "must be at least 1",
        )?;
        require(
            self.user.min() >= 1,
            "prompt",
            "user messages must be at least 1 token long",
        )?;
        let (prompt, _) = self.longest();
        limits::tokens("turns", prompt)?;
        require(
            self.think_s <= limits::MAX_HORIZON_S,
            "think",
            format!("must be at most {} s", limits::MAX_HORIZON_S),
        )?;
        limits::horizon(self.requests, self.requests as f64 / self.rate())
    }

    /// The turns of replication `rep`, in arrival order, drawn as they are read; memory
    /// follows the sessions in progress.
    pub fn iter(&self, seed: u64, rep: u32) -> Turns<'_> {
        Turns {
            w: self,
            sessions: stream(seed, rep, Source::Arrivals),
            users: stream(seed, rep, Source::Prompt),
            replies: stream(seed, rep, Source::Decode),
            thinks: stream(seed, rep, Source::Lengths),
            next_start: 0.0,
            started: 0,
            pending: BinaryHeap::new(),
            left: self.requests,
        }
    }
}

/// A session between turns.
#[derive(Debug, PartialEq)]
struct Session {
    /// Arrival of its next turn (seconds).
    at: f64,
    /// Session number, in start order (ties in time go to the older session).
    id: u64,
    /// Its system prompt.
    system: u32,
    /// Tokens of the conversation so far.
    context: u32,
    /// Turns still to come.
    turns_left: u32,
}

impl Eq for Session {}

impl PartialOrd for Session {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Session {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.total_cmp(&other.at).then(self.id.cmp(&other.id))
    }
}

/// The turns of a [`MultiTurn`] workload, drawn as they are read.
#[derive(Debug)]
pub struct Turns<'a> {
    w: &'a MultiTurn,
    sessions: SimRng,
    users: SimRng,
    replies: SimRng,
    thinks: SimRng,
    /// When the next session starts (seconds).
    next_start: f64,
    started: u64,
    pending: BinaryHeap<Reverse<Session>>,
    left: usize,
}

impl Turns<'_> {
    fn exp(rng: &mut SimRng, mean: f64) -> f64 {
        mean * Distribution::<f64>::sample(&Exp1, rng)
    }

    /// The chunk ids of a prompt of `tokens` tokens in session `s`.
    fn prefix(&self, s: &Session, tokens: u32) -> Prefix {
        let system_chunks = self.w.system_tokens / CHUNK_TOKENS;
        let ids = (0..tokens.div_ceil(CHUNK_TOKENS))
            .map(|c| {
                // Tagged apart so that a system chunk never equals a session chunk.
                if c < system_chunks {
                    (u64::from(s.system) << 32 | u64::from(c)) << 1
                } else {
                    (s.id << 32 | u64::from(c)) << 1 | 1
                }
            })
            .collect();
        Prefix {
            block_tokens: CHUNK_TOKENS,
            ids,
            session: Some(s.id),
        }
    }
}

impl Iterator for Turns<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.left = self.left.checked_sub(1)?;
        let w = self.w;
        // Start every session due before the earliest pending turn.
        while self
            .pending
            .peek()
            .is_none_or(|Reverse(s)| self.next_start <= s.at)
        {
            let system = self.sessions.random_range(0..w.system_prompts);
            self.pending.push(Reverse(Session {
                at: self.next_start,
                id: self.started,
                system,
                context: w.system_tokens,
                turns_left: w.turns,
            }));
            self.started += 1;
            self.next_start += Self::exp(&mut self.sessions, 1.0 / w.session_rate);
        }
        let Reverse(mut s) = self.pending.pop().expect("a session was just started");
        let prompt = s.context + w.user.sample(&mut self.users);
        let decode = w.decode.sample(&mut self.replies);
        let request = Request {
            arrival: s.at,
            prompt,
            decode,
            prefix: Some(Arc::new(self.prefix(&s, prompt))),
        };
        s.turns_left -= 1;
        if s.turns_left > 0 {
            s.context = prompt + decode + 1;
            s.at += Self::exp(&mut self.thinks, w.think_s);
            self.pending.push(Reverse(s));
        }
        Some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(turns: u32, system_tokens: u32) -> MultiTurn {
        MultiTurn {
            session_rate: 0.5,
            turns,
            think_s: 10.0,
            user: LengthDist::Fixed(40),
            decode: LengthDist::Fixed(29),
            system_tokens,
            system_prompts: 2,
            requests: 3000,
        }
    }

    #[test]
    fn turns_grow_by_the_conversation_and_share_its_chunks() {
        let reqs: Vec<Request> = w(3, 64).iter(1, 0).collect();
        assert_eq!(reqs.len(), 3000);
        assert!(reqs.windows(2).all(|p| p[0].arrival <= p[1].arrival));
        // Prompts: system + 40, then + 30 + 40 each turn.
        for r in &reqs {
            assert!([104, 174, 244].contains(&r.prompt), "{}", r.prompt);
            assert_eq!(r.decode, 29);
        }
        let first = reqs.iter().find(|r| r.prompt == 104).unwrap();
        let later = reqs
            .iter()
            .find(|r| {
                r.prompt == 174
                    && r.prefix.as_ref().unwrap().ids[4] == first.prefix.as_ref().unwrap().ids[4]
            })
            .expect("a second turn of the first session");
        let (a, b) = (
            &first.prefix.as_ref().unwrap().ids,
            &later.prefix.as_ref().unwrap().ids,
        );
        assert_eq!(a[..], b[..a.len()]);
        // System chunks are shared across sessions drawing the same system prompt.
        let systems: std::collections::HashSet<u64> = reqs
            .iter()
            .map(|r| r.prefix.as_ref().unwrap().ids[0])
            .collect();
        assert_eq!(systems.len(), 2);
    }

    #[test]
    fn the_turn_rate_is_sessions_times_turns() {
        let mt = w(4, 0);
        let reqs: Vec<Request> = mt.iter(2, 0).collect();
        let span = reqs.last().unwrap().arrival;
        let rate = reqs.len() as f64 / span;
        // 3,000 turns from ~750 sessions: the session count's relative sd is 1/sqrt(750).
        assert!(
            (rate / mt.rate() - 1.0).abs() < 4.0 / 750f64.sqrt(),
            "{rate}"
        );
        assert!(mt.validate().is_ok());
        assert_eq!(
            MultiTurn {
                turns: 0,
                ..mt.clone()
            }
            .validate()
            .unwrap_err()
            .field,
            "turns"
        );
    }
}
