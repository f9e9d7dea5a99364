//! Token-length distributions for prompts (`L`) and decode budgets (`B`), given as short
//! spec strings such as `128`, `uniform:64:512`, `geometric:64:1024`,
//! `mix:64@0.5,128@0.3,512@0.2` or `lognormal:256:1.0:4096`.
//!
//! Every distribution is over whole tokens and has a finite support of at most
//! [`MAX_TOKENS`], so its exact moments are available to the `theory` module. Samplers draw
//! directly (inverse CDF, or a transformed normal) and moments visit the probability mass
//! function one value at a time, so neither builds it.

use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use std::fmt;
use std::str::FromStr;

use crate::limits::MAX_TOKENS;
use crate::rng::SimRng;

/// A distribution of token counts.
#[derive(Debug, Clone, PartialEq)]
pub enum LengthDist {
    /// Always this many tokens.
    Fixed(u32),
    /// Uniform over the integers `lo..=hi`.
    Uniform { lo: u32, hi: u32 },
    /// Geometric on `1, 2, ...` with mean `mean` before capping; values above `max` become `max`.
    Geometric { mean: f64, max: u32 },
    /// A discrete mixture: `(tokens, probability)` pairs, probabilities summing to 1.
    Mix(Vec<(u32, f64)>),
    /// `round(median * exp(sigma * Z))`, `Z` standard normal, clamped to `1..=max`.
    LogNormal { median: f64, sigma: f64, max: u32 },
}

/// Why a length spec string was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "invalid length spec '{spec}': {why} (allowed: N, uniform:LO:HI, geometric:MEAN:MAX, mix:N@P,N@P,..., lognormal:MEDIAN:SIGMA:MAX)"
)]
pub struct SpecError {
    spec: String,
    why: String,
}

fn parse_num<T: FromStr>(spec: &str, field: &str, s: &str) -> Result<T, SpecError> {
    s.trim().parse().map_err(|_| SpecError {
        spec: spec.into(),
        why: format!("{field} '{s}' is not a valid number"),
    })
}

impl FromStr for LengthDist {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let err = |why: &str| SpecError {
            spec: spec.into(),
            why: why.into(),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let dist = match parts.as_slice() {
            [n] => LengthDist::Fixed(parse_num(spec, "length", n)?),
            ["uniform", lo, hi] => {
                let (lo, hi) = (parse_num(spec, "LO", lo)?, parse_num(spec, "HI", hi)?);
                if lo > hi {
                    return Err(err("LO must not exceed HI"));
                }
                LengthDist::Uniform { lo, hi }
            }
            ["geometric", mean, max] => {
                let mean: f64 = parse_num(spec, "MEAN", mean)?;
                // Above 2^24 the success probability 1/MEAN loses the digits the sampler's
                // and the moments' logarithms need.
                if !(1.0..=f64::from(MAX_TOKENS)).contains(&mean) {
                    return Err(err(&format!("MEAN must be from 1 to {MAX_TOKENS}")));
                }
                let max = parse_num(spec, "MAX", max)?;
                if max < 1 {
                    return Err(err("MAX must be >= 1"));
                }
                LengthDist::Geometric { mean, max }
            }
            ["mix", items] => {
                let mut pairs = Vec::new();
                for item in items.split(',') {
                    let (n, p) = item
                        .split_once('@')
                        .ok_or_else(|| err("each mix item must be TOKENS@PROBABILITY"))?;
                    let p: f64 = parse_num(spec, "probability", p)?;
                    if !(p > 0.0 && p <= 1.0) {
                        return Err(err("mix probabilities must be in (0, 1]"));
                    }
                    pairs.push((parse_num(spec, "tokens", n)?, p));
                }
                let total: f64 = pairs.iter().map(|&(_, p)| p).sum();
                if (total - 1.0).abs() > 1e-6 {
                    return Err(err(&format!("mix probabilities sum to {total}, not 1")));
                }
                LengthDist::Mix(pairs)
            }
            ["lognormal", median, sigma, max] => {
                let median: f64 = parse_num(spec, "MEDIAN", median)?;
                let sigma: f64 = parse_num(spec, "SIGMA", sigma)?;
                let max = parse_num(spec, "MAX", max)?;
                if !(median > 0.0 && median.is_finite()) {
                    return Err(err("MEDIAN must be a finite number > 0"));
                }
                if !(sigma >= 0.0 && sigma.is_finite()) {
                    return Err(err("SIGMA must be a finite number >= 0"));
                }
                if max < 1 {
                    return Err(err("MAX must be >= 1"));
                }
                LengthDist::LogNormal { median, sigma, max }
            }
            _ => return Err(err("unknown form")),
        };
        if dist.max() > MAX_TOKENS {
            return Err(err(&format!(
                "lengths must be at most {MAX_TOKENS} tokens (got {})",
                dist.max()
            )));
        }
        Ok(dist)
    }
}

