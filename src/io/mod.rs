//! File formats read and written below the model: each a parser that turns
//! any bytes into a value or an error naming the file and the problem.
//!
//! - [`gguf`]: llama.cpp's GGUF (metadata, tensor table, quantized tensor bytes)

pub mod gguf;
