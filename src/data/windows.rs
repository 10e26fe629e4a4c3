//! Sliding windows for scoring a text longer than the context: each token is
//! predicted once, with as much context before it as the stride allows.

use super::batch::{Batch, Batches};
use crate::tensor::cross_entropy::IGNORE;

/// Sliding windows over a token stream, one window (a batch of one row) at a
/// time: input `ids[j]` predicts `ids[j + 1]`; windows of up to `n_ctx`
/// inputs start `stride` apart, and each target is scored once, in the first
/// window that holds it (the rest of the window is context).
pub struct SlidingWindows<'a> {
    ids: &'a [u32],
    n_ctx: usize,
    stride: usize,
    begin: usize,
    scored: usize,
}

impl<'a> SlidingWindows<'a> {
    pub fn new(ids: &'a [u32], n_ctx: usize, stride: usize) -> Self {
        assert!(n_ctx > 0 && stride > 0);
        SlidingWindows {
            ids,
            n_ctx,
            stride,
            begin: 0,
            scored: 0,
        }
    }
}

impl Batches for SlidingWindows<'_> {
    fn next_batch(&mut self) -> Option<Batch> {
        let pairs = self.ids.len().saturating_sub(1);
        if self.scored >= pairs {
            return None;
        }
        let (begin, end) = (self.begin, (self.begin + self.n_ctx).min(pairs));
        let targets = (begin..end)
            .map(|j| if j >= self.scored { self.ids[j + 1] } else { IGNORE })
            .collect();
        self.scored = end;
        self.begin += self.stride;
        Some(Batch {
            tokens: self.ids[begin..end].to_vec(),
            targets,
            pos: (0..(end - begin) as u32).collect(),
            b: 1,
            t: end - begin,
            n_tokens: end - begin,
        })
    }

    fn skip_rows(&mut self, n: u64) {
        for _ in 0..n {
            self.next_batch();
        }
    }
}
