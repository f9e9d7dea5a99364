//! GPUs kept in order of a load key, so "the least-loaded GPU" costs O(log N) to maintain
//! and O(1) to read instead of a scan over all N GPUs per request.

use std::collections::BTreeSet;

use super::GpuLoad;

/// An ordered index of GPUs by `(key(load), gpu index)`; ties go to the lowest index.
#[derive(Debug)]
pub(super) struct Ranked {
    key: fn(&GpuLoad) -> u64,
    /// The key each GPU is filed under, so an update can find and remove the old entry.
    keys: Vec<u64>,
    order: BTreeSet<(u64, usize)>,
}

impl Ranked {
    /// `gpus` idle GPUs (all at the key of an empty load), ordered by `key`.
    pub(super) fn new(gpus: usize, key: fn(&GpuLoad) -> u64) -> Self {
        let zero = key(&GpuLoad::default());
        Ranked {
            key,
            keys: vec![zero; gpus],
            order: (0..gpus).map(|g| (zero, g)).collect(),
        }
    }

    /// The GPU with the smallest key, lowest index on ties.
    pub(super) fn least(&self) -> usize {
        self.order
            .first()
            .expect("a cluster has at least one GPU")
            .1
    }

    /// Re-files `gpu` under its new `load`; O(log N), and free when the key is unchanged
    /// (the engine reports every finished batch, most of which leave a count as it was).
    pub(super) fn update(&mut self, gpu: usize, load: &GpuLoad) {
        let new = (self.key)(load);
        let old = std::mem::replace(&mut self.keys[gpu], new);
        if old != new {
            self.order.remove(&(old, gpu));
            self.order.insert((new, gpu));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_follows_updates_and_breaks_ties_by_index() {
        let mut r = Ranked::new(3, |l| u64::from(l.outstanding));
        assert_eq!(r.least(), 0);
        let busy = |n| GpuLoad {
            outstanding: n,
            work_tokens: 0,
        };
        r.update(0, &busy(2));
        assert_eq!(r.least(), 1);
        r.update(1, &busy(1));
        r.update(2, &busy(1));
        assert_eq!(r.least(), 1);
        r.update(0, &busy(0));
        assert_eq!(r.least(), 0);
    }
}
