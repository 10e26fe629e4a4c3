//! Batches: documents packed into `rows` rows of at most `n_ctx` tokens.
//!
//! A document `[BOS] c1 .. cn [BOS]` gives the inputs `BOS c1 .. cn` at
//! positions `0..=n` with targets `c1 .. cn BOS`. Several documents share a
//! row when packing is on; each keeps its own positions from 0, which is also
//! what keeps attention inside it. Rows are padded to the longest one with
//! targets that count for nothing.

use crate::tensor::cross_entropy::IGNORE;
use crate::tensor::{rng, Rng};
use rand::seq::SliceRandom;

/// One batch, flattened row-major: `b` rows of `t` tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub tokens: Vec<u32>,
    pub targets: Vec<u32>,
    pub pos: Vec<u32>,
    pub b: usize,
    pub t: usize,
}

impl Batch {
    /// Tokens that have a target (that count in the loss).
    pub fn n_targets(&self) -> usize {
        Self::count_targets(&self.targets)
    }

    /// How many of `targets` count in the loss.
    pub fn count_targets(targets: &[u32]) -> usize {
        targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// A source of batches: endless for training, one pass for evaluation.
pub trait Batches {
    fn next_batch(&mut self) -> Option<Batch>;

    /// Draws and drops `n` batches: where a resumed run picks up its data.
    fn skip(&mut self, n: u64) {
        for _ in 0..n {
            self.next_batch();
        }
    }
}

/// Walks documents in (optionally reshuffled) order, forever or for one pass.
pub struct DocBatcher {
    docs: Vec<Vec<u32>>,
    order: Vec<usize>,
    cursor: usize,
    rng: Option<Rng>,
    pub rows: usize,
    pub n_ctx: usize,
    pub pack: bool,
}

impl DocBatcher {
    /// `docs` are encoded documents (`[BOS] .. [BOS]`); those longer than
    /// `n_ctx` inputs are cut to their first `n_ctx` (see [`truncated`]).
    /// With a `seed` the order is shuffled at every pass and batches never
    /// end; without one, documents come in order for a single pass.
    pub fn new(mut docs: Vec<Vec<u32>>, rows: usize, n_ctx: usize, pack: bool, seed: Option<u64>) -> Self {
        assert!(rows > 0 && n_ctx > 0);
        docs.iter_mut().for_each(|d| d.truncate(n_ctx + 1));
        docs.retain(|d| d.len() >= 2);
        let mut rng = seed.map(rng);
        let mut order: Vec<usize> = (0..docs.len()).collect();
        if let Some(rng) = rng.as_mut() {
            order.shuffle(rng);
        }
        DocBatcher {
            docs,
            order,
            cursor: 0,
            rng,
            rows,
            n_ctx,
            pack,
        }
    }
}

impl Batches for DocBatcher {
    /// The next batch, or `None` after a single pass is done.
    fn next_batch(&mut self) -> Option<Batch> {
        if self.docs.is_empty() {
            return None;
        }
        let mut rows: Vec<Vec<(u32, u32, u32)>> = Vec::with_capacity(self.rows);
        'rows: for _ in 0..self.rows {
            let mut row = Vec::with_capacity(self.n_ctx);
            loop {
                if self.cursor == self.order.len() {
                    let Some(rng) = self.rng.as_mut() else {
                        rows.push(row);
                        break 'rows;
                    };
                    self.order.shuffle(rng);
                    self.cursor = 0;
                }
                let doc = &self.docs[self.order[self.cursor]];
                if !row.is_empty() && row.len() + doc.len() - 1 > self.n_ctx {
                    break;
                }
                row.extend(doc.windows(2).enumerate().map(|(i, w)| (w[0], w[1], i as u32)));
                self.cursor += 1;
                if !self.pack {
                    break;
                }
            }
            rows.push(row);
        }
        rows.retain(|r| !r.is_empty());
        let t = rows.iter().map(Vec::len).max()?;
        let b = rows.len();
        let mut batch = Batch {
            tokens: vec![0; b * t],
            targets: vec![IGNORE; b * t],
            pos: vec![0; b * t],
            b,
            t,
        };
        for (r, row) in rows.iter().enumerate() {
            for (i, &(tok, tgt, p)) in row.iter().enumerate() {
                (batch.tokens[r * t + i], batch.targets[r * t + i], batch.pos[r * t + i]) = (tok, tgt, p);
            }
        }
        Some(batch)
    }
}

/// How many encoded documents have more than `n_ctx` inputs (and get cut).
pub fn truncated(docs: &[Vec<u32>], n_ctx: usize) -> usize {
    docs.iter().filter(|d| d.len() > n_ctx + 1).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    // BOS = 9
    fn docs() -> Vec<Vec<u32>> {
        vec![vec![9, 1, 2, 9], vec![9, 3, 9], vec![9, 4, 5, 6, 7, 9]]
    }

    #[test]
    fn packs_documents_with_their_own_positions() {
        let mut b = DocBatcher::new(docs(), 2, 6, true, None);
        let batch = b.next_batch().unwrap();
        // Row 0: doc0 (3 inputs) + doc1 (2 inputs); row 1: doc2 (5 inputs).
        assert_eq!((batch.b, batch.t), (2, 5));
        assert_eq!(batch.tokens, [9, 1, 2, 9, 3, 9, 4, 5, 6, 7]);
        assert_eq!(batch.targets, [1, 2, 9, 3, 9, 4, 5, 6, 7, 9]);
        assert_eq!(batch.pos, [0, 1, 2, 0, 1, 0, 1, 2, 3, 4]);
        assert!(b.next_batch().is_none(), "one pass only without a seed");
    }

    #[test]
    fn one_document_per_row_pads_and_truncates() {
        let mut b = DocBatcher::new(docs(), 3, 4, false, None);
        let batch = b.next_batch().unwrap();
        assert_eq!((batch.b, batch.t), (3, 4));
        assert_eq!(&batch.targets[4..8], [3, 9, IGNORE, IGNORE]);
        // doc2 cut to its first 4 inputs: targets 4 5 6 7, the final BOS dropped.
        assert_eq!(&batch.targets[8..], [4, 5, 6, 7]);
        assert_eq!(batch.n_targets(), 3 + 2 + 4);
        assert_eq!(truncated(&docs(), 4), 1);
    }

    #[test]
    fn seeded_batches_cycle_forever_and_repeat_per_seed() {
        let take = |seed| {
            let mut b = DocBatcher::new(docs(), 1, 8, false, Some(seed));
            (0..7).map(|_| b.next_batch().unwrap().tokens).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
    }
}
