//! Fuzzes token files (`gpt prepare`'s train.bin / val.bin): any bytes open
//! as a token file or give an error; an opened file reads every id it claims.
//!
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run token_file fuzz/corpus/token_file fuzz/seeds/token_file

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// One scratch file per fuzzing process (TokenFile reads from a path).
fn scratch() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("gpt-fuzz-token-file-{}.bin", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(scratch(), data).expect("writing the scratch file");
    let Ok(file) = gpt::data::tokens::TokenFile::open(scratch()) else {
        return;
    };
    // Ids come back checked against the header's vocabulary, or an error.
    if let Ok(ids) = file.ids() {
        assert_eq!(ids.len(), file.len());
        assert!(ids.iter().all(|&id| id < file.header().vocab_size));
    }
    // GPT-2's tokenizer is built once: building it per input took a second.
    static GPT2: OnceLock<gpt::tokenizer::Tokenizer> = OnceLock::new();
    let _ = file.check_tokenizer(GPT2.get_or_init(gpt::tokenizer::Tokenizer::gpt2));
});
