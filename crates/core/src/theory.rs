//! Closed forms from queueing theory, derived from the model's own parameters.
//!
//! Used by tests, `llmsim validate` and the report; never by the engine. The job-level
//! formulas assume a cost model whose decode cost does not depend on context length (true
//! of the seed's linear model).

use crate::cost::{BatchShape, CostModel};
use crate::dist::LengthDist;

/// A prefill batch of `entries` whole prompts of equal length, `tokens` in all.
fn prefill_shape(entries: u32, tokens: u64) -> BatchShape {
    BatchShape {
        prefill_tokens: tokens,
        prefill_entries: entries,
        prefill_squares: u128::from(tokens).pow(2) / u128::from(entries),
        ..Default::default()
    }
}

fn decode_shape(entries: u32) -> BatchShape {
    BatchShape {
        decode_entries: entries,
        ..Default::default()
    }
}

/// First two moments of a service time (seconds, seconds squared).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// `E[S]` (seconds).
    pub mean: f64,
    /// `E[S^2]` (seconds squared).
    pub second: f64,
}

/// Expected duration of one prefill batch of a single prompt, `E[S(L)]` over `L` (seconds).
pub fn mean_prefill(prompt: &LengthDist, cost: &dyn CostModel) -> f64 {
    prompt.expect(|l| cost.mean(&prefill_shape(1, l as u64)))
}

/// Expected duration of a one-entry decode batch, `E[S(1)]` (seconds).
pub fn mean_decode_step(cost: &dyn CostModel) -> f64 {
    cost.mean(&decode_shape(1))
}

/// Moments of Scheduler A's job service time `T = S(L) + sum of B draws of S(1)`, with `L`
/// and `B` independent and every batch's cost drawn independently.
pub fn scheduler_a_job(prompt: &LengthDist, decode: &LengthDist, cost: &dyn CostModel) -> Moments {
    let m = |l: f64| cost.mean(&prefill_shape(1, l as u64));
    let v = |l: f64| cost.variance(&prefill_shape(1, l as u64));
    let (m1, v1) = (cost.mean(&decode_shape(1)), cost.variance(&decode_shape(1)));
    let (eb, eb2) = (decode.mean(), decode.expect(|b| b * b));
    let (eml, eml2, evl) = (
        prompt.expect(m),
        prompt.expect(|l| m(l) * m(l)),
        prompt.expect(v),
    );
    // E[T^2] = E[Var(T | L, B)] + E[E[T | L, B]^2]
    let second = evl + eb * v1 + eml2 + 2.0 * eml * eb * m1 + eb2 * m1 * m1;
    Moments {
        mean: eml + eb * m1,
        second,
    }
}

/// Pollaczek-Khinchine mean wait in queue of an M/G/1 queue with arrival rate `lambda`
/// (per second) and service moments `s` (seconds); infinite when `lambda E[S] >= 1`.
pub fn pk_mean_wait(lambda: f64, s: Moments) -> f64 {
    let rho = lambda * s.mean;
    if rho >= 1.0 {
        f64::INFINITY
    } else {
        lambda * s.second / (2.0 * (1.0 - rho))
    }
}

/// Mean response time of an M/M/1 queue (seconds).
pub fn mm1_mean_response(lambda: f64, mu: f64) -> f64 {
    if lambda >= mu {
        f64::INFINITY
    } else {
        1.0 / (mu - lambda)
    }
}

/// The `q`-quantile of an M/M/1 response time, exponential with rate `mu - lambda` (seconds).
pub fn mm1_response_quantile(lambda: f64, mu: f64, q: f64) -> f64 {
    -(1.0 - q).ln() * mm1_mean_response(lambda, mu)
}

/// Erlang C: the probability that an arrival waits in an M/M/c queue with `c` servers,
/// arrival rate `lambda` and service rate `mu` per server; 1 when overloaded.
pub fn erlang_c(c: usize, lambda: f64, mu: f64) -> f64 {
    let a = lambda / mu;
    let rho = a / c as f64;
    if rho >= 1.0 {
        return 1.0;
    }
    // sum_{k<c} a^k / k!, built term by term to stay finite for large c.
    let (mut term, mut sum) = (1.0, 0.0);
    for k in 0..c {
        sum += term;
        term *= a / (k + 1) as f64;
    }
    // term is now a^c / c!
    let top = term / (1.0 - rho);
    top / (sum + top)
}

