//! The pre-tokenizer's character classes equal the `regex` crate's `\p{L}`,
//! `\p{N}` and `\s` (the engine under `tiktoken`), for every code point.
//!
//! `GPT_REGEN_UNICODE_TABLES=1 cargo test --test tokenizer_unicode` rewrites
//! `src/tokenizer/bpe/unicode_tables.rs` from the `regex` crate's data first
//! (after updating `fancy-regex` / `regex`, for a newer Unicode version).

use fancy_regex::Regex;
use gpt::tokenizer::bpe::pretokenize::{char_class, CharClass};

/// The class of every code point (surrogates: Other), per the regex crate.
fn regex_classes() -> Vec<CharClass> {
    let letter = Regex::new(r"^\p{L}$").unwrap();
    let number = Regex::new(r"^\p{N}$").unwrap();
    let space = Regex::new(r"^\s$").unwrap();
    let mut buf = [0u8; 4];
    (0..=char::MAX as u32)
        .map(|c| match char::from_u32(c) {
            None => CharClass::Other,
            Some(c) => {
                let s = c.encode_utf8(&mut buf);
                if letter.is_match(s).unwrap() {
                    CharClass::Letter
                } else if number.is_match(s).unwrap() {
                    CharClass::Number
                } else if space.is_match(s).unwrap() {
                    CharClass::Space
                } else {
                    CharClass::Other
                }
            }
        })
        .collect()
}

/// Source of `unicode_tables.rs`: ranges of non-ASCII, non-Other classes.
fn tables_source(classes: &[CharClass]) -> String {
    let mut out = String::from(
        "//! Unicode classes for the pre-tokenizer, generated from the `regex` crate's\n\
         //! tables by `GPT_REGEN_UNICODE_TABLES=1 cargo test --test tokenizer_unicode`.\n\
         //! Do not edit.\n\n\
         use super::pretokenize::CharClass::{self, Letter as L, Number as N, Space as S};\n\n\
         /// Sorted, disjoint `(first, last, class)` ranges of non-ASCII code points\n\
         /// that are letters, numbers or white space; the rest are `Other`.\n\
         #[rustfmt::skip]\n\
         pub const RANGES: &[(u32, u32, CharClass)] = &[\n",
    );
    let mut c = 0x80;
    while c < classes.len() {
        let class = classes[c];
        let start = c;
        while c < classes.len() && classes[c] == class {
            c += 1;
        }
        let tag = match class {
            CharClass::Letter => "L",
            CharClass::Number => "N",
            CharClass::Space => "S",
            CharClass::Other => continue,
        };
        out.push_str(&format!("    (0x{start:04X}, 0x{:04X}, {tag}),\n", c - 1));
    }
    out.push_str("];\n");
    out
}

#[test]
fn classes_match_the_regex_crate() {
    let classes = regex_classes();
    if std::env::var_os("GPT_REGEN_UNICODE_TABLES").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tokenizer/bpe/unicode_tables.rs");
        std::fs::write(path, tables_source(&classes)).unwrap();
        eprintln!("wrote {path}; rebuild and run again to check");
        return;
    }
    let wrong: Vec<String> = classes
        .iter()
        .enumerate()
        .filter_map(|(c, &want)| {
            let ch = char::from_u32(c as u32)?;
            let got = char_class(ch);
            (got != want).then(|| format!("U+{c:04X}: {got:?}, regex says {want:?}"))
        })
        .take(20)
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
