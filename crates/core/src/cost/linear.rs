//! The seed study's cost model: `S(b) = C + A * max(0, b - b0)`.

use rand_distr::{Distribution, Exp1, Gamma};
use std::fmt;
use std::str::FromStr;

use super::{BatchShape, CostModel, MAX_COUNT, MAX_SECONDS, check_cv, check_range};
use crate::limits::RangeError;
use crate::rng::SimRng;

/// How the setup cost `C` and per-token cost `A` vary from batch to batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CostDist {
    /// `C = c`, `A = a` exactly.
    Deterministic,
    /// `C` and `A` drawn once per batch, exponential with means `c` and `a` (the seed's model).
    Exponential,
    /// `C` and `A` drawn once per batch from gamma laws with means `c`, `a` and this
    /// coefficient of variation, in `(0, MAX_CV]` ([`MAX_CV`](super::MAX_CV)).
    Gamma { cv: f64 },
}

impl FromStr for CostDist {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "det" => Ok(CostDist::Deterministic),
            "exp" => Ok(CostDist::Exponential),
            _ => match s.strip_prefix("gamma:").map(str::parse::<f64>) {
                Some(Ok(cv)) => check_cv("CV", cv)
                    .map(|()| CostDist::Gamma { cv })
                    .map_err(|e| e.to_string()),
                _ => Err(format!(
                    "'{s}' is not one of det, exp, gamma:CV (0 < CV <= {})",
                    super::MAX_CV
                )),
            },
        }
    }
}

impl fmt::Display for CostDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CostDist::Deterministic => write!(f, "det"),
            CostDist::Exponential => write!(f, "exp"),
            CostDist::Gamma { cv } => write!(f, "gamma:{cv}"),
        }
    }
}

/// `S(b) = C + A * max(0, b - b0)` with `E[C] = c`, `E[A] = a`.
#[derive(Debug, Clone)]
pub struct LinearCost {
    /// Mean setup cost per batch (seconds).
    pub c: f64,
    /// Mean cost per token beyond the free ones (seconds per token).
    pub a: f64,
    /// Tokens a batch processes at no extra cost (tokens).
    pub b0: f64,
    /// Batch-to-batch variation of `C` and `A`.
    pub dist: CostDist,
    /// Unit-mean gamma law used for `CostDist::Gamma`.
    gamma: Option<Gamma<f64>>,
}

impl LinearCost {
    /// A cost model with means `c` (seconds), `a` (seconds per token) and `b0` free tokens.
    pub fn new(c: f64, a: f64, b0: f64, dist: CostDist) -> Self {
        let gamma = match dist {
            CostDist::Gamma { cv } => {
                let shape = 1.0 / (cv * cv);
                Some(Gamma::new(shape, 1.0 / shape).expect("a CV in (0, MAX_CV], as parsed"))
            }
            _ => None,
        };
        LinearCost {
            c,
            a,
            b0,
            dist,
            gamma,
        }
    }

    /// Why the parameters cannot be a cost model, if they cannot: `c` in `(0, MAX_SECONDS]`,
    /// `a` in `[0, MAX_SECONDS]` and `b0` in `[0, MAX_COUNT]`, named as `llmsim run`'s
    /// flags (`c`, `a`, `b0`). ([`CostDist`]'s parser checks its CV.)
    pub fn check(&self) -> Result<(), RangeError> {
        let seconds = (0.0, MAX_SECONDS);
        check_range("c", self.c, seconds, true, "a number of seconds")?;
        check_range("a", self.a, seconds, false, "a number of seconds per token")?;
        check_range("b0", self.b0, (0.0, MAX_COUNT), false, "a number of tokens")
    }

    /// Tokens billed at the per-token cost: `max(0, b - b0)`.
    fn excess(&self, shape: &BatchShape) -> f64 {
        (shape.tokens() as f64 - self.b0).max(0.0)
    }

