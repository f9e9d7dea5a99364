//! Synthetic multi-turn conversations, whose prompts share prefixes.
//!
//! Sessions start as a Poisson process. Each has `turns` turns; a turn's prompt is the
//! whole conversation so far (an optional system prompt shared by the sessions that drew
//! it, then every earlier user message and reply) plus a new user message, and its reply
//! is its output. The loop is closed: a turn arrives a think time (exponential) after the
//! reply to the turn before it is complete, so a slow server delays the conversation. The
//! workload yields each session's first turn; the later ones ride on it
//! ([`Request::next`]) and the engine releases each when its predecessor completes.
//!
//! A session draws its system prompt, message lengths and think times from a stream of its
//! own ([`Source::Session`]), at its start: what it asks never depends on the order in
//! which the engine serves turns.
//!
//! Prompts carry their prefix identity ([`Prefix`]) in chunks of [`CHUNK_TOKENS`] tokens:
//! a chunk wholly inside a system prompt is named by that system prompt and its position,
//! any other chunk by its session and position, so two prompts share exactly the chunks
//! whose tokens are the same text.

use std::sync::Arc;

use rand::RngExt;
use rand_distr::{Distribution, Exp1};

use crate::dist::LengthDist;
use crate::limits::{self, RangeError, require};
use crate::prefix::Prefix;
use crate::request::NextTurn;
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
    /// Mean user think time from a reply's last token to the next turn's arrival (seconds,
    /// exponential).
    pub think_s: f64,
    /// Tokens of each new user message.
    pub user: LengthDist,
    /// Each turn's decode budget `B` (tokens): its reply is `B + 1` tokens.
    pub decode: LengthDist,
    /// Tokens of the system prompt that starts every session (0 for none).
    pub system_tokens: u32,
    /// Distinct system prompts, each session drawing one uniformly (at least 1).
    pub system_prompts: u32,
    /// Requests (turns) in all: `ceil(requests / turns)` sessions, the last one cut short.
    pub requests: usize,
}

impl MultiTurn {
    /// Mean arrival rate of turns while the server keeps up (requests per second): each
    /// session brings `turns` turns whatever their pace.
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

    /// The first turns of replication `rep`'s sessions, in arrival order, each carrying
    /// the rest of its conversation; drawn as they are read.
    pub fn iter(&self, seed: u64, rep: u32) -> Turns<'_> {
        Turns {
            w: self,
            seed,
            rep,
            starts: stream(seed, rep, Source::Arrivals),
            next_start: 0.0,
            started: 0,
            left: self.requests,
        }
    }
}

/// The sessions of a [`MultiTurn`] workload, as their first turns, drawn as they are read.
#[derive(Debug)]
pub struct Turns<'a> {
    w: &'a MultiTurn,
    seed: u64,
    rep: u32,
    starts: SimRng,
    /// When the next session starts (seconds).
    next_start: f64,
    started: u64,
    /// Turns not yet given to a session.
    left: usize,
}

fn exp(rng: &mut SimRng, mean: f64) -> f64 {
    mean * Distribution::<f64>::sample(&Exp1, rng)
}

impl Turns<'_> {
    /// The chunk ids of a prompt of `tokens` tokens in session `id` with system prompt
    /// `system`.
    fn prefix(&self, id: u64, system: u32, tokens: u32) -> Prefix {
        let system_chunks = self.w.system_tokens / CHUNK_TOKENS;
        let ids = (0..tokens.div_ceil(CHUNK_TOKENS))
            .map(|c| {
                // Tagged apart so that a system chunk never equals a session chunk.
                if c < system_chunks {
                    (u64::from(system) << 32 | u64::from(c)) << 1
                } else {
                    (id << 32 | u64::from(c)) << 1 | 1
                }
            })
            .collect();
        Prefix {
            block_tokens: CHUNK_TOKENS,
            ids,
            session: Some(id),
        }
    }
}

