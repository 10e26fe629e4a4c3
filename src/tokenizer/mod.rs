//! Tokenizers: text <-> token ids.
//!
//! - [`CharTokenizer`]: one token per character plus BOS, as in microgpt.
//! - [`Bpe`]: byte-level BPE, identical to GPT-2's (built in) or trained here.
//! - [`Tokenizer`]: either of them, as a model directory selects.

mod any;
pub mod bpe;
mod char;

pub use self::any::Tokenizer;
pub use self::bpe::Bpe;
pub use self::char::{CharTokenizer, CHAR_TOKENIZER_FILE};
