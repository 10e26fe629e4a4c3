//! Batches from one long token stream (GPT-2 style): windows of `n_ctx + 1`
//! tokens, each giving `n_ctx` inputs at positions `0..n_ctx` and their next
//! tokens as targets.

use super::batch::{Batch, Batches};
use crate::tensor::{rng, Rng};
use rand::RngExt;

pub struct StreamBatcher<'a> {
    ids: &'a [u32],
    rows: usize,
    n_ctx: usize,
    /// Random windows forever (training) or, without, consecutive windows for one pass (evaluation).
    rng: Option<Rng>,
    cursor: usize,
}

impl<'a> StreamBatcher<'a> {
    /// `ids` needs at least 2 tokens; windows are cut to the stream when it is shorter than `n_ctx + 1`.
    pub fn new(ids: &'a [u32], rows: usize, n_ctx: usize, seed: Option<u64>) -> Self {
        assert!(ids.len() >= 2 && rows > 0 && n_ctx > 0);
        StreamBatcher {
            ids,
            rows,
            n_ctx: n_ctx.min(ids.len() - 1),
            rng: seed.map(rng),
            cursor: 0,
        }
    }
}

impl Batches for StreamBatcher<'_> {
    fn next_batch(&mut self) -> Option<Batch> {
        let t = self.n_ctx;
        let mut starts = Vec::with_capacity(self.rows);
        for _ in 0..self.rows {
            match self.rng.as_mut() {
                Some(rng) => starts.push(rng.random_range(0..=self.ids.len() - t - 1)),
                None if self.cursor + 1 < self.ids.len() => {
                    starts.push(self.cursor);
                    self.cursor += t;
                }
                None => break,
            }
        }
        if starts.is_empty() {
            return None;
        }
        let b = starts.len();
        let mut batch = Batch {
            tokens: vec![0; b * t],
            targets: vec![crate::tensor::cross_entropy::IGNORE; b * t],
            pos: (0..b * t).map(|i| (i % t) as u32).collect(),
            b,
            t,
            n_tokens: 0,
        };
        for (r, &s) in starts.iter().enumerate() {
            // The last window of a pass may be short: its tail has no targets.
            let n = t.min(self.ids.len() - 1 - s);
            batch.tokens[r * t..r * t + n].copy_from_slice(&self.ids[s..s + n]);
            batch.targets[r * t..r * t + n].copy_from_slice(&self.ids[s + 1..s + n + 1]);
            batch.n_tokens += n;
        }
        Some(batch)
    }

    fn skip_rows(&mut self, n: u64) {
        let t = self.n_ctx;
        for _ in 0..n {
            match self.rng.as_mut() {
                Some(rng) => drop(rng.random_range(0..=self.ids.len() - t - 1)),
                None => self.cursor += t,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_scores_every_next_token_once() {
        let ids: Vec<u32> = (0..11).collect();
        let mut b = StreamBatcher::new(&ids, 2, 4, None);
        let first = b.next_batch().unwrap();
        assert_eq!(first.tokens, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(first.targets, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(first.pos, [0, 1, 2, 3, 0, 1, 2, 3]);
        let last = b.next_batch().unwrap();
        assert_eq!((last.b, last.n_targets()), (1, 2)); // 8 -> 9, 9 -> 10
        assert!(b.next_batch().is_none());
    }

    #[test]
    fn random_windows_are_reproducible_and_in_range() {
        let ids: Vec<u32> = (0..50).collect();
        let take = |seed| {
            let mut b = StreamBatcher::new(&ids, 3, 8, Some(seed));
            (0..20).map(|_| b.next_batch().unwrap()).collect::<Vec<_>>()
        };
        let batches = take(1);
        assert_eq!(batches, take(1));
        // Skipping rows draws them: the next batch starts where a batch of them would end.
        let mut b = StreamBatcher::new(&ids, 3, 8, Some(1));
        b.skip_rows(3 * 5);
        assert_eq!(b.next_batch().unwrap(), batches[5]);
        assert_ne!(batches, take(2));
        for batch in &batches {
            for (x, y) in batch.tokens.iter().zip(&batch.targets) {
                assert_eq!(x + 1, *y, "target is the next token");
            }
        }
    }
}
