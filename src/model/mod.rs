//! The GPT model: config, definition, KV cache, and checkpoint files.

mod config;
mod gpt;
pub(crate) mod import;
mod io;
mod kv_cache;

pub use config::GptConfig;
pub use gpt::{Gpt, Init};
pub use io::parse_checkpoint;
pub use kv_cache::KvCache;
