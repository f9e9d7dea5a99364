//! Workloads: the stream of requests a run serves.
//!
//! A synthetic workload draws arrival gaps, prompt lengths and decode budgets from three
//! independent streams, so the same seed gives the same requests whatever serves them.
//! A trace workload replays recorded requests ([`crate::trace`]).

use rand::RngExt;
use rand_distr::{Distribution, Exp1, Gamma};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::dist::LengthDist;
use crate::limits::{self, ARRIVAL_CV, RangeError, num, require};
use crate::multiturn::{MultiTurn, Turns};
use crate::rng::{SimRng, Source, stream};
use crate::trace::Trace;

// Requests are their own module, which traces read into without depending on workloads.
pub use crate::request::Request;

/// How arrival gaps are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArrivalKind {
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Constant gaps `1 / rate`.
    Deterministic,
    /// Gamma gaps with this coefficient of variation (`> 1` is burstier than Poisson).
    Gamma { cv: f64 },
}

impl FromStr for ArrivalKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "poisson" => Ok(ArrivalKind::Poisson),
            "det" => Ok(ArrivalKind::Deterministic),
            _ => {
                let cv = s
                    .strip_prefix("gamma:")
                    .and_then(|cv| cv.parse::<f64>().ok())
                    .ok_or_else(|| format!("'{s}' is not one of poisson, det, gamma:CV"))?;
                let (lo, hi) = ARRIVAL_CV;
                if (lo..=hi).contains(&cv) {
                    Ok(ArrivalKind::Gamma { cv })
                } else {
                    Err(format!(
                        "gamma CV must be from {} to {} (got {}); det gives CV 0",
                        num(lo),
                        num(hi),
                        num(cv)
                    ))
                }
            }
        }
    }
}

impl fmt::Display for ArrivalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrivalKind::Poisson => write!(f, "poisson"),
            ArrivalKind::Deterministic => write!(f, "det"),
            ArrivalKind::Gamma { cv } => write!(f, "gamma:{cv}"),
        }
    }
}

/// Where a run's requests come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// Drawn from distributions.
    Synthetic(SyntheticWorkload),
    /// Replayed from a recorded trace.
    Trace(TraceReplay),
    /// Multi-turn conversations whose prompts share prefixes.
    MultiTurn(MultiTurn),
}

impl Workload {
    /// The requests of replication `rep`, in arrival order, drawn one at a time as they are
    /// read, so that a run holds only the requests in flight.
    pub fn iter(&self, seed: u64, rep: u32) -> Requests<'_> {
        match self {
            Workload::Synthetic(w) => Requests::Synthetic(w.iter(seed, rep)),
            Workload::Trace(t) => Requests::Trace(t.iter()),
            Workload::MultiTurn(m) => Requests::MultiTurn(m.iter(seed, rep)),
        }
    }

    /// All the requests of replication `rep`, in arrival order, for callers that keep
    /// per-request results.
    pub fn generate(&self, seed: u64, rep: u32) -> Vec<Request> {
        self.iter(seed, rep).collect()
    }

    /// Mean arrival rate (requests per second).
    pub fn rate(&self) -> f64 {
        match self {
            Workload::Synthetic(w) => w.rate,
            Workload::Trace(t) => t.rate(),
            Workload::MultiTurn(m) => m.rate(),
        }
    }

    /// Requests per replication.
    pub fn requests(&self) -> usize {
        match self {
            Workload::Synthetic(w) => w.requests,
            Workload::Trace(t) => t.requests,
            Workload::MultiTurn(m) => m.requests,
        }
    }

    /// The largest `f(L, B)` any request can have, for `f` nondecreasing in the prompt `L`
    /// and the decode budget `B` (tokens): over a trace's requests, or at the largest values
    /// of independent laws. For checking that a policy's limits let every request run.
    pub fn longest(&self, f: impl Fn(u64, u64) -> u64) -> u64 {
        let of_trace = |t: &Trace| {
            t.requests
                .iter()
                .map(|r| f(u64::from(r.prompt), u64::from(r.decode)))
                .max()
                .unwrap_or(0)
        };
        match self {
            Workload::Synthetic(w) => match &w.lengths_from {
                Some(t) => of_trace(t),
                None => f(u64::from(w.prompt.max()), u64::from(w.decode.max())),
            },
            Workload::Trace(t) => of_trace(&t.trace),
            Workload::MultiTurn(m) => {
                let (prompt, decode) = m.longest();
                f(prompt, decode)
            }
        }
    }

    /// Checks that the arithmetic of a run of this workload is exact and its size bounded
    /// (see [`crate::limits`]): request count, rate, arrival horizon, arrival law and lengths.
    pub fn validate(&self) -> Result<(), RangeError> {
        limits::requests(self.requests())?;
        match self {
            Workload::Synthetic(w) => {
                limits::rate(w.rate)?;
                limits::horizon(w.requests, w.requests as f64 / w.rate)?;
                if let ArrivalKind::Gamma { cv } = w.arrivals {
                    limits::within("arrivals", cv, ARRIVAL_CV, "(gamma CV)")?;
                }
                for (field, d) in [("prompt", &w.prompt), ("decode", &w.decode)] {
                    limits::tokens(field, u64::from(d.max()))?;
                }
                require(
                    w.lengths_from.is_some() || w.prompt.min() >= 1,
                    "prompt",
                    "prompts must be at least 1 token long",
                )
            }
            Workload::Trace(t) => {
                require(
                    t.requests <= t.trace.requests.len(),
                    "requests",
                    format!(
                        "must be at most the {} requests of {}",
                        t.trace.requests.len(),
                        t.trace.source.display()
                    ),
                )?;
                limits::rate(t.rate())?;
                limits::horizon(
                    t.requests,
                    t.trace.requests[t.requests - 1].arrival * t.time_scale,
                )
            }
            Workload::MultiTurn(m) => m.validate(),
        }
    }
}