impl Iterator for Turns<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        if self.left == 0 {
            return None;
        }
        let w = self.w;
        let turns = self.left.min(w.turns as usize);
        self.left -= turns;
        let id = self.started;
        self.started += 1;
        let arrival = self.next_start;
        self.next_start += exp(&mut self.starts, 1.0 / w.session_rate);
        let mut rng = stream(self.seed, self.rep, Source::Session(id));
        let system = rng.random_range(0..w.system_prompts);
        // Each turn with the think time before it (none before the first).
        let mut context = w.system_tokens;
        let mut chain = Vec::with_capacity(turns);
        for k in 0..turns {
            let prompt = context + w.user.sample(&mut rng);
            let decode = w.decode.sample(&mut rng);
            let think_s = if k == 0 {
                0.0
            } else {
                exp(&mut rng, w.think_s)
            };
            context = prompt + decode + 1;
            chain.push((think_s, prompt, decode));
        }
        let mut next = None;
        for &(think_s, prompt, decode) in chain.iter().rev() {
            let request = Request {
                arrival,
                prompt,
                decode,
                prefix: Some(Arc::new(self.prefix(id, system, prompt))),
                next,
            };
            next = Some(Box::new(NextTurn { think_s, request }));
        }
        next.map(|first| first.request)
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

    /// Each session's turns, in order, with the think time before each.
    fn sessions(mt: &MultiTurn, seed: u64) -> Vec<Vec<(f64, Request)>> {
        mt.iter(seed, 0)
            .map(|first| {
                let mut turns = vec![(0.0, first)];
                while let Some(n) = turns.last_mut().unwrap().1.next.take() {
                    turns.push((n.think_s, n.request));
                }
                turns
            })
            .collect()
    }

    #[test]
    fn turns_grow_by_the_conversation_and_share_its_chunks() {
        let ss = sessions(&w(3, 64), 1);
        assert_eq!(ss.iter().map(Vec::len).sum::<usize>(), 3000);
        assert_eq!(ss.len(), 1000);
        assert!(
            ss.windows(2)
                .all(|p| p[0][0].1.arrival <= p[1][0].1.arrival)
        );
        let ids = |r: &Request| r.prefix.as_ref().unwrap().ids.clone();
        for s in &ss {
            // Prompts: system + 40, then + 30 + 40 each turn; each extends the one before.
            let prompts: Vec<u32> = s.iter().map(|(_, r)| r.prompt).collect();
            assert_eq!(prompts, [104, 174, 244]);
            assert!(s.iter().all(|(_, r)| r.decode == 29));
            assert!(s.windows(2).all(|p| ids(&p[1].1)[..ids(&p[0].1).len() - 1]
                == ids(&p[0].1)[..ids(&p[0].1).len() - 1]));
            assert!(s[1..].iter().all(|(t, _)| *t >= 0.0));
        }
        // System chunks are shared across sessions drawing the same system prompt, and
        // nothing else is.
        let systems: std::collections::HashSet<u64> = ss.iter().map(|s| ids(&s[0].1)[0]).collect();
        assert_eq!(systems.len(), 2);
        assert_ne!(ids(&ss[0][0].1)[4], ids(&ss[1][0].1)[4]);
    }

    #[test]
    fn sessions_start_at_the_session_rate_and_think_at_the_mean() {
        let mt = w(4, 0);
        let ss = sessions(&mt, 2);
        // 3,000 turns in 750 sessions, the last cut to the count.
        assert_eq!(ss.len(), 750);
        let span = ss.last().unwrap()[0].1.arrival;
        // The session count over the span has relative sd 1/sqrt(750).
        let rate = ss.len() as f64 / span;
        assert!(
            (rate / mt.session_rate - 1.0).abs() < 4.0 / 750f64.sqrt(),
            "{rate}"
        );
        // 2,250 exponential think times: the mean's relative sd is 1/sqrt(2,250).
        let thinks: Vec<f64> = ss.iter().flat_map(|s| s[1..].iter().map(|t| t.0)).collect();
        assert_eq!(thinks.len(), 2250);
        let mean = thinks.iter().sum::<f64>() / thinks.len() as f64;
        assert!(
            (mean / mt.think_s - 1.0).abs() < 4.0 / 2250f64.sqrt(),
            "{mean}"
        );
        let short = MultiTurn {
            requests: 10,
            ..mt.clone()
        };
        let lens: Vec<usize> = sessions(&short, 2).iter().map(Vec::len).collect();
        assert_eq!(lens, [4, 4, 2]);
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

    #[test]
    fn a_session_draws_the_same_turns_whatever_the_others() {
        // Session 3's conversation does not depend on the session rate, which changes every
        // start time and hence any shared stream's order.
        let a = sessions(&w(4, 0), 7);
        let faster = MultiTurn {
            session_rate: 5.0,
            ..w(4, 0)
        };
        let b = sessions(&faster, 7);
        let strip = |s: &[(f64, Request)]| -> Vec<(f64, u32, u32)> {
            s.iter().map(|(t, r)| (*t, r.prompt, r.decode)).collect()
        };
        assert_eq!(strip(&a[3]), strip(&b[3]));
    }
}
