//! Tokenizers: text <-> token ids.
//!
//! - [`CharTokenizer`]: one token per character plus BOS, as in microgpt.

mod char;

pub use self::char::CharTokenizer;
