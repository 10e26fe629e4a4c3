//! The KV cache: each layer's keys and values of the tokens seen so far, so
//! each new token costs one row of work instead of re-running the prefix.
//! Only the key/value heads are held: `[B, capacity, n_kv_head · head_size]` per layer.

use super::config::GptConfig;
use crate::autograd::KvSlot;

pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    capacity: usize,
    len: usize,
}

impl KvCache {
    /// Room for `batch` sequences of up to `capacity` tokens (at most `n_ctx`).
    pub fn new(config: &GptConfig, batch: usize, capacity: usize) -> Self {
        assert!(capacity <= config.n_ctx, "KV cache longer than the context");
        let size = batch * capacity * config.n_kv_head * config.head_size();
        KvCache {
            k: (0..config.n_layer).map(|_| vec![0.0; size]).collect(),
            v: (0..config.n_layer).map(|_| vec![0.0; size]).collect(),
            capacity,
            len: 0,
        }
    }

    /// Tokens cached per sequence.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every cached token.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub(crate) fn slot(&mut self, layer: usize) -> KvSlot<'_> {
        KvSlot {
            k: &mut self.k[layer],
            v: &mut self.v[layer],
            past: self.len,
            capacity: self.capacity,
        }
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}