/// A trace replayed at its recorded times, optionally compressed or stretched.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceReplay {
    /// The trace, shared by every replication.
    pub trace: Arc<Trace>,
    /// Recorded times are multiplied by this (`< 1` replays faster); 1 replays as recorded.
    pub time_scale: f64,
    /// Replay the first this many requests (at most the trace's length).
    pub requests: usize,
}

impl TraceReplay {
    /// The first `requests` of the trace with arrivals scaled. Every replication replays the
    /// same requests: only the service noise differs between replications.
    pub fn generate(&self) -> Vec<Request> {
        self.iter().collect()
    }

    /// [`TraceReplay::generate`], one request at a time.
    pub fn iter(&self) -> TraceRequests<'_> {
        TraceRequests {
            requests: self.trace.requests[..self.requests].iter(),
            time_scale: self.time_scale,
        }
    }

    /// Mean arrival rate of the replayed requests (requests per second).
    pub fn rate(&self) -> f64 {
        let span = self.trace.requests[self.requests - 1].arrival * self.time_scale;
        if span > 0.0 {
            (self.requests - 1) as f64 / span
        } else {
            f64::INFINITY
        }
    }
}

/// A synthetic workload: `requests` arrivals at `rate` per second with drawn lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticWorkload {
    /// Mean arrival rate `lambda` (requests per second).
    pub rate: f64,
    /// Shape of the arrival process.
    pub arrivals: ArrivalKind,
    /// Prompt length distribution (tokens).
    pub prompt: LengthDist,
    /// Decode budget distribution (tokens).
    pub decode: LengthDist,
    /// Number of requests.
    pub requests: usize,
    /// When set, each request's `(L, B)` pair is drawn uniformly (with replacement) from
    /// this trace's requests, jointly so that their correlation is kept, and `prompt` and
    /// `decode` are not used.
    pub lengths_from: Option<Arc<Trace>>,
}

impl SyntheticWorkload {
    /// Draws the requests of replication `rep`, in arrival order.
    pub fn generate(&self, seed: u64, rep: u32) -> Vec<Request> {
        self.iter(seed, rep).collect()
    }

    /// [`SyntheticWorkload::generate`], drawing each request when it is read: the same
    /// requests, since every source has its own stream.
    pub fn iter(&self, seed: u64, rep: u32) -> SyntheticRequests<'_> {
        let mean_gap = 1.0 / self.rate;
        let gamma = match self.arrivals {
            ArrivalKind::Gamma { cv } => {
                let shape = 1.0 / (cv * cv);
                Some(Gamma::new(shape, mean_gap / shape).expect("validated shape and scale"))
            }
            _ => None,
        };
        SyntheticRequests {
            workload: self,
            arrivals: stream(seed, rep, Source::Arrivals),
            prompts: stream(seed, rep, Source::Prompt),
            decodes: stream(seed, rep, Source::Decode),
            pairs: stream(seed, rep, Source::Lengths),
            mean_gap,
            gamma,
            time: 0.0,
            left: self.requests,
        }
    }
}

