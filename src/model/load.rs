//! [`load`]: the one way a front end (the command line, the server) gets a
//! model: a path in any format [`Gpt::load`] reads, or a name fetched with
//! `gpt download` into the Hugging Face cache, with its tokenizer, its weights
//! held as asked. A GGUF file brings its own tokenizer and chat template.

use super::{Gpt, GptConfig};
use crate::tokenizer::{Tokenizer, CHAR_TOKENIZER_FILE};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

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
    /// The chat template the model came with (a GGUF's `tokenizer.chat_template`).
    pub chat_template: Option<String>,
}

/// Loads the model `spec` names: a directory or checkpoint file, or a name
/// (`gpt2`, `org/name`, optionally `@revision`) in the Hugging Face cache.
pub fn load(spec: &str, opts: &LoadOptions) -> Result<Loaded> {
    let path = crate::hub::resolve_model(spec)?;
    let (mut model, tokenizer, chat_template) = match super::io::gguf_file(&path)? {
        Some(file) => load_gguf(&file)?,
        None => {
            let model = Gpt::load(&path)?;
            let tokenizer = tokenizer_for(&model.config, &path)?;
            (model, tokenizer, None)
        }
    };
    if opts.dtype == Dtype::Bf16 {
        model.params.to_bf16();
    }
    Ok(Loaded {
        model,
        tokenizer,
        path,
        chat_template,
    })
}

/// A GGUF file's model, with the tokenizer its metadata describes.
fn load_gguf(file: &Path) -> Result<(Gpt, Tokenizer, Option<String>)> {
    let g = crate::io::gguf::Gguf::open(file)?;
    let read = super::import::gguf::read(&g)?;
    let tokenizer = read.tokenizer.with_context(|| {
        format!(
            "{} has no tokenizer (tokenizer.ggml.* metadata): a GGUF model file must carry its own",
            file.display()
        )
    })?;
    Ok((read.model, Tokenizer::Bpe(tokenizer), read.chat_template))
}

/// The tokenizer of the model at `path`, checked against its `config`: a
/// character tokenizer has exactly the model's ids (BOS is the last one), a
/// BPE at most as many (GPT-2 checkpoints may pad their vocabulary).
pub fn tokenizer_for(config: &GptConfig, path: &Path) -> Result<Tokenizer> {
    let tokenizer = Tokenizer::load(path)?;
    let (n, v) = (tokenizer.vocab_size(), config.vocab_size);
    match tokenizer {
        Tokenizer::Char(_) => ensure!(
            n == v,
            "{CHAR_TOKENIZER_FILE} in {} has {n} ids (characters and BOS) but the model {v}: it belongs to another \
             model; put the model's own {CHAR_TOKENIZER_FILE} beside it",
            path.display()
        ),
        Tokenizer::Bpe(_) => ensure!(
            n <= v,
            "the tokenizer in {} has {n} ids but the model only {v}: they do not belong together",
            path.display()
        ),
    }
    Ok(tokenizer)
}

/// The tokenizer of the model `spec` names, without loading its weights.
pub fn load_tokenizer(spec: &str) -> Result<Tokenizer> {
    Tokenizer::load(&crate::hub::resolve_model(spec)?)
}
