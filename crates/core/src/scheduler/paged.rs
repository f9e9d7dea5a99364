//! Machinery shared by the paged-memory policies (vLLM, Sarathi-Serve, decode-first): a
//! waiting queue, a running set, KV-block bookkeeping while an iteration is formed, and
//! preemption by recompute or by swapping as vLLM does it (Kwon et al., SOSP'23, §4.5).

use std::collections::VecDeque;

use super::{Batch, BatchLimits, Preemption, ReqId, View, Waiting};
use crate::prefix::CacheHit;

/// KV blocks still free while one iteration is being formed.
///
/// A request admitted to prefill has its whole prefill's blocks set aside at once, as
/// vLLM's block manager allocates a prompt's blocks when it first schedules it; the chunks
/// that follow then never run out of memory, and only decodes can. The engine counts only
/// the blocks of tokens actually processed, so its count never exceeds what is set aside.
#[derive(Debug)]
pub(crate) struct KvBudget {
    free: u64,
    watermark: u64,
}

impl KvBudget {
    /// The blocks free on this GPU, less those set aside for the unfinished prefills of
    /// `prefilling`, which must hold every running request with prompt left to prefill
    /// (the others set nothing aside); admissions must leave `watermark` (a fraction of all
    /// blocks) free.
    pub fn new(view: &View, prefilling: &[ReqId], watermark: f64) -> Self {
        let set_aside: u64 = prefilling
            .iter()
            .map(|&id| reserved(view, id) - view.kv.blocks_for(u64::from(view.context(id))))
            .sum();
        let watermark = view
            .kv
            .blocks
            .map_or(0, |b| (watermark * b as f64).ceil() as u64);
        KvBudget {
            free: view.kv_free().saturating_sub(set_aside),
            watermark,
        }
    }

    /// Takes the blocks `id` needs to process `tokens` more tokens; false if they are not free.
    pub fn try_grow(&mut self, view: &View, id: ReqId, tokens: u32) -> bool {
        let need = view.kv_growth(id, tokens);
        let ok = need <= self.free;
        if ok {
            self.free -= need;
        }
        ok
    }

    /// Sets aside the blocks of waiting request `id`'s whole prefill, less the cached
    /// prefix `hit` it would reuse, plus the unreferenced cached blocks that reuse takes
    /// from the free ones, if that leaves the watermark free (vLLM's `can_allocate`);
    /// false otherwise.
    pub fn try_admit(&mut self, view: &View, id: ReqId, hit: CacheHit) -> bool {
        let cached = view.kv.blocks_for(u64::from(view.context(id) + hit.tokens));
        let need = reserved(view, id) - cached + hit.revived;
        let ok = need + self.watermark <= self.free;
        if ok {
            self.free -= need;
        }
        ok
    }

    /// Takes the blocks swapped-out request `id` needs to come back and decode one token,
    /// if that leaves the watermark free (vLLM's `can_swap_in`); false otherwise.
    pub fn try_swap_in(&mut self, view: &View, id: ReqId) -> bool {
        let need = view.kv.blocks_for(u64::from(view.context(id)) + 1);
        let ok = need + self.watermark <= self.free;
        if ok {
            self.free -= need;
        }
        ok
    }

    /// Returns the blocks running request `id` holds or has set aside (it is being
    /// preempted), less the cached ones other requests still reference, which stay in use.
    pub fn release(&mut self, view: &View, id: ReqId) {
        self.free += reserved(view, id) - view.release_cached(id);
    }
}

/// Blocks a running request holds or has set aside: its whole prefill's until that is done,
/// its cache's after.
fn reserved(view: &View, id: ReqId) -> u64 {
    let target = view.prefill_target(id).max(view.context(id));
    view.kv.blocks_for(u64::from(target))
}

/// Waiting and running requests of a paged-memory policy.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    /// Requests not admitted (or preempted), in arrival order; preempted ones go first.
    pub waiting: Waiting,
    /// Admitted requests, oldest admission first; they hold KV blocks.
    pub running: Vec<ReqId>,
    /// The running requests admitted to prefill whose prefill had not ended when the last
    /// batch ended, in `running`'s order: every running request with prompt left to
    /// prefill. Kept so that a batch's set-aside memory and continued prefills cost work in
    /// the prefills under way, not in the whole running set.
    pub prefilling: Vec<ReqId>,
    /// Requests swapped out to host memory, in arrival order; they hold no KV blocks.
    pub swapped: VecDeque<ReqId>,
    /// Whether victims are swapped out rather than recomputed.
    pub swap: bool,
}

impl Queues {
    /// Empty queues that preempt the way `limits` asks (by swapping or by recompute).
    pub fn new(limits: &BatchLimits) -> Self {
        Queues {
            swap: matches!(limits.preemption, Preemption::Swap(_)),
            ..Queues::default()
        }
    }

