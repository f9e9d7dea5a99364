//! Disaggregated serving: separate prefill and decode GPU pools, as in DistServe (Zhong et
//! al., OSDI'24) and Splitwise (Patel et al., ISCA'24).
//!
//! Prefill GPUs run prefill-only iterations: whole prompts in FCFS order up to `max_seqs`
//! requests and `max_tokens` tokens per iteration, admitted when their blocks fit (vLLM's
//! paged memory and watermark). When a prompt is done the engine emits its first token and
//! hands the request to a decode GPU. A decode GPU admits handed-off requests in FCFS order
//! when it can reserve KV for the prompt plus the whole decode budget (so it never has to
//! preempt: DistServe sizes decode memory in advance), then pulls the cache over the
//! inter-GPU link; the cache stays on the prefill GPU until the transfer ends, which is how
//! a congested decode pool pushes back on the prefill pool. Decode GPUs run one decode step
//! of every local request per iteration. The transfer delays each request's second token.

use std::collections::VecDeque;

use super::paged::KvBudget;
use super::{Batch, BatchLimits, ReqId, Scheduler, View, Waiting, release_finished};
use crate::prefix::CacheHit;

/// A disaggregated cluster: pool sizes and the link between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DisaggSpec {
    /// Limits of each GPU's iterations.
    pub limits: BatchLimits,
    /// GPUs `0..prefill_gpus` prefill; the rest decode.
    pub prefill_gpus: u32,
    /// Decode GPUs.
    pub decode_gpus: u32,
    /// Bandwidth of each prefill GPU's outgoing KV link (gigabits per second).
    pub link_gbps: f64,
    /// Latency of one KV transfer (seconds).
    pub link_latency: f64,
    /// Bytes of KV cache per token (bytes).
    pub kv_bytes_per_token: f64,
}

impl DisaggSpec {
    /// Seconds the link is busy sending `tokens` tokens of KV cache (latency excluded).
    pub fn send_time(&self, tokens: u32) -> f64 {
        f64::from(tokens) * self.kv_bytes_per_token * 8.0 / (self.link_gbps * 1e9)
    }
}

/// A prefill GPU of a disaggregated cluster.
#[derive(Debug)]
pub struct DisaggPrefill {
    limits: BatchLimits,
    waiting: Waiting,
}

impl DisaggPrefill {
    /// A prefill-pool scheduler with these limits.
    pub fn new(limits: BatchLimits) -> Self {
        DisaggPrefill {
            limits,
            waiting: Waiting::default(),
        }
    }
}

impl Scheduler for DisaggPrefill {
    fn admit(&mut self, id: ReqId, _view: &View) {
        self.waiting.push_back(id);
    }

    fn schedule(&mut self, view: &View, batch: &mut Batch) {
        // Prompts are whole, so nothing is half-prefilled between iterations.
        let mut kv = KvBudget::new(view, &[], self.limits.watermark);
        let mut tokens = 0;
        while let Some(id) = self.waiting.front(view, batch) {
            let prompt = view.prefill_left(id);
            if batch.entries().len() >= self.limits.max_seqs as usize
                || tokens + prompt > self.limits.max_tokens
                // No prefix cache under disaggregation (`limits::prefix_cache`).
                || !kv.try_admit(view, id, CacheHit::default())
            {
                break;
            }
            self.waiting.pop_front(view, batch);
            batch.push_prefill(id, prompt);
            tokens += prompt;
        }
    }

    fn on_batch_done(&mut self, _batch: &Batch, _view: &View) {}
}

/// A decode GPU of a disaggregated cluster.
#[derive(Debug)]
pub struct DisaggDecode {
    limits: BatchLimits,
    /// Handed-off requests whose cache is still on their prefill GPU.
    waiting: VecDeque<ReqId>,
    /// Requests whose cache is on its way.
    fetching: usize,
    /// Requests whose cache is here.
    running: Vec<ReqId>,
    /// Blocks reserved for prompt plus decode budget of fetching and running requests.
    reserved: u64,
}

impl DisaggDecode {
    /// A decode-pool scheduler with these limits.
    pub fn new(limits: BatchLimits) -> Self {
        DisaggDecode {
            limits,
            waiting: VecDeque::new(),
            fetching: 0,
            running: Vec::new(),
            reserved: 0,
        }
    }
}

impl Scheduler for DisaggDecode {
    fn admit(&mut self, id: ReqId, _view: &View) {
        self.waiting.push_back(id);
    }

    fn schedule(&mut self, view: &View, batch: &mut Batch) {
        while let Some(&id) = self.waiting.front() {
            let need = view.full_reservation(id);
            if self.running.len() + self.fetching >= self.limits.max_seqs as usize
                || self.reserved + need > view.kv.capacity_blocks()
            {
                break;
            }
            self.waiting.pop_front();
            self.reserved += need;
            self.fetching += 1;
            batch.fetch(id);
        }
        for &id in &self.running {
            batch.push_decode(id, view.context(id));
        }
    }

    fn on_batch_done(&mut self, _batch: &Batch, view: &View) {
        self.reserved -= release_finished(&mut self.running, view);
    }

    fn on_transfer_done(&mut self, id: ReqId, _view: &View) {
        self.fetching -= 1;
        self.running.push(id);
    }
}
