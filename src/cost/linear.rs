//! The seed study's cost model: `S(b) = C + A * max(0, b - b0)`.

use rand_distr::{Distribution, Exp1, Gamma};
use std::fmt;
use std::str::FromStr;

use super::{BatchShape, CostModel};
use crate::rng::SimRng;

/// How the setup cost `C` and per-token cost `A` vary from batch to batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CostDist {
    /// `C = c`, `A = a` exactly.
    Deterministic,
    /// `C` and `A` drawn once per batch, exponential with means `c` and `a` (the seed's model).
    Exponential,
    /// `C` and `A` drawn once per batch from gamma laws with means `c`, `a` and this
    /// coefficient of variation.
    Gamma { cv: f64 },
}

impl FromStr for CostDist {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "det" => Ok(CostDist::Deterministic),
            "exp" => Ok(CostDist::Exponential),
            _ => match s.strip_prefix("gamma:").map(str::parse::<f64>) {
                Some(Ok(cv)) if cv > 0.0 && cv.is_finite() => Ok(CostDist::Gamma { cv }),
                _ => Err(format!("'{s}' is not one of det, exp, gamma:CV (CV > 0)")),
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
                Some(Gamma::new(shape, 1.0 / shape).expect("validated CV"))
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
