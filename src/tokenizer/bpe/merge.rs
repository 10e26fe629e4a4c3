//! The BPE merge loop: repeatedly merge the adjacent pair of lowest rank
//! (leftmost first on ties) until no adjacent pair has a merge.
//!
//! Pairs are looked up as one `u64` key of two `u32` ids. Short pieces (the
//! common case) use a flat array of pair ranks updated around each merge;
//! long pieces use a heap over a linked list, O(n log n).

use super::hash::FastMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Pieces up to this many bytes use the flat O(n^2) loop.
const SHORT_PIECE: usize = 128;

const NO_RANK: u32 = u32::MAX;

/// The merges of a vocabulary, by rank.
#[derive(Clone, Debug, Default)]
pub struct MergeTable {
    /// `(left << 32) | right` -> rank.
    ranks: FastMap<u64, u32>,
    /// rank -> (left, right, merged id).
    merges: Vec<(u32, u32, u32)>,
}

/// Reusable buffers for [`MergeTable::apply`].
#[derive(Default)]
pub struct Scratch {
    ranks: Vec<u32>,
    /// Candidate pairs as `rank << 32 | position`, lowest first.
    heap: BinaryHeap<Reverse<u64>>,
    next: Vec<u32>,
    prev: Vec<u32>,
}

#[inline]
fn key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

impl MergeTable {
    /// Adds the next merge (lowest rank first). A pair listed twice takes its
    /// last rank, as in OpenAI's `encoder.py` and Hugging Face `tokenizers`.
    pub fn push(&mut self, left: u32, right: u32, merged: u32) {
        let rank = self.merges.len() as u32;
        self.merges.push((left, right, merged));
        self.ranks.insert(key(left, right), rank);
    }

    /// The merges in rank order: (left, right, merged).
    pub fn merges(&self) -> &[(u32, u32, u32)] {
        &self.merges
    }

    #[inline]
    fn rank(&self, left: u32, right: u32) -> u32 {
        self.ranks.get(&key(left, right)).copied().unwrap_or(NO_RANK)
    }

    /// Merges `ids` (initially one id per byte) in place.
    pub fn apply(&self, ids: &mut Vec<u32>, scratch: &mut Scratch) {
        if ids.len() <= SHORT_PIECE {
            self.apply_short(ids, &mut scratch.ranks);
        } else {
            self.apply_long(ids, scratch);
        }
    }

    fn apply_short(&self, ids: &mut Vec<u32>, ranks: &mut Vec<u32>) {
        ranks.clear();
        ranks.extend(ids.windows(2).map(|w| self.rank(w[0], w[1])));
        loop {
            // The first minimum: lowest rank, leftmost on ties.
            let mut best = NO_RANK;
            let mut at = 0;
            for (i, &r) in ranks.iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == NO_RANK {
                return;
            }
            ids[at] = self.merges[best as usize].2;
            ids.remove(at + 1);
            ranks.remove(at);
            if at < ranks.len() {
                ranks[at] = self.rank(ids[at], ids[at + 1]);
            }
            if at > 0 {
                ranks[at - 1] = self.rank(ids[at - 1], ids[at]);
            }
        }
    }

    /// Same result as `apply_short`, with a heap of candidate pairs keyed by
    /// (rank, position) and a doubly linked list of live symbols.
    fn apply_long(&self, ids: &mut Vec<u32>, s: &mut Scratch) {
        let n = ids.len();
        const END: u32 = u32::MAX;
        s.next.clear();
        s.next
            .extend((1..=n as u32).map(|i| if i as usize == n { END } else { i }));
        s.prev.clear();
        s.prev.extend((0..n as u32).map(|i| i.wrapping_sub(1)));
        let candidate = |rank: u32, pos: u32| Reverse(((rank as u64) << 32) | pos as u64);
        let mut heap = std::mem::take(&mut s.heap).into_vec();
        heap.clear();
        heap.extend((0..n - 1).filter_map(|i| {
            let r = self.rank(ids[i], ids[i + 1]);
            (r != NO_RANK).then(|| candidate(r, i as u32))
        }));
        s.heap = BinaryHeap::from(heap); // O(n) heapify
        const DEAD: u32 = u32::MAX;
        while let Some(Reverse(top)) = s.heap.pop() {
            let (rank, pos) = ((top >> 32) as u32, top as u32 as usize);
            let next = s.next[pos];
            // Stale entry: the symbol was merged away or its pair changed.
            if ids[pos] == DEAD || next == END || self.rank(ids[pos], ids[next as usize]) != rank {
                continue;
            }
            let next = next as usize;
            ids[pos] = self.merges[rank as usize].2;
            ids[next] = DEAD;
            let after = s.next[next];
            s.next[pos] = after;
            if after != END {
                s.prev[after as usize] = pos as u32;
                let r = self.rank(ids[pos], ids[after as usize]);
                if r != NO_RANK {
                    s.heap.push(candidate(r, pos as u32));
                }
            }
            let before = s.prev[pos];
            if before != u32::MAX {
                let r = self.rank(ids[before as usize], ids[pos]);
                if r != NO_RANK {
                    s.heap.push(candidate(r, before));
                }
            }
        }
        ids.retain(|&id| id != DEAD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte ids 0..4 = a b c d; merges: ab=4, (ab)c=5, bc=6, cd=7, aa=8.
    fn table() -> MergeTable {
        let mut t = MergeTable::default();
        t.push(0, 1, 4);
        t.push(2, 3, 7);
        t.push(4, 2, 5);
        t.push(1, 2, 6);
        t.push(0, 0, 8);
        t
    }

    #[test]
    fn merges_by_rank_leftmost_first() {
        let t = table();
        let mut s = Scratch::default();
        let mut ids = vec![0, 1, 2, 3];
        t.apply(&mut ids, &mut s);
        assert_eq!(ids, [4, 7]); // ab first, then cd (rank 1) before (ab)c
        let mut ids = vec![0, 1, 2];
        t.apply(&mut ids, &mut s);
        assert_eq!(ids, [5]);
        let mut ids = vec![0, 0, 0];
        t.apply(&mut ids, &mut s);
        assert_eq!(ids, [8, 0]);
    }

    #[test]
    fn long_pieces_match_short_loop() {
        let t = table();
        let mut s = Scratch::default();
        let mut x = 12345u32;
        for len in [129, 300, 1000] {
            let ids: Vec<u32> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) % 4
                })
                .collect();
            let mut short = ids.clone();
            t.apply_short(&mut short, &mut s.ranks);
            let mut long = ids;
            t.apply_long(&mut long, &mut s);
            assert_eq!(short, long);
        }
    }
}
