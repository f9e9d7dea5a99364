//! Closed forms from queueing theory, derived from the model's own parameters.
//!
//! Used by tests, `llmsim validate` and the report; never by the engine. The job-level
//! formulas assume a cost model whose decode cost does not depend on context length (true
//! of the seed's linear model).

use crate::cost::{BatchShape, CostModel};
use crate::dist::LengthDist;

fn prefill_shape(tokens: f64) -> BatchShape {
    BatchShape::prefill(tokens as u64)
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
    prompt.expect(|l| cost.mean(&prefill_shape(l)))
}

/// Expected duration of a one-entry decode batch, `E[S(1)]` (seconds).
pub fn mean_decode_step(cost: &dyn CostModel) -> f64 {
    cost.mean(&decode_shape(1))
}

/// Moments of Scheduler A's job service time `T = S(L) + sum of B draws of S(1)`, with `L`
/// and `B` independent and every batch's cost drawn independently.
pub fn scheduler_a_job(prompt: &LengthDist, decode: &LengthDist, cost: &dyn CostModel) -> Moments {
    let m = |l: f64| cost.mean(&prefill_shape(l));
    let v = |l: f64| cost.variance(&prefill_shape(l));
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

/// Scheduler A's capacity: the largest stable arrival rate, `1 / E[T]` (requests/s) per GPU.
pub fn scheduler_a_capacity(prompt: &LengthDist, decode: &LengthDist, cost: &dyn CostModel) -> f64 {
    1.0 / scheduler_a_job(prompt, decode, cost).mean
}

/// GPU time per request of a full Scheduler B prefill batch of `k` prompts, `E[S(K prompts)] / K`
/// (seconds), with `E[S]` taken at the mean batch size (see [`scheduler_b_capacity`]).
fn b_prefill_per_request(k: u32, prompt: &LengthDist, cost: &dyn CostModel) -> f64 {
    let tokens = (f64::from(k) * prompt.mean()).round() as u64;
    cost.mean(&BatchShape {
        prefill_tokens: tokens,
        prefill_entries: k,
        // k prompts of the mean length.
        prefill_squares: u128::from(tokens).pow(2) / u128::from(k),
        ..Default::default()
    }) / f64::from(k)
}

/// The arrival rate at which Scheduler B's full prefill batches alone keep a GPU busy,
/// `K / E[S(K prompts)]` (requests/s per GPU). Above it the prefill queue never empties, so
/// under prefill priority no decode batch ever runs while arrivals continue: completions
/// stop altogether, not just level off at [`scheduler_b_capacity`].
pub fn scheduler_b_prefill_capacity(k: u32, prompt: &LengthDist, cost: &dyn CostModel) -> f64 {
    1.0 / b_prefill_per_request(k, prompt, cost)
}

/// Scheduler B's capacity (requests/s per GPU): the arrival rate at which the GPU is busy
/// all the time with full prefill batches of `k` prompts and decode batches as large as
/// the cap allows:
///
/// `1 / ( E[S(K prompts)] / K + E[B] * d )`,
///
/// where `d` is the cost per decode token: `(E[S(D)]) / D` for a decode cap `D`, and the
/// marginal token cost `S(n+1) - S(n)` as `n` grows without a cap (the setup cost of a decode
/// batch is shared by ever more requests as the backlog grows, so it vanishes in the limit).
/// For a fixed prompt length the prefill term is exact; otherwise `E[S]` is taken at the mean
/// batch size, which understates it for `b0 > 0` (Jensen).
pub fn scheduler_b_capacity(
    k: u32,
    max_decode: Option<u32>,
    prompt: &LengthDist,
    decode: &LengthDist,
    cost: &dyn CostModel,
) -> f64 {
    let prefill = b_prefill_per_request(k, prompt, cost);
    let per_decode_token = match max_decode {
        Some(d) => cost.mean(&decode_shape(d)) / f64::from(d),
        None => {
            let big = 1 << 20;
            cost.mean(&decode_shape(big + 1)) - cost.mean(&decode_shape(big))
        }
    };
    1.0 / (prefill + decode.mean() * per_decode_token)
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

    #[test]
    fn scheduler_b_capacity_reduces_to_the_fluid_bound() {
        // No cap, b0 = 0: K / (c + a K (L + B)).
        let cost = LinearCost::new(0.01, 0.001, 0.0, CostDist::Exponential);
        let cap = scheduler_b_capacity(
            4,
            None,
            &LengthDist::Fixed(128),
            &LengthDist::Fixed(64),
            &cost,
        );
        assert!((cap - 4.0 / (0.01 + 0.004 * 192.0)).abs() < 1e-9);
        // A cap of one decode per batch pays c on every decode token.
        let cap = scheduler_b_capacity(
            4,
            Some(1),
            &LengthDist::Fixed(128),
            &LengthDist::Fixed(64),
            &cost,
        );
        assert!((cap - 1.0 / (0.0025 + 0.128 + 64.0 * 0.011)).abs() < 1e-9);
    }
}