/// The requests of one replication of a workload, in arrival order, drawn as they are read.
#[derive(Debug)]
pub enum Requests<'a> {
    /// Of a [`SyntheticWorkload`].
    Synthetic(SyntheticRequests<'a>),
    /// Of a [`TraceReplay`].
    Trace(TraceRequests<'a>),
    /// Of a [`MultiTurn`] workload.
    MultiTurn(Turns<'a>),
}

impl Iterator for Requests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        match self {
            Requests::Synthetic(s) => s.next(),
            Requests::Trace(t) => t.next(),
            Requests::MultiTurn(m) => m.next(),
        }
    }
}

/// A trace's requests with their arrival times scaled.
#[derive(Debug)]
pub struct TraceRequests<'a> {
    requests: std::slice::Iter<'a, Request>,
    time_scale: f64,
}

impl Iterator for TraceRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.requests.next().map(|r| Request {
            arrival: r.arrival * self.time_scale,
            ..r.clone()
        })
    }
}

/// A synthetic workload's requests, drawn one at a time from its streams.
#[derive(Debug)]
pub struct SyntheticRequests<'a> {
    workload: &'a SyntheticWorkload,
    arrivals: SimRng,
    prompts: SimRng,
    decodes: SimRng,
    pairs: SimRng,
    mean_gap: f64,
    gamma: Option<Gamma<f64>>,
    /// Arrival time of the latest request (seconds).
    time: f64,
    /// Requests still to draw.
    left: usize,
}

