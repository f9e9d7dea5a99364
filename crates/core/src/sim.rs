//! One configured study point: a workload, an engine configuration, a seed and a number
//! of independent replications, run in parallel with results in replication order (so the
//! output does not depend on the thread count).

use std::sync::atomic::AtomicBool;

use crate::engine::{EngineConfig, Mode, SimOutput, simulate_to_last_arrival, simulate_with};
use crate::metrics::{Summary, summarize};
use crate::scheduler::SchedulerSpec;
use crate::theory;
use crate::workload::{Request, SyntheticWorkload, Workload};

/// The closed-form capacity of `engine`'s whole cluster serving `workload`'s lengths
/// (requests/s), where the model has one: not when lengths come from a trace (they are not
/// draws from known laws), nor for cost models whose decode cost depends on context (the
/// closed forms assume it does not), nor where [`theory::scheduler_b_capacity`] has none.
fn closed_form(workload: &SyntheticWorkload, engine: &EngineConfig) -> Option<theory::Capacity> {
    let (prompt, decode) = (&workload.prompt, &workload.decode);
    let cost = engine.cost.as_ref();
    if workload.lengths_from.is_some() || cost.depends_on_context() {
        return None;
    }
    let per_gpu = match engine.scheduler {
        SchedulerSpec::A => theory::Capacity {
            rps: theory::scheduler_a_capacity(prompt, decode, cost),
            hard_limit: true,
        },
        SchedulerSpec::B {
            k,
            max_decode_batch,
        } => theory::scheduler_b_capacity(k, max_decode_batch, prompt, decode, cost)?,
        // No closed form: their capacity is measured (experiments::policies).
        _ => return None,
    };
    Some(theory::Capacity {
        rps: per_gpu.rps * engine.gpus as f64,
        ..per_gpu
    })
}

/// The closed-form capacity (requests/s) of `engine`'s whole cluster serving `workload`'s
/// lengths, where the model has one (see [`theory::Capacity`] for what it promises).
pub fn capacity(workload: &SyntheticWorkload, engine: &EngineConfig) -> Option<f64> {
    closed_form(workload, engine).map(|c| c.rps)
}

/// Everything `llmsim run` simulates.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Requests to serve.
    pub workload: Workload,
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
    /// The closed-form capacity of the whole cluster (requests/s), where the model has one
    /// (synthetic workloads only; see [`capacity`]).
    pub fn capacity(&self) -> Option<f64> {
        match &self.workload {
            Workload::Synthetic(w) => capacity(w, &self.engine),
            _ => None,
        }
    }

    /// True when the arrival rate is at or above a closed-form capacity that no run can
    /// beat ([`theory::Capacity::hard_limit`]). Where smaller batches can do better than
    /// the capacity assumes, a run above it may still keep up, and only its measured growth
    /// says whether it did.
    pub fn overloaded(&self) -> bool {
        match &self.workload {
            Workload::Synthetic(w) => {
                closed_form(w, &self.engine).is_some_and(|c| c.hard_limit && w.rate >= c.rps)
            }
            _ => false,
        }
    }

    /// Draws replication `rep`'s requests and simulates them keeping per-request records,
    /// for outputs that need them (memory grows with the run; summaries need no records).
    /// The requests are listed as they arrived, like the records: a closed-loop workload's
    /// later turns, which the workload does not list, as the run released them (arrival,
    /// prompt and decode budget only).
    pub fn simulate_records(&self, rep: u32) -> (Vec<Request>, SimOutput) {
        self.simulate_records_cancellable(rep, None)
            .expect("a run without a cancellation flag ends")
    }

    /// [`RunConfig::simulate_records`], giving up (`None`) soon after `cancel` is set.
    pub fn simulate_records_cancellable(
        &self,
        rep: u32,
        cancel: Option<&AtomicBool>,
    ) -> Option<(Vec<Request>, SimOutput)> {
        self.simulate_records_with(
            rep,
            Mode {
                cancel,
                ..Mode::default()
            },
        )
    }

    /// [`RunConfig::simulate_records`] as `mode` says (which may stop it early); `None`
    /// when `mode.cancel` was set.
    pub fn simulate_records_with(&self, rep: u32, mode: Mode) -> Option<(Vec<Request>, SimOutput)> {
        let requests = self.workload.generate(self.seed, rep);
        let mode = Mode {
            records: true,
            ..mode
        };
        let out = simulate_with(&requests, &self.engine, (self.seed, rep), self.warmup, mode)?;
        if requests.iter().all(|r| r.next.is_none()) {
            return Some((requests, out));
        }
        let arrived = out
            .records
            .iter()
            .map(|r| Request {
                arrival: r.arrival,
                prompt: r.prompt,
                decode: r.decode,
                prefix: None,
                next: None,
            })
            .collect();
        Some((arrived, out))
    }

    /// Summarises one simulation of this configuration. A run is unstable when its queue
    /// grew or it is [`overloaded`](RunConfig::overloaded).
    pub fn summarize(&self, out: &SimOutput) -> Summary {
        let mut s = summarize(out);
        s.unstable |= self.overloaded();
        s
    }

    /// Runs replication `rep` and summarises it (see [`RunConfig::summarize`]). A run known
    /// to be [`overloaded`](RunConfig::overloaded) stops at its last arrival:
    /// its latencies are not steady-state values anyway, and draining its backlog would
    /// dominate the cost of a sweep.
    pub fn run_one(&self, rep: u32) -> Summary {
        self.run_one_cancellable(rep, None)
            .expect("a run without a cancellation flag ends")
    }

    /// [`RunConfig::run_one`], giving up (`None`) soon after `cancel` is set.
    pub fn run_one_cancellable(&self, rep: u32, cancel: Option<&AtomicBool>) -> Option<Summary> {
        let mode = Mode {
            cancel,
            ..Mode::default()
        };
        Some(self.summarize(&self.simulate_streamed(rep, mode)?))
    }

    /// Replication `rep` as `mode` says, keeping no records and stopping at the last
    /// arrival when [`overloaded`](RunConfig::overloaded) (see [`RunConfig::run_one`]);
    /// `None` when `mode.cancel` was set.
    pub fn simulate_streamed(&self, rep: u32, mode: Mode) -> Option<SimOutput> {
        let mode = Mode {
            stop_at_last_arrival: self.overloaded(),
            ..mode
        };
        let requests = self.workload.iter(self.seed, rep);
        simulate_with(requests, &self.engine, (self.seed, rep), self.warmup, mode)
    }

    /// Replication `rep`, stopped at its last arrival: enough for the stability verdict,
    /// throughput and utilisation (all measured inside the window), for searches such as a
    /// bisection on the arrival rate. Latencies cover only the requests finished by then.
    pub fn verdict(&self, rep: u32) -> Summary {
        self.summarize(&self.simulate_to_last_arrival(rep))
    }

    /// Replication `rep` stopped at the last arrival (see [`RunConfig::verdict`]), not
    /// summarised: for callers that need only the measured stability verdict
    /// ([`metrics::growth_detected`](crate::metrics::growth_detected)).
    pub fn simulate_to_last_arrival(&self, rep: u32) -> SimOutput {
        let requests = self.workload.iter(self.seed, rep);
        simulate_to_last_arrival(requests, &self.engine, self.seed, rep, self.warmup)
    }

    /// Runs all replications (in parallel with the `parallel` feature); results in
    /// replication order.
    pub fn run(&self) -> Vec<Summary> {
        self.run_with(Mode::default())
    }

    /// [`RunConfig::run`] as `mode` says (for instance [`Mode::skip_itl`] where the caller
    /// reads no ITL statistic); `mode.cancel` must be unset.
    pub fn run_with(&self, mode: Mode) -> Vec<Summary> {
        map_reps(self.reps, |rep| {
            let out = self.simulate_streamed(rep, mode);
            self.summarize(&out.expect("a run without a cancellation flag ends"))
        })
    }
}

