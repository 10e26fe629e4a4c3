//! Learning byte-level BPE merges from a corpus.
//!
//! The corpus is split with GPT-2's pre-tokenizer and each distinct piece
//! ("word") is counted once. Starting from the 256 bytes, the most frequent
//! adjacent pair over all words (weighted by count; ties to the smaller ids)
//! becomes the next token, until the vocabulary is full. Pair counts are kept
//! incrementally: a merge only revisits the words that contain its pair.
//! The last id is `<|endoftext|>`, as in GPT-2.

use super::bytes::bytes_in_gpt2_order;
use super::hash::FastMap;
use super::parallel::split_chunks;
use super::pre::PreTokenizer;
use super::{pretokenize, Bpe, ENDOFTEXT};
use anyhow::{bail, Result};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Smallest vocabulary: the 256 bytes and `<|endoftext|>`.
pub const MIN_VOCAB_SIZE: usize = 257;

/// Learns a vocabulary of `vocab_size` ids (256 bytes, merges,
/// `<|endoftext|>`) from `texts`. Stops early when no pair is left to merge.
/// `progress(done, total)` is called after each merge.
pub fn train(texts: &[&str], vocab_size: usize, mut progress: impl FnMut(usize, usize)) -> Result<Bpe> {
    if vocab_size < MIN_VOCAB_SIZE {
        bail!("vocabulary size {vocab_size} is too small: it needs at least {MIN_VOCAB_SIZE} ids (256 bytes and {ENDOFTEXT})");
    }
    let counts = count_words(texts);
    let order = bytes_in_gpt2_order();
    let mut byte_id = [0u32; 256];
    for (id, &b) in order.iter().enumerate() {
        byte_id[b as usize] = id as u32;
    }
    let mut tokens: Vec<Vec<u8>> = order.iter().map(|&b| vec![b]).collect();
    let mut words = Words::new(
        counts
            .into_iter()
            .filter(|(w, _)| w.len() > 1)
            .map(|(w, n)| (w.bytes().map(|b| byte_id[b as usize]).collect(), n)),
    );
    let mut by_bytes: FastMap<Vec<u8>, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let mut merges = Vec::new();
    let total = vocab_size - MIN_VOCAB_SIZE;
    while tokens.len() + 1 < vocab_size {
        let Some((left, right)) = words.best_pair() else {
            break;
        };
        let bytes = [tokens[left as usize].as_slice(), &tokens[right as usize]].concat();
        // The same bytes can come from another pair: reuse that token's id.
        let id = *by_bytes.entry(bytes.clone()).or_insert_with(|| {
            tokens.push(bytes);
            tokens.len() as u32 - 1
        });
        words.merge(left, right, id);
        merges.push((left, right));
        progress(tokens.len() - 256, total);
    }
    tokens.push(ENDOFTEXT.as_bytes().to_vec());
    let eot = tokens.len() as u32 - 1;
    Bpe::new("bpe", tokens, &merges, Some(eot))
}

/// Counts of each distinct pre-tokenizer piece, counted in parallel.
fn count_words<'a>(texts: &[&'a str]) -> FastMap<&'a str, u64> {
    let chunks: Vec<&str> = texts
        .iter()
        .flat_map(|t| split_chunks(t, 1 << 20, &PreTokenizer::default()))
        .collect();
    chunks
        .par_iter()
        .map(|chunk| {
            let mut counts = FastMap::default();
            for piece in pretokenize::pieces(chunk) {
                *counts.entry(piece).or_insert(0) += 1;
            }
            counts
        })
        .reduce(FastMap::default, |mut a, b| {
            for (w, n) in b {
                *a.entry(w).or_insert(0) += n;
            }
            a
        })
}

#[inline]
fn key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

/// The distinct words as symbol ids, with incremental pair counts.
struct Words {
    symbols: Vec<Vec<u32>>,
    counts: Vec<u64>,
    /// Pair -> total count over all words.
    pair_counts: FastMap<u64, u64>,
    /// Pair -> words that contain (or once contained) it.
    pair_words: FastMap<u64, Vec<u32>>,
    /// Candidate pairs by count; entries go stale and are checked on pop.
    heap: BinaryHeap<(u64, Reverse<u64>)>,
    /// The merge step that last visited each word, to visit it once.
    visited: Vec<usize>,
    step: usize,
}

