//! Fuzzes `config.json` parsing: any bytes give a config that validates or an
//! error, never a panic.
//!
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run config fuzz/corpus/config fuzz/seeds/config

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = gpt::model::GptConfig::from_json(text) {
        // What loads is a usable config, and it survives a round trip.
        config.validate().expect("a parsed config validates");
        let back = gpt::model::GptConfig::from_json(&config.to_json()).expect("our own JSON parses");
        assert_eq!(back, config);
    }
});