impl fmt::Display for LengthDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LengthDist::Fixed(n) => write!(f, "{n}"),
            LengthDist::Uniform { lo, hi } => write!(f, "uniform:{lo}:{hi}"),
            LengthDist::Geometric { mean, max } => write!(f, "geometric:{mean}:{max}"),
            LengthDist::Mix(pairs) => {
                let items: Vec<String> = pairs.iter().map(|(n, p)| format!("{n}@{p}")).collect();
                write!(f, "mix:{}", items.join(","))
            }
            LengthDist::LogNormal { median, sigma, max } => {
                write!(f, "lognormal:{median}:{sigma}:{max}")
            }
        }
    }
}

impl LengthDist {
    /// Draws one length (tokens).
    pub fn sample(&self, rng: &mut SimRng) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Uniform { lo, hi } => rng.random_range(*lo..=*hi),
            LengthDist::Geometric { mean, max } => {
                // Inverse CDF of the geometric law on {1, 2, ...} with success probability 1/mean.
                if *mean <= 1.0 {
                    return 1.min(*max);
                }
                let u: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]
                let k = (u.ln() / (1.0 - 1.0 / mean).ln()).ceil().max(1.0);
                if k >= f64::from(*max) { *max } else { k as u32 }
            }
            LengthDist::Mix(pairs) => {
                let mut u: f64 = rng.random();
                for &(n, p) in pairs {
                    if u < p {
                        return n;
                    }
                    u -= p;
                }
                pairs.last().map_or(0, |&(n, _)| n)
            }
            LengthDist::LogNormal { median, sigma, max } => {
                let z: f64 = StandardNormal.sample(rng);
                let x = (median * (sigma * z).exp()).round();
                x.clamp(1.0, f64::from(*max)) as u32
            }
        }
    }

    /// The smallest value the distribution can produce (tokens).
    pub fn min(&self) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Uniform { lo, .. } => *lo,
            LengthDist::Geometric { .. } => 1,
            LengthDist::Mix(pairs) => pairs.iter().map(|&(n, _)| n).min().unwrap_or(0),
            LengthDist::LogNormal { .. } => self.lognormal_point().unwrap_or(1),
        }
    }

    /// The largest value the distribution can produce (tokens): the sampler's cap.
    pub fn max(&self) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Uniform { hi, .. } => *hi,
            LengthDist::Geometric { max, .. } => *max,
            LengthDist::Mix(pairs) => pairs.iter().map(|&(n, _)| n).max().unwrap_or(0),
            LengthDist::LogNormal { max, .. } => self.lognormal_point().unwrap_or(*max),
        }
    }

    /// The one value of a lognormal law with `sigma = 0`, `None` for any other law.
    fn lognormal_point(&self) -> Option<u32> {
        match self {
            LengthDist::LogNormal { median, sigma, max } if *sigma == 0.0 => {
                Some(median.round().clamp(1.0, f64::from(*max)) as u32)
            }
            _ => None,
        }
    }

    /// Calls `visit(tokens, probability)` for every value of positive probability (and, for
    /// the capped geometric, its cap), in ascending order, without materialising the
    /// probability mass function: memory is O(1) and time stops where the remaining mass
    /// is zero in `f64`, so a long-tailed law with a large cap costs what its mass needs.
    pub fn for_each_mass(&self, mut visit: impl FnMut(u32, f64)) {
        match self {
            LengthDist::Fixed(n) => visit(*n, 1.0),
            LengthDist::Uniform { lo, hi } => {
                let p = 1.0 / (f64::from(hi - lo) + 1.0);
                (*lo..=*hi).for_each(|n| visit(n, p));
            }
            LengthDist::Geometric { mean, max } => {
                let q = 1.0 - 1.0 / mean;
                for k in 1..*max {
                    let tail = q.powi(k as i32 - 1);
                    if tail == 0.0 {
                        // Every later term, and the cap's mass, is zero too.
                        return;
                    }
                    visit(k, (1.0 - q) * tail);
                }
                visit(*max, q.powi(*max as i32 - 1));
            }
            LengthDist::Mix(pairs) => {
                let mut sorted = pairs.clone();
                sorted.sort_by_key(|&(n, _)| n);
                sorted.into_iter().for_each(|(n, p)| visit(n, p));
            }
            LengthDist::LogNormal { median, sigma, max } => {
                // P(round(X) = n) = P(n - 0.5 <= X < n + 0.5), with the clamps at 1 and max.
                let cdf = |x: f64| -> f64 {
                    if x <= 0.0 {
                        0.0
                    } else if *sigma == 0.0 {
                        if x >= *median { 1.0 } else { 0.0 }
                    } else {
                        let z = (x / median).ln() / sigma;
                        0.5 * statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2)
                    }
                };
                let mut lo = 0.0;
                for n in 1..=*max {
                    let hi = if n == *max {
                        1.0
                    } else {
                        cdf(f64::from(n) + 0.5)
                    };
                    if hi > lo {
                        visit(n, hi - lo);
                    }
                    if hi == 1.0 {
                        // No mass is left above n.
                        return;
                    }
                    lo = hi;
                }
            }
        }
    }

    /// `E[f(X)]` computed exactly from the probability mass function.
    pub fn expect(&self, f: impl Fn(f64) -> f64) -> f64 {
        let mut sum = 0.0;
        self.for_each_mass(|n, p| sum += p * f(f64::from(n)));
        sum
    }

    /// The mean length (tokens).
    pub fn mean(&self) -> f64 {
        self.expect(|x| x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Source, stream};

    #[test]
    fn parses_every_form_and_round_trips() {
        for spec in [
            "128",
            "uniform:64:512",
            "geometric:64:1024",
            "mix:64@0.5,128@0.3,512@0.2",
            "lognormal:256:1:4096",
        ] {
            let d: LengthDist = spec.parse().unwrap();
            assert_eq!(d.to_string().parse::<LengthDist>().unwrap(), d, "{spec}");
        }
    }

    #[test]
    fn rejects_malformed_specs_with_the_reason() {
        for (spec, why) in [
            ("abc", "not a valid number"),
            ("-5", "not a valid number"),
            ("uniform:9:3", "LO must not exceed HI"),
            ("geometric:0.5:10", "MEAN"),
            ("geometric:1e300:10", "MEAN must be from 1 to 16777216"),
            ("mix:64@0.5,128@0.3", "sum to"),
            ("mix:64", "TOKENS@PROBABILITY"),
            ("lognormal:0:1:10", "MEDIAN"),
            ("normal:3:4", "unknown form"),
            ("16777217", "at most 16777216"),
            ("uniform:1:4294967295", "at most 16777216"),
            ("lognormal:100:1:100000000", "at most 16777216"),
            ("mix:1@0.5,20000000@0.5", "at most 16777216"),
        ] {
            let e = spec.parse::<LengthDist>().unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn pmf_sums_to_one() {
        for spec in [
            "uniform:1:9",
            "geometric:20:50",
            "mix:1@0.25,9@0.75",
            "lognormal:50:0.8:300",
        ] {
            let d: LengthDist = spec.parse().unwrap();
            let total = d.expect(|_| 1.0);
            assert!((total - 1.0).abs() < 1e-9, "{spec}: {total}");
        }
    }

    /// Long-tailed laws at the largest cap: moments come in well under a second (the mass
    /// function is visited, not built, and stops where its mass runs out), sum to one, and
    /// the bounds are the sampler's.
    #[test]
    fn long_tails_at_the_cap_are_cheap_and_exact() {
        let start = std::time::Instant::now();
        for spec in ["lognormal:100:1:16777216", "geometric:64:16777216"] {
            let d: LengthDist = spec.parse().unwrap();
            assert!((d.expect(|_| 1.0) - 1.0).abs() < 1e-9, "{spec}");
            assert_eq!((d.min(), d.max()), (1, MAX_TOKENS), "{spec}");
        }
        let g: LengthDist = "geometric:64:16777216".parse().unwrap();
        assert!((g.mean() - 64.0).abs() < 1e-9, "{}", g.mean());
        assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());
        let point: LengthDist = "lognormal:99.6:0:4096".parse().unwrap();
        assert_eq!((point.min(), point.max()), (100, 100));
    }

    /// The sample mean of 200,000 draws lies within 4.5 standard errors of the exact mean,
    /// a bound a correct sampler exceeds with probability below 1e-5.
    #[test]
    fn samplers_match_their_pmf() {
        for spec in [
            "uniform:64:512",
            "geometric:64:1024",
            "mix:64@0.5,128@0.3,512@0.2",
            "lognormal:256:1:4096",
        ] {
            let d: LengthDist = spec.parse().unwrap();
            let n = 200_000;
            let mut rng = stream(1, 0, Source::Prompt);
            let sum: f64 = (0..n).map(|_| f64::from(d.sample(&mut rng))).sum();
            let mean = d.mean();
            let sd = d.expect(|x| (x - mean).powi(2)).sqrt();
            let z = (sum / n as f64 - mean) / (sd / (n as f64).sqrt());
            assert!(z.abs() < 4.5, "{spec}: z = {z}");
        }
    }
}
