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
use std::collections::VecDeque;

/// Packing a shuffled stream, a row takes, in order, each of the next this
/// many documents that still fits (first fit), not only the next one: names
/// fill 91% of their rows' tokens instead of 82%, so less compute goes to
/// padding, while the order stays the shuffle's (a document waits at most
/// this many rows).
const LOOKAHEAD: usize = 32;

/// One batch, flattened row-major: `b` rows of `t` tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub tokens: Vec<u32>,
    pub targets: Vec<u32>,
    pub pos: Vec<u32>,
    pub b: usize,
    pub t: usize,
    /// Inputs that are not padding (what throughput counts; the loss counts targets).
    pub n_tokens: usize,
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
///
/// A training source is a stream of rows that batches take in order: the
/// rows do not depend on how many a batch takes, so one batch of `2b` rows
/// holds the rows of two batches of `b` (gradient accumulation and data
/// parallelism see the same data).
pub trait Batches {
    fn next_batch(&mut self) -> Option<Batch>;

    /// Draws and drops `n` rows: where a resumed run, or another rank's part
    /// of a batch, picks up its data.
    fn skip_rows(&mut self, n: u64);
}

/// Walks documents in (optionally reshuffled) order, forever or for one pass.
pub struct DocBatcher {
    docs: Vec<Vec<u32>>,
    order: Vec<usize>,
    cursor: usize,
    rng: Option<Rng>,
    /// Documents drawn from `order` but not yet in a row: the first-fit window.
    pending: VecDeque<usize>,
    pub rows: usize,
    pub n_ctx: usize,
    pub pack: bool,
    /// Which targets of each document count in the loss.
    scoring: Scoring,
}

/// Which of a document's targets count in the loss.
enum Scoring {
    /// Every one (language modelling).
    All,
    /// Only its last: a text then its label ([`DocBatcher::labelled`]).
    Last,
    /// Per document, whether each id counts when it is the target (`[0]` never
    /// is): responses, not prompts ([`DocBatcher::masked`]).
    Masked(Vec<Vec<bool>>),
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
            pending: VecDeque::new(),
            rows,
            n_ctx,
            pack,
            scoring: Scoring::All,
        }
    }

    /// Documents whose ids count as targets only where `scored` (one flag
    /// per id) says: a prompt's ids are context, its response's are learnt.
    /// Documents are cut to `n_ctx` inputs; those left with nothing scored
    /// are dropped.
    pub fn masked(docs: Vec<(Vec<u32>, Vec<bool>)>, rows: usize, n_ctx: usize, pack: bool, seed: Option<u64>) -> Self {
        let (docs, masks): (Vec<Vec<u32>>, Vec<Vec<bool>>) = docs
            .into_iter()
            .map(|(mut d, mut m)| {
                d.truncate(n_ctx + 1);
                m.truncate(d.len());
                (d, m)
            })
            .filter(|(_, m)| m.iter().skip(1).any(|&s| s))
            .unzip();
        let mut b = Self::new(docs, rows, n_ctx, pack, seed);
        b.scoring = Scoring::Masked(masks);
        b
    }

    /// Batches of labelled texts (`ids.., label`, cut to `n_ctx` inputs by
    /// the caller): each text's tokens at positions from 0, and one target,
    /// its label, at its last token.
    pub fn labelled(mut self) -> Self {
        self.scoring = Scoring::Last;
        self
    }
}

impl DocBatcher {
    /// Tops the window up to `window` documents from the order, reshuffled
    /// at the end of each pass (a single pass just ends).
    fn refill(&mut self, window: usize) {
        while self.pending.len() < window {
            if self.cursor == self.order.len() {
                let Some(rng) = self.rng.as_mut() else {
                    return;
                };
                self.order.shuffle(rng);
                self.cursor = 0;
            }
            self.pending.push_back(self.order[self.cursor]);
            self.cursor += 1;
        }
    }

    /// Inputs of document `d`.
    fn inputs(&self, d: usize) -> usize {
        self.docs[d].len() - 1
    }

