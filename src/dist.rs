//! Token-length distributions for prompts (`L`) and decode budgets (`B`), given as short
//! spec strings such as `128`, `uniform:64:512`, `geometric:64:1024`,
//! `mix:64@0.5,128@0.3,512@0.2` or `lognormal:256:1.0:4096`.
//!
//! Every distribution is over whole tokens and has a finite support, so its exact
//! probability mass function is available to the `theory` module.

use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use std::fmt;
use std::str::FromStr;

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
                if !(mean >= 1.0 && mean.is_finite()) {
                    return Err(err("MEAN must be a finite number >= 1"));
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
        self.pmf().first().map_or(0, |&(n, _)| n)
    }

    /// The exact probability mass function as `(tokens, probability)` pairs, ascending.
    pub fn pmf(&self) -> Vec<(u32, f64)> {
        let mut pmf = match self {
            LengthDist::Fixed(n) => vec![(*n, 1.0)],
            LengthDist::Uniform { lo, hi } => {
                let p = 1.0 / f64::from(hi - lo + 1);
                (*lo..=*hi).map(|n| (n, p)).collect()
            }
            LengthDist::Geometric { mean, max } => {
                let q = 1.0 - 1.0 / mean;
                let mut v: Vec<(u32, f64)> = (1..*max)
                    .map(|k| (k, (1.0 - q) * q.powi(k as i32 - 1)))
                    .collect();
                v.push((*max, q.powi(*max as i32 - 1)));
                v
            }
            LengthDist::Mix(pairs) => pairs.clone(),
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
                (1..=*max)
                    .map(|n| {
                        let lo = if n == 1 { 0.0 } else { cdf(f64::from(n) - 0.5) };
                        let hi = if n == *max {
                            1.0
                        } else {
                            cdf(f64::from(n) + 0.5)
                        };
                        (n, hi - lo)
                    })
                    .filter(|&(_, p)| p > 0.0)
                    .collect()
            }
        };
        pmf.sort_by_key(|&(n, _)| n);
        pmf
    }

    /// `E[f(X)]` computed exactly from the probability mass function.
    pub fn expect(&self, f: impl Fn(f64) -> f64) -> f64 {
        self.pmf().iter().map(|&(n, p)| p * f(f64::from(n))).sum()
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
            ("mix:64@0.5,128@0.3", "sum to"),
            ("mix:64", "TOKENS@PROBABILITY"),
            ("lognormal:0:1:10", "MEDIAN"),
            ("normal:3:4", "unknown form"),
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
            let total: f64 = d.pmf().iter().map(|&(_, p)| p).sum();
            assert!((total - 1.0).abs() < 1e-9, "{spec}: {total}");
        }
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
