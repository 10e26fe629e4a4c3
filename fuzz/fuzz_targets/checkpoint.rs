//! Fuzzes `config.json` + `model.safetensors` parsing: whatever the bytes,
//! `parse_checkpoint` returns a model or an error, never panics, never reads
//! out of bounds, never allocates beyond what the input describes.
//!
//! Input: a little-endian u16 length, that many bytes of config.json, then
//! the safetensors file. Seeds: `fuzz/seeds/` (made by `fuzz/make_seeds.py`).
//!
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run checkpoint fuzz/corpus/checkpoint fuzz/seeds

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (config, weights) = rest.split_at(usize::from(u16::from_le_bytes(*len)).min(rest.len()));
    if let Ok(model) = gpt::model::parse_checkpoint(config, weights) {
        // A model that loads is a whole one.
        assert_eq!(
            model.params.names.len(),
            gpt::model::Gpt::expected_tensors(&model.config).len()
        );
    }
});
