//! `gpt sample`: generate new documents from a trained character-level model.

use crate::model::{self, Loaded};
use crate::sample::{generate_documents, SampleOptions};
use crate::tensor::rng;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, ensure, Result};
use clap::Args;

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
        ensure!(
            self.temperature >= 0.0 && self.temperature.is_finite(),
            "--temperature must be a finite number >= 0"
        );
        ensure!(
            self.top_p.is_none_or(|p| p > 0.0 && p <= 1.0),
            "--top-p must be in (0, 1]"
        );
        Ok(SampleOptions {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        })
    }
}

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
    let Loaded { model, tokenizer, path } = model::load(&a.model, &Default::default())?;
    let Tokenizer::Char(tok) = tokenizer else {
        bail!(
            "{} is not a character-level model: `gpt sample` makes whole documents from one; continue text with \
             `gpt generate --model {}`",
            path.display(),
            a.model
        );
    };
    for ids in generate_documents(&model, tok.bos(), a.num_samples, opts, &mut rng(a.sampling.seed))? {
        println!("{}", tok.decode(&ids)?);
    }
    Ok(())
}
