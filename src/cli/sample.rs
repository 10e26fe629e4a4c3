//! `gpt sample`: generate new documents from a trained character-level model.

use super::check;
use crate::model::{self, Loaded};
use crate::sample::{generate_documents, SampleOptions};
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
    /// Model directory written by `gpt train --out DIR`
    #[arg(long)]
    pub model: String,
    /// Documents to generate
    #[arg(long, short = 'n', default_value_t = 20)]
    pub num_samples: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(a: SampleArgs) -> Result<()> {
    let opts = a.sampling.options()?;
    check::flag(
        a.num_samples <= MAX_SAMPLES,
        "--num-samples",
        a.num_samples,
        &format!("at most {MAX_SAMPLES}"),
    )?;
    let Loaded {
        model, tokenizer, path, ..
    } = model::load(&a.model, &Default::default())?;
    let Tokenizer::Char(tok) = tokenizer else {
        bail!(
            "{} is not a character-level model: `gpt sample` makes whole documents from one; continue text with \
             `gpt generate --model {}`",
            path.display(),
            a.model
        );
    };
    let mut out = super::out::stdout();
    for ids in generate_documents(&model, tok.bos(), a.num_samples, opts, &mut rng(a.sampling.seed))? {
        writeln!(out, "{}", tok.decode(&ids)?)?;
    }
    Ok(())
}
