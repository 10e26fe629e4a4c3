//! Parallel encoding: added tokens are found first (one fast pass), then the
//! text between them is cut into chunks where a cut leaves the pre-tokenizer
//! pieces unchanged (see [`PreTokenizer::is_piece_boundary`]), the chunks are
//! encoded on rayon's threads and their ids concatenated. Each piece is merged
//! on its own, so the ids equal the serial ones.

use super::added::Segment;
use super::pre::PreTokenizer;
use super::{Bpe, Work};
use rayon::prelude::*;

/// Chunk sizes: small enough for a few chunks per thread (load balance,
/// progress updates), large enough that each chunk's piece cache pays off.
const MIN_CHUNK: usize = 256 * 1024;
const MAX_CHUNK: usize = 8 * 1024 * 1024;

impl Bpe {
    /// [`encode_parallel`](Bpe::encode_parallel), calling `progress` with the
    /// byte length of each chunk as it is done (for progress bars).
    pub fn encode_parallel_with(&self, text: &str, allow_special: bool, progress: impl Fn(usize) + Sync) -> Vec<u32> {
        let target = (text.len() / (rayon::current_num_threads() * 4)).clamp(MIN_CHUNK, MAX_CHUNK);
        self.encode_chunks(text, target, allow_special, progress)
    }

    fn encode_chunks(
        &self,
        text: &str,
        target: usize,
        allow_special: bool,
        progress: impl Fn(usize) + Sync,
    ) -> Vec<u32> {
        let mut parts = Vec::new();
        self.added.split(text, allow_special, &mut |segment| match segment {
            Segment::Text(text) => parts.extend(split_chunks(text, target, &self.pre).into_iter().map(Segment::Text)),
            token => parts.push(token),
        });
        let ids: Vec<Vec<u32>> = parts
            .par_iter()
            .map_init(Work::default, |work, part| match *part {
                Segment::Text(chunk) => {
                    let mut ids = Vec::with_capacity(chunk.len() / 4 + 1);
                    self.encode_text_into(chunk, &mut ids, work);
                    progress(chunk.len());
                    ids
                }
                Segment::Token { id, len } => {
                    progress(len);
                    vec![id]
                }
            })
            .collect();
        ids.concat()
    }
}

/// Cuts `text` into chunks of at least `target` bytes (except the last), each
/// ending at a piece boundary of `pre`. Text without boundaries stays one chunk.
pub(super) fn split_chunks<'a>(text: &'a str, target: usize, pre: &PreTokenizer) -> Vec<&'a str> {
    let mut chunks = Vec::new();
    let mut rest = text;
    while rest.len() > target {
        match next_boundary(rest, target, pre) {
            Some(at) => {
                chunks.push(&rest[..at]);
                rest = &rest[at..];
            }
            None => break,
        }
    }
    chunks.push(rest);
    chunks
}

/// The first piece boundary at or after byte `from`, looking beside ASCII
/// white space other than U+0020 (line ends, tabs).
fn next_boundary(text: &str, from: usize, pre: &PreTokenizer) -> Option<usize> {
    let bytes = text.as_bytes();
    let control_space = |i: usize| matches!(bytes[i], b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
    (from.max(1)..bytes.len())
        .filter(|&i| control_space(i) || control_space(i - 1))
        .find(|&i| pre.is_piece_boundary(text, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_text_and_end_at_boundaries() {
        let text = "one two\nthree\n\n  four\tfive\n".repeat(50);
        for target in [1, 7, 40, 1000] {
            let chunks = split_chunks(&text, target, &PreTokenizer::default());
            assert_eq!(chunks.concat(), text);
            let mut at = 0;
            for c in &chunks[..chunks.len() - 1] {
                assert!(c.len() >= target);
                at += c.len();
                assert!(PreTokenizer::default().is_piece_boundary(&text, at), "cut at {at}");
            }
        }
        assert_eq!(split_chunks("no boundary at all", 3, &PreTokenizer::default()).len(), 1);
    }

    #[test]
    fn parallel_equals_serial() {
        let bpe = Bpe::gpt2();
        let text = "The quick brown fox.\n  Jumps<|endoftext|>over\r\n\tthe lazy dog's 42 dens!\n\n".repeat(500);
        for allow in [false, true] {
            let serial = if allow {
                bpe.encode_allowing_special(&text)
            } else {
                bpe.encode(&text)
            };
            for target in [1, 100, 5000, 1 << 20] {
                let done = std::sync::atomic::AtomicUsize::new(0);
                let ids = bpe.encode_chunks(&text, target, allow, |n| {
                    done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                });
                assert_eq!(ids, serial, "chunks of {target}");
                assert_eq!(done.into_inner(), text.len());
            }
        }
    }
}