    /// Schedules one decode step for every running request past its prefill, oldest first.
    /// When one cannot get its next block, the newest running request is preempted by
    /// recompute (vLLM's policy: the most recently admitted loses), until it can or it is
    /// itself the newest. Victims go back to the front of the waiting queue, oldest first;
    /// when swapping, a victim past its prefill is swapped out instead and joins the swapped
    /// queue, keeping its progress. Returns whether any request was preempted.
    pub fn decode_running(&mut self, view: &View, kv: &mut KvBudget, batch: &mut Batch) -> bool {
        let mut victims = Vec::new();
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() {
            let id = self.running[i];
            if view.prefill_left(id) > 0 {
                // Still prefilling: its blocks are already set aside.
                i += 1;
            } else if kv.try_grow(view, id, 1) {
                batch.push_decode(id, view.context(id));
                i += 1;
            } else {
                let victim = self.running.pop().expect("i < len");
                // The newest running request is the newest prefilling one, if prefilling.
                if self.prefilling.last() == Some(&victim) {
                    self.prefilling.pop();
                }
                kv.release(view, victim);
                preempted = true;
                if self.swap && view.prefill_left(victim) == 0 {
                    batch.swap_out(victim);
                    // FCFS among swapped requests: keep them in arrival (id) order.
                    let at = self.swapped.partition_point(|&s| s < victim);
                    self.swapped.insert(at, victim);
                } else {
                    batch.preempt(victim);
                    victims.push(victim);
                }
            }
        }
        // Victims were taken newest first; pushing each to the front restores arrival order.
        for &v in &victims {
            self.waiting.push_front(v);
        }
        preempted
    }

    /// Swaps swapped-out requests back in, oldest arrival first, while `limits.max_seqs`
    /// and memory (their context, one more token and the watermark) allow, stopping at the
    /// first that does not fit; each decodes one token in this batch and rejoins the running
    /// set as its newest member. Call it only when no request was preempted this iteration.
    pub fn swap_in(
        &mut self,
        view: &View,
        kv: &mut KvBudget,
        limits: &BatchLimits,
        batch: &mut Batch,
    ) {
        while let Some(&id) = self.swapped.front() {
            if self.running.len() >= limits.max_seqs as usize || !kv.try_swap_in(view, id) {
                break;
            }
            self.swapped.pop_front();
            batch.swap_in(id);
            batch.push_decode(id, view.context(id));
            self.running.push(id);
        }
    }

    /// Admits waiting requests in FCFS order while `limits` and memory allow, adding a
    /// prefill entry of up to `max_chunk(id)` tokens for each and stopping at the first that
    /// does not fit (no request overtakes an older one). Each is looked up in the prefix
    /// cache as it is considered, as vLLM's scheduler does: its prefill starts after the
    /// cached prefix, which it references once admitted. `tokens` is the iteration's token
    /// count so far; returns it updated. Call it only when no request was preempted this
    /// iteration ([`View::reuse_cached`]).
    pub fn admit_waiting(
        &mut self,
        view: &View,
        kv: &mut KvBudget,
        limits: &BatchLimits,
        batch: &mut Batch,
        mut tokens: u32,
        chunked: bool,
    ) -> u32 {
        while let Some(id) = self.waiting.front(view, batch) {
            let hit = view.cache_hit(id);
            let left = view.prefill_left(id) - hit.tokens;
            let room = limits.max_tokens - tokens;
            let chunk = if chunked { left.min(room) } else { left };
            if self.running.len() >= limits.max_seqs as usize || chunk == 0 || chunk > room {
                break;
            }
            if !kv.try_admit(view, id, hit) {
                break;
            }
            view.reuse_cached(id, hit);
            self.waiting.pop_front(view, batch);
            self.running.push(id);
            self.prefilling.push(id);
            batch.push_prefill(id, chunk);
            tokens += chunk;
        }
        tokens
    }

    /// The running requests, when the next iterations decode exactly them: nothing waits or
    /// is swapped out and every one is past its prefill. Iterations go on so until one
    /// finishes, one arrives, or a decode cannot get its block (the engine checks that).
    pub fn steady(&self, view: &View) -> &[ReqId] {
        if self.waiting.is_empty(view) {
            self.all_decoding(view)
        } else {
            &[]
        }
    }

    /// The running requests when nothing is swapped out and every one is past its prefill,
    /// whatever waits: the steady decodes of a policy that admits nothing while any decodes.
    pub fn all_decoding(&self, view: &View) -> &[ReqId] {
        let decoding = || self.prefilling.iter().all(|&id| view.prefill_left(id) == 0);
        if self.swapped.is_empty() && decoding() {
            &self.running
        } else {
            &[]
        }
    }

    /// Drops finished requests from the running set, and requests whose prefill has ended
    /// from the prefilling ones; call it at the end of every batch.
    pub fn retire(&mut self, view: &View) {
        self.prefilling.retain(|&id| view.prefill_left(id) > 0);
        if view.finished > 0 {
            self.running.retain(|&id| !view.is_done(id));
        }
    }
}
