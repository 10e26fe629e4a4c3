//! `gpt sample`: generate new documents from a trained character-level model.

use super::check;
use crate::model::{self, Loaded};
use crate::sample::{generate_from, GenerateOptions, SampleOptions};
use crate::tensor::rng;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Result};
use clap::Args;
use std::io::Write;

/// Sampling flags shared by `gpt sample` and `gpt generate`.
#[derive(Args, Debug)]
pub struct SamplingArgs {
    /// Softmax temperature; 0 = greedy (the most likely token, deterministic)
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample only among the K most likely tokens
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only among the most likely tokens holding probability P
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Random seed (same seed, same output)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The options, checked.
    pub fn options(&self) -> Result<SampleOptions> {
        let opts = SampleOptions {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        };
        opts.validate().map_err(check::sampling_flag)?;
        Ok(opts)
    }
}

/// Most documents one command may ask for.
pub const MAX_SAMPLES: usize = 1_000_000;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Model: a run directory written by `gpt train --out DIR`, or any model `gpt generate` takes
    #[arg(long)]
    pub model: String,
    /// Documents to generate (`-n` still works here, but means new tokens in `gpt generate`)
    #[arg(long, short_alias = 'n', default_value_t = 20)]
    pub num_samples: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// New documents: each starts where the model's documents start (BOS, or
/// `<|endoftext|>`) and ends at the end of one or when the context is full.
/// A character model's are printed one per line; a BPE model's, which may
/// hold newlines, with a `---` line between them (as `gpt generate` prints samples).
pub fn run(a: SampleArgs) -> Result<()> {
    let sampling = a.sampling.options()?;
    check::flag(
        a.num_samples <= MAX_SAMPLES,
        "--num-samples",
        a.num_samples,
        &format!("at most {MAX_SAMPLES}"),
    )?;
    let Loaded {
        model, tokenizer, path, ..
    } = model::load(&a.model, &Default::default())?;
    let special = tokenizer.special_tokens();
    let ends: Vec<u32> = tokenizer.document_separator().into_iter().chain(special.eos).collect();
    let Some(start) = special.bos.or(ends.first().copied()) else {
        bail!(
            "{} has no token that starts a document (BOS, <|endoftext|>): continue text with \
             `gpt generate --model {}`",
            path.display(),
            a.model
        );
    };
    let opts = GenerateOptions {
        sampling,
        max_new_tokens: model.config.n_ctx - 1,
        stop: ends,
    };
    let docs = generate_from(&model, start, a.num_samples, &opts, &mut rng(a.sampling.seed))?;
    let mut out = super::out::stdout();
    for (i, ids) in docs.iter().enumerate() {
        if i > 0 && matches!(tokenizer, Tokenizer::Bpe(_)) {
            writeln!(out, "---")?;
        }
        writeln!(out, "{}", tokenizer.decode(ids)?)?;
    }
    Ok(())
}
