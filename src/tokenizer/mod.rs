//! Tokenizers: text <-> token ids.
//!
//! - [`CharTokenizer`]: one token per character plus BOS, as in microgpt.
//! - [`Bpe`]: byte-level BPE: GPT-2's (built in), trained here, or a
//!   Llama-family model's from its `tokenizer.json` or GGUF metadata.
//! - [`Tokenizer`]: either of them, as a model directory selects.
//! - [`ChatTemplate`]: a conversation rendered as a chat model expects it.

mod any;
pub mod bpe;
mod char;
pub mod chat;

pub use self::any::Tokenizer;
pub use self::bpe::{Bpe, GgufVocab, SpecialTokens};
pub use self::char::{CharTokenizer, CHAR_TOKENIZER_FILE};
pub use self::chat::{encode_chat, encode_prompt, ChatTemplate, Message};
