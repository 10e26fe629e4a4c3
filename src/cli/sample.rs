//! `gpt sample`: generate new documents from a trained character-level model.

use crate::model::Gpt;
use crate::sample::{generate_documents, SampleOptions};
use crate::tensor::rng;
use crate::tokenizer::CharTokenizer;
use anyhow::{ensure, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Model directory written by `gpt train --out DIR`
    #[arg(long)]
    pub model: PathBuf,
    /// Documents to generate
    #[arg(long, short = 'n', default_value_t = 20)]
    pub num_samples: usize,
    /// Softmax temperature; 0 = greedy
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample only among the K most likely tokens
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only among the most likely tokens holding probability P
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Random seed
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub fn run(a: SampleArgs) -> Result<()> {
    ensure!(
        a.temperature >= 0.0 && a.temperature.is_finite(),
        "--temperature must be a finite number >= 0"
    );
    let model = Gpt::load(&a.model)?;
    let tok = CharTokenizer::load(&a.model)?;
    ensure!(
        tok.vocab_size() == model.config.vocab_size,
        "the tokenizer in {} has {} ids but the model has vocab_size {}",
        a.model.display(),
        tok.vocab_size(),
        model.config.vocab_size
    );
    let opts = SampleOptions {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
    };
    for ids in generate_documents(&model, tok.bos(), a.num_samples, opts, &mut rng(a.seed)) {
        println!("{}", tok.decode(&ids)?);
    }
    Ok(())
}