impl Words {
    fn new(words: impl Iterator<Item = (Vec<u32>, u64)>) -> Words {
        let (symbols, counts): (Vec<Vec<u32>>, Vec<u64>) = words.unzip();
        let mut w = Words {
            visited: vec![0; symbols.len()],
            symbols,
            counts,
            pair_counts: FastMap::default(),
            pair_words: FastMap::default(),
            heap: BinaryHeap::new(),
            step: 0,
        };
        for i in 0..w.symbols.len() {
            w.add_pairs(i);
        }
        w.heap = w.pair_counts.iter().map(|(&p, &n)| (n, Reverse(p))).collect();
        w
    }

    /// The most frequent pair (smallest ids on ties), if any pair is left.
    fn best_pair(&mut self) -> Option<(u32, u32)> {
        while let Some((n, Reverse(pair))) = self.heap.pop() {
            let current = self.pair_counts.get(&pair).copied().unwrap_or(0);
            if current == n && n > 0 {
                return Some(((pair >> 32) as u32, pair as u32));
            }
            if current > 0 && current < n {
                self.heap.push((current, Reverse(pair)));
            }
        }
        None
    }

    /// Replaces every (left, right) by `id` in the words that contain it.
    fn merge(&mut self, left: u32, right: u32, id: u32) {
        self.step += 1;
        let pair = key(left, right);
        let affected = self.pair_words.remove(&pair).unwrap_or_default();
        for &w in &affected {
            let w = w as usize;
            if self.visited[w] == self.step || !self.symbols[w].windows(2).any(|p| p == [left, right]) {
                continue;
            }
            self.visited[w] = self.step;
            self.remove_pairs(w);
            let old = std::mem::take(&mut self.symbols[w]);
            let mut merged = Vec::with_capacity(old.len());
            let mut i = 0;
            while i < old.len() {
                if i + 1 < old.len() && old[i] == left && old[i + 1] == right {
                    merged.push(id);
                    i += 2;
                } else {
                    merged.push(old[i]);
                    i += 1;
                }
            }
            self.symbols[w] = merged;
            self.add_pairs(w);
            for p in self.symbols[w].windows(2) {
                let p = key(p[0], p[1]);
                self.heap.push((self.pair_counts[&p], Reverse(p)));
            }
        }
    }

    fn add_pairs(&mut self, w: usize) {
        for p in self.symbols[w].windows(2) {
            let p = key(p[0], p[1]);
            *self.pair_counts.entry(p).or_insert(0) += self.counts[w];
            let words = self.pair_words.entry(p).or_default();
            if words.last() != Some(&(w as u32)) {
                words.push(w as u32);
            }
        }
    }

    fn remove_pairs(&mut self, w: usize) {
        for p in self.symbols[w].windows(2) {
            let n = self.pair_counts.get_mut(&key(p[0], p[1])).expect("counted pair");
            *n -= self.counts[w];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_frequent_pairs_first_and_round_trips() {
        let text = "low low low low lower lowest newer newer wider\n";
        let bpe = train(&[text], 270, |_, _| {}).unwrap();
        assert_eq!(bpe.vocab_size(), 270);
        assert_eq!(bpe.endoftext(), Some(269));
        // " l" + "o" ... the most frequent pair is (Ġ, l) or (l, o): both count 6.
        assert_eq!(bpe.token_bytes(256).unwrap(), b"lo");
        assert_eq!(bpe.decode(&bpe.encode(text)).unwrap(), text);
        assert!(bpe.encode(" low").len() == 1, "{:?}", bpe.encode(" low"));
    }

    #[test]
    fn stops_when_nothing_is_left_to_merge() {
        let bpe = train(&["ab ab"], 1000, |_, _| {}).unwrap();
        // Merges: ab (count 2), then Ġ+ab: 256 + 2 + <|endoftext|>.
        assert_eq!(bpe.vocab_size(), 259);
        assert_eq!(bpe.encode("ab ab"), [256, 257]);
        assert!(train(&["x"], 256, |_, _| {}).is_err());
    }

    #[test]
    fn trained_files_load_back() {
        let bpe = train(&["hello hello world, hello there\n\n"], 280, |_, _| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        bpe.save(dir.path()).unwrap();
        let again = Bpe::load(dir.path()).unwrap();
        assert_eq!(again.fingerprint(), bpe.fingerprint());
    }
}