impl Iterator for SyntheticRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.left = self.left.checked_sub(1)?;
        let w = self.workload;
        self.time += match (w.arrivals, &self.gamma) {
            (ArrivalKind::Poisson, _) => {
                self.mean_gap * Distribution::<f64>::sample(&Exp1, &mut self.arrivals)
            }
            (ArrivalKind::Deterministic, _) => self.mean_gap,
            (_, Some(g)) => g.sample(&mut self.arrivals),
            (_, None) => unreachable!("gamma arrivals always carry a distribution"),
        };
        Some(match &w.lengths_from {
            Some(trace) => {
                let r = &trace.requests[self.pairs.random_range(0..trace.requests.len())];
                Request {
                    arrival: self.time,
                    prompt: r.prompt,
                    decode: r.decode,
                    prefix: None,
                    next: None,
                }
            }
            None => Request {
                arrival: self.time,
                prompt: w.prompt.sample(&mut self.prompts),
                decode: w.decode.sample(&mut self.decodes),
                prefix: None,
                next: None,
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wl(arrivals: ArrivalKind) -> SyntheticWorkload {
        SyntheticWorkload {
            rate: 2.0,
            arrivals,
            prompt: "uniform:1:100".parse().unwrap(),
            decode: "geometric:10:100".parse().unwrap(),
            requests: 100_000,
            lengths_from: None,
        }
    }

    /// The arrival count's rate and gap CV lie within 5 standard errors of the target.
    #[test]
    fn arrival_processes_have_their_rate_and_cv() {
        for (kind, cv) in [
            (ArrivalKind::Poisson, 1.0),
            (ArrivalKind::Deterministic, 0.0),
            (ArrivalKind::Gamma { cv: 3.0 }, 3.0),
        ] {
            let reqs = wl(kind).generate(3, 0);
            let gaps: Vec<f64> = reqs
                .windows(2)
                .map(|w| w[1].arrival - w[0].arrival)
                .collect();
            let n = gaps.len() as f64;
            let mean = gaps.iter().sum::<f64>() / n;
            let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n).sqrt();
            let se = 0.5 * cv / n.sqrt();
            assert!(
                (mean - 0.5).abs() <= 5.0 * se + 1e-12,
                "{kind}: mean gap {mean}"
            );
            assert!(
                (sd / mean - cv).abs() < 0.05 * cv.max(0.01) + 1e-9,
                "{kind}: cv {}",
                sd / mean
            );
        }
    }

    /// Resampled lengths are the trace's (L, B) pairs, each drawn about equally often, and
    /// the arrivals are those of the synthetic process.
    #[test]
    fn lengths_from_a_trace_keep_the_pairs() {
        let pairs = [(10, 0), (200, 7), (3000, 50)];
        let trace = Trace {
            source: "t.csv".into(),
            requests: pairs
                .iter()
                .map(|&(prompt, decode)| Request {
                    arrival: 0.0,
                    prompt,
                    decode,
                    prefix: None,
                    next: None,
                })
                .collect(),
            adjusted: 0,
        };
        let plain = wl(ArrivalKind::Poisson);
        let w = SyntheticWorkload {
            lengths_from: Some(Arc::new(trace)),
            ..plain.clone()
        };
        let reqs = w.generate(4, 0);
        for (i, (l, b)) in pairs.iter().enumerate() {
            let n = reqs
                .iter()
                .filter(|r| (r.prompt, r.decode) == (*l, *b))
                .count();
            // Binomial(100000, 1/3): sd about 149.
            assert!((n as f64 - 100_000.0 / 3.0).abs() < 750.0, "pair {i}: {n}");
        }
        assert_eq!(reqs.len(), 100_000);
        let arrivals = plain.generate(4, 0);
        assert!(
            reqs.iter()
                .zip(&arrivals)
                .all(|(a, b)| a.arrival == b.arrival)
        );
    }

    #[test]
    fn replay_scales_time_and_keeps_lengths() {
        let trace = Arc::new(Trace {
            source: "t.csv".into(),
            requests: (0..5)
                .map(|i| Request {
                    arrival: f64::from(i),
                    prompt: 10 + i as u32,
                    decode: i as u32,
                    prefix: None,
                    next: None,
                })
                .collect(),
            adjusted: 0,
        });
        let w = Workload::Trace(TraceReplay {
            trace,
            time_scale: 0.5,
            requests: 4,
        });
        let reqs = w.generate(1, 3);
        assert_eq!(reqs.len(), 4);
        assert_eq!(
            (reqs[3].arrival, reqs[3].prompt, reqs[3].decode),
            (1.5, 13, 3)
        );
        assert_eq!(w.rate(), 2.0);
    }

    /// Settings outside the exact range fail naming the setting, before any request is
    /// drawn (gamma arrivals of CV 1e200 used to panic in the sampler).
    #[test]
    fn validate_names_the_setting_out_of_range() {
        let ok = Workload::Synthetic(wl(ArrivalKind::Poisson));
        assert_eq!(ok.validate(), Ok(()));
        for (w, field) in [
            (
                SyntheticWorkload {
                    arrivals: ArrivalKind::Gamma { cv: 1e200 },
                    ..wl(ArrivalKind::Poisson)
                },
                "arrivals",
            ),
            (
                SyntheticWorkload {
                    rate: 1e-320,
                    ..wl(ArrivalKind::Poisson)
                },
                "rate",
            ),
            (
                SyntheticWorkload {
                    rate: 1e-5,
                    ..wl(ArrivalKind::Poisson)
                },
                "rate",
            ),
            (
                SyntheticWorkload {
                    prompt: LengthDist::Fixed(u32::MAX),
                    ..wl(ArrivalKind::Poisson)
                },
                "prompt",
            ),
            (
                SyntheticWorkload {
                    requests: 1,
                    ..wl(ArrivalKind::Poisson)
                },
                "requests",
            ),
        ] {
            let e = Workload::Synthetic(w).validate().unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    /// A trace's longest request is over its rows (L and B jointly), synthetic laws' at
    /// their caps.
    #[test]
    fn longest_is_joint_over_a_trace() {
        let trace = Trace {
            source: "t.csv".into(),
            requests: [(1000, 1), (10, 500)]
                .iter()
                .map(|&(prompt, decode)| Request {
                    arrival: 0.0,
                    prompt,
                    decode,
                    prefix: None,
                    next: None,
                })
                .collect(),
            adjusted: 0,
        };
        let w = Workload::Trace(TraceReplay {
            trace: Arc::new(trace),
            time_scale: 1.0,
            requests: 2,
        });
        assert_eq!(w.longest(|l, b| l + b), 1001);
        assert_eq!(w.longest(|l, _| l), 1000);
        let s = Workload::Synthetic(wl(ArrivalKind::Poisson));
        assert_eq!(s.longest(|l, b| l + b), 200);
    }

    #[test]
    fn lengths_do_not_depend_on_the_arrival_process() {
        let a = wl(ArrivalKind::Poisson).generate(9, 2);
        let b = wl(ArrivalKind::Gamma { cv: 2.0 }).generate(9, 2);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.prompt == y.prompt && x.decode == y.decode)
        );
    }
}
