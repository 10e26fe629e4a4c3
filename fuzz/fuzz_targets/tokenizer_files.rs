//! Fuzzes a BPE tokenizer's files (`vocab.json` + `merges.txt`): any bytes
//! give a tokenizer or an error; a tokenizer that loads encodes and decodes
//! any text and any ids without panicking.
//!
//! Input: two little-endian u16 lengths, then vocab.json, merges.txt and the
//! rest as a text to encode.
//!
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run tokenizer_files fuzz/corpus/tokenizer_files fuzz/seeds/tokenizer_files

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "split.rs"]
mod split;
use split::take;

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let (Some(vocab), Some(merges)) = (take(&mut data), take(&mut data)) else {
        return;
    };
    let (Ok(vocab), Ok(merges)) = (std::str::from_utf8(vocab), std::str::from_utf8(merges)) else {
        return;
    };
    let Ok(bpe) = gpt::tokenizer::Bpe::from_text("fuzz", vocab, merges) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let ids = bpe.encode(&text);
    // Every id it makes is in its vocabulary and decodes back to the text.
    assert!(ids.iter().all(|&id| (id as usize) < bpe.vocab_size()));
    assert_eq!(bpe.decode_bytes(&ids).expect("own ids decode"), text.as_bytes());
    // Arbitrary ids decode or fail cleanly.
    let raw: Vec<u32> = data.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    let _ = bpe.decode_bytes(&raw);
});