    /// Variance of a unit-mean draw of the configured law.
    fn unit_variance(&self) -> f64 {
        match self.dist {
            CostDist::Deterministic => 0.0,
            CostDist::Exponential => 1.0,
            CostDist::Gamma { cv } => cv * cv,
        }
    }

    fn unit_draw(&self, rng: &mut SimRng) -> f64 {
        match (self.dist, &self.gamma) {
            (CostDist::Deterministic, _) => 1.0,
            (CostDist::Exponential, _) => Exp1.sample(rng),
            (_, Some(g)) => g.sample(rng),
            (_, None) => unreachable!("gamma costs always carry a distribution"),
        }
    }
}

impl CostModel for LinearCost {
    fn sample(&self, shape: &BatchShape, rng: &mut SimRng) -> f64 {
        let per_token = self.a * self.excess(shape);
        let setup = self.c * self.unit_draw(rng);
        // Draw A only when it matters: it keeps the common a = 0 case at one draw per batch.
        if per_token > 0.0 {
            setup + per_token * self.unit_draw(rng)
        } else {
            setup
        }
    }

    fn mean(&self, shape: &BatchShape) -> f64 {
        self.c + self.a * self.excess(shape)
    }

    fn variance(&self, shape: &BatchShape) -> f64 {
        let x = self.excess(shape);
        self.unit_variance() * (self.c * self.c + (self.a * x).powi(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Source, stream};

    #[test]
    fn deterministic_cost_is_the_formula() {
        let m = LinearCost::new(0.01, 0.001, 32.0, CostDist::Deterministic);
        let mut rng = stream(0, 0, Source::Service(0));
        assert_eq!(m.sample(&BatchShape::prefill(16), &mut rng), 0.01);
        assert!((m.sample(&BatchShape::prefill(160), &mut rng) - (0.01 + 0.128)).abs() < 1e-15);
    }

    #[test]
    fn parameters_out_of_range_are_named() {
        assert_eq!("gamma:10".parse(), Ok(CostDist::Gamma { cv: 10.0 }));
        for bad in [
            "gamma:10.01",
            "gamma:1e200",
            "gamma:0",
            "gamma:nan",
            "gamma:x",
        ] {
            let e = bad.parse::<CostDist>().unwrap_err();
            assert!(e.contains("CV") && e.contains("10"), "{bad}: {e}");
        }
        let ok = LinearCost::new(3600.0, 3600.0, 4_294_967_296.0, CostDist::Deterministic);
        assert_eq!(ok.check(), Ok(()));
        for (m, field) in [
            (
                LinearCost {
                    c: 0.0,
                    ..ok.clone()
                },
                "c",
            ),
            (
                LinearCost {
                    c: 3601.0,
                    ..ok.clone()
                },
                "c",
            ),
            (
                LinearCost {
                    a: f64::NAN,
                    ..ok.clone()
                },
                "a",
            ),
            (
                LinearCost {
                    b0: 1e300,
                    ..ok.clone()
                },
                "b0",
            ),
        ] {
            assert_eq!(m.check().unwrap_err().field, field);
        }
    }

    /// Sample mean and variance of 200,000 batches agree with the stated moments within
    /// 4.5 standard errors (the variance's standard error from the fourth moment bound).
    #[test]
    fn random_costs_have_the_stated_moments() {
        for dist in [CostDist::Exponential, CostDist::Gamma { cv: 0.5 }] {
            let m = LinearCost::new(0.01, 0.001, 0.0, dist);
            let s = BatchShape::prefill(128);
            let mut rng = stream(5, 0, Source::Service(0));
            let n = 200_000;
            let xs: Vec<f64> = (0..n).map(|_| m.sample(&s, &mut rng)).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let se = (m.variance(&s) / n as f64).sqrt();
            assert!((mean - m.mean(&s)).abs() < 4.5 * se, "{dist}: mean {mean}");
            assert!(
                (var / m.variance(&s) - 1.0).abs() < 0.05,
                "{dist}: var {var}"
            );
        }
    }
}
