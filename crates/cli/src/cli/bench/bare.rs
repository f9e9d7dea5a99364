//! The speed floor `llmsim bench --suite` measures the engine against: the seed model under
//! Scheduler B on one GPU, written as the smallest loop that simulates it exactly. It reads
//! the same requests and draws the same batch costs from the same stream as the engine, but
//! does O(1) work per batch: decoding requests are kept as cohorts by the decode iteration in
//! which they finish, so a decode iteration is one counter step and one cohort pop. It keeps
//! only sums (no percentiles, histograms or per-request records), which is why it is a floor
//! and not a simulator.

use std::collections::VecDeque;

use llmsim::cost::{BatchShape, CostModel};
use llmsim::rng::{SimRng, Source, stream};
use llmsim::workload::Request;

/// What a bare-loop run measured: enough to check that it simulated the engine's model.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BareOutcome {
    /// Batches run (prefill and decode).
    pub batches: u64,
    /// Requests served to their last token.
    pub completed: u64,
    /// Sum of the requests' times to first token (seconds).
    pub ttft_sum: f64,
    /// Sum of the requests' arrival-to-last-token times (seconds).
    pub e2e_sum: f64,
    /// Time the last batch ended (seconds).
    pub end: f64,
}

/// Requests finishing at the same decode iteration.
#[derive(Debug, Clone, Copy, Default)]
struct Cohort {
    count: u64,
    arrival_sum: f64,
}

/// Simulates `requests` (in arrival order) under Scheduler B with at most `k` prefills per
/// batch and no cap on decode entries, on one GPU whose batch costs are drawn from `cost`
/// with the engine's service stream of replication `rep` of `seed`.
pub fn scheduler_b(
    requests: impl IntoIterator<Item = Request>,
    cost: &dyn CostModel,
    k: usize,
    (seed, rep): (u64, u32),
) -> BareOutcome {
    let mut rng: SimRng = stream(seed, rep, Source::Service(0));
    let mut source = requests.into_iter().peekable();
    let mut waiting: VecDeque<Request> = VecDeque::new();
    // cohorts[i]: requests whose last token comes i + 1 decode iterations from now.
    let mut cohorts: VecDeque<Cohort> = VecDeque::new();
    let mut decoding: u64 = 0;
    let mut out = BareOutcome::default();
    let mut now = 0.0;
    loop {
        while let Some(r) = source.next_if(|r| r.arrival <= now) {
            waiting.push_back(r);
        }
        if waiting.is_empty() && decoding == 0 {
            match source.next() {
                Some(r) => {
                    now = r.arrival;
                    waiting.push_back(r);
                }
                None => break,
            }
        }
        out.batches += 1;
        if waiting.is_empty() {
            now += cost.sample(&BatchShape::decode(decoding as u32, 0), &mut rng);
            let done = cohorts
                .pop_front()
                .expect("a decoding request has a cohort");
            decoding -= done.count;
            out.completed += done.count;
            out.e2e_sum += done.count as f64 * now - done.arrival_sum;
            continue;
        }
        let n = k.min(waiting.len());
        let tokens: u64 = waiting.iter().take(n).map(|r| u64::from(r.prompt)).sum();
        now += cost.sample(&BatchShape::prefill(tokens), &mut rng);
        for r in waiting.drain(..n) {
            out.ttft_sum += now - r.arrival;
            let left = r.decode as usize;
            if left == 0 {
                out.completed += 1;
                out.e2e_sum += now - r.arrival;
                continue;
            }
            if cohorts.len() < left {
                cohorts.resize(left, Cohort::default());
            }
            let c = &mut cohorts[left - 1];
            c.count += 1;
            c.arrival_sum += r.arrival;
            decoding += 1;
        }
    }
    out.end = now;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmsim::config::{Config, WorkloadSpec};
    use llmsim::engine::simulate;
    use llmsim::scheduler::SchedulerKind;
    use llmsim_study::files::Disk;

    /// The engine's measurements of the same run, warm-up included.
    fn engine(cfg: &Config) -> BareOutcome {
        let run = cfg.build(&Disk).unwrap().run;
        let out = simulate(run.workload.iter(run.seed, 0), &run.engine, run.seed, 0, 0);
        BareOutcome {
            batches: out.gpus[0].batches,
            completed: out.e2e.count(),
            ttft_sum: out.ttft.mean().unwrap() * out.ttft.count() as f64,
            e2e_sum: out.e2e.mean().unwrap() * out.e2e.count() as f64,
            end: out.end_time,
        }
    }

    #[test]
    fn the_bare_loop_is_the_engine_s_model_batch_for_batch() {
        for (rate, k, decode) in [(2.0, 4, "64"), (4.5, 1, "uniform:0:40"), (0.3, 16, "0")] {
            let cfg = Config {
                scheduler: SchedulerKind::B,
                workload: WorkloadSpec::Synthetic,
                rate: Some(rate),
                requests: Some(20_000),
                k: Some(k),
                decode: Some(decode.parse().unwrap()),
                ..Config::default()
            };
            let run = cfg.build(&Disk).unwrap().run;
            let bare = scheduler_b(
                run.workload.iter(run.seed, 0),
                run.engine.cost.as_ref(),
                k as usize,
                (run.seed, 0),
            );
            let want = engine(&cfg);
            assert_eq!(bare.batches, want.batches, "rate {rate}, K {k}, B {decode}");
            assert_eq!(bare.completed, want.completed);
            assert_eq!(bare.end, want.end);
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * y.abs().max(1.0);
            assert!(close(bare.ttft_sum, want.ttft_sum), "{bare:?} vs {want:?}");
            assert!(close(bare.e2e_sum, want.e2e_sum), "{bare:?} vs {want:?}");
        }
    }
}
