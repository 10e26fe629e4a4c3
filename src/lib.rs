//! `gpt`: a GPT you can read, train, fine-tune and run.
//!
//! The modules follow the pipeline, in order:
//! - [`io`]: files and formats (atomic writes, memory maps, safetensors writing, GGUF)
//! - [`tokenizer`]: text <-> token ids (character-level; GPT-2's byte-level BPE)
//! - [`data`]: documents datasets and batching
//! - [`tensor`]: f32 tensors and the kernels (matmul, layernorm, attention, ...)
//! - [`autograd`]: the tape that runs kernels forward and backward
//! - [`model`]: the GPT definition, its config, parameters and checkpoints
//! - [`train`]: loss, optimizer, schedule, training loop, checkpoint writing
//! - [`sample`]: generation with a KV cache, temperature and top-k
//! - [`hub`]: download models from the Hugging Face Hub into its cache; find them by name
//! - [`server`]: `gpt serve`, the OpenAI API over HTTP with continuous batching
//! - [`cli`]: the `gpt` command line

pub mod autograd;
pub mod cli;
pub mod data;
pub mod hub;
pub mod io;
pub mod model;
pub mod sample;
pub mod server;
pub mod tensor;
pub mod tokenizer;
pub mod train;
