//! A pool of f32 buffers keyed by length, reused from one step to the next.

use super::graph::Node;
use super::Var;
use std::collections::HashMap;

/// Buffers kept from one graph to the next: f32 buffers by length, and the
/// (emptied) tape itself, so a steady stream of graphs allocates nothing.
#[derive(Default)]
pub struct Workspace {
    free: HashMap<usize, Vec<Vec<f32>>>,
    pub(super) nodes: Vec<Node>,
    pub(super) param_vars: Vec<Option<Var>>,
    /// Which nodes of the tape need a gradient (kept for the next backward).
    pub(super) needs: Vec<bool>,
}

impl Workspace {
    /// A buffer of `len` floats with unspecified contents.
    pub fn take(&mut self, len: usize) -> Vec<f32> {
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
}
