//! Multiplicative lognormal noise on any cost model: real iterations jitter around the
//! profile's median, and a deterministic model would hide the queueing that jitter causes.

use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

use super::{BatchShape, CostModel};
use crate::rng::SimRng;

/// `S = S_inner * N`, `N` lognormal with mean 1 and coefficient of variation `cv`, drawn
/// afresh for every iteration from the GPU's service stream (before the inner model's draws).
#[derive(Debug, Clone)]
pub struct LogNormalNoise {
    inner: Arc<dyn CostModel>,
    cv: f64,
    /// `sigma` of `ln N`: `sqrt(ln(1 + cv^2))`.
    sigma: f64,
    /// `sigma^2 / 2`, by which `ln N`'s mean is below 0 so that `N`'s mean is exactly 1.
    half_var: f64,
}

impl LogNormalNoise {
    /// Wraps `inner` with noise of coefficient of variation `cv` (> 0, finite).
    pub fn new(inner: Arc<dyn CostModel>, cv: f64) -> Self {
        let sigma = (1.0 + cv * cv).ln().sqrt();
        LogNormalNoise {
            inner,
            cv,
            sigma,
            half_var: 0.5 * sigma * sigma,
        }
    }
}

impl CostModel for LogNormalNoise {
    fn sample(&self, shape: &BatchShape, rng: &mut SimRng) -> f64 {
        let z: f64 = StandardNormal.sample(rng);
        self.inner.sample(shape, rng) * (self.sigma * z - self.half_var).exp()
    }

    fn mean(&self, shape: &BatchShape) -> f64 {
        self.inner.mean(shape)
    }

    fn variance(&self, shape: &BatchShape) -> f64 {
        // Independent factors: E[X^2] E[N^2] - E[X]^2 with E[N^2] = 1 + cv^2.
        let (m, v) = (self.inner.mean(shape), self.inner.variance(shape));
        (v + m * m) * (1.0 + self.cv * self.cv) - m * m
    }

    fn depends_on_context(&self) -> bool {
        self.inner.depends_on_context()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{CostDist, LinearCost};
    use crate::rng::{Source, stream};

    /// Over 200,000 draws the mean is within 4.5 standard errors and the CV within 2%.
    #[test]
    fn noise_keeps_the_mean_and_has_the_stated_cv() {
        let inner = Arc::new(LinearCost::new(0.01, 0.0, 0.0, CostDist::Deterministic));
        let m = LogNormalNoise::new(inner, 0.3);
        let s = BatchShape::default();
        let mut rng = stream(1, 0, Source::Service(0));
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| m.sample(&s, &mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        assert!(
            (mean - 0.01).abs() < 4.5 * (m.variance(&s) / n as f64).sqrt(),
            "mean {mean}"
        );
        assert!((sd / mean - 0.3).abs() < 0.006, "cv {}", sd / mean);
        assert!((m.variance(&s) - (0.003f64).powi(2)).abs() < 1e-15);
    }
}
