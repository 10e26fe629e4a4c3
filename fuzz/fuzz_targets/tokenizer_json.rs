//! Fuzzes a Hugging Face `tokenizer.json` (with an optional
//! `tokenizer_config.json`): any bytes give a tokenizer or an error; a
//! tokenizer that loads encodes any text into ids of its own vocabulary that
//! decode back to the text, and decodes any ids or fails cleanly.
//!
//! Input: two little-endian u16 lengths, then tokenizer.json,
//! tokenizer_config.json (empty: none) and the rest as a text to encode.
//!
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run tokenizer_json fuzz/corpus/tokenizer_json fuzz/seeds/tokenizer_json -- -max_len=70000

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "split.rs"]
mod split;
use split::take;

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let (Some(json), Some(config)) = (take(&mut data), take(&mut data)) else {
        return;
    };
    let (Ok(json), Ok(config)) = (std::str::from_utf8(json), std::str::from_utf8(config)) else {
        return;
    };
    let config = (!config.is_empty()).then_some(config);
    let Ok(bpe) = gpt::tokenizer::Bpe::from_tokenizer_json(json, config) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let ids = bpe.encode(&text);
    assert!(ids.iter().all(|&id| (id as usize) < bpe.vocab_size()));
    let raw: Vec<u32> = data.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    let _ = bpe.decode_bytes(&raw);
});