/// `f` of each replication `0..reps`, in replication order: on rayon's threads with the
/// `parallel` feature, else one after another. Replications draw from their own streams,
/// so the results do not depend on which.
pub fn map_reps<T: Send>(reps: u32, f: impl Fn(u32) -> T + Sync + Send) -> Vec<T> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        (0..reps).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "parallel"))]
    {
        (0..reps).map(f).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::AtomicBool;

    use crate::config::Config;
    use crate::engine::{Mode, simulate_with};
    use crate::files::Memory;

    #[test]
    fn a_run_that_is_not_cancelled_is_the_plain_run() {
        let run = Config::default().build(&Memory::default()).unwrap().run;
        let flag = AtomicBool::new(false);
        for rep in 0..2 {
            let plain = serde_json::to_string(&run.run_one(rep)).unwrap();
            let watched = run.run_one_cancellable(rep, Some(&flag)).unwrap();
            assert_eq!(plain, serde_json::to_string(&watched).unwrap());
        }
    }

    /// Skipping the inter-token gaps empties the ITL statistics and changes nothing else,
    /// under a lone request's decode loop (A) and a paged policy on two GPUs.
    #[test]
    fn a_run_without_itl_is_the_plain_run_less_its_itl() {
        use crate::scheduler::SchedulerKind;
        for (scheduler, gpus) in [(SchedulerKind::A, 1), (SchedulerKind::Vllm, 2)] {
            let config = Config {
                scheduler,
                gpus,
                rate: Some(0.8 * gpus as f64),
                requests: Some(3000),
                reps: 2,
                ..Config::default()
            };
            let run = config.build(&Memory::default()).unwrap().run;
            let skip = Mode {
                skip_itl: true,
                ..Mode::default()
            };
            for (mut plain, skipped) in run.run().into_iter().zip(run.run_with(skip)) {
                assert!(plain.itl.mean > 0.0 && skipped.itl.mean.is_nan());
                plain.itl = skipped.itl;
                assert_eq!(
                    serde_json::to_string(&plain).unwrap(),
                    serde_json::to_string(&skipped).unwrap()
                );
            }
        }
    }

    #[test]
    fn a_cancelled_run_stops_within_a_few_thousand_events() {
        let run = Config::default().build(&Memory::default()).unwrap().run;
        let flag = AtomicBool::new(true);
        let read = Cell::new(0_usize);
        // Ten million requests would take seconds; the engine must give up after reading
        // at most one check interval's worth (each arrival is at least one event).
        let requests = run
            .workload
            .iter(run.seed, 0)
            .take(10_000_000)
            .inspect(|_| read.set(read.get() + 1));
        let mode = Mode {
            cancel: Some(&flag),
            ..Mode::default()
        };
        assert!(simulate_with(requests, &run.engine, (run.seed, 0), 0, mode).is_none());
        assert!(read.get() <= 4096, "read {} requests", read.get());
    }
}
