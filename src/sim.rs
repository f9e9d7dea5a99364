//! One configured study point: a workload, an engine configuration, a seed and a number
//! of independent replications, run in parallel with results in replication order (so the
//! output does not depend on the thread count).

use rayon::prelude::*;

use crate::engine::{EngineConfig, simulate};
use crate::metrics::{Summary, summarize};
use crate::scheduler::SchedulerSpec;
use crate::theory;
use crate::workload::SyntheticWorkload;

/// Everything `llmsim run` simulates.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Requests to serve.
    pub workload: SyntheticWorkload,
    /// Schedulers, cost model, GPUs and router.
    pub engine: EngineConfig,
    /// Base seed; replication `r` uses streams derived from `(seed, r)`.
    pub seed: u64,
    /// Independent replications (at least 1).
    pub reps: u32,
    /// Requests at the start of each replication that are simulated but not measured.
    pub warmup: usize,
}

impl RunConfig {
    /// The closed-form capacity of the whole cluster (requests/s), where the model has one.
    pub fn capacity(&self) -> Option<f64> {
        let w = &self.workload;
        let cost = self.engine.cost.as_ref();
        let per_gpu = match self.engine.scheduler {
            SchedulerSpec::A => theory::scheduler_a_capacity(&w.prompt, &w.decode, cost),
            SchedulerSpec::B {
                k,
                max_decode_batch,
            } => theory::scheduler_b_capacity(k, max_decode_batch, &w.prompt, &w.decode, cost),
            // No closed form: their capacity is measured (experiments::policies).
            _ => return None,
        };
        Some(per_gpu * self.engine.gpus as f64)
    }

    /// Runs replication `rep` and summarises it. A run is unstable when its queue grew or the
    /// arrival rate is at or above the closed-form capacity.
    pub fn run_one(&self, rep: u32) -> Summary {
        let requests = self.workload.generate(self.seed, rep);
        let out = simulate(&requests, &self.engine, self.seed, rep, self.warmup);
        let mut s = summarize(&requests, &out);
        s.unstable |= self.capacity().is_some_and(|c| self.workload.rate >= c);
        s
    }

    /// Runs all replications in parallel; results in replication order.
    pub fn run(&self) -> Vec<Summary> {
        (0..self.reps)
            .into_par_iter()
            .map(|rep| self.run_one(rep))
            .collect()
    }
}