    /// The documents of the next row: the window's first, then (packing) each
    /// next one in the window that still fits. In order (no shuffle) the window
    /// is one document, so a row ends at the first that does not fit.
    fn next_row(&mut self) -> Vec<usize> {
        let window = if self.pack && self.rng.is_some() { LOOKAHEAD } else { 1 };
        self.refill(window);
        let Some(first) = self.pending.pop_front() else {
            return Vec::new();
        };
        let (mut row, mut space) = (vec![first], self.n_ctx - self.inputs(first));
        let mut i = 0;
        while self.pack && space > 0 {
            self.refill(window);
            let Some(&d) = self.pending.get(i) else {
                break;
            };
            if self.inputs(d) <= space {
                space -= self.inputs(d);
                row.push(d);
                self.pending.remove(i);
            } else {
                i += 1;
            }
        }
        row
    }
}

impl Batches for DocBatcher {
    /// The next batch, or `None` after a single pass is done.
    fn next_batch(&mut self) -> Option<Batch> {
        if self.docs.is_empty() {
            return None;
        }
        let rows: Vec<Vec<usize>> = (0..self.rows)
            .map(|_| self.next_row())
            .take_while(|r| !r.is_empty())
            .collect();
        let t = rows.iter().map(|r| r.iter().map(|&d| self.inputs(d)).sum()).max()?;
        let b = rows.len();
        let mut batch = Batch {
            tokens: vec![0; b * t],
            targets: vec![IGNORE; b * t],
            pos: vec![0; b * t],
            b,
            t,
            n_tokens: rows.iter().flatten().map(|&d| self.inputs(d)).sum(),
        };
        for (r, row) in rows.iter().enumerate() {
            let pairs = row.iter().flat_map(|&d| {
                let scoring = &self.scoring;
                let last = self.docs[d].len() - 2;
                self.docs[d].windows(2).enumerate().map(move |(p, w)| {
                    let scored = match scoring {
                        Scoring::All => true,
                        Scoring::Last => p == last,
                        Scoring::Masked(m) => m[d][p + 1],
                    };
                    (p, w, scored)
                })
            });
            for (i, (p, w, scored)) in pairs.enumerate() {
                let target = if scored { w[1] } else { IGNORE };
                (batch.tokens[r * t + i], batch.targets[r * t + i], batch.pos[r * t + i]) = (w[0], target, p as u32);
            }
        }
        Some(batch)
    }

    fn skip_rows(&mut self, n: u64) {
        for _ in 0..n {
            self.next_row();
        }
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
        assert_eq!(batch.n_tokens, 10);
        assert!(b.next_batch().is_none(), "one pass only without a seed");
    }

    #[test]
    fn masked_documents_score_only_their_flagged_targets() {
        // Prompt 1 2, response 3 4 EOS(9); prompt 5, response 6 9; a prompt alone (nothing scored).
        let f = false;
        let docs = vec![
            (vec![1, 2, 3, 4, 9], vec![f, f, true, true, true]),
            (vec![5, 6, 9], vec![f, true, true]),
            (vec![7, 8], vec![f, f]),
        ];
        let mut b = DocBatcher::masked(docs.clone(), 2, 8, true, None);
        let batch = b.next_batch().unwrap();
        assert_eq!(
            (batch.b, batch.t),
            (1, 6),
            "packed into one row; the unscored one dropped"
        );
        assert_eq!(batch.tokens, [1, 2, 3, 4, 5, 6]);
        assert_eq!(batch.targets, [IGNORE, 3, 4, 9, 6, 9]);
        assert_eq!(batch.pos, [0, 1, 2, 3, 0, 1], "each document from position 0");
        assert_eq!((batch.n_tokens, batch.n_targets()), (6, 5));
        assert!(b.next_batch().is_none());
        // Cut to 2 inputs: the first keeps target 3, its response's end is lost.
        let batch = DocBatcher::masked(docs, 2, 2, false, None).next_batch().unwrap();
        assert_eq!(batch.targets, [IGNORE, 3, 6, 9]);
        assert_eq!(batch.n_tokens, 4);
    }

