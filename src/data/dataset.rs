//! Encoded data for training or evaluation: documents, each starting at
//! position 0 (character models, labelled texts, instruction records), or
//! one long token stream (BPE models).

use super::batch::{Batches, DocBatcher};
use super::stream::StreamBatcher;

#[derive(Clone, Debug, PartialEq)]
pub enum Dataset {
    /// Encoded documents, `[BOS] .. [BOS]` each.
    Docs(Vec<Vec<u32>>),
    /// One stream of token ids.
    Stream(Vec<u32>),
    /// Labelled texts for a classifier: each text's ids, then its label's
    /// index (the target of its last token, the only one scored).
    Labelled(Vec<Vec<u32>>),
    /// Documents (prompt then response, each from position 0) with, per id,
    /// whether it counts as a target: the response's ids do, the prompt's not.
    Masked(Vec<(Vec<u32>, Vec<bool>)>),
}

impl Dataset {
    /// Whether there is nothing to predict.
    pub fn is_empty(&self) -> bool {
        match self {
            Dataset::Docs(d) | Dataset::Labelled(d) => d.iter().all(|d| d.len() < 2),
            Dataset::Stream(s) => s.len() < 2,
            Dataset::Masked(d) => d.iter().all(|(_, m)| !m.iter().skip(1).any(|&s| s)),
        }
    }

    /// A hash of every token id (FNV-1a), to tell whether a resumed run sees the same data.
    pub fn fingerprint(&self) -> u64 {
        fn fnv1a<'a>(ids: impl Iterator<Item = &'a u32>) -> u64 {
            ids.fold(0xcbf2_9ce4_8422_2325, |h, &id| {
                (h ^ id as u64).wrapping_mul(0x0000_0100_0000_01b3)
            })
        }
        match self {
            // Each document ends with an id no tokenizer has, so the split between documents counts.
            Dataset::Docs(d) | Dataset::Labelled(d) => fnv1a(d.iter().flat_map(|d| d.iter().chain([&u32::MAX]))),
            Dataset::Stream(s) => fnv1a(s.iter()),
            // Scored ids count twice (id, then id again): the mask is part of the data.
            Dataset::Masked(d) => fnv1a(d.iter().flat_map(|(d, m)| {
                let ids = d
                    .iter()
                    .zip(m)
                    .flat_map(|(id, &s)| [id].into_iter().chain(s.then_some(id)));
                ids.chain([&u32::MAX])
            })),
        }
    }

    /// Endless batches in a seeded random order, for training.
    pub fn training_batches(&self, rows: usize, n_ctx: usize, pack: bool, seed: u64) -> Box<dyn Batches + '_> {
        match self {
            Dataset::Docs(d) => Box::new(DocBatcher::new(d.clone(), rows, n_ctx, pack, Some(seed))),
            Dataset::Labelled(d) => Box::new(DocBatcher::new(d.clone(), rows, n_ctx, pack, Some(seed)).labelled()),
            Dataset::Stream(s) => Box::new(StreamBatcher::new(s, rows, n_ctx, Some(seed))),
            Dataset::Masked(d) => Box::new(DocBatcher::masked(d.clone(), rows, n_ctx, pack, Some(seed))),
        }
    }

    /// One pass over everything, in order, for evaluation: batches of up to
    /// 8192 tokens, fewer for a large `vocab`, so their logits stay near 64 MB;
    /// always at least one row of `n_ctx`.
    pub fn eval_batches(&self, n_ctx: usize, vocab: usize) -> Box<dyn Batches + '_> {
        let tokens = ((16 << 20) / vocab.max(1)).min(8192).max(n_ctx);
        let rows = (tokens / n_ctx).max(1);
        match self {
            Dataset::Docs(d) => Box::new(DocBatcher::new(d.clone(), rows, n_ctx, true, None)),
            Dataset::Labelled(d) => Box::new(DocBatcher::new(d.clone(), rows, n_ctx, true, None).labelled()),
            Dataset::Stream(s) => Box::new(StreamBatcher::new(s, rows, n_ctx, None)),
            Dataset::Masked(d) => Box::new(DocBatcher::masked(d.clone(), rows, n_ctx, true, None)),
        }
    }

    /// The start of this dataset, as large as `other` (a train-loss figure comparable to validation).
    pub fn prefix_like(&self, other: &Dataset) -> Dataset {
        match (self, other) {
            (Dataset::Docs(d), Dataset::Docs(o)) => Dataset::Docs(d[..o.len().clamp(1, d.len())].to_vec()),
            (Dataset::Labelled(d), Dataset::Labelled(o)) => Dataset::Labelled(d[..o.len().clamp(1, d.len())].to_vec()),
            (Dataset::Masked(d), Dataset::Masked(o)) => Dataset::Masked(d[..o.len().clamp(1, d.len())].to_vec()),
            (Dataset::Stream(s), Dataset::Stream(o)) => Dataset::Stream(s[..o.len().clamp(2, s.len())].to_vec()),
            _ => self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_batches_shrink_with_the_vocabulary() {
        let data = Dataset::Stream((0..20_000).collect());
        let rows = |vocab| data.eval_batches(128, vocab).next_batch().unwrap().b;
        assert_eq!(rows(65), 64); // 8192 tokens
        let gpt2 = rows(50257);
        assert_eq!(gpt2, 2, "logits of 2 x 128 tokens x 50257 = 51 MB");
        assert_eq!(data.eval_batches(1024, 50257).next_batch().unwrap().b, 1);
        // A context longer than the usual batch: one row of it.
        assert_eq!(data.eval_batches(10_000, 65).next_batch().unwrap().b, 1);
    }
}
