//! Fuzzes the GGUF reader: whatever the bytes, `Gguf::parse` returns a file
//! or an error, never panics, never reads out of bounds, never allocates
//! beyond what the input can describe; and every tensor of a file it accepts
//! dequantizes (when it is of a kind we read). Then the model import runs on
//! it (`gpt::model::gguf::read`: config, weights, tokenizer), which must
//! likewise return a model or an error.
//!
//! Seeds: the golden files of `tests/golden/gguf/` and `tests/golden/gguf_models/`
//! (made by `scripts/gen_quant_golden.py` and `scripts/gen_gguf_model_golden.py`).
//!
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run gguf fuzz/corpus/gguf tests/golden/gguf tests/golden/gguf_models

#![no_main]

use gpt::io::gguf::Gguf;
use gpt::tensor::quant::{dequantize_row, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = Gguf::parse(data, "fuzz.gguf") else {
        return;
    };
    for (t, bytes) in gguf.tensors() {
        assert_eq!(Some(bytes.len()), t.ty.bytes_of(t.n_elements()));
        if let Some(kind) = Kind::from_ggml_id(t.ty.id()) {
            let mut out = vec![0.0; t.n_elements()];
            dequantize_row(kind, bytes, &mut out);
        }
    }
    // Dequantized, and with its quantized matrices kept in their blocks (each
    // from a fresh parse: reading frees the metadata's arrays).
    for keep_quantized in [false, true] {
        let Ok(mut gguf) = Gguf::parse(data, "fuzz.gguf") else { return };
        if let Ok(m) = gpt::model::gguf::read(&mut gguf, keep_quantized) {
            let n: usize = m.model.params.tensors.iter().map(|t| t.data.len()).sum();
            assert!(n <= 8 * data.len() + m.model.config.n_ctx * m.model.config.n_embd);
        }
    }
});