    #[test]
    fn labelled_texts_score_only_their_last_token_with_the_label() {
        // Texts 1 2 | 3 | 4 5 6 with labels 0, 1, 0.
        let docs = vec![vec![1, 2, 0], vec![3, 1], vec![4, 5, 6, 0]];
        let mut b = DocBatcher::new(docs, 2, 4, false, None).labelled();
        let batch = b.next_batch().unwrap();
        assert_eq!((batch.b, batch.t), (2, 2));
        assert_eq!(batch.tokens, [1, 2, 3, 0]);
        assert_eq!(batch.targets, [IGNORE, 0, 1, IGNORE], "the padding is never scored");
        assert_eq!(batch.n_tokens, 3, "padding is not a token");
        assert_eq!(batch.pos, [0, 1, 0, 0]);
        let batch = b.next_batch().unwrap();
        assert_eq!(batch.targets, [IGNORE, IGNORE, 0]);
        // Packed: several texts in a row, each with its own positions and one target.
        let docs = vec![vec![1, 2, 0], vec![3, 1]];
        let batch = DocBatcher::new(docs, 1, 4, true, None).labelled().next_batch().unwrap();
        assert_eq!(batch.tokens, [1, 2, 3]);
        assert_eq!(batch.targets, [IGNORE, 0, 1]);
        assert_eq!(batch.pos, [0, 1, 0]);
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
    fn shuffled_rows_are_filled_first_fit_with_whole_documents() {
        // Documents of 4 and 2 inputs (BOS = 9) in rows of 6: first fit pairs them.
        let docs: Vec<Vec<u32>> = (0..40)
            .map(|i| if i % 2 == 0 { vec![9, 1, 2, 3, 9] } else { vec![9, 4, 9] })
            .collect();
        let mut b = DocBatcher::new(docs, 10, 6, true, Some(3));
        let (mut targets, mut slots) = (0, 0);
        for _ in 0..8 {
            let batch = b.next_batch().unwrap();
            assert_eq!((batch.b, batch.t), (10, 6));
            for i in 0..batch.b * batch.t {
                // Each document whole: it starts at position 0 with BOS and continues its own tokens.
                if batch.targets[i] == IGNORE {
                    continue;
                }
                let p = batch.pos[i] as usize;
                assert_eq!(batch.tokens[i], if p == 0 { 9 } else { batch.targets[i - 1] });
            }
            targets += batch.n_targets();
            slots += batch.b * batch.t;
        }
        assert!(
            targets as f64 > 0.95 * slots as f64,
            "{targets} of {slots} slots filled"
        );
    }

    #[test]
    fn a_batch_of_2b_rows_holds_the_rows_of_two_batches_of_b() {
        let docs: Vec<Vec<u32>> = (0..30).map(|i| vec![9, i % 7, (i * 3) % 5, 9]).collect();
        let rows =
            |b: &Batch| -> Vec<Vec<u32>> { (0..b.b).map(|r| b.tokens[r * b.t..(r + 1) * b.t].to_vec()).collect() };
        // Rows padded to each batch's longest: compare them without the padding.
        let trim = |mut r: Vec<u32>| {
            while r.last() == Some(&0) {
                r.pop();
            }
            r
        };
        let mut one = DocBatcher::new(docs.clone(), 6, 8, true, Some(5));
        let mut two = DocBatcher::new(docs.clone(), 3, 8, true, Some(5));
        let mut skipping = DocBatcher::new(docs, 3, 8, true, Some(5));
        for _ in 0..4 {
            let big: Vec<Vec<u32>> = rows(&one.next_batch().unwrap()).into_iter().map(trim).collect();
            let (a, b) = (two.next_batch().unwrap(), two.next_batch().unwrap());
            let halves: Vec<Vec<u32>> = rows(&a).into_iter().chain(rows(&b)).map(trim).collect();
            assert_eq!(big, halves);
            skipping.skip_rows(3);
            assert_eq!(skipping.next_batch().unwrap(), b);
        }
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
