//! [`load`]: the one way a front end (the command line, the server) gets a
//! model: a path in any format [`Gpt::load`] reads, or a name fetched with
//! `gpt download` into the Hugging Face cache, with its tokenizer, its weights
//! held as asked.

use super::Gpt;
use crate::tokenizer::Tokenizer;
use anyhow::{ensure, Result};
use std::path::PathBuf;

/// How the weight matrices are held in memory (arithmetic is f32 either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dtype {
    /// Exact: the checkpoint's values.
    #[default]
    F32,
    /// Rounded to bfloat16: half the bytes to read per decoded token.
    Bf16,
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub dtype: Dtype,
}

/// A model ready to run, with the tokenizer it was trained with.
pub struct Loaded {
    pub model: Gpt,
    pub tokenizer: Tokenizer,
    /// Where it was found (a Hub name resolves to its snapshot directory).
    pub path: PathBuf,
}

/// Loads the model `spec` names: a directory or checkpoint file, or a name
/// (`gpt2`, `org/name`, optionally `@revision`) in the Hugging Face cache.
pub fn load(spec: &str, opts: &LoadOptions) -> Result<Loaded> {
    let path = crate::hub::resolve_model(spec)?;
    let mut model = Gpt::load(&path)?;
    let tokenizer = Tokenizer::load(&path)?;
    ensure!(
        tokenizer.vocab_size() <= model.config.vocab_size,
        "the tokenizer in {} has {} ids but the model only {}: they do not belong together",
        path.display(),
        tokenizer.vocab_size(),
        model.config.vocab_size
    );
    if opts.dtype == Dtype::Bf16 {
        model.params.to_bf16();
    }
    Ok(Loaded { model, tokenizer, path })
}

/// The tokenizer of the model `spec` names, without loading its weights.
pub fn load_tokenizer(spec: &str) -> Result<Tokenizer> {
    Tokenizer::load(&crate::hub::resolve_model(spec)?)
}