/// Mean wait in queue of an M/M/c queue (seconds).
pub fn mmc_mean_wait(c: usize, lambda: f64, mu: f64) -> f64 {
    if lambda >= c as f64 * mu {
        return f64::INFINITY;
    }
    erlang_c(c, lambda, mu) / (c as f64 * mu - lambda)
}

/// The `q`-quantile of an M/M/c response time, wait plus an exponential service (seconds):
/// the root of `P(T > t) = 1 - q`, where with `C` the Erlang C probability and
/// `theta = c mu - lambda`, `P(T > t) = e^(-mu t) + C mu (e^(-mu t) - e^(-theta t)) /
/// (theta - mu)` (the limit `C mu t e^(-mu t)` for the second term when `theta = mu`).
/// Infinite when overloaded.
pub fn mmc_response_quantile(c: usize, lambda: f64, mu: f64, q: f64) -> f64 {
    let theta = c as f64 * mu - lambda;
    if theta <= 0.0 {
        return f64::INFINITY;
    }
    let wait = erlang_c(c, lambda, mu);
    let tail = |t: f64| {
        let both = if (theta - mu).abs() <= 1e-12 * mu {
            mu * t * (-mu * t).exp()
        } else {
            mu * ((-mu * t).exp() - (-theta * t).exp()) / (theta - mu)
        };
        (-mu * t).exp() + wait * both
    };
    // The tail falls from 1 at t = 0; double until below 1 - q, then bisect.
    let mut hi = 1.0 / mu;
    while tail(hi) > 1.0 - q {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if tail(mid) > 1.0 - q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// A closed-form capacity of one GPU and what it promises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// The largest arrival rate from which every backlog drains (requests/s per GPU): above
    /// it, a large enough number in system grows without bound.
    pub rps: f64,
    /// Whether no run can keep up at `rps` or above, from any start: no batch the policy
    /// can form costs less per request than the batches `rps` assumes, so above it more work
    /// arrives than the GPU has time for. When false (Scheduler B with `a * b0 > c`), smaller
    /// batches are cheaper per request, and a run that starts empty can stay stable above
    /// `rps` until a burst pushes its backlog past a threshold (from a fluid balance, about
    /// `lambda B (a b0 - c) / (rho - 1)` decoding requests at `rho = lambda / rps`): the
    /// queue is bistable, and only its measured growth tells whether a given run overloaded.
    pub hard_limit: bool,
}

/// Scheduler A's capacity: the largest stable arrival rate, `1 / E[T]` (requests/s) per GPU.
/// A job's service time does not depend on the other jobs, so it is a hard limit.
pub fn scheduler_a_capacity(prompt: &LengthDist, decode: &LengthDist, cost: &dyn CostModel) -> f64 {
    1.0 / scheduler_a_job(prompt, decode, cost).mean
}

/// The line `intercept + slope * x` through two points of a batch cost (seconds, and
/// seconds per token or per entry). For a convex cost, the line through two neighbouring
/// whole numbers, or through the ends of a range where the cost is linear, lies at or below
/// it at every whole number.
#[derive(Debug, Clone, Copy)]
struct Line {
    intercept: f64,
    slope: f64,
}

impl Line {
    fn through((x0, y0): (f64, f64), (x1, y1): (f64, f64)) -> Self {
        let slope = (y1 - y0) / (x1 - x0);
        let intercept = y1 - slope * x1;
        Line {
            // Far from the origin the subtraction leaves rounding noise where the exact
            // intercept is 0 (c = a b0), and its sign decides `Share::cheapest`.
            intercept: if intercept.abs() <= 1e-12 * y1.abs() {
                0.0
            } else {
                intercept
            },
            slope,
        }
    }

    fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// GPU time per request (seconds) that Scheduler B spends on one kind of batch at
/// saturation, and whether no other batch size spends less.
#[derive(Debug, Clone, Copy)]
struct Share {
    seconds: f64,
    cheapest: bool,
}

/// GPU time per request of Scheduler B's full prefill batches of `k` prompts,
/// `E[S(K prompts)] / K`, where it is exact: one prompt per batch, a fixed prompt length, or
/// a batch cost linear in its tokens over every total `K` prompts can reach (a convex cost
/// that meets its chord inside that range is linear on all of it). Otherwise `None`: with a
/// kink (`b0`) or a curve inside the range, the mean over the K-fold sum of prompt lengths
/// is not the cost at the mean.
///
/// `cheapest` holds when every schedule spends at least this much per prefill: the line
/// `i + g X` through the full batch's cost bounds any batch of `X` tokens from below, so
/// `n` batches of `N` requests cost at least `n i + g sum L >= (N / K) i + g sum L`, the full
/// batches' cost, when `i >= 0`. A cost that depends on the number of entries is not
/// claimed to be cheapest.
fn b_prefill_share(k: u32, prompt: &LengthDist, cost: &dyn CostModel) -> Option<Share> {
    if k == 1 {
        // Every prefill is a batch of its own, whatever the schedule.
        return Some(Share {
            seconds: mean_prefill(prompt, cost),
            cheapest: true,
        });
    }
    let total = |n: u32| u64::from(n) * u64::from(k);
    let (lo, hi) = (total(prompt.min()), total(prompt.max()));
    let point = |tokens: u64| (tokens as f64, cost.mean(&prefill_shape(k, tokens)));
    let (line, seconds) = if lo == hi {
        // A fixed length. The slope is taken from below, so that a kink exactly at K L
        // counts the flat piece smaller batches sit on.
        let below = lo.max(1) - 1;
        let line = Line::through(point(below), point(below + 1));
        (line, cost.mean(&prefill_shape(k, lo)) / f64::from(k))
    } else {
        let chord = Line::through(point(lo), point(hi));
        let (mid, cost_mid) = point(lo + (hi - lo) / 2);
        if (cost_mid - chord.at(mid)).abs() > 1e-12 * cost_mid.abs() {
            return None;
        }
        let kf = f64::from(k);
        (chord, chord.at(kf * prompt.mean()) / kf)
    };
    let entry_free = cost.mean(&prefill_shape(1, hi)) == cost.mean(&prefill_shape(k, hi));
    Some(Share {
        seconds,
        cheapest: entry_free && line.intercept >= 0.0,
    })
}

/// GPU time per decode token of Scheduler B's decode batches at saturation, where the
/// backlog of decoding requests grows without bound: `S(D) / D` for a cap of `D`; with no
/// cap the batch grows with the backlog, its setup is shared by ever more tokens, and a
/// token costs the marginal `S(n + 1) - S(n)` at large `n`.
///
/// `cheapest` holds when no smaller decode batch costs less per token: for a convex cost,
/// when the line through the costs at the batch size used and one entry fewer (one more
/// with no cap) has an intercept of 0 or more (`c - a b0 >= 0` in the linear model).
fn b_decode_share(max_decode: Option<u32>, cost: &dyn CostModel) -> Share {
    let point = |n: u32| (f64::from(n), cost.mean(&decode_shape(n)));
    match max_decode {
        Some(d) => Share {
            seconds: point(d).1 / f64::from(d),
            cheapest: Line::through(point(d - 1), point(d)).intercept >= 0.0,
        },
        None => {
            // The marginal cost far out: at 2^20 entries, unless the cost is still flatter
            // there than over the largest batches an entry count can reach (b0 beyond 2^20;
            // points far apart keep the slope's rounding small).
            let near = Line::through(point(1 << 20), point((1 << 20) + 1));
            let far = Line::through(point(u32::MAX / 2), point(u32::MAX));
            let line = if far.slope > near.slope * (1.0 + 1e-6) {
                far
            } else {
                near
            };
            Share {
                seconds: line.slope,
                cheapest: line.intercept >= 0.0,
            }
        }
    }
}

/// The arrival rate at which Scheduler B's full prefill batches alone keep a GPU busy,
/// `K / E[S(K prompts)]` (requests/s per GPU), where that has an exact value (see
/// [`scheduler_b_capacity`]). Above it the prefill queue never empties, so under prefill
/// priority no decode batch ever runs while arrivals continue: completions stop
/// altogether, not just level off at [`scheduler_b_capacity`].
pub fn scheduler_b_prefill_capacity(
    k: u32,
    prompt: &LengthDist,
    cost: &dyn CostModel,
) -> Option<f64> {
    b_prefill_share(k, prompt, cost).map(|s| 1.0 / s.seconds)
}

/// Scheduler B's capacity (requests/s per GPU): the largest arrival rate from which every
/// backlog drains, where it has a closed form; `None` where it has none.
///
/// With a large backlog the GPU is never idle and, between two decode batches, prefills
/// the prompts that arrived during the last one. With no decode cap the decode batch holds
/// every decoding request, so it grows with the backlog, each decode batch lasts longer,
/// more prompts arrive during it, and prefill batches are full; the GPU time per request
/// tends to `E[S(K prompts)] / K + E[B] d`, with `d` the marginal cost of a decode token.
/// The backlog shrinks when the arrival rate times that is below 1 and grows when above:
///
/// `capacity = 1 / ( E[S(K prompts)] / K + E[B] * d )`.
///
/// That is `K / (c + a K (L + B))` in the linear model with `b0 = 0` (the seed's formula)
/// and `1 / ((c + a (K L - b0)) / K + a B)` when `K L >= b0` (5.602/s for the defaults with
/// `b0 = 64`, 6.154/s with `b0 = 128`). With `a * b0 > c` smaller batches are cheaper per
/// request and the capacity is not a hard limit ([`Capacity::hard_limit`]).
///
/// With a decode cap `D` the decode batch stops growing at `D`, a token costs `S(D) / D`,
/// and decode batches stay short, so the prompts that wait after one are few and prefill
/// batches hold as many as the queue happens to have: their mix follows the queue's
/// dynamics, which have no closed form, except with `K = 1`. So a cap with `K > 1` gives
/// `None`, as does a prefill cost with no exact value (see `b_prefill_share`).
///
/// `hard_limit` assumes a batch's mean cost is convex in its tokens, as the linear model's
/// is; a cost that depends on the number of prefill entries is never called a hard limit.
pub fn scheduler_b_capacity(
    k: u32,
    max_decode: Option<u32>,
    prompt: &LengthDist,
    decode: &LengthDist,
    cost: &dyn CostModel,
) -> Option<Capacity> {
    // A cap of 0 never decodes: nothing completes at any rate.
    if max_decode.is_some_and(|d| d == 0 || k > 1) {
        return None;
    }
    let prefill = b_prefill_share(k, prompt, cost)?;
    let per_token = b_decode_share(max_decode, cost);
    Some(Capacity {
        rps: 1.0 / (prefill.seconds + decode.mean() * per_token.seconds),
        hard_limit: prefill.cheapest && per_token.cheapest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{CostDist, LinearCost};

    #[test]
    fn erlang_c_matches_published_values() {
        // c = 1 reduces to rho; c = 2, a = 1: C = 1/3 (textbook).
        assert!((erlang_c(1, 0.7, 1.0) - 0.7).abs() < 1e-12);
        assert!((erlang_c(2, 1.0, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // M/M/1 wait from the M/M/c formula agrees with rho / (mu - lambda).
        assert!((mmc_mean_wait(1, 2.0, 2.5) - 0.8 / 0.5).abs() < 1e-12);
    }

    #[test]
    fn mmc_response_quantiles_reduce_to_known_cases() {
        // One server: the response time is exponential with rate mu - lambda.
        let one = mmc_response_quantile(1, 0.7, 1.0, 0.99);
        assert!((one - mm1_response_quantile(0.7, 1.0, 0.99)).abs() < 1e-9);
        // Many idle servers: nobody waits, the service alone, -ln(0.01) / mu.
        let idle = mmc_response_quantile(50, 0.01, 2.0, 0.99);
        assert!((idle - 100f64.ln() / 2.0).abs() < 1e-9);
        // theta = mu (c = 2, lambda = mu): the limit form, continuous with its neighbours.
        let at = mmc_response_quantile(2, 1.0, 1.0, 0.99);
        let near = mmc_response_quantile(2, 1.0 + 1e-7, 1.0, 0.99);
        assert!((at - near).abs() < 1e-5, "{at} {near}");
        assert!(mmc_response_quantile(2, 2.0, 1.0, 0.99).is_infinite());
    }

    #[test]
    fn pk_reduces_to_mm1_for_exponential_service() {
        // Exponential service with mean 0.4 s: E[S^2] = 2 * 0.16.
        let s = Moments {
            mean: 0.4,
            second: 0.32,
        };
        let w = pk_mean_wait(2.0, s);
        assert!((w + 0.4 - mm1_mean_response(2.0, 2.5)).abs() < 1e-12);
    }

    #[test]
    fn job_moments_by_hand() {
        // Deterministic c = 0.01, a = 0.001, L = 128, B = 64: T = 0.138 + 64 * 0.011 exactly.
        let cost = LinearCost::new(0.01, 0.001, 0.0, CostDist::Deterministic);
        let m = scheduler_a_job(&LengthDist::Fixed(128), &LengthDist::Fixed(64), &cost);
        assert!((m.mean - 0.842).abs() < 1e-12);
        assert!((m.second - 0.842 * 0.842).abs() < 1e-12);
        // Exponential: Var T = (c^2 + (128a)^2) + 64 (c^2 + a^2).
        let cost = LinearCost::new(0.01, 0.001, 0.0, CostDist::Exponential);
        let m = scheduler_a_job(&LengthDist::Fixed(128), &LengthDist::Fixed(64), &cost);
        let var = (1e-4 + 0.128f64.powi(2)) + 64.0 * (1e-4 + 1e-6);
        assert!((m.second - m.mean * m.mean - var).abs() < 1e-12);
    }

    fn b(k: u32, cap: Option<u32>, prompt: &str, b0: f64) -> Option<Capacity> {
        let cost = LinearCost::new(0.01, 0.001, b0, CostDist::Exponential);
        let prompt: LengthDist = prompt.parse().unwrap();
        scheduler_b_capacity(k, cap, &prompt, &LengthDist::Fixed(64), &cost)
    }

    #[test]
    fn scheduler_b_capacity_reduces_to_the_fluid_bound() {
        // No cap, b0 = 0: K / (c + a K (L + B)), a limit no schedule beats.
        let cap = b(4, None, "128", 0.0).unwrap();
        assert!((cap.rps - 4.0 / (0.01 + 0.004 * 192.0)).abs() < 1e-9);
        assert!(cap.hard_limit);
        // K = 1 with a cap of one decode per batch pays c on every decode token.
        let cap = b(1, Some(1), "128", 0.0).unwrap();
        assert!((cap.rps - 1.0 / (0.138 + 64.0 * 0.011)).abs() < 1e-9);
        assert!(cap.hard_limit);
    }

    /// With `b0` free tokens a full batch of `K L >= b0` tokens costs `c + a (K L - b0)`, and
    /// the capacity is a hard limit exactly when `c >= a b0` (no smaller batch is cheaper).
    #[test]
    fn scheduler_b_capacity_with_free_tokens() {
        for (b0, hard) in [(64.0, false), (128.0, false), (8.0, true), (10.0, true)] {
            let cap = b(4, None, "128", b0).unwrap();
            let per_request = (0.01 + 0.001 * (512.0 - b0)) / 4.0 + 64.0 * 0.001;
            assert!((cap.rps - 1.0 / per_request).abs() < 1e-9, "b0 = {b0}");
            assert_eq!(cap.hard_limit, hard, "b0 = {b0}");
        }
        // The figures: 5.602/s at b0 = 64, 6.154/s at b0 = 128.
        assert!((b(4, None, "128", 64.0).unwrap().rps - 5.6022).abs() < 1e-4);
        assert!((b(4, None, "128", 128.0).unwrap().rps - 6.1538).abs() < 1e-4);
        // A full batch below b0 costs c alone: c / K per prompt.
        let cap = b(4, None, "128", 1000.0).unwrap();
        assert!((cap.rps - 1.0 / (0.0025 + 0.064)).abs() < 1e-9);
        assert!(!cap.hard_limit);
        // A decode backlog beyond 2^20 still pays a per token past b0.
        let cap = b(4, None, "128", 2e6).unwrap();
        assert!((cap.rps - 1.0 / (0.0025 + 0.064)).abs() < 1e-6);
    }

    #[test]
    fn scheduler_b_capacity_exists_only_where_it_is_exact() {
        // Random prompts: exact when no K-prompt total reaches the kink at b0 ...
        let cap = b(4, None, "uniform:16:256", 32.0).unwrap();
        let per_request = (0.01 + 0.001 * (4.0 * 136.0 - 32.0)) / 4.0 + 0.064;
        assert!((cap.rps - 1.0 / per_request).abs() < 1e-9);
        // ... not when it lies inside their range (E[S] is not S at the mean),
        assert_eq!(b(4, None, "uniform:16:256", 100.0), None);
        // ... and always with one prompt per batch: E[S(L)] over L.
        let cost = LinearCost::new(0.01, 0.001, 100.0, CostDist::Exponential);
        let prompt: LengthDist = "uniform:16:256".parse().unwrap();
        let cap = b(1, None, "uniform:16:256", 100.0).unwrap();
        assert!((cap.rps - 1.0 / (mean_prefill(&prompt, &cost) + 0.064)).abs() < 1e-9);
        // A decode cap with K > 1 leaves prefill batch sizes to the queue's dynamics.
        assert_eq!(b(4, Some(8), "128", 0.0), None);
        // With K = 1 a cap is exact; above b0 a capped batch is dearer per token than one
        // of b0 when a b0 > c.
        let cap = b(1, Some(100), "128", 64.0).unwrap();
        assert!((cap.rps - 1.0 / (0.074 + 64.0 * 0.046 / 100.0)).abs() < 1e-9);
        assert!(!cap.hard_limit);
        assert!(b(1, Some(32), "128", 64.0).unwrap().hard_limit);
    }
}
