//! The GPT model (GPT-2 and the Llama family): config, definition, KV cache, checkpoint files, and
//! [`load`], the one entry point for front ends.

mod bottleneck;
mod chat;
mod config;
mod config_file;
mod export;
mod gpt;
pub(crate) mod import;
mod io;
mod kv_cache;
mod load;
mod lora;
mod names;

pub use bottleneck::BottleneckSpec;
pub use chat::{encode_chat, encode_prompt, ChatSpec, CHAT_TEMPLATE_FILE, GENERATION_CONFIG_FILE};
pub use config::{Arch, GptConfig};
pub use export::{write_gguf, GgufMeta, EXPORT_KINDS};
pub use gpt::{Gpt, Init};
/// llama.cpp's GGUF model files: config, weights (dequantized, or as stored) and tokenizer.
pub use import::gguf;
pub use io::{parse_checkpoint, stored_dtypes, CONFIG_FILE, WEIGHTS_FILE};
pub use kv_cache::KvCache;
pub use load::{load, load_tokenizer, tokenizer_for, Dtype, LoadOptions, Loaded};
pub use lora::{
    adapter_metadata, Adapter, AdapterKind, AdapterSpec, LoraConfig, LoraSpec, ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
};
pub use names::is_embedding;
