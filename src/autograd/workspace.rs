//! A pool of f32 buffers keyed by length, reused from one step to the next.

use super::graph::Node;
use super::Var;
use std::collections::{HashMap, HashSet};

/// Buffers kept from one graph to the next: f32 buffers by length, and the
/// (emptied) tape itself, so a steady stream of graphs allocates nothing.
/// Only the lengths the last graph took are kept ([`Workspace::trim`]): a
/// stream of batches of changing shapes (packed records, growing decodes)
/// holds one graph's buffers, not every shape's it ever saw.
#[derive(Default)]
pub struct Workspace {
    free: HashMap<usize, Vec<Vec<f32>>>,
    /// The lengths taken since the last trim.
    taken: HashSet<usize>,
    pub(super) nodes: Vec<Node>,
    pub(super) param_vars: Vec<Option<Var>>,
    /// Which nodes of the tape need a gradient (kept for the next backward).
    pub(super) needs: Vec<bool>,
}

impl Workspace {
    /// A buffer of `len` floats with unspecified contents.
    pub fn take(&mut self, len: usize) -> Vec<f32> {
        self.taken.insert(len);
        match self.free.get_mut(&len).and_then(Vec::pop) {
            Some(buf) => buf,
            None => vec![0.0; len],
        }
    }

    /// A buffer of `len` zeros.
    pub fn take_zeroed(&mut self, len: usize) -> Vec<f32> {
        use rayon::prelude::*;
        let mut buf = self.take(len);
        buf.par_chunks_mut(crate::tensor::MIN_ELEMS_PER_TASK)
            .for_each(|c| c.fill(0.0));
        buf
    }

    /// Returns a buffer to the pool.
    pub fn give(&mut self, buf: Vec<f32>) {
        if !buf.is_empty() {
            self.free.entry(buf.len()).or_default().push(buf);
        }
    }

    /// Frees the buffers of every length not taken since the last trim (at
    /// the end of each graph): what the next graph of the same shapes takes
    /// stays, what only an earlier shape took goes.
    pub(super) fn trim(&mut self) {
        let taken = &self.taken;
        self.free.retain(|len, _| taken.contains(len));
        self.taken.clear();
    }

    /// Floats held in the pool.
    pub fn pooled(&self) -> usize {
        self.free.iter().map(|(len, bufs)| len * bufs.len()).sum()
    }
}
