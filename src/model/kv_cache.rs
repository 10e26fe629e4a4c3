//! The KV cache: each layer's keys and values of the tokens seen so far, so
//! each new token costs one row of work instead of re-running the prefix.
//! Only the key/value heads are held: `[slots, capacity, n_kv_head · head_size]`
//! per layer. Each slot holds one sequence with its own length, so sequences
//! that started at different times (continuous batching) decode as one batch.

use super::config::GptConfig;
use crate::autograd::KvSlot;

pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    capacity: usize,
    /// Tokens cached in each slot.
    lens: Vec<usize>,
    /// The slot each sequence of the next forward continues.
    batch: Vec<usize>,
    /// The attention's scratch ([`KvSlot::seqs`]).
    seqs: Vec<(usize, usize)>,
}

impl KvCache {
    /// Room for `slots` sequences of up to `capacity` tokens (at most `n_ctx`);
    /// the next forward runs every slot, sequence `b` in slot `b`.
    pub fn new(config: &GptConfig, slots: usize, capacity: usize) -> Self {
        assert!(capacity <= config.n_ctx, "KV cache longer than the context");
        // Zeroed allocations: the pages of rows never written are never touched.
        let size = slots * capacity * config.n_kv_head * config.head_size();
        KvCache {
            k: (0..config.n_layer).map(|_| vec![0.0; size]).collect(),
            v: (0..config.n_layer).map(|_| vec![0.0; size]).collect(),
            capacity,
            lens: vec![0; slots],
            batch: (0..slots).collect(),
            seqs: Vec::with_capacity(slots),
        }
    }

    /// Tokens cached in the longest slot.
    pub fn len(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn slots(&self) -> usize {
        self.lens.len()
    }

    /// Tokens cached in `slot`.
    pub fn slot_len(&self, slot: usize) -> usize {
        self.lens[slot]
    }

    /// Forgets every cached token.
    pub fn clear(&mut self) {
        self.lens.fill(0);
    }

    /// Forgets the tokens of `slot`, for a new sequence.
    pub fn clear_slot(&mut self, slot: usize) {
        self.lens[slot] = 0;
    }

    /// The next forward's sequence `b` continues `slots[b]` (distinct slots).
    pub fn select(&mut self, slots: &[usize]) {
        // Without allocating: this runs every decode step.
        for (i, s) in slots.iter().enumerate() {
            assert!(!slots[..i].contains(s), "KV cache slot {s} twice in one batch");
        }
        self.batch.clear();
        self.batch.extend_from_slice(slots);
    }

    pub(crate) fn slot(&mut self, layer: usize) -> KvSlot<'_> {
        KvSlot {
            k: &mut self.k[layer],
            v: &mut self.v[layer],
            capacity: self.capacity,
            slots: &self.batch,
            past: &self.lens,
            seqs: &mut self.seqs,
        }
    }

    /// The selected sequences grew by `t` tokens each.
    pub(crate) fn advance(&mut self, t: usize) {
        for &s in &self.batch {
            self.lens[s] += t;
        }
    }
}
