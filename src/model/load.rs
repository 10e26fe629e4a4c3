//! [`load`]: the one way a front end (the command line, the server) gets a
//! model: a path in any format [`Gpt::load`] reads, or a name fetched with
//! `gpt download` into the Hugging Face cache, with its tokenizer, its weights
//! held as asked. A GGUF file brings its own tokenizer and chat template.

use super::{ChatSpec, Gpt, GptConfig};
use crate::tokenizer::{Tokenizer, CHAR_TOKENIZER_FILE};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// How the weight matrices are held in memory (arithmetic is f32 either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dtype {
    /// As the file holds them: a GGUF's quantized matrices stay in their
    /// blocks, everything else is f32.
    #[default]
    Stored,
    /// Exact: the checkpoint's values (quantized ones dequantized).
    F32,
    /// Rounded to bfloat16: half the bytes to read per decoded token.
    Bf16,
    /// Quantized to one of ggml's block formats on load (Q8_0, Q4_0, Q4_1).
    Quant(crate::tensor::quant::Kind),
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub dtype: Dtype,
    /// An adapter directory (peft's LoRA, or bottleneck adapters) to run with the model, unmerged.
    pub adapter: Option<PathBuf>,
    /// Whether a sequence classifier will do; without, one is refused (its
    /// logits are over labels, not tokens).
    pub classifier: bool,
}

/// A model ready to run, with the tokenizer it was trained with.
pub struct Loaded {
    pub model: Gpt,
    pub tokenizer: Tokenizer,
    /// Where it was found (a Hub name resolves to its snapshot directory).
    pub path: PathBuf,
    /// Its chat template and the ids that end a reply.
    pub chat: ChatSpec,
}

/// Loads the model `spec` names: a directory or checkpoint file, or a name
/// (`gpt2`, `org/name`, optionally `@revision`) in the Hugging Face cache.
pub fn load(spec: &str, opts: &LoadOptions) -> Result<Loaded> {
    let path = crate::hub::resolve_model(spec)?;
    let (mut model, tokenizer, chat) = match super::io::gguf_file(&path)? {
        Some(file) => load_gguf(&file, opts.dtype)?,
        None => {
            let model = Gpt::load(&path)?;
            let tokenizer = tokenizer_for(&model.config, &path)?;
            let chat = ChatSpec::from_dir(&path, &model.config, &tokenizer)?;
            (model, tokenizer, chat)
        }
    };
    ensure!(
        opts.classifier || !model.config.is_classifier(),
        "{spec} is a sequence classifier (labels {}), not a language model: run it with `gpt classify --model {spec}`",
        model.config.labels.join(", ")
    );
    match opts.dtype {
        Dtype::Stored | Dtype::F32 => {}
        Dtype::Bf16 => model.params.to_bf16(),
        Dtype::Quant(kind) => model
            .quantize(kind)
            .with_context(|| format!("holding {} as {kind}", path.display()))?,
    }
    if let Some(dir) = &opts.adapter {
        let adapter = super::Adapter::load(dir)?;
        model
            .add_adapter(&adapter)
            .with_context(|| format!("adding the adapter in {} to {}", dir.display(), path.display()))?;
    }
    Ok(Loaded {
        model,
        tokenizer,
        path,
        chat,
    })
}

/// A GGUF file's model (its quantized matrices kept in their blocks when
/// `dtype` is [`Dtype::Stored`]), with the tokenizer and chat template its
/// metadata describes.
fn load_gguf(file: &Path, dtype: Dtype) -> Result<(Gpt, Tokenizer, ChatSpec)> {
    let mut g = crate::io::gguf::Gguf::open(file)?;
    let read = super::import::gguf::read(&mut g, dtype == Dtype::Stored)?;
    let tokenizer = read.tokenizer.with_context(|| {
        format!(
            "{} has no tokenizer (tokenizer.ggml.* metadata): a GGUF model file must carry its own",
            file.display()
        )
    })?;
    let tokenizer = Tokenizer::Bpe(tokenizer);
    let chat = ChatSpec::new(
        read.chat_template,
        &read.model.config.eos_token_id,
        &read.model.config,
        &tokenizer,
    );
    Ok((read.model, tokenizer, chat))
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

/// The tokenizer of the model `spec` names (as [`load`] takes it), without
/// loading its weights. A directory must hold a model or tokenizer files: an
/// empty one is an error, not GPT-2's tokenizer.
pub fn load_tokenizer(spec: &str) -> Result<Tokenizer> {
    let path = crate::hub::resolve_model(spec)?;
    ensure!(
        path.is_file() || Tokenizer::found_in(&path) || path.join(super::io::CONFIG_FILE).is_file(),
        "{} holds neither a model ({}) nor a tokenizer ({CHAR_TOKENIZER_FILE}, {}, {} + {}, a .gguf file)",
        path.display(),
        super::io::CONFIG_FILE,
        crate::tokenizer::bpe::TOKENIZER_FILE,
        crate::tokenizer::bpe::VOCAB_FILE,
        crate::tokenizer::bpe::MERGES_FILE
    );
    Tokenizer::load(&path)
}
